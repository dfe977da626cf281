// `authrun exec`: jobs from argument sources, output printed whole per job.
#include "runner/exec/exec_command.hpp"

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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
constexpr std::size_t k_memory_budget = 64 * 1024 * 1024;  // output held in memory, all jobs together
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

  std::string args_for(const BatchTask& task, int slot) override {
    if (!m_slot_args) return task.args_json;
    if (!m_o.pipe) return exec_args(m_o, job_of(task), slot);
    // --pipe: the args hold the chunk; only the argv changes with the slot.
    json args = json::from_cbor(task.args_json);
    json fresh = json::from_cbor(exec_args(m_o, job_of(task), slot));
    args["argv"] = std::move(fresh["argv"]);
    std::string out;
    json::to_cbor(args, nlohmann::detail::output_adapter<char>(out));
    return out;
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
    Result<void> appended = tagged ? stream.buffer.append(tag_lines(bytes, prefix_of(task), stream.at_line_start))
                                   : stream.buffer.append(bytes);
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
    if (!m_o.results_dir.empty()) store(args, *job, status);
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
      m_held.emplace(task.seq, std::move(job));
      drain();
    } else {
      print(*job);
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
  bool write_failed() const override { return m_write_failed; }
  bool can_take_more() const override { return m_held.size() < k_max_held_jobs; }
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
  struct Job {
    explicit Job(MemoryBudget& budget) : out(budget), err(budget) {}
    Stream out, err;
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

  void store(const JobArgs& args, Job& job, const std::string& status) {
    const std::string dir = m_o.results_dir + "/" + std::to_string(args.number);
    ::mkdir(m_o.results_dir.c_str(), 0777);
    ::mkdir(dir.c_str(), 0777);
    auto write = [&](const char* name, auto&& fill) {
      const std::string path = dir + "/" + name;
      std::FILE* f = std::fopen(path.c_str(), "we");
      bool ok = f && fill(f);
      if (f && std::fclose(f) != 0) ok = false;
      if (!ok) {
        log("cannot write " + path + ": " + std::strerror(errno));
        m_write_failed = true;
      }
    };
    auto text = [](const std::string& t) {
      return [t](std::FILE* f) { return std::fwrite(t.data(), 1, t.size(), f) == t.size(); };
    };
    std::string values;
    for (const auto& v : args.values) values += v + "\n";
    write("args", text(values));
    write("stdout", [&](std::FILE* f) { return job.out.buffer.write_to(f).has_value(); });
    write("stderr", [&](std::FILE* f) { return job.err.buffer.write_to(f).has_value(); });
    // The exit code alone for a job that exited; else "signal N", "timeout" or the error's type.
    write("exit_status", text((status.rfind("exit ", 0) == 0 ? status.substr(5) : status) + "\n"));
  }

  const ExecOptions& m_o;
  HaltPolicy m_halt;
  bool m_slot_args;
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
  const bool resuming = o.resume || o.resume_failed;
  if (resuming && o.engine.joblog.empty()) {
    log("--resume and --resume-failed need --joblog FILE (the joblog of the run to resume)");
    return 255;
  }
  std::set<std::uint64_t> done;
  if (resuming) {
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
