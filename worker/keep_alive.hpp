// The worker's keep-alive (PROTOCOL.md, keepalive): a thread that, every interval, asks the task loop's
// HeldResults to send a keepalive message if a task is running, so that the runner can tell a long task from a
// stopped or hung worker. It wakes every interval whether or not a task runs (a wake-up of a few microseconds).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

#include "protocol/result.hpp"

namespace authrun::worker {

class KeepAlive {
 public:
  // How often a worker with a task running sends a frame; announced as worker_info's keepalive_ms.
  static constexpr std::chrono::milliseconds interval{250};

  // Starts the thread, which calls `tick` every interval until destroyed or until `tick` fails.
  explicit KeepAlive(std::function<protocol::Result<void>()> tick);
  // Stops the thread.
  ~KeepAlive();
  KeepAlive(const KeepAlive&) = delete;
  KeepAlive& operator=(const KeepAlive&) = delete;

 private:
  void run();

  std::function<protocol::Result<void>()> m_tick;
  std::mutex m_mutex;
  std::condition_variable m_wake;
  bool m_stop = false;
  std::thread m_thread;
};

}  // namespace authrun::worker
