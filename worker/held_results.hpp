// The results of a task_batch's tasks, held so that many go out in one result_batch frame and one write, and
// a watchdog thread that sends them when a result has waited about a millisecond while a task runs: a
// finished result never waits behind a long task. While tasks keep beginning the watchdog looks every
// millisecond; after a millisecond without one it sleeps until a task begins with a result held.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "protocol/channel.hpp"

namespace authrun::worker {

class HeldResults {
 public:
  // How long a finished result may wait before the watchdog sends it.
  static constexpr std::chrono::microseconds max_hold{1000};

  // Results go out on `channel`, which must outlive this. The watchdog thread starts with the first result.
  // `write_before_task`: begin_task writes whatever is held or queued first (a worker without a progress
  // page: a result is never held while a later task runs, PROTOCOL.md section 9.1).
  HeldResults(protocol::Channel& channel, bool write_before_task);
  // Stops the watchdog (what is still held is dropped: call queue() first).
  ~HeldResults();
  HeldResults(const HeldResults&) = delete;
  HeldResults& operator=(const HeldResults&) = delete;

  // Holds the result of the task that just ran, ending it. A result too large for the peer becomes a
  // result_too_large error. One with bytes (an attachment) is queued alone as a result frame, after what is
  // held. Errors: a failed write of the watchdog's, reported here.
  protocol::Result<void> add(protocol::TaskResult result);
  // Seals what is held into a result_batch frame queued on the channel, unwritten: the channel writes it
  // before it next waits for input, or the watchdog does while a task runs. Errors: as add().
  protocol::Result<void> queue();
  // Begins a task's function: until add() or send_alone() ends it, the watchdog may write (the task loop
  // is not using the channel then). With write_before_task, first writes what is held (a failed write is
  // reported by the next add() or send_alone()).
  void begin_task();
  // Sends a result in a result frame of its own (a task that came alone; one too large for the peer becomes a
  // result_too_large error), after what is held, and writes it all, ending the task.
  // Errors: as add(), and the write's.
  protocol::Result<void> send_alone(protocol::TaskResult result);
  // Sends a message from inside a task (its streamed output), after what is held, and writes it all.
  protocol::Result<void> send_now(protocol::Message message);
  // From another thread (worker/keep_alive): while a task runs, sends a keepalive message after what is held
  // and writes it all; otherwise nothing (the task loop owns the channel between tasks). Errors: as add().
  protocol::Result<void> keep_alive();

 private:
  // Starts the hold clock if nothing was held or queued unwritten before (the oldest result sets it).
  void mark_held();
  protocol::Result<void> queue_locked();
  protocol::Result<void> queue_alone_locked(protocol::TaskResult result);
  protocol::Result<void> write_locked();
  void watch();

  protocol::Channel& m_channel;
  const bool m_write_before_task;
  std::mutex m_mutex;
  std::condition_variable m_wake;
  std::string m_body;      // "{\"results\":[" and the entries so far, unclosed
  std::size_t m_count = 0;  // entries in m_body
  std::chrono::steady_clock::time_point m_held_since;  // when the oldest unwritten result was held
  bool m_in_task = false;
  std::uint64_t m_begun = 0;    // tasks begun: while it moves, the watchdog polls instead of being woken
  bool m_watcher_idle = false;  // the watchdog waits for begin_task to wake it
  bool m_stop = false;
  std::optional<protocol::Error> m_failed;
  std::thread m_watcher;
};

}  // namespace authrun::worker
