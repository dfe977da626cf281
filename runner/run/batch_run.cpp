// `authrun run`: JSONL in, JSONL out, on the engine.
#include "runner/run/batch_run.hpp"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <unordered_set>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "protocol/json_codec.hpp"
#include "protocol/limits.hpp"
#include "runner/run/jsonl_input.hpp"
#include "runner/run/result_sink.hpp"
#include "runner/run/resume.hpp"
#include "runner/engine/summary_json.hpp"

namespace authrun::runner {

using namespace protocol;

namespace {

// Tasks read ahead of the workers, and results held back for --keep-order, are bounded by these.
constexpr std::size_t k_queue_capacity = 1024;
constexpr std::size_t k_max_held_results = 4096;
constexpr std::size_t k_max_held_bytes = std::size_t(64) << 20;  // 64 MiB of held lines

void log(const std::string& text) { std::fprintf(stderr, "authrun: %s\n", text.c_str()); }

// Writes each task's result line.
class JsonlResults : public ResultHandler {
 public:
  JsonlResults(std::FILE* out, bool keep_order) : m_sink(out, keep_order) {}

  // The line is put together as text, its keys in the order a JSON object of them dumps in: the id goes
  // out byte for byte as the input had it.
  Next task_done(const BatchTask& task, TaskOutcome&& o) override {
    std::string& line = m_line;
    line.assign("{\"attempts\":");
    append_json_uint(line, std::uint64_t(o.attempts));
    line += ",\"duration_ms\":";
    append_json_double(line, o.duration_ms);
    if (!o.ok) {
      line += ",\"error\":";
      append_json(line, o.error);
    }
    line += ",\"host\":";
    if (o.host.empty()) line += "null";
    else append_json_string(line, o.host);
    line += ",\"id\":";
    line += id_json(task);
    line += o.ok ? ",\"ok\":true,\"value\":" : ",\"ok\":false";
    if (o.ok && o.value_json.empty()) append_json(line, o.value);
    else if (o.ok) line += o.value_json;
    line += ",\"worker\":";
    if (o.worker > 0) append_json_uint(line, std::uint64_t(o.worker));
    else line += "null";
    line += '}';
    if (!m_sink.write(task.seq, line, o.ok)) m_failed = true;
    return Next::go_on;
  }
  void task_not_started(const BatchTask& task) override {
    if (!m_sink.skip(task.seq)) m_failed = true;
  }
  bool takes_value_text() const override { return true; }
  bool write_failed() const override { return m_failed; }
  void flush() override {
    if (!m_sink.flush()) m_failed = true;
  }
  const ResultSink& sink() const { return m_sink; }
  bool can_take_more() const override {
    return m_sink.held() < k_max_held_results && m_sink.held_bytes() < k_max_held_bytes;
  }

 private:
  ResultSink m_sink;
  std::string m_line;  // reused for each line
  bool m_failed = false;
};

// Opens the results file: stdout, a new file, or (resuming) the old one to append to, on a line of its own.
std::FILE* open_output(const std::string& path, bool append) {
  if (path == "-") return stdout;
  std::FILE* out = std::fopen(path.c_str(), append ? "a+e" : "we");
  if (!out) return nullptr;
  if (append && std::fseek(out, -1, SEEK_END) == 0 && std::fgetc(out) != '\n') {
    std::fseek(out, 0, SEEK_END);
    std::fputc('\n', out);
  }
  std::fseek(out, 0, SEEK_END);
  return out;
}

// The tasks in a regular file, for the progress bar: its non-blank lines, counted with memchr (a few ms per
// 100 MB from the page cache). Nothing for other inputs, or a file too large to count before starting.
std::optional<std::uint64_t> count_tasks(int fd) {
  constexpr off_t k_max_counted = off_t(1) << 30;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > k_max_counted) return std::nullopt;
  std::vector<char> buf(1 << 20);
  std::uint64_t lines = 0;
  bool line_has_text = false;
  for (off_t at = 0;;) {
    const ssize_t n = ::pread(fd, buf.data(), buf.size(), at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) break;
    at += n;
    for (const char* p = buf.data(), *end = buf.data() + n; p < end;) {
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', std::size_t(end - p)));
      const char* stop = nl ? nl : end;
      for (const char* c = p; c < stop && !line_has_text; ++c) line_has_text = *c != ' ' && *c != '\t' && *c != '\r';
      if (!nl) break;
      lines += line_has_text;
      line_has_text = false;
      p = nl + 1;
    }
  }
  return lines + line_has_text;
}

}  // namespace

int run_batch(const RunOptions& o) {
  std::unordered_set<std::string> done;
  if (!o.resume.empty()) {
    std::size_t unreadable = 0;
    auto loaded = load_done_ids(o.resume, unreadable);
    if (!loaded) {
      log(loaded.error().message);
      return 2;
    }
    done = std::move(*loaded);
    if (unreadable) log("resume: passed over " + std::to_string(unreadable) + " unreadable line(s) in " + o.resume);
  }
  const std::string in_name = o.input == "-" ? "stdin" : o.input;
  Fd in = o.input == "-" ? Fd(::fcntl(0, F_DUPFD_CLOEXEC, 3)) : Fd(::open(o.input.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.valid()) {
    log("cannot read tasks from " + in_name + ": " + std::strerror(errno));
    return 2;
  }
  const std::string out_path = o.resume.empty() ? o.output : o.resume;
  std::FILE* out = open_output(out_path, !o.resume.empty());
  if (!out) {
    log("cannot write results to " + out_path + ": " + std::strerror(errno));
    return 2;
  }

  // Counted on the feed's thread, read after it has been joined.
  std::atomic<std::uint64_t> skipped{0};
  std::function<bool(const BatchTask&)> skip;
  if (!done.empty()) {
    skip = [&](const BatchTask& t) {
      if (!done.count(id_json(t))) return false;
      ++skipped;
      return true;
    };
  }
  EngineOptions engine = o.engine;
  if (engine.progress && done.empty()) engine.total = count_tasks(in.get());
  const std::size_t max_line = o.engine.max_payload ? o.engine.max_payload : limits::default_max_payload;
  JsonlResults results(out, o.keep_order);
  RunSummary s = run_engine(
      engine,
      [&](std::function<void()> notify) {
        return std::make_unique<TaskFeed>(k_queue_capacity, jsonl_producer(std::move(in), in_name, max_line, skip, o.allow_duplicate_ids),
                                          std::move(notify));
      },
      results);
  if (out != stdout) std::fclose(out);
  if (s.output_closed) {
    // Count only what reached the reader: a result held for --keep-order, or lost to EPIPE, was not.
    s.ok = results.sink().written_ok();
    s.failed = results.sink().written_failed();
  }

  const int status = s.output_closed ? 141  // as a filter killed by SIGPIPE (and GNU parallel) exits
                     : s.signal      ? 128 + s.signal
                     : s.setup_failed ? 2
                     : s.failed      ? 1
                                     : 0;
  if (!o.engine.summary_json.empty()) {
    if (auto w = write_summary_json(o.engine.summary_json, s, skipped.load(), o.engine.jobs, status); !w) {
      log(w.error().message);
    }
  }
  // Whoever reads the results stopped reading (`authrun run ... | head`): quietly, as a Unix filter.
  if (s.output_closed) return status;
  log(describe(s, skipped.load()));
  if (!s.not_started.empty()) {
    std::string ids;
    for (std::size_t i = 0; i < s.not_started.size() && i < 20; ++i) ids += (i ? ", " : "") + s.not_started[i];
    if (s.not_started.size() > 20) ids += ", ...";
    log("not started: " + ids + (o.resume.empty() ? "" : " (run again with the same --resume to do them)"));
  }
  if (s.input_cut) log("the input was not read to its end: the tasks after those were not started either");
  return status;
}

}  // namespace authrun::runner
