// The batch engine: one Asio event loop drives every worker's pipes, exits and timers; a reader thread
// feeds a bounded queue; each task ends in exactly one result line (or, if interrupted before it started,
// is counted in the summary as not started).
#include "runner/batch_run.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <unordered_set>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "protocol/json_codec.hpp"
#include "protocol/limits.hpp"
#include "runner/batch_input.hpp"
#include "runner/job_log.hpp"
#include "runner/result_sink.hpp"
#include "runner/resume.hpp"
#include "runner/worker_link.hpp"
#include "runner/worker_process.hpp"

namespace authrun::runner {

namespace asio = boost::asio;
using namespace protocol;
using Millis = std::chrono::milliseconds;

namespace {

// Results held for --keep-order and tasks read ahead are bounded by this many tasks.
constexpr std::uint64_t k_keep_order_window = 4096;
constexpr std::size_t k_queue_capacity = 1024;

Millis to_millis(double seconds) { return Millis(static_cast<long long>(seconds * 1000.0 + 0.5)); }

void log(const std::string& text) { std::fprintf(stderr, "authrun: %s\n", text.c_str()); }

// One task on its way through workers.
struct Attempt {
  BatchTask task;
  int failed_attempts = 0;  // attempts that ended with the worker's death or a timeout
  Clock::time_point started;
  std::chrono::system_clock::time_point started_wall;

  void start() {
    started = Clock::now();
    started_wall = std::chrono::system_clock::now();
  }
};

struct Worker {
  std::shared_ptr<WorkerLink> link;
  int pid = 0;
  std::deque<std::uint64_t> in_flight;  // task seqs, in the order sent (the worker runs them in order)
  int done = 0;
  bool trusted = false;   // its handshake verified
  bool retiring = false;  // shut down once its tasks are done (recycled, or the batch ended)
};

class BatchRun {
 public:
  explicit BatchRun(const RunOptions& o) : m_o(o), m_signals(m_io, SIGINT, SIGTERM), m_progress_timer(m_io), m_grace_timer(m_io) {}

  int run();

 private:
  bool open_files();
  void spawn_worker();
  void on_ready(int id);
  void on_result(int id, TaskResult&& r);
  void on_gone(int id, const Error& why, int wait_status);
  void dispatch();
  std::optional<BatchTask> next_task();
  void arm_deadline(Worker& w);
  // Writes the task's one result line (and its joblog line). `attempt` counts the attempts made, 0 if none.
  void finish(const Attempt& a, int attempt, bool ok, json value_or_error, int pid);
  void record_attempt(const Attempt& a, int attempt, int pid, const std::string& outcome, const std::string& message);
  void audit(const Worker& w, const char* event, bool ok, const Error* why, const std::string& status);
  void maybe_finish();
  void on_signal(int sig);
  void give_up(const std::string& why);
  void print_progress(bool final);
  bool work_remains() const { return !m_retry.empty() || !m_input_done || !m_in_flight.empty(); }

  const RunOptions& m_o;
  asio::io_context m_io;
  asio::signal_set m_signals;
  asio::steady_timer m_progress_timer;
  asio::steady_timer m_grace_timer;
  std::optional<RunKey> m_shared_key;
  std::unordered_set<std::string> m_done_ids;  // --resume
  std::optional<JobLog> m_joblog;
  std::FILE* m_audit = nullptr;
  std::unique_ptr<BatchInput> m_input;
  std::FILE* m_out = nullptr;
  std::unique_ptr<ResultSink> m_sink;
  std::map<int, Worker> m_workers;
  int m_next_worker_id = 0;
  std::map<std::uint64_t, Attempt> m_in_flight;  // seq -> attempt
  std::deque<Attempt> m_retry;                   // to run again, before new input
  bool m_input_done = false;
  bool m_stopping = false;   // no new tasks (signal or give-up)
  bool m_finishing = false;  // workers told to shut down
  int m_signal = 0;
  int m_exit_override = 0;
  std::uint64_t m_ok = 0, m_failed = 0, m_popped = 0;
  int m_handshake_failures = 0, m_deaths = 0, m_failures_since_progress = 0, m_trusted = 0;
  std::vector<std::string> m_not_started;
  Clock::time_point m_t0 = Clock::now();
  bool m_progress_shown = false;
};

bool BatchRun::open_files() {
  if (!m_o.key_file.empty()) {
    auto key = RunKey::load_file(m_o.key_file);
    if (!key) {
      log(key.error().message);
      return false;
    }
    m_shared_key.emplace(std::move(*key));
  }
  if (!m_o.joblog.empty()) {
    auto joblog = JobLog::open(m_o.joblog);
    if (!joblog) {
      log(joblog.error().message);
      return false;
    }
    m_joblog.emplace(std::move(*joblog));
  }
  if (!m_o.audit_log.empty()) {
    m_audit = std::fopen(m_o.audit_log.c_str(), "ae");
    if (!m_audit) {
      log("cannot write audit log " + m_o.audit_log + ": " + std::strerror(errno));
      return false;
    }
  }
  std::string out_path = m_o.output;
  const char* out_mode = "we";
  if (!m_o.resume.empty()) {
    std::size_t unreadable = 0;
    auto done = load_done_ids(m_o.resume, unreadable);
    if (!done) {
      log(done.error().message);
      return false;
    }
    m_done_ids = std::move(*done);
    if (unreadable) log("resume: passed over " + std::to_string(unreadable) + " unreadable line(s) in " + m_o.resume);
    out_path = m_o.resume;
    out_mode = "a+e";
  }
  if (out_path == "-") {
    m_out = stdout;
  } else {
    m_out = std::fopen(out_path.c_str(), out_mode);
    if (!m_out) {
      log("cannot write results to " + out_path + ": " + std::strerror(errno));
      return false;
    }
    // Appending after a run that was cut off mid-line: start on a line of our own.
    if (std::fseek(m_out, -1, SEEK_END) == 0 && std::fgetc(m_out) != '\n') {
      std::fseek(m_out, 0, SEEK_END);
      std::fputc('\n', m_out);
    }
    std::fseek(m_out, 0, SEEK_END);
  }
  m_sink = std::make_unique<ResultSink>(m_out, m_o.keep_order);
  return true;
}

int BatchRun::run() {
  if (!open_files()) return 2;
  Fd in_fd;
  const std::string in_name = m_o.input == "-" ? "stdin" : m_o.input;
  in_fd = m_o.input == "-" ? Fd(::fcntl(0, F_DUPFD_CLOEXEC, 3)) : Fd(::open(m_o.input.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in_fd.valid()) {
    log("cannot read tasks from " + in_name + ": " + std::strerror(errno));
    return 2;
  }
  std::function<bool(const BatchTask&)> skip;
  if (!m_done_ids.empty()) skip = [this](const BatchTask& t) { return m_done_ids.count(dump_json(t.id)) > 0; };
  const std::uint32_t max_line = m_o.max_payload ? m_o.max_payload : limits::default_max_payload;
  m_input = std::make_unique<BatchInput>(
      std::move(in_fd), in_name, k_queue_capacity, max_line, [this] { asio::post(m_io, [this] { dispatch(); }); },
      std::move(skip));

  m_signals.async_wait([this](const boost::system::error_code& ec, int sig) {
    if (!ec) on_signal(sig);
  });
  for (int i = 0; i < m_o.jobs; ++i) spawn_worker();
  if (m_o.progress) print_progress(false);
  m_io.run();

  if (auto err = m_input->read_error()) {
    log(*err);
    if (!m_exit_override) m_exit_override = 2;
  }
  const std::uint64_t skipped = m_input->count_skipped();
  const bool input_cut = !m_input_done;
  m_input.reset();
  if (m_out != stdout) std::fclose(m_out);
  if (m_audit) std::fclose(m_audit);
  if (m_progress_shown) std::fputc('\n', stderr);
  double secs = std::chrono::duration<double>(Clock::now() - m_t0).count();
  std::uint64_t total = m_ok + m_failed;
  char summary[512];
  std::snprintf(summary, sizeof summary,
                "%llu tasks: %llu ok, %llu failed, %zu not started%s; %d workers trusted, %d handshake failures, "
                "%d worker deaths; %.3f s, %.0f tasks/s",
                static_cast<unsigned long long>(total), static_cast<unsigned long long>(m_ok),
                static_cast<unsigned long long>(m_failed), m_not_started.size(),
                skipped ? (", " + std::to_string(skipped) + " skipped as already done").c_str() : "", m_trusted,
                m_handshake_failures, m_deaths, secs, secs > 0 ? double(total) / secs : 0.0);
  log(summary);
  if (!m_not_started.empty()) {
    std::string ids;
    for (std::size_t i = 0; i < m_not_started.size() && i < 20; ++i) ids += (i ? ", " : "") + m_not_started[i];
    if (m_not_started.size() > 20) ids += ", ...";
    log("not started: " + ids + (m_o.resume.empty() ? "" : " (run again with the same --resume to do them)"));
  }
  if (input_cut) log("the input was not read to its end: the tasks after those were not started either");
  if (m_signal) return 128 + m_signal;
  if (m_exit_override) return m_exit_override;
  return m_failed ? 1 : 0;
}

void BatchRun::spawn_worker() {
  int id = m_next_worker_id++;
  HandshakeConfig config{Role::parent, {m_o.mode}, m_o.max_payload ? m_o.max_payload : limits::default_max_payload};
  WorkerLink::Events ev;
  ev.on_ready = [this, id] { on_ready(id); };
  ev.on_result = [this, id](TaskResult&& r) { on_result(id, std::move(r)); };
  ev.on_gone = [this, id](const Error& why, int status) { on_gone(id, why, status); };
  auto link = WorkerLink::start(m_io, m_o.worker_argv, m_shared_key ? &*m_shared_key : nullptr, config,
                                to_millis(m_o.handshake_timeout_s), std::move(ev));
  if (!link) {
    give_up(link.error().message);
    return;
  }
  Worker w;
  w.link = *link;
  w.pid = w.link->pid();
  m_workers.emplace(id, std::move(w));
}

void BatchRun::on_ready(int id) {
  Worker& w = m_workers.at(id);
  w.trusted = true;
  ++m_trusted;
  audit(w, "handshake", true, nullptr, "");
  if (m_o.verbose) {
    log("worker " + std::to_string(w.pid) + ": handshake ok (" + to_string(w.link->mode()) + ", " +
        std::to_string(w.link->handshake_time().count()) + " us)");
  }
  dispatch();
}

std::optional<BatchTask> BatchRun::next_task() {
  if (m_o.keep_order && m_popped - m_sink->next_in_order() >= k_keep_order_window) return std::nullopt;
  auto t = m_input->try_pop();
  if (t) {
    ++m_popped;
  } else if (m_input->finished()) {
    m_input_done = true;
  }
  return t;
}

void BatchRun::dispatch() {
  while (!m_stopping) {
    // While some worker is still in its handshake, give no worker a second task: the newcomer may be idle
    // in a moment, and a task queued behind a long one on a busy worker waits for nothing.
    std::size_t window = std::size_t(m_o.window);
    for (auto& [id, w] : m_workers) {
      if (!w.trusted && !w.retiring) window = 1;
    }
    // The trusted worker with the fewest tasks in flight, below the window.
    Worker* best = nullptr;
    for (auto& [id, w] : m_workers) {
      if (w.retiring || !w.link->ready() || w.in_flight.size() >= window) continue;
      if (!best || w.in_flight.size() < best->in_flight.size()) best = &w;
    }
    Attempt a;
    if (!m_retry.empty()) {
      if (!best) break;
      a = std::move(m_retry.front());
      m_retry.pop_front();
    } else {
      // A line that is not a valid task needs no worker, but is taken in turn to keep memory bounded.
      auto t = best ? next_task() : std::optional<BatchTask>();
      if (!t) break;
      a.task = std::move(*t);
      if (a.task.error) {
        a.start();
        finish(a, 0, false, json{{"type", a.task.error->type}, {"message", a.task.error->message}}, 0);
        continue;
      }
    }
    a.start();
    auto sent = best->link->send_task(a.task.seq, a.task.fn, a.task.args_json);
    if (!sent) {
      finish(a, a.failed_attempts + 1, false, json{{"type", "too_large"}, {"message", sent.error().message}}, best->pid);
      continue;
    }
    const std::uint64_t seq = a.task.seq;
    best->in_flight.push_back(seq);
    m_in_flight.emplace(seq, std::move(a));
    if (best->in_flight.size() == 1) arm_deadline(*best);
  }
  maybe_finish();
}

void BatchRun::arm_deadline(Worker& w) {
  std::optional<double> limit;
  if (!w.in_flight.empty()) {
    const Attempt& head = m_in_flight.at(w.in_flight.front());
    limit = head.task.timeout_s ? head.task.timeout_s : m_o.timeout_s;
  }
  if (!limit) {
    w.link->set_deadline(std::nullopt, Error{});
    return;
  }
  char why[96];
  std::snprintf(why, sizeof why, "task timed out after %g s", *limit);
  w.link->set_deadline(to_millis(*limit), make_error(ErrorCode::timeout, why));
}

void BatchRun::record_attempt(const Attempt& a, int attempt, int pid, const std::string& outcome,
                              const std::string& message) {
  if (!m_joblog) return;
  m_joblog->record(a.task.seq, dump_json(a.task.id), pid, attempt, a.started_wall,
                   std::chrono::duration<double>(Clock::now() - a.started).count(), outcome, message);
}

void BatchRun::finish(const Attempt& a, int attempt, bool ok, json value_or_error, int pid) {
  record_attempt(a, attempt, pid, ok ? "ok" : value_or_error["type"].get<std::string>(),
                 ok ? "" : value_or_error["message"].get<std::string>());
  json line = {{"id", a.task.id}, {"ok", ok}};
  line[ok ? "value" : "error"] = std::move(value_or_error);
  line["worker"] = pid ? json(pid) : json(nullptr);
  line["attempts"] = attempt;
  line["duration_ms"] = std::chrono::duration<double, std::milli>(Clock::now() - a.started).count();
  (ok ? m_ok : m_failed)++;
  if (!m_sink->write(a.task.seq, dump_json(line))) give_up(std::string("cannot write results: ") + std::strerror(errno));
}

void BatchRun::on_result(int id, TaskResult&& r) {
  Worker& w = m_workers.at(id);
  if (w.in_flight.empty() || w.in_flight.front() != r.id) {
    w.link->kill(make_error(ErrorCode::unexpected, "worker answered task " + std::to_string(r.id) + " out of turn"));
    return;
  }
  w.in_flight.pop_front();
  auto node = m_in_flight.extract(r.id);
  const Attempt& a = node.mapped();
  if (r.ok) {
    finish(a, a.failed_attempts + 1, true, std::move(r.value), w.pid);
  } else {
    json err{{"type", r.error.type}, {"message", r.error.message}};
    if (!r.error.details.is_null()) err["details"] = std::move(r.error.details);
    finish(a, a.failed_attempts + 1, false, std::move(err), w.pid);
  }
  m_failures_since_progress = 0;
  ++w.done;
  arm_deadline(w);
  if (m_o.max_tasks_per_worker > 0 && w.done >= m_o.max_tasks_per_worker && !w.retiring) {
    w.retiring = true;  // its queued tasks still finish; a replacement starts now
    if (work_remains() && !m_stopping) spawn_worker();
  }
  if (w.retiring && w.in_flight.empty()) w.link->shutdown();
  dispatch();
}

void BatchRun::on_gone(int id, const Error& why, int wait_status) {
  auto node = m_workers.extract(id);
  Worker& w = node.mapped();
  const bool clean = why.code == ErrorCode::eof && w.in_flight.empty() && (w.retiring || m_finishing);
  const std::string status = describe_wait_status(wait_status);
  audit(w, w.trusted ? "channel_closed" : clean ? "stopped_before_handshake" : "handshake", clean, clean ? nullptr : &why,
        status);
  if (!clean) {
    ++m_failures_since_progress;
    if (!w.trusted) {
      ++m_handshake_failures;
      log("worker " + std::to_string(w.pid) + ": handshake failed, given no task: " + to_string(why.code) + ": " +
          why.message + " (" + status + ")");
    } else {
      ++m_deaths;
      log("worker " + std::to_string(w.pid) + " lost: " + why.message + " (" + status + ")");
    }
  }
  // The head task was running when the worker went: it is the one at fault. The others were only queued
  // behind it (a worker runs its tasks in order) and go back without counting an attempt.
  for (std::size_t i = w.in_flight.size(); i-- > 0;) {
    auto anode = m_in_flight.extract(w.in_flight[i]);
    Attempt a = std::move(anode.mapped());
    if (i == 0) {
      ++a.failed_attempts;
      const bool timed_out = why.code == ErrorCode::timeout && !m_signal;
      const std::string type = timed_out ? "timeout" : m_signal ? "interrupted" : "worker_died";
      std::string message = timed_out ? why.message
                            : m_signal ? "stopped by signal before the task finished"
                                       : "worker " + std::to_string(w.pid) + " died running this task: " + status +
                                             (why.code == ErrorCode::eof ? "" : " (" + why.message + ")");
      if (m_stopping || a.failed_attempts > m_o.retries) {
        finish(a, a.failed_attempts, false, json{{"type", type}, {"message", message}}, w.pid);
        continue;
      }
      record_attempt(a, a.failed_attempts, w.pid, type, message + " (will retry)");
    }
    if (m_stopping) {
      finish(a, a.failed_attempts, false, json{{"type", "interrupted"}, {"message", "stopped before the task finished"}}, w.pid);
      continue;
    }
    m_retry.push_front(std::move(a));
  }
  const int limit = std::max(3, 2 * m_o.jobs);
  if (!clean && !m_stopping && !m_finishing) {
    if (m_failures_since_progress >= limit) {
      give_up("giving up after " + std::to_string(m_failures_since_progress) +
              " workers in a row failed their handshake or died (last: " + why.message + ")");
    } else if (work_remains()) {
      spawn_worker();
    }
  }
  dispatch();
}

void BatchRun::audit(const Worker& w, const char* event, bool ok, const Error* why, const std::string& status) {
  if (!m_audit) return;
  json line{{"time", std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count()},
            {"event", event}, {"worker", w.pid}, {"ok", ok}};
  if (ok && std::string(event) == "handshake") {
    line["mode"] = to_string(w.link->mode());
    line["handshake_us"] = w.link->handshake_time().count();
  }
  if (why) {
    line["reason"] = to_string(why->code);
    line["message"] = why->message;
  }
  if (!status.empty()) line["exit"] = status;
  std::fprintf(m_audit, "%s\n", dump_json(line).c_str());
  std::fflush(m_audit);
}

void BatchRun::maybe_finish() {
  if (!m_finishing) {
    const bool nothing_left = m_stopping ? m_in_flight.empty() : !work_remains();
    if (!nothing_left) return;
    m_finishing = true;
    for (auto& [id, w] : m_workers) {
      w.retiring = true;
      w.link->shutdown();
    }
  }
  if (!m_workers.empty()) return;
  // Tasks read but never given to a worker (interrupted, or no trusted worker) have no result line.
  auto not_started = [this](const BatchTask& t) {
    m_not_started.push_back(dump_json(t.id));
    std::ignore = m_sink->skip(t.seq);
  };
  for (auto& a : m_retry) not_started(a.task);
  m_retry.clear();
  m_input->stop();
  while (auto t = m_input->try_pop()) not_started(*t);
  m_signals.cancel();
  m_progress_timer.cancel();
  m_grace_timer.cancel();
  if (m_o.progress) print_progress(true);
}

void BatchRun::give_up(const std::string& why) {
  log(why);
  if (!m_exit_override) m_exit_override = 2;
  m_stopping = true;
  m_input->stop();
  maybe_finish();
}

void BatchRun::on_signal(int sig) {
  if (m_signal) {
    log("second signal: stopping now");
    for (auto& [id, w] : m_workers) w.link->kill(make_error(ErrorCode::io, "stopped by signal"));
    return;
  }
  m_signal = sig;
  m_stopping = true;
  m_input->stop();
  log(std::string("got ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") + ": no new tasks; waiting up to " +
      std::to_string(static_cast<int>(m_o.grace_s)) + " s for " + std::to_string(m_in_flight.size()) +
      " running (signal again to stop now)");
  m_signals.async_wait([this](const boost::system::error_code& ec, int s) {
    if (!ec) on_signal(s);
  });
  m_grace_timer.expires_after(to_millis(m_o.grace_s));
  m_grace_timer.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    for (auto& [id, w] : m_workers) w.link->kill(make_error(ErrorCode::timeout, "grace period over"));
  });
  maybe_finish();
}

void BatchRun::print_progress(bool final) {
  double secs = std::chrono::duration<double>(Clock::now() - m_t0).count();
  std::uint64_t done = m_ok + m_failed;
  std::fprintf(stderr, "\rauthrun: %llu done (%llu ok, %llu failed), %zu running, %zu workers, %.0f tasks/s   ",
               static_cast<unsigned long long>(done), static_cast<unsigned long long>(m_ok),
               static_cast<unsigned long long>(m_failed), m_in_flight.size(), m_workers.size(),
               secs > 0 ? double(done) / secs : 0.0);
  m_progress_shown = true;
  if (final) return;
  m_progress_timer.expires_after(Millis(250));
  m_progress_timer.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) print_progress(false);
  });
}

}  // namespace

int run_batch(const RunOptions& options) {
  std::signal(SIGPIPE, SIG_IGN);
  BatchRun run(options);
  return run.run();
}

}  // namespace authrun::runner
