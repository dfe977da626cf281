// The engine: workers, dispatch, retries, timeouts, signals.
#include "runner/engine/engine.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <sodium.h>
#include <sys/wait.h>
#include <unistd.h>

#include "protocol/json_codec.hpp"
#include "protocol/limits.hpp"
#include "protocol/peer_text.hpp"
#include "protocol/tracing.hpp"
#include "runner/engine/host_health.hpp"
#include "runner/engine/job_log.hpp"
#include "runner/engine/progress_line.hpp"
#include "runner/engine/start_window.hpp"
#include "runner/engine/worker_link.hpp"
#include "runner/engine/worker_process.hpp"

namespace authrun::runner {

namespace asio = boost::asio;
using namespace protocol;
using Millis = std::chrono::milliseconds;

namespace {

// A result's raw bytes (its attachment) in JSON output: {"$bytes": base64}, next to the value if there is one.
json with_bytes(json value, const Attachment& bytes) {
  if (bytes.empty()) return value;
  std::string b64(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  ::sodium_bin2base64(b64.data(), b64.size(), reinterpret_cast<const unsigned char*>(bytes.view().data()), bytes.size(),
                      sodium_base64_VARIANT_ORIGINAL);
  b64.pop_back();  // the terminating NUL
  json out{{"$bytes", std::move(b64)}};
  if (!value.is_null()) out["value"] = std::move(value);
  return out;
}

// "SIGTERM", or "signal 70" for a number without a name.
std::string signal_text(int sig) {
  if (const char* abbrev = ::sigabbrev_np(sig)) return std::string("SIG") + abbrev;
  return "signal " + std::to_string(sig);
}

Millis to_millis(double seconds) { return Millis(static_cast<long long>(seconds * 1000.0 + 0.5)); }

void log(const std::string& text) {
  ProgressLine::on_stderr().clear();
  std::fprintf(stderr, "authrun: %s\n", text.c_str());
}

// "1 worker", "2 workers".
std::string count_of(std::uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

// A duration for the ETA: "42 s", "3:07", "1:02:03".
std::string clock_text(double seconds) {
  const auto s = static_cast<long long>(seconds + 0.5);
  char text[32];
  if (s < 60) std::snprintf(text, sizeof text, "%lld s", s);
  else if (s < 3600) std::snprintf(text, sizeof text, "%lld:%02lld", s / 60, s % 60);
  else std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  return text;
}

// One task on its way through workers.
struct Attempt {
  BatchTask task;
  int failed_attempts = 0;  // attempts that ended with the worker's death or a timeout
  int failed_site = -1;     // where the last failed attempt ran: a retry goes elsewhere if it can
  std::size_t needs_payload = 0;  // a worker refused it as too large: only a worker accepting this many bytes takes it
  std::size_t payload_bytes = 0;  // of the task frame sent, counted against the in-flight byte budget
  Clock::time_point started;

  void start() { started = Clock::now(); }
};

// The failed result of a worker's head task whose cause was a signal from outside the worker (a result's
// outside_signal, PROTOCOL.md section 6): a stop of the whole worker may be under way. It stands once the worker
// is heard from after it (any frame, or a clean exit); if the worker dies first, it is dropped and the task
// is charged with that death, as one that was running.
struct HeldFailure {
  json error;                // the result's error, as it would have been reported
  int signal = 0;            // the outside signal
  std::uint64_t frames = 0;  // the worker's frames received up to the one that carried it
};

struct Worker {
  std::shared_ptr<WorkerLink> link;
  int pid = 0;
  int slot = 0;                         // 1-based, reused by the worker's replacement ({%} of exec)
  int site = 0;                         // index into EngineOptions::sites
  std::deque<std::uint64_t> in_flight;  // task seqs, in the order sent (the worker runs them in order)
  int done = 0;
  // The adaptive window (EngineOptions::window 0): how long this worker's tasks take, from the results it
  // sent. A task's sample runs from when it could start (sent, or the previous result) to its result.
  Clock::time_point last_result{};
  double mean_us = 0;        // moving average of the samples
  double recent_max_us = 0;  // the longest recent sample, decaying by 3% per result
  bool trusted = false;   // its handshake verified
  bool loaded = true;     // its program imported (a Python worker's worker_info came): tasks are timed from then
  bool import_armed = false;  // the import's deadline is set
  bool retiring = false;  // shut down once its tasks are done (recycled, or the run ended)
  std::optional<HeldFailure> held;  // the result of in_flight's head, held (see HeldFailure)
};

// Launched workers one host may have starting (logging in) at once: sshd refuses some of more than 10
// simultaneous logins by default (MaxStartups 10:30:100), and those failures are not the host's fault.
constexpr int k_max_starting_per_host = 8;

class Engine {
 public:
  Engine(const EngineOptions& o, ResultHandler& handler)
      : m_o(o), m_handler(handler), m_signals(m_io), m_progress_timer(m_io), m_grace_timer(m_io),
        m_delay_timer(m_io) {}

  RunSummary run(const std::function<std::unique_ptr<TaskFeed>(std::function<void()>)>& make_feed);

 private:
  bool open_files();
  void spawn_worker(int slot);
  // Workers of `site` not yet through their handshake.
  int starting_on(int site) const;
  // Starts the slots spawn_worker deferred, as far as their hosts take them now.
  void start_deferred();
  void on_ready(int id);
  void on_result(int id, TaskResult&& r);
  // Ends the head task of `w` with its result (see finish), and does what a result does for its worker.
  void end_head(Worker& w, bool ok, json value_or_error, std::string value_json = {}, std::string attachment = {});
  // Ends the head task of `w` with its held failure, if it has one: the worker outlived the signal.
  void release_held(Worker& w);
  // Frames came from the worker: a held failure before them stands.
  void on_heard(int id);
  void on_output(int id, Output&& out);
  void on_gone(int id, const Error& why, int wait_status);
  // The index in `w.in_flight` of the task `w` was running when it went (`why`), if one was: from its progress
  // page when it kept one, else its first task without a result.
  std::optional<std::size_t> running_task(const Worker& w, const Error& why) const;
  void dispatch();
  Worker* pick_worker(std::size_t window, int avoid_site, std::size_t needs_payload = 0);
  // --delay: true (and a wake-up armed) while the last dispatch is too recent for another.
  bool start_delayed();
  // Tasks `w` may have in flight: --window if given, else adapted to how long its tasks take.
  std::size_t window_of(const Worker& w) const;
  // Records the time the head task of `w` took, which just ended, for window_of.
  void observe_duration(Worker& w, const Attempt& head);
  // The largest payload a trusted worker accepts, and whether a worker still starting may accept more.
  std::pair<std::uint32_t, bool> largest_limit() const;
  // Ends the tasks waiting for a worker large enough when no worker, trusted or starting, can take them.
  void settle_too_large();
  std::optional<BatchTask> next_task();
  std::string host_of(const Worker& w) const;
  std::string describe_worker(const Worker& w) const;
  void arm_deadline(Worker& w);
  // A worker's worker_info came: for a Python worker, its program has loaded.
  void on_info(int id);
  // Reports the task's end (and writes its joblog line). `attempt` counts the attempts made, 0 if none;
  // `w` is the worker that ran it last, if any.
  // `value_json`: an ok value as JSON text (then value_or_error is null), see TaskOutcome.
  // `attachment`: an ok result's raw bytes, for a handler that takes_attachments().
  void finish(const Attempt& a, int attempt, bool ok, json value_or_error, const Worker* w, std::string value_json = {},
              std::string attachment = {});
  void record_attempt(const Attempt& a, int attempt, int pid, const std::string& host, const std::string& outcome,
                      const std::string& message);
  void audit(const Worker& w, const char* event, bool ok, const Error* why, const std::string& status);
  void maybe_finish();
  // Has the handler write out the results of this loop turn once the turn's events are handled.
  void schedule_flush();
  void flush_results();
  void on_signal(int sig);
  void stop(bool now);
  void give_up(const std::string& why);
  void print_progress(bool final);
  bool work_remains() const { return !m_retry.empty() || !m_input_done || !m_in_flight.empty(); }

  const EngineOptions& m_o;
  ResultHandler& m_handler;
  asio::io_context m_io;
  asio::signal_set m_signals;
  asio::steady_timer m_progress_timer;
  asio::steady_timer m_grace_timer;
  asio::steady_timer m_delay_timer;
  std::optional<Clock::time_point> m_last_dispatch;  // --delay: when the last task went to a worker
  bool m_delay_armed = false;
  std::optional<RunKey> m_shared_key;
  std::optional<JobLog> m_joblog;
  std::FILE* m_audit = nullptr;
  std::unique_ptr<TaskFeed> m_feed;
  std::map<int, Worker> m_workers;
  std::vector<Site> m_sites;
  std::optional<HostHealth> m_health;
  std::vector<int> m_site_of_slot;  // slot (1-based) -> site
  std::deque<int> m_deferred;       // slots waiting for their host to finish some logins
  int m_next_worker_id = 0;
  std::map<std::uint64_t, Attempt> m_in_flight;  // seq -> attempt
  std::deque<Attempt> m_retry;                   // to run again, before new input
  std::deque<BatchTask> m_taken;                 // taken from the feed in a batch, not yet dispatched
  std::vector<std::string> m_spent;              // args of finished tasks, their buffers for the feed to reuse
  static constexpr std::size_t k_take_batch = 64;
  std::uint64_t m_in_flight_bytes = 0;           // task payload bytes sent and not yet answered
  bool m_input_done = false;
  bool m_stopping = false;   // no new tasks (signal, halt or give-up)
  bool m_finishing = false;  // workers told to shut down
  bool m_program_failed = false;  // a Python worker's program failed to load (said once)
  RunSummary m_summary;
  Clock::time_point m_t0 = Clock::now();
  bool m_progress_shown = false;
  bool m_flush_posted = false;
};

bool Engine::open_files() {
  if (!m_o.key_file.empty()) {
    auto key = RunKey::load_file(m_o.key_file);
    if (!key) {
      log(key.error().message);
      return false;
    }
    m_shared_key.emplace(std::move(*key));
  }
  if (!m_o.joblog.empty()) {
    auto joblog = JobLog::open(m_o.joblog, m_o.joblog_append);
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
    json line{{"time", std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count()},
              {"event", "start"}, {"runner", ::getpid()}, {"ptrace_policy", ptrace_policy()}, {"allow_ptrace", m_o.allow_ptrace}};
    std::fprintf(m_audit, "%s\n", dump_json(line).c_str());
    std::fflush(m_audit);
  }
  if (m_o.verbose) log("ptrace policy: " + ptrace_policy() + (m_o.allow_ptrace ? "; --allow-ptrace: traced workers accepted" : ""));
  return true;
}

RunSummary Engine::run(const std::function<std::unique_ptr<TaskFeed>(std::function<void()>)>& make_feed) {
  if (!open_files()) {
    m_summary.setup_failed = true;
    return m_summary;
  }
  // SIGCONT (the runner was stopped) is counted on this thread, before it runs on (start_window.hpp):
  // the feed's thread is made with it blocked.
  watch_continues();
  mask_continue(true);
  m_feed = make_feed([this] { asio::post(m_io, [this] { dispatch(); }); });
  mask_continue(false);
  if (m_o.handle_signals) {
    m_signals.add(SIGINT);
    m_signals.add(SIGTERM);
    m_signals.async_wait([this](const boost::system::error_code& ec, int sig) {
      if (!ec) on_signal(sig);
    });
  }
  if (m_o.stop_handle) {
    m_o.stop_handle->attach([this](bool now) { asio::post(m_io, [this, now] { stop(now); }); });
  }
  m_sites = m_o.sites.empty() ? std::vector<Site>{Site{"", true, m_o.jobs}} : m_o.sites;
  m_health.emplace(m_sites.size(), std::max(3, 2 * m_o.jobs));
  m_site_of_slot.push_back(-1);
  for (std::size_t i = 0; i < m_sites.size(); ++i) m_site_of_slot.insert(m_site_of_slot.end(), std::size_t(m_sites[i].slots), int(i));
  for (int slot = 1; slot < int(m_site_of_slot.size()); ++slot) spawn_worker(slot);
  if (m_o.progress) print_progress(false);
  m_io.run();
  if (m_o.stop_handle) m_o.stop_handle->detach();
  flush_results();  // lines queued in the last turn (tasks never started release held lines too)

  if (auto err = m_feed->error()) {
    log(*err);
    m_summary.setup_failed = true;
  }
  m_summary.input_cut = !m_feed->input_complete();
  m_feed.reset();
  if (m_audit) std::fclose(m_audit);
  // The output's reader went away: leave nothing behind on stderr. Otherwise the final bar stays.
  if (m_summary.output_closed) ProgressLine::on_stderr().clear();
  else if (m_progress_shown) ProgressLine::on_stderr().finish();
  m_summary.seconds = std::chrono::duration<double>(Clock::now() - m_t0).count();
  return m_summary;
}

void Engine::spawn_worker(int slot) {
  if (m_stopping || m_finishing) return;  // a failed spawn gave up while others were being started
  const int site_index = m_site_of_slot.at(std::size_t(slot));
  const Site& site = m_sites[std::size_t(site_index)];
  if (!site.local && starting_on(site_index) >= k_max_starting_per_host) {
    m_deferred.push_back(slot);
    return;
  }
  const int id = m_next_worker_id++;
  // Through a launcher the channel is encrypted unless asked otherwise: srun's stdio crosses the network
  // in the clear, and a task's arguments are nobody else's business.
  const ChannelMode mode = m_o.mode.value_or(site.local ? ChannelMode::authenticated : ChannelMode::encrypted);
  HandshakeConfig config{Role::parent, {mode}, m_o.max_payload ? m_o.max_payload : limits::default_max_payload};
  WorkerLink::Events ev;
  ev.on_ready = [this, id] { on_ready(id); };
  ev.on_result = [this, id](TaskResult&& r) { on_result(id, std::move(r)); };
  ev.on_info = [this, id] { on_info(id); };
  ev.await_info = !m_o.program.empty();
  ev.values_as_text = m_handler.takes_value_text();
  ev.pipe_size = m_o.pipe_size;
  ev.on_output = [this, id](Output&& out) { on_output(id, std::move(out)); };
  ev.on_heard = [this, id] { on_heard(id); };
  ev.on_gone = [this, id](const Error& why, int status) { on_gone(id, why, status); };
  const KeyDelivery delivery = site.local ? KeyDelivery::inherited_fd : m_o.key_delivery;
  const std::vector<std::string> argv =
      site.local ? m_o.worker_argv : launch_argv(m_o.launcher, site, slot, m_o.remote_worker_argv, delivery, m_o.remote_key_file);
  const double handshake_s = m_o.handshake_timeout_s.value_or(site.local ? 5.0 : 30.0);
  auto link = WorkerLink::start(m_io, argv, m_shared_key ? &*m_shared_key : nullptr, delivery, m_o.allow_ptrace, config,
                                to_millis(handshake_s), std::move(ev));
  if (!link) {
    give_up(link.error().message);
    return;
  }
  if (!m_o.program.empty()) (*link)->send_after_handshake(MessageType::program, m_o.program);
  Worker w;
  w.link = *link;
  w.pid = w.link->pid();
  w.slot = slot;
  w.site = site_index;
  w.loaded = m_o.program.empty();
  m_workers.emplace(id, std::move(w));
}

int Engine::starting_on(int site) const {
  return static_cast<int>(std::count_if(m_workers.begin(), m_workers.end(), [site](const auto& entry) {
    return entry.second.site == site && !entry.second.trusted && !entry.second.retiring;
  }));
}

void Engine::start_deferred() {
  for (std::size_t i = 0; i < m_deferred.size();) {
    const int slot = m_deferred[i];
    const int site = m_site_of_slot.at(std::size_t(slot));
    if (m_stopping || m_finishing || m_health->set_aside(std::size_t(site)) || !work_remains()) {
      m_deferred.erase(m_deferred.begin() + std::ptrdiff_t(i));
    } else if (starting_on(site) < k_max_starting_per_host) {
      m_deferred.erase(m_deferred.begin() + std::ptrdiff_t(i));
      spawn_worker(slot);
    } else {
      ++i;
    }
  }
}

std::string Engine::host_of(const Worker& w) const {
  const Site& site = m_sites[std::size_t(w.site)];
  // A launcher that picks the node itself (srun) leaves the name to the worker's own word.
  if (!site.local && site.host.empty() && w.link->peer_info()) return w.link->peer_info()->host;
  return site.label(m_o.launcher);
}

std::string Engine::describe_worker(const Worker& w) const {
  const Site& site = m_sites[std::size_t(w.site)];
  std::string text = "worker " + std::to_string(w.pid);
  if (site.local) return text;
  if (!site.host.empty() || w.link->peer_info()) text += " on " + host_of(w);
  return text + " (via " + m_o.launcher.name() + ")";
}

void Engine::on_ready(int id) {
  Worker& w = m_workers.at(id);
  w.trusted = true;
  ++m_summary.trusted;
  start_deferred();
  audit(w, "handshake", true, nullptr, "");
  if (!w.loaded) arm_deadline(w);
  if (m_o.verbose) {
    log(describe_worker(w) + ": handshake ok (" + to_string(w.link->mode()) + ", " +
        std::to_string(w.link->handshake_time().count()) + " us)");
  }
  dispatch();
}

std::optional<BatchTask> Engine::next_task() {
  if (!m_handler.can_take_more()) return std::nullopt;
  if (m_taken.empty() && !m_spent.empty()) m_feed->recycle(m_spent);
  if (m_taken.empty() && m_feed->try_pop_batch(m_taken, k_take_batch) == 0) {
    if (m_feed->finished()) m_input_done = true;
    return std::nullopt;
  }
  std::optional<BatchTask> t(std::move(m_taken.front()));
  m_taken.pop_front();
  return t;
}

void Engine::dispatch() {
  if (!m_retry.empty()) settle_too_large();
  while (!m_stopping) {
    // While some worker is still in its handshake, give no worker a second task: the newcomer may be idle
    // in a moment, and a task queued behind a long one on a busy worker waits for nothing.
    std::size_t window = std::numeric_limits<std::size_t>::max();
    for (auto& [id, w] : m_workers) {
      if (!w.trusted && !w.retiring) window = 1;
    }
    Worker* best = pick_worker(window, -1);
    if (!best || start_delayed()) break;
    Attempt a;
    // Retries go before new input: the first one a worker has room for now. A task parked for a worker
    // with a larger limit (needs_payload) holds back nothing while no such worker has room.
    std::size_t parked_bytes = 0;
    std::optional<std::size_t> retry;
    for (std::size_t i = 0; i < m_retry.size(); ++i) {
      const std::size_t needs = m_retry[i].needs_payload;
      Worker* to = needs ? pick_worker(window, -1, needs) : best;
      if (!to) {
        parked_bytes += needs;
        continue;
      }
      // A retry goes to another host than the one it failed on, if one is free.
      if (Worker* elsewhere = pick_worker(window, m_retry[i].failed_site, needs)) to = elsewhere;
      best = to;
      retry = i;
      break;
    }
    if (retry) {
      a = std::move(m_retry[*retry]);
      m_retry.erase(m_retry.begin() + std::ptrdiff_t(*retry));
    } else {
      // A line that is not a valid task needs no worker, but is taken in turn to keep memory bounded. Over
      // the in-flight byte budget no new task is taken until results come back (a larger task runs alone);
      // parked tasks count against it too, until a worker takes them or none can.
      const bool over_budget = (m_in_flight_bytes >= m_o.max_in_flight_bytes && !m_in_flight.empty()) ||
                               parked_bytes >= m_o.max_in_flight_bytes;
      auto t = !over_budget ? next_task() : std::optional<BatchTask>();
      if (!t) break;
      a.task = std::move(*t);
      if (a.task.error) {
        a.start();
        json error{{"type", a.task.error->type}, {"message", a.task.error->message}};
        if (!a.task.error->details.is_null()) error["details"] = a.task.error->details;
        finish(a, 0, false, std::move(error), nullptr);
        continue;
      }
    }
    a.start();
    const std::string& args = m_handler.args_for(a.task, best->slot);
    auto sent = best->link->send_task(a.task.seq, a.task.fn, args, a.task.args_format, a.task.attachment);
    if (!sent) {
      // Too large for this worker: another whose announced limit fits takes it (one still starting may),
      // else it ends here naming its size and the largest limit.
      a.needs_payload = WorkerLink::task_payload_size(a.task.seq, a.task.fn, args, a.task.args_format, a.task.attachment);
      m_retry.push_front(std::move(a));
      settle_too_large();
      continue;
    }
    m_last_dispatch = a.started;
    a.payload_bytes = args.size() + a.task.attachment.size();
    m_in_flight_bytes += a.payload_bytes;
    const std::uint64_t seq = a.task.seq;
    best->in_flight.push_back(seq);
    m_in_flight.emplace(seq, std::move(a));
    if (best->in_flight.size() == 1) arm_deadline(*best);
  }
  maybe_finish();
}

bool Engine::start_delayed() {
  if (m_o.start_delay_s <= 0 || !m_last_dispatch) return false;
  const Clock::time_point due = *m_last_dispatch + to_millis(m_o.start_delay_s);
  if (Clock::now() >= due) return false;
  if (!m_delay_armed) {
    m_delay_armed = true;
    m_delay_timer.expires_at(due);
    m_delay_timer.async_wait([this](const boost::system::error_code& ec) {
      m_delay_armed = false;
      if (!ec) dispatch();
    });
  }
  return true;
}

// The trusted worker with the fewest tasks in flight, below its window and `window`, not on `avoid_site`,
// accepting `needs_payload` bytes.
Worker* Engine::pick_worker(std::size_t window, int avoid_site, std::size_t needs_payload) {
  Worker* best = nullptr;
  for (auto& [id, w] : m_workers) {
    if (w.retiring || !w.link->ready() || w.site == avoid_site) continue;
    if (w.in_flight.size() >= std::min(window, window_of(w))) continue;
    if (needs_payload && w.link->peer_max_payload() < needs_payload) continue;
    // A worker to be recycled is sent no more than its share.
    if (m_o.max_tasks_per_worker > 0 && w.done + int(w.in_flight.size()) >= m_o.max_tasks_per_worker) continue;
    if (!best || w.in_flight.size() < best->in_flight.size()) best = &w;
  }
  return best;
}

// Adaptive window: enough tiny tasks in flight that the worker never waits for the round trip (about
// k_window_budget_us of queued work), but one task at a time while any recent task was long, so that no task
// waits behind a long one while another worker may be idle (the same as --window 1 there).
constexpr double k_window_budget_us = 2000;
constexpr double k_long_task_us = 50000;  // high enough that a preempted tiny task on a busy machine is not "long"
constexpr std::size_t k_max_window = 256;

std::size_t Engine::window_of(const Worker& w) const {
  if (m_o.window > 0) return std::size_t(m_o.window);
  if (w.done == 0) return 2;  // nothing observed yet
  if (w.recent_max_us >= k_long_task_us) return 1;
  const double fits = k_window_budget_us / std::max(w.mean_us, 1.0);
  return std::clamp(std::size_t(fits), std::size_t(2), k_max_window);
}

void Engine::observe_duration(Worker& w, const Attempt& head) {
  const Clock::time_point now = Clock::now();
  const double us = std::chrono::duration<double, std::micro>(now - std::max(head.started, w.last_result)).count();
  w.last_result = now;
  w.mean_us = w.done == 0 ? us : 0.9 * w.mean_us + 0.1 * us;
  w.recent_max_us = std::max(us, 0.97 * w.recent_max_us);
}

std::pair<std::uint32_t, bool> Engine::largest_limit() const {
  std::uint32_t largest = 0;
  bool starting = !m_deferred.empty();
  for (const auto& [id, w] : m_workers) {
    if (w.retiring) continue;
    if (!w.trusted) starting = true;
    else if (w.link->ready()) largest = std::max(largest, w.link->peer_max_payload());
  }
  return {largest, starting};
}

void Engine::settle_too_large() {
  const auto [largest, maybe_more] = largest_limit();
  if (maybe_more || m_stopping) return;
  for (std::size_t i = 0; i < m_retry.size();) {
    if (m_retry[i].needs_payload <= largest) {
      ++i;
      continue;
    }
    Attempt a = std::move(m_retry[i]);
    m_retry.erase(m_retry.begin() + std::ptrdiff_t(i));
    finish(a, a.failed_attempts + 1, false,
           json{{"type", "too_large"},
                {"message", "task of " + std::to_string(a.needs_payload) + " payload bytes exceeds every worker's limit (largest: " +
                                std::to_string(largest) + " bytes)"}},
           nullptr);
  }
}

void Engine::on_info(int id) {
  Worker& w = m_workers.at(id);
  if (w.loaded) return;
  w.loaded = true;
  arm_deadline(w);  // the first task's time starts now
}

void Engine::arm_deadline(Worker& w) {
  if (!w.loaded) {
    // Importing: the program's own limit, set once; the tasks' limits start when it has loaded.
    if (w.import_armed) return;
    w.import_armed = true;
    char why[160];
    std::snprintf(why, sizeof why, "the program did not finish importing within %g s (--import-timeout)", m_o.import_timeout_s);
    w.link->set_deadline(to_millis(m_o.import_timeout_s), make_error(ErrorCode::program_failed, why));
    return;
  }
  const double silence_s = m_o.silence_limit_s.value_or(m_sites[std::size_t(w.site)].local ? 30.0 : 120.0);
  w.link->watch_silence(!w.in_flight.empty(), to_millis(silence_s));
  std::optional<double> limit;
  if (!w.in_flight.empty() && !w.held) {  // a held head has ended: only the silence limit applies now
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

void Engine::record_attempt(const Attempt& a, int attempt, int pid, const std::string& host, const std::string& outcome,
                            const std::string& message) {
  if (!m_joblog) return;
  const Clock::duration took = Clock::now() - a.started;
  const auto started_wall = std::chrono::system_clock::now() - std::chrono::duration_cast<std::chrono::system_clock::duration>(took);
  m_joblog->record(a.task.number, id_json(a.task), pid, host.empty() ? "-" : host, attempt, started_wall,
                   std::chrono::duration<double>(took).count(), outcome, message);
}

void Engine::finish(const Attempt& a, int attempt, bool ok, json value_or_error, const Worker* w, std::string value_json,
                    std::string attachment) {
  TaskOutcome outcome;
  outcome.ok = ok;
  (ok ? outcome.value : outcome.error) = std::move(value_or_error);
  outcome.value_json = std::move(value_json);
  outcome.attachment = std::move(attachment);
  outcome.worker = w ? w->pid : 0;
  if (w) outcome.host = host_of(*w);
  outcome.attempts = attempt;
  outcome.duration_ms = std::chrono::duration<double, std::milli>(Clock::now() - a.started).count();
  record_attempt(a, attempt, outcome.worker, outcome.host, m_handler.outcome_word(outcome),
                 ok ? "" : outcome.error.value("message", ""));
  if (m_summary.output_closed) return;  // nobody reads results any more: the task is neither ok nor failed
  if (!ok && attempt > 0 && !m_stopping && m_handler.retry(a.task, outcome)) {
    Attempt again = a;
    again.failed_attempts = attempt;
    if (w) again.failed_site = w->site;
    m_retry.push_front(std::move(again));
    return;
  }
  ResultHandler::Next next = m_handler.task_done(a.task, std::move(outcome));
  schedule_flush();
  if (m_handler.write_failed() && errno == EPIPE) {
    // The reader of the results went away (`authrun run ... | head`): stop quietly, as a filter does.
    m_summary.output_closed = true;
    stop(true);
    return;
  }
  (ok ? m_summary.ok : m_summary.failed)++;
  if (m_handler.write_failed()) {
    give_up(std::string("cannot write results: ") + std::strerror(errno));
  } else if (next != ResultHandler::Next::go_on) {
    stop(next == ResultHandler::Next::stop_now);
  }
}

void Engine::on_result(int id, TaskResult&& r) {
  Worker& w = m_workers.at(id);
  release_held(w);  // a later result: the worker outlived that signal
  if (w.in_flight.empty() || w.in_flight.front() != r.id) {
    w.link->refuse(make_error(ErrorCode::unexpected, "worker answered task " + std::to_string(r.id) + " out of turn"));
    return;
  }
  if (r.ok && m_handler.takes_attachments()) {
    end_head(w, true, std::move(r.value), std::move(r.value_json), std::string(r.attachment.view()));
  } else if (r.ok) {
    end_head(w, true, with_bytes(std::move(r.value), r.attachment), std::move(r.value_json));
  } else {
    // The worker's words go to the result line as sent (a JSON string escapes them), if valid UTF-8 and not
    // too long; the joblog and the terminal escape them again.
    json err{{"type", peer_result_text(r.error.type, k_peer_result_type_max)},
             {"message", peer_result_text(r.error.message, k_peer_result_text_max)}};
    if (!r.error.details.is_null()) err["details"] = std::move(r.error.details);
    // Held only from a worker that keeps sending frames while busy (keepalive_ms): the silence limit then
    // ends a hold whose confirmation never comes.
    const auto& info = w.link->peer_info();
    if (r.error.outside_signal != 0 && info && info->keepalive_ms != 0) {
      w.held = HeldFailure{std::move(err), r.error.outside_signal, w.link->frames_received()};
      arm_deadline(w);
      if (m_o.verbose) {
        log(describe_worker(w) + ": task " + id_json(m_in_flight.at(r.id).task) + ": its process was killed by " +
            signal_text(r.error.outside_signal) +
            ", which the worker did not send: the failure waits until the worker is heard from again (a worker "
            "stopped meanwhile has the task retried)");
      }
      return;
    }
    end_head(w, false, std::move(err));
  }
  dispatch();
}

void Engine::end_head(Worker& w, bool ok, json value_or_error, std::string value_json, std::string attachment) {
  const std::uint64_t seq = w.in_flight.front();
  w.in_flight.pop_front();
  auto node = m_in_flight.extract(seq);
  const Attempt& a = node.mapped();
  observe_duration(w, a);
  m_in_flight_bytes -= a.payload_bytes;
  finish(a, a.failed_attempts + 1, ok, std::move(value_or_error), &w, std::move(value_json), std::move(attachment));
  m_spent.push_back(std::move(node.mapped().task.args_json));
  m_health->succeeded(std::size_t(w.site));
  ++w.done;
  arm_deadline(w);
  if (m_o.max_tasks_per_worker > 0 && w.done >= m_o.max_tasks_per_worker && !w.retiring) {
    w.retiring = true;  // its queued tasks still finish; a replacement starts now
    if (work_remains() && !m_stopping && !m_health->set_aside(std::size_t(w.site))) spawn_worker(w.slot);
  }
  if (w.retiring && w.in_flight.empty()) w.link->shutdown();
}

void Engine::release_held(Worker& w) {
  if (!w.held) return;
  json error = std::move(w.held->error);
  w.held.reset();
  end_head(w, false, std::move(error));
}

void Engine::on_heard(int id) {
  Worker& w = m_workers.at(id);
  if (!w.held || w.link->frames_received() <= w.held->frames) return;
  release_held(w);
  dispatch();
}

void Engine::on_output(int id, Output&& out) {
  Worker& w = m_workers.at(id);
  release_held(w);  // the next task's output: the worker outlived that signal
  if (w.in_flight.empty() || w.in_flight.front() != out.id) {
    w.link->refuse(make_error(ErrorCode::unexpected, "worker sent output for task " + std::to_string(out.id) + ", which is not running"));
    return;
  }
  if (!m_handler.task_output(m_in_flight.at(out.id).task, out.is_stderr, out.data.view())) {
    w.link->refuse(make_error(ErrorCode::unexpected, "worker sent output for task " + std::to_string(out.id) + ", which did not ask to stream"));
    return;
  }
  if (m_handler.write_failed() && errno == EPIPE) {
    // The output's reader went away while a job streamed (`authrun exec cat ::: big | head`): quietly.
    m_summary.output_closed = true;
    stop(true);
  } else if (m_handler.write_failed()) {
    give_up(std::string("cannot write output: ") + std::strerror(errno));
  }
}

void Engine::on_gone(int id, const Error& why, int wait_status) {
  auto node = m_workers.extract(id);
  Worker& w = node.mapped();
  m_summary.task_frames += w.link->task_frames();
  if (why.code == ErrorCode::program_failed) {
    // A Python worker could not import the program: every worker would fail the same way. The run stops
    // without retries; what this worker was given never started (no result line; listed as not started).
    audit(w, "channel_closed", false, &why, describe_wait_status(wait_status));
    for (std::size_t i = w.in_flight.size(); i-- > 0;) {
      m_retry.push_front(std::move(m_in_flight.extract(w.in_flight[i]).mapped()));
      m_in_flight_bytes -= m_retry.front().payload_bytes;
    }
    if (!m_program_failed) {
      m_program_failed = true;
      give_up("the Python program failed to load in " + describe_worker(w) + ": " + why.message +
              "; stopping the run (not retried)");
    }
    dispatch();
    return;
  }
  // A held failure (HeldFailure) stands if the worker ended cleanly or was stopped by us; otherwise the worker
  // died before it was heard from again, as the stop that killed the task's process reached it too: the task
  // is charged with this death, as one that was running.
  std::optional<int> held_signal;
  if (w.held) {
    if ((WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) || m_stopping) {
      release_held(w);
    } else {
      held_signal = w.held->signal;
      w.held.reset();
    }
  }
  const bool clean = why.code == ErrorCode::eof && w.in_flight.empty() && (w.retiring || m_finishing);
  const bool stopped_by_us = m_stopping && w.retiring;  // killed by a halt or a second signal
  const std::string status = describe_wait_status(wait_status);
  const Site& site = m_sites[std::size_t(w.site)];
  audit(w, w.trusted ? "channel_closed" : clean ? "stopped_before_handshake" : "handshake", clean, clean ? nullptr : &why,
        status);
  // A task that overran its time limit says nothing about the worker or its host.
  const bool task_overran = why.code == ErrorCode::timeout && w.trusted;
  if (!clean && !stopped_by_us && !task_overran) {
    std::string hint;
    if (!site.local && !w.trusted && why.code == ErrorCode::eof) hint = launch_failure_hint(m_o.launcher, site, wait_status);
    if (!hint.empty()) hint = "; likely cause: " + hint;
    if (!w.trusted) {
      ++m_summary.handshake_failures;
      log(describe_worker(w) + ": handshake failed, given no task: " + to_string(why.code) + ": " + why.message + " (" +
          status + ")" + hint);
    } else {
      ++m_summary.deaths;
      log(describe_worker(w) + " lost: " + why.message + " (" + status + ")");
    }
  }
  // Only the task that was running when the worker went is at fault. The others were either queued behind
  // it, not begun (a worker runs its tasks in order), or finished with their results still held in the
  // worker: all go back without counting an attempt (a finished one runs again).
  const std::optional<std::size_t> at_fault = held_signal ? std::optional<std::size_t>(0) : running_task(w, why);
  for (std::size_t i = w.in_flight.size(); i-- > 0;) {
    auto anode = m_in_flight.extract(w.in_flight[i]);
    Attempt a = std::move(anode.mapped());
    m_in_flight_bytes -= a.payload_bytes;
    if (at_fault == i) {
      ++a.failed_attempts;
      a.failed_site = w.site;
      const bool timed_out = why.code == ErrorCode::timeout && !m_summary.signal;
      const std::string type = timed_out ? "timeout" : m_stopping ? "interrupted" : "worker_died";
      std::string message = timed_out    ? why.message
                            : m_stopping ? "stopped before the task finished"
                                         : "worker " + std::to_string(w.pid) + " died running this task: " + status +
                                               (why.code == ErrorCode::eof ? "" : " (" + why.message + ")");
      if (held_signal && !timed_out && !m_stopping) {
        message += "; its process had been killed by " + signal_text(*held_signal) + " just before (the same stop)";
      }
      if (m_stopping || a.failed_attempts > m_o.retries) {
        finish(a, a.failed_attempts, false, json{{"type", type}, {"message", message}}, &w);
        continue;
      }
      record_attempt(a, a.failed_attempts, w.pid, host_of(w), type, message + " (will retry)");
    }
    if (m_stopping) {
      finish(a, a.failed_attempts, false, json{{"type", "interrupted"}, {"message", "stopped before the task started"}}, &w);
      continue;
    }
    m_retry.push_front(std::move(a));
  }
  if (!clean && !m_stopping && !m_finishing) {
    const bool host_has_trusted = std::any_of(m_workers.begin(), m_workers.end(), [&](const auto& entry) {
      return entry.second.site == w.site && entry.second.trusted && !entry.second.retiring;
    });
    const auto site = std::size_t(w.site);
    const auto verdict = task_overran ? m_health->not_its_fault(site) : m_health->failed(site, host_has_trusted);
    switch (verdict) {
      case HostHealth::Verdict::give_up:
        give_up("giving up after " + std::to_string(m_health->failures_since_progress()) +
                " workers in a row failed their handshake or died (last: " + why.message + ")");
        break;
      case HostHealth::Verdict::set_aside:
        m_summary.hosts_set_aside.push_back(host_of(w));
        log("setting " + host_of(w) + " aside: " + std::to_string(m_health->failures_in_row(site)) +
            " of its workers in a row failed (last: " + why.message + "); going on with the other hosts");
        break;
      case HostHealth::Verdict::stays_empty:
        break;
      case HostHealth::Verdict::replace:
        if (work_remains()) spawn_worker(w.slot);
        break;
    }
    start_deferred();
    if (m_workers.empty() && work_remains() && !m_stopping) give_up("no worker left: every host was set aside");
  }
  dispatch();
}

std::optional<std::size_t> Engine::running_task(const Worker& w, const Error& why) const {
  if (w.in_flight.empty()) return std::nullopt;
  const ProgressSeen seen = w.link->progress();
  // No page (a launched worker, or one that did not map it): such a worker holds no result past the start of
  // its next task, so the first task without a result was the one running (or had not begun: it ran no
  // other).
  if (!seen.kept) return 0;
  if (seen.running) {
    const auto at = std::find(w.in_flight.begin(), w.in_flight.end(), *seen.running);
    // A task id that is not in flight here: the page is not to be believed; fall back to the head.
    return at != w.in_flight.end() ? std::size_t(at - w.in_flight.begin()) : 0;
  }
  // Between tasks: nothing of ours was running. Unless it timed out, which the head's time limit decided
  // (a worker stuck outside its tasks must not come back for ever without a charge).
  if (why.code == ErrorCode::timeout) return 0;
  return std::nullopt;
}

void Engine::audit(const Worker& w, const char* event, bool ok, const Error* why, const std::string& status) {
  if (!m_audit) return;
  json line{{"time", std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count()},
            {"event", event}, {"worker", w.pid}, {"host", host_of(w)}, {"ok", ok}};
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

void Engine::maybe_finish() {
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
  // Tasks taken but never given to a worker (stopped, or no trusted worker) end without a result.
  auto not_started = [this](const BatchTask& t) {
    m_summary.not_started.push_back(id_json(t));
    m_handler.task_not_started(t);
  };
  for (auto& a : m_retry) not_started(a.task);
  m_retry.clear();
  for (auto& t : m_taken) not_started(t);
  m_taken.clear();
  m_feed->stop();
  while (auto t = m_feed->try_pop()) not_started(*t);
  m_signals.cancel();
  m_progress_timer.cancel();
  m_grace_timer.cancel();
  m_delay_timer.cancel();
  if (m_o.progress) print_progress(true);
}

void Engine::schedule_flush() {
  if (m_flush_posted) return;
  m_flush_posted = true;
  asio::post(m_io, [this] { flush_results(); });
}

void Engine::flush_results() {
  m_flush_posted = false;
  if (m_summary.output_closed) return;
  m_handler.flush();
  if (!m_handler.write_failed()) return;
  if (errno == EPIPE) {
    m_summary.output_closed = true;
    stop(true);
  } else {
    give_up(std::string("cannot write results: ") + std::strerror(errno));
  }
}

void Engine::stop(bool now) {
  if (now) {
    for (auto& [id, w] : m_workers) {
      w.retiring = true;
      w.link->kill(make_error(ErrorCode::io, "stopped"));
    }
  }
  if (m_stopping) return;
  m_stopping = true;
  m_feed->stop();
  maybe_finish();
}

void Engine::give_up(const std::string& why) {
  log(why);
  m_summary.setup_failed = true;
  stop(false);
}

void Engine::on_signal(int sig) {
  if (m_summary.signal) {
    log("second signal: stopping now");
    stop(true);
    return;
  }
  m_summary.signal = sig;
  if (m_o.interrupt_stops_now) {
    // GNU parallel's way: running jobs are stopped (their workers end them with TERM, then KILL), jobs only
    // queued on a worker never start.
    const auto running = std::count_if(m_workers.begin(), m_workers.end(), [](const auto& e) { return !e.second.in_flight.empty(); });
    log(std::string("got ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") + ": stopping " + std::to_string(running) + " running job(s)");
    stop(true);
    return;
  }
  log(std::string("got ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") + ": no new tasks; waiting up to " +
      std::to_string(static_cast<int>(m_o.grace_s)) + " s for " + std::to_string(m_in_flight.size()) +
      " running (signal again to stop now)");
  m_signals.async_wait([this](const boost::system::error_code& ec, int s) {
    if (!ec) on_signal(s);
  });
  m_grace_timer.expires_after(to_millis(m_o.grace_s));
  m_grace_timer.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) stop(true);
  });
  stop(false);
}

void Engine::print_progress(bool final) {
  const double secs = std::chrono::duration<double>(Clock::now() - m_t0).count();
  const std::uint64_t done = m_summary.ok + m_summary.failed;
  const double rate = secs > 0 ? double(done) / secs : 0.0;
  // Tasks running: one per busy worker (the others sent to it wait in its queue); workers: trusted ones.
  std::size_t running = 0, workers = 0;
  for (const auto& [id, w] : m_workers) {
    if (!w.trusted || w.retiring) continue;
    ++workers;
    if (!w.in_flight.empty()) ++running;
  }
  // The total: given, or the tasks read so far (exact once the input has ended, else a lower bound).
  const bool input_ended = m_feed && m_feed->input_complete();
  const std::uint64_t read = m_feed ? m_feed->produced() : 0;
  const bool known = m_o.total.has_value() || input_ended;
  std::uint64_t total = m_o.total ? *m_o.total : read;
  total = std::max(total, done);
  std::string text;
  char part_text[160];
  if (m_o.progress_style != EngineOptions::ProgressStyle::bar) {
    // GNU parallel's --progress / --eta: a header once, then "local:running/done/100%/avg s" per host.
    if (!m_progress_shown) {
      ProgressLine::on_stderr().clear();
      std::fprintf(stderr, "\nComputers / CPU cores / Max jobs to run\n1:local / %u / %d\n\nComputer:jobs running/jobs "
                           "completed/%%of started jobs/Average seconds to complete\n",
                   std::max(1u, std::thread::hardware_concurrency()), m_o.jobs);
    }
    const double avg = done > 0 ? secs / double(done) : 0.0;
    if (m_o.progress_style == EngineOptions::ProgressStyle::parallel_eta) {
      const double eta = rate > 0 ? double(total - done) / rate : 0.0;
      std::snprintf(part_text, sizeof part_text, "ETA: %.0fs Left: %llu AVG: %.2fs  ", eta,
                    static_cast<unsigned long long>(total - done), avg);
      text = part_text;
    }
    std::snprintf(part_text, sizeof part_text, "local:%zu/%llu/100%%/%.1fs ", running, static_cast<unsigned long long>(done), avg);
    text += part_text;
    ProgressLine::on_stderr().draw(text);
  } else if (total > 0) {
    const double part = double(done) / double(total);
    char bar[31];
    const int filled = static_cast<int>(part * 30);
    for (int i = 0; i < 30; ++i) bar[i] = i < filled ? '=' : ' ';
    bar[30] = '\0';
    std::snprintf(part_text, sizeof part_text, "[%s] %s%3.0f%% %llu/%llu%s", bar, known ? "" : "~", part * 100,
                  static_cast<unsigned long long>(done), static_cast<unsigned long long>(total),
                  known ? "" : "+ read so far");
    text = part_text;
  } else {
    text = std::to_string(done) + " done";
  }
  std::snprintf(part_text, sizeof part_text, ", %llu failed, %zu running on %s, %.0f tasks/s",
                static_cast<unsigned long long>(m_summary.failed), running, count_of(workers, "worker", "workers").c_str(),
                rate);
  text += part_text;
  if (m_o.progress_style == EngineOptions::ProgressStyle::bar) {
    if (known && total > 0 && rate > 0 && !final) text += ", ETA " + clock_text(double(total - done) / rate);
    ProgressLine::on_stderr().draw("authrun: " + text);
  }
  m_progress_shown = true;
  if (final) return;
  m_progress_timer.expires_after(Millis(250));
  m_progress_timer.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) print_progress(false);
  });
}

}  // namespace

void StopHandle::request(bool now) {
  std::lock_guard lock(m_mutex);
  if (m_post) m_post(now);
  else m_pending = std::max(m_pending, now ? 1 : 0);
}

void StopHandle::attach(std::function<void(bool)> post) {
  std::lock_guard lock(m_mutex);
  m_post = std::move(post);
  if (m_pending >= 0) m_post(m_pending == 1);
  m_pending = -1;
}

void StopHandle::detach() {
  std::lock_guard lock(m_mutex);
  m_post = nullptr;
}

RunSummary run_engine(const EngineOptions& options,
                      const std::function<std::unique_ptr<TaskFeed>(std::function<void()>)>& make_feed,
                      ResultHandler& handler) {
  std::signal(SIGPIPE, SIG_IGN);
  Engine engine(options, handler);
  return engine.run(make_feed);
}

std::string describe(const RunSummary& s, std::uint64_t skipped) {
  std::string line = count_of(s.ok + s.failed, "task", "tasks") + ": " + std::to_string(s.ok) + " ok, " +
                     std::to_string(s.failed) + " failed, " + std::to_string(s.not_started.size()) + " not started";
  if (skipped) line += ", " + std::to_string(skipped) + " skipped as already done";
  line += "; " + count_of(std::uint64_t(s.trusted), "worker trusted", "workers trusted") + ", " +
          count_of(std::uint64_t(s.handshake_failures), "handshake failure", "handshake failures") + ", " +
          count_of(std::uint64_t(s.deaths), "worker death", "worker deaths");
  for (std::size_t i = 0; i < s.hosts_set_aside.size(); ++i) line += (i ? ", " : "; set aside: ") + s.hosts_set_aside[i];
  char text[96];
  std::snprintf(text, sizeof text, "; %.3f s, %.0f tasks/s", s.seconds, s.seconds > 0 ? double(s.ok + s.failed) / s.seconds : 0.0);
  return line + text;
}

}  // namespace authrun::runner
