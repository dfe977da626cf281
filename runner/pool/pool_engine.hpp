// The engine of a Python pool (authrun.Pool, authrun.ProcessPoolExecutor): run_engine on a thread of its own
// for the pool's life, fed from a queue the caller fills, its results queued for the caller to collect.
// Nothing here knows Python: the extension module (engine_module.cpp) wraps it, and the engine's thread never
// calls into the interpreter.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "protocol/fd.hpp"
#include "runner/engine/engine.hpp"

namespace authrun::runner {

// One task the caller submits: its id (the caller's), the function name, args as JSON text, raw attachment
// bytes, and its own time limit if it has one.
struct PoolTask {
  std::uint64_t id = 0;
  std::string fn;
  std::string args_json = "null";
  std::string attachment;
  std::optional<double> timeout_s;
};

// How one task ended, for the caller.
struct PoolResult {
  std::uint64_t id = 0;
  bool ok = false;
  std::string value_json;  // when ok
  std::string attachment;  // when ok: the result's raw bytes
  std::string error_json;  // when !ok: {"type", "message", "details"?}; type "not_started" if it never ran
  int attempts = 0;
  int worker = 0;
};

class PoolEngine {
 public:
  // Starts the engine's thread (all signals blocked on it: they stay the caller's). `options.stop_handle`
  // and `handle_signals` are set here.
  explicit PoolEngine(EngineOptions options);
  // Stops the run now (if it still runs) and waits for its thread, unless forget() was called.
  ~PoolEngine();
  PoolEngine(const PoolEngine&) = delete;
  PoolEngine& operator=(const PoolEngine&) = delete;

  // Queues tasks for the engine. False once input was closed (nothing is queued).
  bool submit(std::vector<PoolTask> tasks);
  // Up to `max` finished tasks, waiting up to `timeout_s` (forever if nullopt) for the first one. An empty
  // vector with ended() true: every result has been collected and the engine is gone.
  std::vector<PoolResult> collect(std::optional<double> timeout_s, std::size_t max);
  // Ends input: queued tasks still run, then the workers are shut down and the engine returns.
  void close();
  // Stops now: running tasks are killed, queued ones end not started.
  void terminate();
  // Waits up to `timeout_s` (forever if nullopt) for the engine to return; true if it has.
  bool join(std::optional<double> timeout_s);
  // True once the engine returned and its results were all collected.
  bool ended();
  // The run's summary (once joined), as JSON text.
  std::string summary_json();
  // In a child made by fork(): the engine's threads do not exist here. Nothing of the parent's run is
  // touched from now on (the destructor neither stops nor joins anything).
  void forget();

 private:
  class Handler;
  // The feed's producer: moves submitted tasks into the engine's feed until input is closed.
  std::optional<std::string> produce(TaskFeed::Sink& sink);
  // Wakes the producer sleeping in poll() (m_producer_waiting was set, and taken by the caller).
  void wake_producer();
  void run(EngineOptions options);

  std::shared_ptr<StopHandle> m_stop = std::make_shared<StopHandle>();
  std::mutex m_mutex;
  std::condition_variable m_results_ready;
  std::condition_variable m_ended_cv;
  std::deque<PoolTask> m_input;      // submitted, not yet in the feed
  bool m_input_closed = false;
  bool m_producer_waiting = false;   // the producer sleeps in poll(): wake it through m_wake
  protocol::Fd m_wake;               // an eventfd: a submit or close for a sleeping producer
  std::deque<PoolResult> m_results;  // finished, not yet collected
  bool m_engine_done = false;
  RunSummary m_summary;
  bool m_forgotten = false;
  std::unique_ptr<std::thread> m_thread;
};

}  // namespace authrun::runner
