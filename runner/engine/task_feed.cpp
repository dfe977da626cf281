// Bounded task queue with a producer thread.
#include "runner/engine/task_feed.hpp"

#include <unistd.h>

#include <algorithm>

namespace authrun::runner {

bool TaskFeed::Sink::emit(BatchTask task) { return m_feed.push(std::move(task)); }

std::string TaskFeed::Sink::spare() {
  if (m_spares.empty()) {
    std::lock_guard lock(m_feed.m_mutex);
    m_feed.m_wants_spares = true;
    m_spares.swap(m_feed.m_spares);  // the whole pool: one lock for many tasks
  }
  std::string s;
  if (!m_spares.empty()) {
    s = std::move(m_spares.back());
    m_spares.pop_back();
    s.clear();
  }
  return s;
}

int TaskFeed::Sink::stop_fd() const { return m_feed.m_stop_read.get(); }

TaskFeed::TaskFeed(std::size_t capacity, Producer producer, std::function<void()> notify)
    : m_capacity(std::max<std::size_t>(capacity, 1)), m_notify(std::move(notify)), m_ring(m_capacity) {
  auto p = protocol::make_pipe();
  if (p) {
    m_stop_read = std::move(p->read);
    m_stop_write = std::move(p->write);
  }
  m_thread = std::thread([this, producer = std::move(producer)] {
    Sink sink(*this);
    std::optional<std::string> error = producer(sink);
    {
      std::lock_guard lock(m_mutex);
      m_error = std::move(error);
      m_cut = m_stopping;
      m_ended = true;
    }
    m_notify();
  });
}

TaskFeed::~TaskFeed() {
  stop();
  if (m_thread.joinable()) m_thread.join();
}

void TaskFeed::stop() {
  {
    std::lock_guard lock(m_mutex);
    if (m_stopping) return;
    m_stopping = true;
  }
  m_not_full.notify_all();
  if (m_stop_write.valid()) {
    char c = 1;
    std::ignore = ::write(m_stop_write.get(), &c, 1);
  }
}

bool TaskFeed::push(BatchTask task) {
  bool was_empty = false;
  {
    std::unique_lock lock(m_mutex);
    if (m_count >= m_capacity) {
      // Full: wait until the consumer has taken half (try_pop_batch), or any task (try_pop).
      m_not_full.wait(lock, [&] { return m_count < m_capacity || m_stopping; });
    }
    if (m_stopping) return false;
    task.seq = m_next_seq++;
    was_empty = m_count == 0;
    m_ring[(m_head + m_count) % m_capacity] = std::move(task);
    ++m_count;
  }
  if (was_empty) m_notify();
  return true;
}

BatchTask TaskFeed::take_front_locked() {
  BatchTask t = std::move(m_ring[m_head]);
  m_head = (m_head + 1) % m_capacity;
  --m_count;
  return t;
}

std::optional<BatchTask> TaskFeed::try_pop() {
  std::optional<BatchTask> t;
  {
    std::lock_guard lock(m_mutex);
    if (m_count == 0) return t;
    t = take_front_locked();
  }
  m_not_full.notify_one();
  return t;
}

std::size_t TaskFeed::try_pop_batch(std::deque<BatchTask>& out, std::size_t max) {
  std::size_t n = 0;
  std::size_t left = 0;
  {
    std::lock_guard lock(m_mutex);
    for (; n < max && m_count > 0; ++n) out.push_back(take_front_locked());
    left = m_count;
  }
  // The producer is woken once the queue is down to half (not for every batch taken): it then refills half
  // the queue in one go, instead of one batch per wake-up.
  if (n && left <= m_capacity / 2) m_not_full.notify_one();
  return n;
}

void TaskFeed::recycle(std::vector<std::string>& spent) {
  {
    std::lock_guard lock(m_mutex);
    for (std::string& s : spent) {
      if (!m_wants_spares || m_spares.size() >= k_max_spares) break;
      // A string short enough to live in itself (SSO) has no buffer to give.
      if (s.capacity() > std::string().capacity() && s.capacity() <= k_max_spare_bytes) m_spares.push_back(std::move(s));
    }
  }
  spent.clear();  // what was not kept is freed here, outside the lock
}

bool TaskFeed::finished() {
  std::lock_guard lock(m_mutex);
  return m_ended && m_count == 0;
}

bool TaskFeed::input_complete() {
  std::lock_guard lock(m_mutex);
  return m_ended && !m_cut && !m_error;
}

std::uint64_t TaskFeed::produced() {
  std::lock_guard lock(m_mutex);
  return m_next_seq;
}

std::optional<std::string> TaskFeed::error() {
  std::lock_guard lock(m_mutex);
  return m_error;
}

}  // namespace authrun::runner
