// The keep-alive thread.
#include "worker/keep_alive.hpp"

#include "worker/quiet_thread.hpp"

namespace authrun::worker {

KeepAlive::KeepAlive(std::function<protocol::Result<void>()> tick)
    : m_tick(std::move(tick)), m_thread(start_quiet_thread([this] { run(); })) {}

KeepAlive::~KeepAlive() {
  {
    std::lock_guard lock(m_mutex);
    m_stop = true;
  }
  m_wake.notify_one();
  m_thread.join();
}

void KeepAlive::run() {
  std::unique_lock lock(m_mutex);
  for (;;) {
    if (m_wake.wait_for(lock, interval, [this] { return m_stop; })) return;
    lock.unlock();
    const bool ok = m_tick().has_value();  // a failed write is the task loop's to report
    lock.lock();
    if (!ok) return;
  }
}

}  // namespace authrun::worker
