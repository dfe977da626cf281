// `authrun exec`: jobs from argument sources, output printed whole per job.
#include "runner/exec_command.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "protocol/json_codec.hpp"
#include "protocol/limits.hpp"
#include "runner/line_reader.hpp"
#include "runner/progress_line.hpp"
#include "runner/summary_json.hpp"

namespace authrun::runner {

using namespace protocol;

namespace {

constexpr std::size_t k_queue_capacity = 1024;
constexpr std::size_t k_max_held_jobs = 4096;
constexpr std::int64_t k_max_output = 16 * 1024 * 1024;  // per stream and job

void log(const std::string& text) {
  ProgressLine::on_stderr().clear();
  std::fprintf(stderr, "authrun: %s\n", text.c_str());
}

struct HaltPolicy {
  bool now = false;
  std::uint64_t fail_limit = 0;  // 0: never halt
};

Result<HaltPolicy> parse_halt(const std::string& text) {
  HaltPolicy h;
  if (text == "never") return h;
  auto comma = text.find(',');
  const std::string when = text.substr(0, comma);
  const std::string rest = comma == std::string::npos ? "" : text.substr(comma + 1);
  if ((when != "now" && when != "soon") || rest.rfind("fail=", 0) != 0) {
    return make_error(ErrorCode::usage, "--halt takes never, now,fail=N or soon,fail=N (got '" + text + "')");
  }
  h.now = when == "now";
  try {
    h.fail_limit = std::stoull(rest.substr(5));
  } catch (const std::exception&) {
    return make_error(ErrorCode::usage, "--halt: fail=N needs a whole number (got '" + text + "')");
  }
  if (h.fail_limit == 0) return make_error(ErrorCode::usage, "--halt: fail=N needs N >= 1");
  return h;
}

// The exec task args for one job.
std::string exec_args(const ExecOptions& o, const JobArgs& job, int slot) {
  json args{{"argv", job_argv(o.command.command, job, slot, o.shell)}, {"max_output", k_max_output}};
  if (o.timeout_s) args["timeout"] = *o.timeout_s;
  return dump_json(args);
}

JobArgs job_of(const BatchTask& t) {
  JobArgs job;
  job.number = t.number;
  job.values = t.context["values"].get<std::vector<std::string>>();
  return job;
}

// Reads a source's values (all of them: for a cross product with other sources), giving up when `stop_fd`
// becomes readable.
Result<std::vector<std::string>> read_source(const ArgSource& s, int stop_fd) {
  if (s.file.empty()) return s.values;
  Fd fd(s.file == "-" ? ::fcntl(0, F_DUPFD_CLOEXEC, 3) : ::open(s.file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return make_error(ErrorCode::io, "cannot read " + s.file + ": " + std::strerror(errno));
  std::vector<std::string> lines;
  auto err = read_lines(fd.get(), s.file, stop_fd, limits::default_max_payload, [&](std::string_view text, std::size_t) {
    lines.emplace_back(text);
    return true;
  });
  if (err) return make_error(ErrorCode::io, *err);
  return lines;
}

// Generates the jobs, calling `sink` for each until it returns false: one source is streamed (stdin may be
// endless); several are read first and combined as a cross product, the first source outermost (as GNU
// parallel does). Jobs numbered in `done` are passed over. Returns an error message if a source failed.
std::optional<std::string> generate_jobs(const ExecOptions& o, const std::set<std::uint64_t>& done, int stop_fd,
                                         const std::function<bool(BatchTask)>& sink) {
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
      // The worker's exec kills the child at the timeout; this backstop catches a worker that hangs.
      if (o.timeout_s) t.timeout_s = *o.timeout_s + 10;
      return sink(std::move(t));
    };
    const auto& sources = o.command.sources;
    if (sources.size() == 1 && !sources[0].file.empty()) {
      const std::string& file = sources[0].file;
      Fd fd(file == "-" ? ::fcntl(0, F_DUPFD_CLOEXEC, 3) : ::open(file.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd.valid()) return "cannot read " + file + ": " + std::strerror(errno);
      return read_lines(fd.get(), file == "-" ? "stdin" : file, stop_fd, limits::default_max_payload,
                        [&](std::string_view text, std::size_t) { return emit({std::string(text)}); });
    }
    std::vector<std::vector<std::string>> lists;
    for (const auto& s : sources) {
      auto values = read_source(s, stop_fd);
      if (!values) return values.error().message;
      if (values->empty()) return std::nullopt;  // an empty source: no combination at all
      lists.push_back(std::move(*values));
    }
    std::vector<std::size_t> at(lists.size(), 0);
    for (;;) {
      std::vector<std::string> values;
      for (std::size_t i = 0; i < lists.size(); ++i) values.push_back(lists[i][at[i]]);
      if (!emit(std::move(values))) return std::nullopt;
      std::size_t i = lists.size();
      while (i-- > 0) {
        if (++at[i] < lists[i].size()) break;
        at[i] = 0;
        if (i == 0) return std::nullopt;
      }
    }
  }
}

// Prints each job's output whole (never interleaved with another's), stores it under --results, applies
// --halt, and counts failures.
class ExecOutput : public ResultHandler {
 public:
  ExecOutput(const ExecOptions& o, HaltPolicy halt) : m_o(o), m_halt(halt), m_slot_args(uses_slot(o.command.command)) {}

  std::string args_for(const BatchTask& task, int slot) override {
    return m_slot_args ? exec_args(m_o, job_of(task), slot) : task.args_json;
  }

  // "0" for a job that exited 0; else "exit N", "signal N", "timeout", or the task error's type.
  static std::string status_of(const TaskOutcome& o) {
    if (!o.ok) return o.error.value("type", "error");
    const json& v = o.value;
    if (v.value("timed_out", false)) return "timeout";
    if (v.contains("signal") && !v["signal"].is_null()) return "signal " + std::to_string(v["signal"].get<int>());
    const int code = v.value("exit_code", -1);
    return code == 0 ? "0" : "exit " + std::to_string(code);
  }

  std::string outcome_word(const TaskOutcome& o) const override {
    std::string status = status_of(o);
    return status == "0" ? "ok" : status;
  }

  Next task_done(const BatchTask& task, TaskOutcome&& o) override {
    Finished f;
    const JobArgs job = job_of(task);
    const std::string status = status_of(o);
    f.failed = status != "0";
    if (!o.ok) {
      f.err = "authrun: job " + std::to_string(job.number) + " (" + joined(job) + "): " +
              o.error["type"].get<std::string>() + ": " + o.error["message"].get<std::string>() + "\n";
    } else {
      const json& v = o.value;
      f.out = v["stdout"].get<std::string>();
      f.err = v["stderr"].get<std::string>();
      if (status == "timeout") f.err += "authrun: job " + std::to_string(job.number) + " (" + joined(job) + ") timed out\n";
      for (const char* stream : {"stdout", "stderr"}) {
        if (v[std::string(stream) + "_truncated"] == true) {
          f.err += "authrun: job " + std::to_string(job.number) + ": " + stream + " truncated at " +
                   std::to_string(k_max_output) + " bytes\n";
        }
      }
    }
    if (m_o.tag) {
      const std::string prefix = joined(job) + "\t";
      f.out = tag_lines(f.out, prefix);
      f.err = tag_lines(f.err, prefix);
    }
    if (!m_o.results_dir.empty()) store(job, o, status);
    if (f.failed) ++m_failed;
    if (m_o.keep_order) {
      m_held.emplace(task.seq, std::move(f));
      drain();
    } else {
      print(f);
    }
    if (m_halt.fail_limit && m_failed >= m_halt.fail_limit && !m_halting) {
      m_halting = true;
      log("halting after " + std::to_string(m_failed) + " failed job(s) (--halt " + m_o.halt + ")");
      return m_halt.now ? Next::stop_now : Next::stop_soon;
    }
    return Next::go_on;
  }

  void task_not_started(const BatchTask& task) override {
    if (!m_o.keep_order) return;
    m_held.emplace(task.seq, std::nullopt);
    drain();
  }
  bool write_failed() const override { return m_write_failed; }
  bool can_take_more() const override { return m_held.size() < k_max_held_jobs; }
  std::uint64_t failed() const { return m_failed; }

 private:
  struct Finished {
    std::string out, err;
    bool failed = false;
  };

  static std::string joined(const JobArgs& job) {
    std::string s;
    for (std::size_t i = 0; i < job.values.size(); ++i) {
      if (i) s += ' ';
      s += job.values[i];
    }
    return s;
  }

  static std::string tag_lines(const std::string& text, const std::string& prefix) {
    std::string out;
    std::size_t i = 0;
    while (i < text.size()) {
      auto nl = text.find('\n', i);
      std::size_t end = nl == std::string::npos ? text.size() : nl + 1;
      out += prefix;
      out.append(text, i, end - i);
      i = end;
    }
    return out;
  }

  void print(const Finished& f) {
    if (!f.out.empty() || !f.err.empty()) ProgressLine::on_stderr().clear();  // never mixed with the bar
    if (!f.out.empty() && (std::fwrite(f.out.data(), 1, f.out.size(), stdout) != f.out.size() || std::fflush(stdout) != 0)) {
      m_write_failed = true;
    }
    if (!f.err.empty()) {
      std::fwrite(f.err.data(), 1, f.err.size(), stderr);
      std::fflush(stderr);
    }
  }

  void drain() {
    for (auto it = m_held.begin(); it != m_held.end() && it->first == m_next; it = m_held.erase(it), ++m_next) {
      if (it->second) print(*it->second);
    }
  }

  void store(const JobArgs& job, const TaskOutcome& o, const std::string& status) {
    const std::string dir = m_o.results_dir + "/" + std::to_string(job.number);
    ::mkdir(m_o.results_dir.c_str(), 0777);
    ::mkdir(dir.c_str(), 0777);
    auto write = [&](const char* name, const std::string& text) {
      std::ofstream f(dir + "/" + name, std::ios::binary | std::ios::trunc);
      f << text;
      if (!f) m_write_failed = true;
    };
    std::string args;
    for (const auto& v : job.values) args += v + "\n";
    write("args", args);
    write("stdout", o.ok ? o.value["stdout"].get<std::string>() : std::string());
    write("stderr", o.ok ? o.value["stderr"].get<std::string>() : o.error["message"].get<std::string>() + "\n");
    // The exit code alone for a job that exited; else "signal N", "timeout" or the error's type.
    write("exit_status", (status.rfind("exit ", 0) == 0 ? status.substr(5) : status) + "\n");
  }

  const ExecOptions& m_o;
  HaltPolicy m_halt;
  bool m_slot_args;
  std::uint64_t m_failed = 0;
  bool m_halting = false;
  bool m_write_failed = false;
  std::map<std::uint64_t, std::optional<Finished>> m_held;  // --keep-order: seq -> output (nullopt: not started)
  std::uint64_t m_next = 0;
};

// Job numbers the joblog records as done (Outcome "ok").
std::set<std::uint64_t> done_in_joblog(const std::string& path) {
  auto split = [](const std::string& line) {
    std::vector<std::string> fields;
    std::istringstream in(line);
    for (std::string f; std::getline(in, f, '\t');) fields.push_back(std::move(f));
    return fields;
  };
  std::set<std::uint64_t> done;
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);  // header: the columns are found by name
  const std::vector<std::string> header = split(line);
  const auto outcome_at = std::size_t(std::find(header.begin(), header.end(), "Outcome") - header.begin());
  if (header.empty() || header[0] != "Seq" || outcome_at == header.size()) return done;
  while (std::getline(in, line)) {
    const std::vector<std::string> fields = split(line);
    if (fields.size() <= outcome_at || fields[outcome_at] != "ok") continue;
    try {
      done.insert(std::stoull(fields[0]));
    } catch (const std::exception&) {
    }
  }
  return done;
}

}  // namespace

int run_exec(const ExecOptions& o) {
  auto halt = parse_halt(o.halt);
  if (!halt) {
    log(halt.error().message);
    return 255;
  }
  if (o.resume && o.engine.joblog.empty()) {
    log("--resume needs --joblog FILE (the joblog of the run to resume)");
    return 255;
  }
  std::set<std::uint64_t> done = o.resume ? done_in_joblog(o.engine.joblog) : std::set<std::uint64_t>{};
  if (o.dry_run) {
    auto error = generate_jobs(o, done, -1, [](BatchTask t) {
      json args = parse_json(t.args_json).value();
      std::string line;
      for (const auto& word : args["argv"].get<std::vector<std::string>>()) {
        if (!line.empty()) line += ' ';
        line += shell_quote(word);
      }
      std::printf("%s\n", line.c_str());
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
  if (from_stdin && ::isatty(0) == 1) {
    log("reading arguments from stdin, one a line (end with Ctrl-D; give them after ::: to run without stdin)");
  }
  EngineOptions engine = o.engine;
  engine.joblog_append = o.resume;
  // With only ::: lists the number of jobs is known up front: the progress line shows a bar and an ETA.
  std::uint64_t total = 1;
  for (const auto& source : o.command.sources) {
    if (!source.file.empty()) {
      total = 0;
      break;
    }
    total *= source.values.size();
  }
  if (total > 0) engine.total = total - std::min<std::uint64_t>(total, done.size());
  ExecOutput output(o, *halt);
  RunSummary s = run_engine(
      engine,
      [&](std::function<void()> notify) {
        return std::make_unique<TaskFeed>(
            k_queue_capacity,
            [&](TaskFeed::Sink& sink) {
              return generate_jobs(o, done, sink.stop_fd(), [&](BatchTask t) { return sink.emit(std::move(t)); });
            },
            std::move(notify));
      },
      output);
  const int status = s.output_closed ? 141
                     : s.signal      ? 128 + s.signal
                     : s.setup_failed ? 255
                                     : output.failed() > 100 ? 101 : static_cast<int>(output.failed());
  if (!engine.summary_json.empty()) {
    if (auto w = write_summary_json(engine.summary_json, s, done.size(), engine.jobs, status); !w) log(w.error().message);
  }
  if (s.output_closed) return status;  // the output's reader went away: quietly, as GNU parallel
  if (engine.verbose || s.setup_failed || s.signal) log(describe(s, done.size()));
  return status;
}

}  // namespace authrun::runner
