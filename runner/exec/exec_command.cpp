// `authrun exec`: jobs from argument sources, output printed whole per job.
#include "runner/exec/exec_command.hpp"

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include "protocol/json_codec.hpp"
#include "protocol/limits.hpp"
#include "runner/exec/exec_buffer.hpp"
#include "runner/exec/exec_halt.hpp"
#include "runner/exec/exec_joblog.hpp"
#include "runner/engine/line_reader.hpp"
#include "runner/engine/progress_line.hpp"
#include "runner/engine/summary_json.hpp"

namespace authrun::runner {

using namespace protocol;

namespace {

constexpr std::size_t k_queue_capacity = 1024;
constexpr std::size_t k_pipe_queue_capacity = 2;  // --pipe: chunks read ahead of the workers (each up to a block)
constexpr std::size_t k_max_held_jobs = 4096;
constexpr std::size_t k_memory_budget = 16 * 1024 * 1024;  // output held in memory, all jobs together
constexpr std::size_t k_stream_after = 1024 * 1024;         // a job holding more stdout streams it, if stdout is free
constexpr std::size_t k_quote_max = 100;                    // bytes of an argument quoted in a message

void log(const std::string& text) {
  ProgressLine::on_stderr().clear();
  std::fprintf(stderr, "authrun: %s\n", text.c_str());
}

// The exec task args for one job, in CBOR: the argv as byte strings (arguments are bytes, not text), the
// output streamed back as it comes.
std::string exec_args(const ExecOptions& o, JobArgs job, int slot, const std::string* stdin_bytes = nullptr) {
  job.context_replace = o.multi == ExecOptions::Multi::context;
  job.positions = std::size_t(std::max(0, o.max_args));
  json argv = json::array();
  for (const std::string& word : job_argv(o.command.command, job, slot, o.shell)) {
    argv.push_back(json::binary(std::vector<std::uint8_t>(word.begin(), word.end())));
  }
  json args{{"argv", std::move(argv)}, {"stream", true}};
  if (!o.env.empty()) {
    json env = json::object();
    for (const auto& name : o.env) {
      if (const char* value = std::getenv(name.c_str())) env[name] = json::binary(std::vector<std::uint8_t>(value, value + std::strlen(value)));
    }
    if (!env.empty()) args["env"] = std::move(env);
  }
  if (o.timeout_s) args["timeout"] = *o.timeout_s;
  if (stdin_bytes) args["stdin"] = json::binary(std::vector<std::uint8_t>(stdin_bytes->begin(), stdin_bytes->end()));
  std::string out;
  json::to_cbor(args, nlohmann::detail::output_adapter<char>(out));
  return out;
}

// `s`, cut to a readable length for a message.
std::string cut(const std::string& s) {
  if (s.size() <= k_quote_max + 16) return s;
  return s.substr(0, k_quote_max) + "... (" + std::to_string(s.size()) + " bytes)";
}

JobArgs job_of(const BatchTask& t) {
  JobArgs job;
  job.number = t.number;
  job.values = t.context["values"].get<std::vector<std::string>>();
  return job;
}

// Reads `file`'s values ("-": stdin), one per `delimiter`, calling `take` for each until it returns false.
// A value longer than the payload limit is an error, never cut. Gives up when `stop_fd` becomes readable.
std::optional<std::string> read_values(const std::string& file, char delimiter, int stop_fd,
                                       const std::function<bool(std::string)>& take) {
  Fd fd(file == "-" ? ::fcntl(0, F_DUPFD_CLOEXEC, 3) : ::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return "cannot read " + file + ": " + std::strerror(errno);
  const std::string name = file == "-" ? "stdin" : file;
  std::optional<std::string> too_long;
  std::size_t line = 0;
  auto err = read_lines(
      fd.get(), name, stop_fd, limits::default_max_payload,
      [&](std::string_view text, std::size_t length) {
        ++line;
        if (length > limits::default_max_payload) {
          too_long = name + ": value " + std::to_string(line) + " is " + std::to_string(length) + " bytes, more than " +
                     std::to_string(limits::default_max_payload);
          return false;
        }
        return take(std::string(text));
      },
      delimiter);
  return too_long ? too_long : err;
}

// Generates the jobs, calling `sink` for each until it returns false: one source is streamed (stdin may be
// endless); several are read first and combined as a cross product, the first source outermost (as GNU
// parallel does), linked ones paired. Input rows pass through --colsep, -r, -N and -X/-m/--xargs on the way.
// Jobs numbered in `done` are passed over. Returns an error message if a source failed.
std::optional<std::string> generate_jobs(const ExecOptions& o, const std::set<std::uint64_t>& done, int stop_fd,
                                         const std::function<bool(BatchTask)>& sink) {
  if (o.pipe) {
    // --pipe: a job per chunk of stdin, the chunk its stdin; no values.
    std::uint64_t number = 0;
    return split_stream(
        0, "stdin", o.pipe_split, stop_fd,
        [&](std::string chunk) {
          BatchTask t;
          t.number = ++number;
          if (done.count(t.number)) return true;
          t.id = t.number;
          t.fn = "exec";
          t.context = json{{"values", json::array()}};
          t.args_json = exec_args(o, JobArgs{{}, t.number}, 0, &chunk);
          t.args_format = BodyFormat::cbor;
          if (o.timeout_s) t.timeout_s = *o.timeout_s + 10;
          return sink(std::move(t));
        },
        [](const std::string& text) { log("warning: " + text); });
  }
  {
    std::uint64_t number = 0;
    auto emit = [&](std::vector<std::string> values) {
      BatchTask t;
      t.number = ++number;
      if (done.count(t.number)) return true;
      t.id = t.number;
      t.fn = "exec";
      t.context = json{{"values", values}};
      JobArgs job{std::move(values), t.number};
      t.args_json = exec_args(o, job, 0);
      t.args_format = BodyFormat::cbor;
      // The worker's exec kills the child at the timeout; this backstop catches a worker that hangs.
      if (o.timeout_s) t.timeout_s = *o.timeout_s + 10;
      return sink(std::move(t));
    };
    // Several input rows per job (-N, -X/-m/--xargs): gathered here, emitted when full and at the end.
    constexpr std::size_t k_max_chars = 128 * 1024;  // -X/-m/--xargs: values per job up to this many bytes
    std::vector<std::string> gathered;
    std::size_t gathered_bytes = 0;
    const bool gathering = o.max_args > 0 || o.multi != ExecOptions::Multi::none;
    auto flush = [&] {
      if (gathered.empty()) return true;
      gathered_bytes = 0;
      return emit(std::exchange(gathered, {}));
    };
    auto add_row = [&](std::vector<std::string> row) {
      if (!o.colsep.empty() && row.size() == 1) {
        std::vector<std::string> columns;
        std::size_t at = 0;
        for (std::size_t next; (next = row[0].find(o.colsep, at)) != std::string::npos; at = next + o.colsep.size()) {
          columns.push_back(row[0].substr(at, next - at));
        }
        columns.push_back(row[0].substr(at));
        row = std::move(columns);
      }
      if (o.skip_empty && std::all_of(row.begin(), row.end(), [](const std::string& v) {
            return v.find_first_not_of(" \t\r\n") == std::string::npos;
          })) {
        return true;
      }
      if (!gathering) return emit(std::move(row));
      std::size_t bytes = 0;
      for (const auto& v : row) bytes += v.size() + 1;
      if (o.max_args == 0 && !gathered.empty() && gathered_bytes + bytes > k_max_chars && !flush()) return false;
      gathered.insert(gathered.end(), std::make_move_iterator(row.begin()), std::make_move_iterator(row.end()));
      gathered_bytes += bytes;
      if (o.max_args > 0 && gathered.size() >= std::size_t(o.max_args)) return flush();
      return true;
    };
    const auto& sources = o.command.sources;
    if (sources.size() == 1 && !sources[0].file.empty()) {
      bool stopped = false;
      auto err = read_values(sources[0].file, o.delimiter, stop_fd, [&](std::string v) {
        if (add_row({std::move(v)})) return true;
        stopped = true;
        return false;
      });
      if (err) return err;
      if (!stopped) flush();
      return std::nullopt;
    }
    std::vector<std::vector<std::string>> lists;
    std::vector<bool> linked;
    for (const auto& source : sources) {
      std::vector<std::string> values = source.values;
      if (!source.file.empty()) {
        auto err = read_values(source.file, o.delimiter, stop_fd, [&](std::string v) {
          values.push_back(std::move(v));
          return true;
        });
        if (err) return err;
      }
      lists.push_back(std::move(values));
      linked.push_back(source.linked);
    }
    bool stopped = false;
    combine_sources(lists, linked, [&](std::vector<std::string> row) {
      if (add_row(std::move(row))) return true;
      stopped = true;
      return false;
    });
    if (!stopped) flush();
    return std::nullopt;
  }
}

// The command line of a job as GNU parallel shows it (--dry-run, the joblog): the shell command line, argv
// words quoted only where needed.
std::string command_line(const ExecOptions& o, const BatchTask& t) {
  JobArgs job = job_of(t);
  if (o.retry_failed) return job.values.at(0);  // the joblog's own command line
  job.context_replace = o.multi == ExecOptions::Multi::context;
  job.positions = std::size_t(std::max(0, o.max_args));
  const std::vector<std::string> argv = job_argv(o.command.command, job, 1, o.shell);
  if (o.shell) return argv[2];
  std::string line;
  for (const auto& word : argv) {
    if (!line.empty()) line += ' ';
    line += parallel_quote(word);
  }
  return line;
}

// Prints each job's output whole (never interleaved with another's), stores it under --results, applies
// --halt, and counts failures. Output arrives in pieces while a job runs and is held (memory, then a
// temporary file) until the job ends and its turn comes.
class ExecOutput : public ResultHandler {
 public:
  ExecOutput(const ExecOptions& o, HaltPolicy halt, std::optional<ExecJobLog> joblog)
      : m_o(o), m_halt(halt), m_slot_args(uses_slot(o.command.command)), m_joblog(std::move(joblog)) {
    m_budget.limit = k_memory_budget;
  }

  const std::string& args_for(const BatchTask& task, int slot) override {
    if (!m_slot_args) return task.args_json;
    if (!m_o.pipe) return m_slot_args_text = exec_args(m_o, job_of(task), slot);
    // --pipe: the args hold the chunk; only the argv changes with the slot.
    json args = json::from_cbor(task.args_json);
    json fresh = json::from_cbor(exec_args(m_o, job_of(task), slot));
    args["argv"] = std::move(fresh["argv"]);
    m_slot_args_text.clear();
    json::to_cbor(args, nlohmann::detail::output_adapter<char>(m_slot_args_text));
    return m_slot_args_text;
  }

  // "0" for a job that exited 0; else "exit N", "signal N", "timeout", or the task error's type.
  static std::string status_of(const TaskOutcome& o) {
    if (o.ok) return "0";
    const std::string type = o.error.value("type", "error");
    const json details = o.error.value("details", json::object());
    if (type == "exit_status" && details.contains("exit_code") && details["exit_code"].is_number_integer()) {
      return "exit " + std::to_string(details["exit_code"].get<int>());
    }
    if (type == "signal" && details.contains("signal") && details["signal"].is_number_integer()) {
      return "signal " + std::to_string(details["signal"].get<int>());
    }
    return type;
  }

  std::string outcome_word(const TaskOutcome& o) const override {
    std::string status = status_of(o);
    return status == "0" ? "ok" : status;
  }

  bool task_output(const BatchTask& task, bool is_stderr, std::string_view bytes) override {
    Job& job = job_for(task.seq);
    if (job.failed_write) return true;
    Stream& stream = is_stderr ? job.err : job.out;
    stream.received += bytes.size();
    if (!m_o.results_dir.empty()) {
      // As GNU parallel 20221122: with --results the output goes to the files only, not to stdout/stderr.
      store_piece(task, job, is_stderr, bytes);
      return true;
    }
    const bool tagged = m_o.tag || !m_o.tagstring.empty();
    if (live()) {
      // -u: as it comes; --line-buffer: whole lines as they come (a line longer than 1 MiB goes out in parts).
      stream.partial += tagged ? tag_lines(bytes, prefix_of(task), stream.at_line_start) : std::string(bytes);
      const std::size_t cut = m_o.ungroup ? stream.partial.size()
                              : stream.partial.size() > (1u << 20) ? stream.partial.size()
                                                                    : stream.partial.rfind('\n') + 1;  // npos + 1 == 0
      if (cut > 0) {
        write_now(is_stderr, std::string_view(stream.partial).substr(0, cut));
        stream.partial.erase(0, cut);
      }
      return true;
    }
    std::string tagged_bytes;
    std::string_view piece = bytes;
    if (tagged) piece = tagged_bytes = tag_lines(bytes, prefix_of(task), stream.at_line_start);
    if (!is_stderr && may_stream(task.seq, job, piece.size())) {
      // This job's stdout goes out as it comes: it is the next to print (-k), or holds much and stdout is
      // free; jobs that end meanwhile wait for it. Memory stays at a few chunks, whatever the job writes.
      if (!m_owner) {
        m_owner = task.seq;
        ProgressLine::on_stderr().clear();
        if (!job.out.buffer.write_to(stdout)) m_write_failed = true;
        job.out.buffer.clear();
      }
      write_now(false, piece);
      return true;
    }
    Result<void> appended = stream.buffer.append(piece);
    if (!appended) {
      log(appended.error().message);
      job.failed_write = true;
      m_write_failed = true;
    }
    return true;
  }

  Next task_done(const BatchTask& task, TaskOutcome&& o) override {
    const JobArgs args = job_of(task);
    std::unique_ptr<Job> job = take_job(task.seq);
    const std::string status = status_of(o);
    job->failed = status != "0";
    // The program's own exit status or signal says enough (as with GNU parallel); other failures are ours
    // to explain.
    const std::string type = o.ok ? "" : o.error.value("type", "error");
    std::string note;
    if (type == "timeout") {
      note = "authrun: job " + std::to_string(args.number) + " (" + cut(joined(args)) + ") timed out\n";
    } else if (!o.ok && type != "exit_status" && type != "signal" && type != "interrupted") {
      note = "authrun: job " + std::to_string(args.number) + " (" + cut(joined(args)) + "): " + type + ": " +
             o.error.value("message", "") + "\n";
    }
    if (!note.empty()) {
      if (m_o.tag || !m_o.tagstring.empty()) note = tag_lines(note, prefix_of(task), job->err.at_line_start = true);
      if (live()) job->err.partial += note;
      else if (!job->err.buffer.append(note)) m_write_failed = true;
    }
    if (live()) {
      write_now(false, job->out.partial);
      write_now(true, job->err.partial);
      job->out.partial.clear();
      job->err.partial.clear();
    }
    if (!m_o.results_dir.empty()) close_results(task, *job);
    if (m_joblog) {
      // Exitval as GNU parallel records it: the exit code; -1 for a job killed by a timeout or interrupted;
      // 127 for a program that could not be run (as the shell says).
      int exitval = 0, signal = 0;
      if (status.rfind("exit ", 0) == 0) exitval = std::stoi(status.substr(5));
      else if (status.rfind("signal ", 0) == 0) signal = std::stoi(status.substr(7));
      else if (status == "exec_failed") exitval = 127;
      else if (status != "0") exitval = -1;
      if (status == "timeout") signal = 9;
      const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
      const std::string host = o.host.empty() || o.host == "local" ? ":" : o.host;
      // Written when the job's output is (in input order with -k, as GNU parallel does).
      job->log_line = [this, number = args.number, host, start = now - o.duration_ms / 1000, runtime = o.duration_ms / 1000,
                       received = job->out.received, exitval, signal, command = command_line(m_o, task)] {
        if (!m_joblog->record(number, host, start, runtime, received, exitval, signal, command)) m_write_failed = true;
      };
    }
    const bool failed = job->failed;
    if (failed) ++m_failed;
    ++m_ended;
    if (m_o.keep_order) {
      if (m_owner == task.seq) m_owner.reset();
      m_held.emplace(task.seq, std::move(job));
      drain();
    } else if (m_owner && *m_owner != task.seq) {
      m_waiting.push_back(std::move(job));  // printed when the job streaming to stdout ends
    } else {
      print(*job);
      if (m_owner) {
        m_owner.reset();
        for (auto& waiting : m_waiting) print(*waiting);
        m_waiting.clear();
      }
    }
    if (!m_halt_status && halt_reached(m_halt, failed, m_ended, m_failed, m_total)) {
      const int job_status = status == "0" ? 0 : status.rfind("exit ", 0) == 0 ? std::stoi(status.substr(5))
                                              : status.rfind("signal ", 0) == 0 ? 128 + std::stoi(status.substr(7)) : 1;
      m_halt_status = halt_exit_status(m_halt, job_status, m_failed, m_total);
      log("halting after job " + std::to_string(args.number) + " (--halt " + m_o.halt + ": " + std::to_string(m_failed) +
          " failed of " + std::to_string(m_ended) + ")");
      return m_halt.when == HaltPolicy::When::now ? Next::stop_now : Next::stop_soon;
    }
    return Next::go_on;
  }

  void task_not_started(const BatchTask& task) override {
    m_running.erase(task.seq);
    if (!m_o.keep_order) return;
    m_held.emplace(task.seq, nullptr);
    drain();
  }
  // --retries N: a job whose command failed (exit status, signal, timeout) runs again until its N-th attempt,
  // as GNU parallel does; this attempt's output is forgotten and its --results files are written anew.
  bool retry(const BatchTask& task, const TaskOutcome& o) override {
    if (!m_o.retries) return false;
    const std::string type = o.error.value("type", "error");
    if (type != "exit_status" && type != "signal" && type != "timeout") return false;
    if (*m_o.retries != 0 && o.attempts >= *m_o.retries) return false;
    take_job(task.seq);
    return true;
  }
  bool write_failed() const override { return m_write_failed; }
  bool can_take_more() const override { return m_held.size() + m_waiting.size() < k_max_held_jobs; }
  std::uint64_t failed() const { return m_failed; }
  // The exit status --halt decided on, if it halted.
  std::optional<int> halt_status() const { return m_halt_status; }

 private:
  struct Stream {
    explicit Stream(MemoryBudget& budget) : buffer(budget) {}
    OutputBuffer buffer;
    std::string partial;        // --line-buffer: the unfinished last line
    std::uint64_t received = 0;  // bytes the job wrote
    bool at_line_start = true;  // for --tag
  };
  struct FileCloser {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  struct Job {
    explicit Job(MemoryBudget& budget) : out(budget), err(budget) {}
    Stream out, err;
    bool results_opened = false;
    std::unique_ptr<std::FILE, FileCloser> results[2];  // --results: stdout, stderr files, written as output comes
    bool failed = false;
    bool failed_write = false;
    std::function<void()> log_line;  // its joblog line, written with its output
  };

  Job& job_for(std::uint64_t seq) {
    auto& slot = m_running[seq];
    if (!slot) slot = std::make_unique<Job>(m_budget);
    return *slot;
  }
  std::unique_ptr<Job> take_job(std::uint64_t seq) {
    auto node = m_running.extract(seq);
    return node ? std::move(node.mapped()) : std::make_unique<Job>(m_budget);
  }

  static std::string joined(const JobArgs& job) {
    std::string s;
    for (std::size_t i = 0; i < job.values.size(); ++i) {
      if (i) s += ' ';
      s += job.values[i];
    }
    return s;
  }
  std::string prefix_of(const BatchTask& task) const {
    if (!m_o.tagstring.empty()) return replace_in(m_o.tagstring, job_of(task), 0, false) + "\t";
    return joined(job_of(task)) + "\t";
  }
  // Output goes out while jobs run (-u, --line-buffer; not with -k, which needs the order).
  bool live() const { return (m_o.ungroup || m_o.line_buffer) && !m_o.keep_order; }
  void write_now(bool is_stderr, std::string_view bytes) {
    if (bytes.empty()) return;
    std::FILE* f = is_stderr ? stderr : stdout;
    if ((std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() || std::fflush(f) != 0) && !is_stderr) m_write_failed = true;
  }

  void print(Job& job) {
    if (job.out.buffer.size() > 0 || job.err.buffer.size() > 0) ProgressLine::on_stderr().clear();  // never mixed with the bar
    if (job.log_line) job.log_line();
    auto out = job.out.buffer.write_to(stdout);
    if (!out) m_write_failed = true;
    std::ignore = job.err.buffer.write_to(stderr);
  }

  void drain() {
    for (auto it = m_held.begin(); it != m_held.end() && it->first == m_next; it = m_held.erase(it), ++m_next) {
      if (it->second) print(*it->second);
    }
  }

  // Whether this piece of `seq`'s stdout may go straight out (see task_output). Never with --retries: a
  // failed attempt's output must not show.
  bool may_stream(std::uint64_t seq, const Job& job, std::size_t bytes) const {
    if (m_owner) return *m_owner == seq;
    if (m_o.retries) return false;
    return m_o.keep_order ? seq == m_next : job.out.buffer.size() + bytes > k_stream_after;
  }

  // A value as one directory name in GNU parallel's --results layout: backslash, tab, NUL and / written as \\ \t \0 \_,
  // cut at 255 bytes (the longest name file systems take; parallel cuts at the longest it finds).
  static std::string dir_name(const std::string& value) {
    std::string name;
    for (char c : value) {
      if (c == '\\') name += "\\\\";
      else if (c == '\t') name += "\\t";
      else if (c == '\0') name += "\\0";
      else if (c == '/') name += "\\_";
      else name += c;
    }
    if (name.size() > 255) name.resize(255);
    return name;
  }

  // Where --results puts a job's files, as GNU parallel 20221122 does: DIR/1/<value>/2/<value>/.../ (a
  // directory: seq, stdout, stderr in it); a DIR with replacement strings is that path, a directory if it ends
  // in '/', else a file name (FILE, FILE.err, FILE.seq).
  std::string results_base(const BatchTask& task) const {
    const JobArgs job = job_of(task);
    if (m_o.results_dir.find('{') != std::string::npos) {
      std::string out = replace_in(m_o.results_dir, job, 0, false);
      if (out != m_o.results_dir) return out;
    }
    std::size_t width = m_o.colsep.empty() ? std::max<std::size_t>(1, m_o.command.sources.size()) : job.values.size();
    if (width == 0 || job.values.size() % width != 0) width = std::max<std::size_t>(1, job.values.size());
    std::string out = m_o.results_dir;
    for (std::size_t i = 0; i < job.values.size(); ++i) {
      out += '/';
      out += std::to_string(i % width + 1);
      out += '/';
      out += dir_name(job.values[i]);
    }
    return out + "/";
  }

  void results_failed(const std::string& path) {
    log("cannot write " + path + ": " + std::strerror(errno));
    m_write_failed = true;
  }

  // Creates the job's --results files (and directories) and writes its seq file.
  void open_results(const BatchTask& task, Job& job) {
    job.results_opened = true;
    const std::string base = results_base(task);
    const bool dir = !base.empty() && base.back() == '/';
    const std::string paths[3] = {dir ? base + "stdout" : base, dir ? base + "stderr" : base + ".err",
                                  dir ? base + "seq" : base + ".seq"};
    std::error_code ec;
    if (const auto parent = std::filesystem::path(paths[0]).parent_path(); !parent.empty()) std::filesystem::create_directories(parent, ec);
    if (ec) {
      errno = ec.value();
      return results_failed(std::filesystem::path(paths[0]).parent_path().string());
    }
    std::unique_ptr<std::FILE, FileCloser> seq(std::fopen(paths[2].c_str(), "we"));
    const std::string number = std::to_string(job_of(task).number);
    if (!seq || std::fwrite(number.data(), 1, number.size(), seq.get()) != number.size() || std::fclose(seq.release()) != 0) {
      return results_failed(paths[2]);
    }
    for (int i = 0; i < 2; ++i) {
      job.results[i].reset(std::fopen(paths[i].c_str(), "we"));
      if (!job.results[i]) return results_failed(paths[i]);
    }
  }

  // Appends a piece of the job's output (as the job wrote it, untagged) to its --results file.
  void store_piece(const BatchTask& task, Job& job, bool is_stderr, std::string_view bytes) {
    if (!job.results_opened) open_results(task, job);
    std::FILE* f = job.results[is_stderr ? 1 : 0].get();
    if (f && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) {
      job.results[is_stderr ? 1 : 0].reset();
      results_failed(results_base(task) + (is_stderr ? " (stderr)" : " (stdout)"));
    }
  }

  // The job ended: its --results files exist (empty if it wrote nothing) and are closed.
  void close_results(const BatchTask& task, Job& job) {
    if (!job.results_opened) open_results(task, job);
    for (int i = 0; i < 2; ++i) {
      if (job.results[i] && std::fclose(job.results[i].release()) != 0) results_failed(results_base(task));
    }
  }

  const ExecOptions& m_o;
  HaltPolicy m_halt;
  bool m_slot_args;
  std::string m_slot_args_text;  // args_for's answer when the slot is in them
  MemoryBudget m_budget;  // declared before the jobs, which give their memory back to it
  std::uint64_t m_failed = 0;
  std::uint64_t m_ended = 0;
 public:
  std::uint64_t m_total = 0;  // jobs expected, when known (for --halt percentages)
 private:
  std::optional<int> m_halt_status;
  bool m_write_failed = false;
  std::optional<ExecJobLog> m_joblog;
  std::map<std::uint64_t, std::unique_ptr<Job>> m_running;  // seq -> output so far
  std::map<std::uint64_t, std::unique_ptr<Job>> m_held;     // --keep-order: seq -> output (null: not started)
  std::vector<std::unique_ptr<Job>> m_waiting;              // ended while another job streams to stdout
  std::optional<std::uint64_t> m_owner;                     // the job whose stdout streams out as it comes
  std::uint64_t m_next = 0;
};

}  // namespace

int run_exec(const ExecOptions& given) {
  ExecOptions o = given;
  // One word with shell syntax is a shell command line, as with GNU parallel.
  o.shell = o.shell || (!o.quote && needs_shell(o.command.command));
  if (o.link) {
    for (std::size_t i = 1; i < o.command.sources.size(); ++i) o.command.sources[i].linked = true;
  }
  auto halt = parse_halt(o.halt);
  if (!halt) {
    log(halt.error().message);
    return 255;
  }
  const bool resuming = o.resume || o.resume_failed || o.retry_failed;
  if (resuming && o.engine.joblog.empty()) {
    log("--resume, --resume-failed and --retry-failed need --joblog FILE (the joblog of the run to resume)");
    return 255;
  }
  std::set<std::uint64_t> done;
  if (o.retry_failed) {
    // As GNU parallel: the command line's command and values are ignored; each job of the joblog that never
    // succeeded runs again, its Command through the shell, under its own number.
    auto record = read_exec_joblog(o.engine.joblog);
    if (!record) {
      log(record.error().message);
      return 255;
    }
    ArgSource commands;
    const std::uint64_t last = record->commands.empty() ? 0 : record->commands.rbegin()->first;
    for (std::uint64_t seq = 1; seq <= last; ++seq) {
      auto it = record->commands.find(seq);
      commands.values.push_back(it == record->commands.end() ? "" : it->second);
      if (it == record->commands.end() || record->succeeded.count(seq)) done.insert(seq);
    }
    o.command.command = {"/bin/sh", "-c", "{}"};
    o.command.sources = {std::move(commands)};
    o.shell = o.link = false;
    o.max_args = 0;
    o.multi = ExecOptions::Multi::none;
    o.colsep.clear();
  } else if (resuming) {
    auto record = read_exec_joblog(o.engine.joblog);
    if (!record) {
      log(record.error().message);
      return 255;
    }
    done = o.resume_failed ? record->succeeded : record->all;
  }
  if (o.dry_run) {
    auto error = generate_jobs(o, done, -1, [&](BatchTask t) {
      std::string line = command_line(o, t);
      line += '\n';
      std::fwrite(line.data(), 1, line.size(), stdout);
      return true;
    });
    if (error) {
      log(*error);
      return 255;
    }
    return 0;
  }
  // As GNU parallel does: waiting on a terminal without a word would look like a hang.
  const bool from_stdin = std::any_of(o.command.sources.begin(), o.command.sources.end(),
                                      [](const ArgSource& source) { return source.file == "-"; });
  if (o.pipe && ::isatty(0) == 1) {
    log("--pipe: reading stdin to cut it into chunks, one a job (end with Ctrl-D)");
  } else if (from_stdin && ::isatty(0) == 1) {
    log("reading arguments from stdin, one a line (end with Ctrl-D; give them after ::: to run without stdin)");
  }
  // Output streams through in frames of up to 1 MiB, each freed as soon as it is written: keep the freed
  // memory for the next frame (glibc would otherwise hand it back and fault fresh pages in per frame, which
  // doubled the CPU time of a 100 MiB job).
  ::mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
  ::mallopt(M_TRIM_THRESHOLD, 16 * 1024 * 1024);
  EngineOptions engine = o.engine;
  // The joblog is GNU parallel's, written here per job (not the engine's per-attempt one).
  engine.joblog.clear();
  std::optional<ExecJobLog> joblog;
  if (!o.engine.joblog.empty()) {
    auto opened = ExecJobLog::open(o.engine.joblog, resuming);
    if (!opened) {
      log(opened.error().message);
      return 255;
    }
    joblog.emplace(std::move(*opened));
  }
  engine.interrupt_stops_now = true;
  // --retries N: N attempts in all, whether the command fails or its worker dies (0: no limit).
  if (o.retries) engine.retries = *o.retries == 0 ? 1000000 : std::max(0, *o.retries - 1);
  // With only ::: lists the number of jobs is known up front: the progress line shows a bar and an ETA.
  std::uint64_t total = 1, group = 0;
  for (const auto& source : o.command.sources) {
    if (!source.file.empty()) {
      total = group = 0;
      break;
    }
    if (!source.linked) {
      total *= std::max<std::uint64_t>(group, 1);
      group = 0;
    }
    group = std::max<std::uint64_t>(group, source.values.size());
  }
  total *= group;
  if (total > 0) engine.total = total - std::min<std::uint64_t>(total, done.size());
  ExecOutput output(o, *halt, std::move(joblog));
  output.m_total = total;
  // --halt soon: no job may start after the halt, so none waits queued on a worker.
  if (halt->when != HaltPolicy::When::never) engine.window = 1;
  // --delay: a job starts only when the one before it has; a second one queued on a worker would start
  // whenever the first ended.
  engine.start_delay_s = o.delay_s;
  if (o.delay_s > 0) engine.window = 1;
  if (o.pipe) {
    // A chunk waiting on a busy worker is memory spent for nothing: one job per worker, as parallel's
    // blocks wait for a free job slot. Chunks are big and short-lived: give their memory back to the
    // system when freed (glibc's adaptive threshold would otherwise keep them in the heap).
    engine.window = 1;
    ::mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  }
  RunSummary s = run_engine(
      engine,
      [&](std::function<void()> notify) {
        return std::make_unique<TaskFeed>(
            o.pipe ? k_pipe_queue_capacity : k_queue_capacity,
            [&](TaskFeed::Sink& sink) {
              return generate_jobs(o, done, sink.stop_fd(), [&](BatchTask t) { return sink.emit(std::move(t)); });
            },
            std::move(notify));
      },
      output);
  const int status = s.output_closed        ? 141
                     : s.signal               ? 128 + s.signal
                     : s.setup_failed         ? 255
                     : output.halt_status()   ? *output.halt_status()
                     : output.failed() > 100  ? 101
                                              : static_cast<int>(output.failed());
  if (!engine.summary_json.empty()) {
    if (auto w = write_summary_json(engine.summary_json, s, done.size(), engine.jobs, status); !w) log(w.error().message);
  }
  if (s.output_closed) return status;  // the output's reader went away: quietly, as GNU parallel
  if (engine.verbose || s.setup_failed || s.signal) log(describe(s, done.size()));
  return status;
}

}  // namespace authrun::runner
