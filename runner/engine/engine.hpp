// The engine under `authrun run` and `authrun exec`: one Asio event loop drives every worker's pipes, exits
// and timers; tasks come from a TaskFeed; each task that starts ends in exactly one call of the
// ResultHandler, success or a structured error.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/limits.hpp"
#include "protocol/message.hpp"
#include "runner/engine/batch_task.hpp"
#include "runner/engine/launcher.hpp"
#include "runner/engine/task_feed.hpp"

namespace authrun::runner {

// Stops a running engine from another thread (a Python pool's terminate). Safe to call from any thread,
// before, during or after the run: a request made before the run starts is carried out when it does.
class StopHandle {
 public:
  // No new tasks; with `now`, running tasks are stopped too (their workers killed).
  void request(bool now);
  // For the engine: where requests go while it runs (`post` runs on any thread), and their end.
  void attach(std::function<void(bool)> post);
  void detach();

 private:
  std::mutex m_mutex;
  std::function<void(bool)> m_post;  // set by the engine while it runs
  int m_pending = -1;                // a request made while no engine ran: -1 none, 0 soon, 1 now
};

struct EngineOptions {
  int jobs = 1;                          // workers (the sum of the sites' slots)
  std::vector<std::string> worker_argv;  // worker command; argv[0] a path
  std::vector<Site> sites;               // where workers run; empty: `jobs` on this machine
  Launcher launcher;                     // starts the workers of sites that are not local
  std::vector<std::string> remote_worker_argv;  // the worker command where the launcher runs it
  KeyDelivery key_delivery = KeyDelivery::stdin_prefix;  // how launched workers get their key
  std::string key_file;                  // use this key for every worker instead of a fresh one each
  std::string remote_key_file;           // where launched workers find it (the command line defaults it to key_file)
  std::string joblog;                    // write a line per task attempt here
  bool joblog_append = false;            // append to the joblog instead of starting it anew
  std::string audit_log;                 // append each handshake outcome and channel end here (JSON lines)
  int retries = 1;                       // extra attempts for a task whose worker died or timed out
  std::optional<double> timeout_s;       // per-task limit, unless the task gives its own
  std::optional<double> silence_limit_s;  // a busy worker that sends keep-alives and is silent this long is stopped
                                          // and its tasks retried (default 30 s here, 120 s through a launcher)
  std::optional<double> handshake_timeout_s;  // default 5 s here, 30 s through a launcher
  double import_timeout_s = 300;  // a Python worker's program import, from its handshake to its worker_info
  int window = 0;                        // tasks in flight per worker; 0: adapted to the task durations each
                                         // worker shows (many tiny tasks, one long task at a time)
  int max_tasks_per_worker = 0;          // recycle a worker after this many tasks; 0 = never
  double grace_s = 10;                   // after SIGINT/SIGTERM: how long running tasks may take to finish
  std::optional<protocol::ChannelMode> mode;  // default: authenticated here, encrypted through a launcher
  std::uint32_t max_payload = 0;         // 0 = protocol default
  std::uint64_t max_in_flight_bytes = protocol::limits::default_max_in_flight_bytes;  // task args sent and not
                                         // yet answered: over it no new task is taken (a larger one runs alone)
  bool progress = false;                 // progress line on stderr
  // The progress line's look: authrun's bar, or GNU parallel's --progress / --eta lines (exec).
  enum class ProgressStyle { bar, parallel, parallel_eta };
  ProgressStyle progress_style = ProgressStyle::bar;
  std::optional<std::uint64_t> total;    // tasks expected, when known (progress shows a bar and an ETA;
                                         // without it the bar is estimated from the tasks read so far)
  std::string summary_json;              // write the run's summary here as one JSON object (front ends do)
  bool verbose = false;                  // log every handshake, not just failures
  std::string program;                   // Python workers: the program message body each worker gets right
                                         // after its handshake ("" = none: not Python workers)
  bool allow_ptrace = false;             // accept traced workers (and a traced runner): debugging only
  bool interrupt_stops_now = false;      // SIGINT/SIGTERM stops running tasks at once (exec), no grace
  double start_delay_s = 0;              // at least this long between two tasks' dispatches (exec --delay); 0: none
  bool handle_signals = true;            // take SIGINT/SIGTERM (the CLI); false leaves them to the host
                                         // program (a Python pool: Ctrl-C is the caller's KeyboardInterrupt)
  std::shared_ptr<StopHandle> stop_handle;  // lets another thread stop the run, if set
  int pipe_size = 0;                     // F_SETPIPE_SZ asked for each local worker's pipes; 0: the default
                                         // (64 KiB); a Python pool asks 1 MiB for its large pickles
};

// How one task ended.
struct TaskOutcome {
  bool ok = false;
  json value;          // when ok
  std::string value_json;  // when ok, for a handler that takes_value_text(): the value as JSON text, if the
                           // worker's result came that way (value is then null)
  json error;          // when !ok: {"type", "message", "details"?}
  std::string attachment;  // when ok and the handler takes_attachments(): the result's raw bytes (else they
                           // are in value as {"$bytes": base64})
  int worker = 0;      // pid (of the launcher, for a launched worker), 0 when no worker ran it
  std::string host;    // where it ran ("local", a host name), empty when no worker ran it
  int attempts = 0;
  double duration_ms = 0;  // from the last dispatch to the end
};

// What the front end does with finished tasks.
class ResultHandler {
 public:
  enum class Next { go_on, stop_soon, stop_now };
  virtual ~ResultHandler() = default;
  // The args to send for `task` to the worker in slot `slot` (1-based), in task.args_format; by default its
  // args_json. What it returns stays valid until the next call.
  virtual const std::string& args_for(const BatchTask& task, int /*slot*/) { return task.args_json; }
  // A task ended (called once per task that was taken from the feed and started or refused). Returns
  // whether to go on: stop_soon stops dispatching, stop_now also kills running tasks.
  virtual Next task_done(const BatchTask& task, TaskOutcome&& outcome) = 0;
  // A piece of the streamed output of `task`, which is running (only for tasks whose args ask for
  // "stream"). Returns false if the handler did not ask for it (the worker is then stopped as a liar).
  virtual bool task_output(const BatchTask& /*task*/, bool /*is_stderr*/, std::string_view /*bytes*/) { return false; }
  // The one-word outcome the joblog records for a finished task: "ok" for success (what --resume skips),
  // else why it failed. By default "ok" or the error's type.
  virtual std::string outcome_word(const TaskOutcome& outcome) const {
    return outcome.ok ? "ok" : outcome.error.value("type", "error");
  }
  // False while the handler holds too much output back (in-order output waiting for a slow task): the
  // engine then takes no new task until a result arrives.
  virtual bool can_take_more() const { return true; }
  // A task failed (its attempt `outcome.attempts` ended not ok) while the run goes on: returning true runs it
  // again, before new input, and task_done is not called for this attempt (the handler forgets its output).
  // By default false (only a worker's death or timeout is retried, up to EngineOptions::retries).
  virtual bool retry(const BatchTask& /*task*/, const TaskOutcome& /*outcome*/) { return false; }
  // True if task_done takes a value as JSON text (TaskOutcome::value_json) as well as parsed: results then
  // go from the worker's frame to the handler without being parsed and dumped again.
  virtual bool takes_value_text() const { return false; }
  // True if task_done takes a result's raw bytes as TaskOutcome::attachment rather than in its value.
  virtual bool takes_attachments() const { return false; }
  // A task taken from the feed will not run (the run stopped first).
  virtual void task_not_started(const BatchTask& task) = 0;
  // True if writing output failed (the run stops and ends with a set-up error).
  virtual bool write_failed() const { return false; }
  // Writes out what task_done queued: called once per event loop turn in which a task ended, and at the
  // end of the run. Then write_failed() tells whether it worked.
  virtual void flush() {}
};

// How a run ended.
struct RunSummary {
  std::uint64_t ok = 0, failed = 0;
  std::vector<std::string> not_started;  // ids (JSON text) of tasks taken but never started
  bool input_cut = false;                // the feed had not ended: later input was not read
  int signal = 0;                        // SIGINT or SIGTERM if one stopped the run
  bool setup_failed = false;             // no trusted worker, unreadable input, unwritable output
  bool output_closed = false;            // the results' reader went away (EPIPE): the run stopped quietly;
                                         // ok and failed count only results written before that
  int trusted = 0, handshake_failures = 0, deaths = 0;
  std::vector<std::string> hosts_set_aside;  // hosts whose workers kept failing
  double seconds = 0;
  std::uint64_t task_frames = 0;  // frames that carried tasks (task and task_batch) to workers
};

// Runs tasks from `feed` until it ends (or a signal, or a set-up failure). Diagnostics go to stderr.
// `make_feed` builds the feed with the notify callback the engine needs.
RunSummary run_engine(const EngineOptions& options,
                      const std::function<std::unique_ptr<TaskFeed>(std::function<void()> notify)>& make_feed,
                      ResultHandler& handler);

// The one-line summary `authrun run` prints.
std::string describe(const RunSummary& summary, std::uint64_t skipped);

}  // namespace authrun::runner
