// The engine of a Python pool: see pool_engine.hpp.
#include "runner/pool/pool_engine.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "protocol/json_codec.hpp"
#include "runner/engine/summary_json.hpp"

namespace authrun::runner {

using namespace protocol;

namespace {

// Tasks the engine's feed holds ready (the rest wait in the pool's own queue).
constexpr std::size_t k_feed_capacity = 1024;
// Each worker's pipes: a pickled argument of a MiB crosses in one write (the default is 64 KiB).
constexpr int k_pipe_size = 1 << 20;

}  // namespace

// Queues each finished task for the caller; the engine's thread only ever takes the pool's mutex.
class PoolEngine::Handler : public ResultHandler {
 public:
  explicit Handler(PoolEngine& pool) : m_pool(pool) {}

  Next task_done(const BatchTask& task, TaskOutcome&& o) override {
    PoolResult r;
    r.id = task.number;
    r.ok = o.ok;
    r.attempts = o.attempts;
    r.worker = o.worker;
    if (o.ok) {
      r.value_json = o.value_json.empty() ? dump_json(o.value) : std::move(o.value_json);
      r.attachment = std::move(o.attachment);
    } else {
      r.error_json = dump_json(o.error);
    }
    m_batch.push_back(std::move(r));
    return Next::go_on;
  }
  void task_not_started(const BatchTask& task) override {
    PoolResult r;
    r.id = task.number;
    r.error_json = dump_json(json{{"type", "not_started"}, {"message", "the pool stopped before the task started"}});
    m_batch.push_back(std::move(r));
    flush();
  }
  bool takes_value_text() const override { return true; }
  bool takes_attachments() const override { return true; }
  // Once per loop turn: this turn's results go to the caller under one lock.
  void flush() override {
    if (m_batch.empty()) return;
    {
      std::lock_guard lock(m_pool.m_mutex);
      for (auto& r : m_batch) m_pool.m_results.push_back(std::move(r));
    }
    m_batch.clear();
    m_pool.m_results_ready.notify_all();
  }

 private:
  PoolEngine& m_pool;
  std::vector<PoolResult> m_batch;
};

PoolEngine::PoolEngine(EngineOptions options) {
  m_wake = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  options.handle_signals = false;
  if (options.pipe_size == 0) options.pipe_size = k_pipe_size;
  options.stop_handle = m_stop;
  // The engine's thread spawns the workers, so it lives as long as the pool: PR_SET_PDEATHSIG ends a
  // worker when the thread that spawned it exits. Signals are blocked on it (and so on the feed's thread it
  // starts): Ctrl-C stays the caller's. posix_spawn gives each worker an empty mask.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, &old);
  m_thread = std::make_unique<std::thread>([this, options = std::move(options)]() mutable { run(std::move(options)); });
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

PoolEngine::~PoolEngine() {
  if (m_forgotten) {
    std::ignore = m_thread.release();  // a thread of the parent process: not ours to join
    std::ignore = m_wake.release();
    return;
  }
  terminate();
  if (m_thread && m_thread->joinable()) m_thread->join();
}

void PoolEngine::run(EngineOptions options) {
  Handler handler(*this);
  RunSummary summary = run_engine(
      options,
      [this](std::function<void()> notify) {
        return std::make_unique<TaskFeed>(k_feed_capacity, [this](TaskFeed::Sink& sink) { return produce(sink); },
                                          std::move(notify));
      },
      handler);
  handler.flush();
  {
    // The engine may end on its own (no worker could be started, or they kept dying): what is still
    // submitted ends not started, and nothing more is taken.
    std::lock_guard lock(m_mutex);
    m_input_closed = true;
    for (PoolTask& t : m_input) {
      PoolResult r;
      r.id = t.id;
      r.error_json = dump_json(json{{"type", "not_started"}, {"message", "the pool's engine stopped before the task started"}});
      m_results.push_back(std::move(r));
    }
    m_input.clear();
    m_summary = std::move(summary);
    m_engine_done = true;
  }
  m_results_ready.notify_all();
  m_ended_cv.notify_all();
}

std::optional<std::string> PoolEngine::produce(TaskFeed::Sink& sink) {
  std::deque<PoolTask> taken;
  for (;;) {
    {
      std::unique_lock lock(m_mutex);
      if (m_input.empty() && m_input_closed) return std::nullopt;
      if (m_input.empty()) m_producer_waiting = true;
      else taken.swap(m_input);
    }
    if (taken.empty()) {
      // Sleep until a submit or close wakes us, or the engine stops the feed.
      pollfd fds[2] = {{m_wake.get(), POLLIN, 0}, {sink.stop_fd(), POLLIN, 0}};
      while (::poll(fds, 2, -1) < 0 && errno == EINTR) {
      }
      std::uint64_t count = 0;
      std::ignore = ::read(m_wake.get(), &count, sizeof count);
      if (fds[1].revents) return std::nullopt;
      std::unique_lock lock(m_mutex);
      m_producer_waiting = false;
      if (m_input.empty() && m_input_closed) return std::nullopt;
      continue;
    }
    bool closed_after = false;
    for (PoolTask& t : taken) {
      BatchTask task;
      task.number = t.id;
      task.id = t.id;
      task.fn = std::move(t.fn);
      task.args_json = std::move(t.args_json);
      task.attachment = std::move(t.attachment);
      task.timeout_s = t.timeout_s;
      if (!sink.emit(std::move(task))) return std::nullopt;
    }
    taken.clear();
    {
      std::lock_guard lock(m_mutex);
      closed_after = m_input_closed && m_input.empty();
    }
    if (closed_after) return std::nullopt;
  }
}

bool PoolEngine::submit(std::vector<PoolTask> tasks) {
  bool wake = false;
  {
    std::lock_guard lock(m_mutex);
    if (m_input_closed) return false;
    for (auto& t : tasks) m_input.push_back(std::move(t));
    wake = std::exchange(m_producer_waiting, false);
  }
  if (wake) wake_producer();
  return true;
}

std::vector<PoolResult> PoolEngine::collect(std::optional<double> timeout_s, std::size_t max) {
  std::unique_lock lock(m_mutex);
  auto ready = [this] { return !m_results.empty() || m_engine_done; };
  if (timeout_s) {
    m_results_ready.wait_for(lock, std::chrono::duration<double>(*timeout_s), ready);
  } else {
    m_results_ready.wait(lock, ready);
  }
  std::vector<PoolResult> out;
  while (!m_results.empty() && out.size() < max) {
    out.push_back(std::move(m_results.front()));
    m_results.pop_front();
  }
  return out;
}

void PoolEngine::close() {
  bool wake = false;
  {
    std::lock_guard lock(m_mutex);
    if (m_input_closed) return;
    m_input_closed = true;
    wake = std::exchange(m_producer_waiting, false);
  }
  if (wake) wake_producer();
}

void PoolEngine::wake_producer() {
  const std::uint64_t one = 1;
  std::ignore = ::write(m_wake.get(), &one, sizeof one);
}

void PoolEngine::terminate() {
  close();
  m_stop->request(true);
}

bool PoolEngine::join(std::optional<double> timeout_s) {
  {
    std::unique_lock lock(m_mutex);
    auto done = [this] { return m_engine_done; };
    if (timeout_s) {
      if (!m_ended_cv.wait_for(lock, std::chrono::duration<double>(*timeout_s), done)) return false;
    } else {
      m_ended_cv.wait(lock, done);
    }
  }
  if (m_thread && m_thread->joinable()) m_thread->join();
  return true;
}

bool PoolEngine::ended() {
  std::lock_guard lock(m_mutex);
  return m_engine_done && m_results.empty();
}

std::string PoolEngine::summary_json() {
  std::lock_guard lock(m_mutex);
  return dump_json(runner::summary_json(m_summary, 0, 0, 0));
}

void PoolEngine::forget() { m_forgotten = true; }

}  // namespace authrun::runner
