// Held results and their watchdog.
#include "worker/held_results.hpp"

#include "protocol/json_codec.hpp"
#include "protocol/limits.hpp"
#include "worker/quiet_thread.hpp"

namespace authrun::worker {

using namespace protocol;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::string_view k_open = "{\"results\":[";
constexpr std::string_view k_close = "]}";

}  // namespace

HeldResults::HeldResults(Channel& channel, bool write_before_task)
    : m_channel(channel), m_write_before_task(write_before_task) {}

HeldResults::~HeldResults() {
  {
    std::lock_guard lock(m_mutex);
    m_stop = true;
  }
  m_wake.notify_one();
  if (m_watcher.joinable()) m_watcher.join();
}

Result<void> HeldResults::add(TaskResult result) {
  std::lock_guard lock(m_mutex);
  m_in_task = false;
  if (m_failed) return *m_failed;
  if (!m_watcher.joinable()) m_watcher = start_quiet_thread([this] { watch(); });
  if (!result.attachment.empty() || result.format != BodyFormat::json) {
    // Bytes returned (a function that set its attachment): they go raw, in a result frame of their own.
    mark_held();
    return queue_alone_locked(std::move(result));
  }
  const std::size_t limit = m_channel.connection().session().peer_max_payload;
  std::string entry = encode_body(result);
  if (k_open.size() + entry.size() + k_close.size() > limit) {
    TaskResult too_large(result.id, false, nullptr,
                         TaskError{"result_too_large",
                                   "result of " + std::to_string(entry.size()) + " bytes exceeds the peer's limit of " +
                                       std::to_string(limit),
                                   nullptr});
    entry = encode_body(too_large);
  }
  if (m_count == limits::max_batch_entries || (m_count > 0 && m_body.size() + 1 + entry.size() + k_close.size() > limit)) {
    AUTHRUN_TRY(queue_locked());
  }
  if (m_count == 0) {
    mark_held();
    m_body = k_open;
  } else {
    m_body += ',';
  }
  m_body += entry;
  ++m_count;
  return {};
}

void HeldResults::mark_held() {
  if (m_count == 0 && m_channel.connection().output().empty()) m_held_since = Clock::now();
}

Result<void> HeldResults::queue() {
  std::lock_guard lock(m_mutex);
  if (m_failed) return *m_failed;
  return queue_locked();
}

Result<void> HeldResults::queue_locked() {
  if (m_count == 0) return {};
  m_body += k_close;
  m_count = 0;
  return m_channel.connection().send_body(MessageType::result_batch, std::exchange(m_body, std::string()));
}

Result<void> HeldResults::queue_alone_locked(TaskResult result) {
  AUTHRUN_TRY(queue_locked());
  const std::uint64_t id = result.id;
  const BodyFormat format = result.format;
  auto queued = m_channel.connection().send(std::move(result), format);
  if (!queued && queued.error().code == ErrorCode::frame_too_large) {
    queued = m_channel.connection().send(
        TaskResult(id, false, nullptr, TaskError{"result_too_large", queued.error().message, nullptr}));
  }
  return queued;
}

Result<void> HeldResults::send_alone(TaskResult result) {
  std::lock_guard lock(m_mutex);
  m_in_task = false;
  if (m_failed) return *m_failed;
  AUTHRUN_TRY(queue_alone_locked(std::move(result)));
  return write_locked();
}

Result<void> HeldResults::write_locked() { return m_channel.flush(no_deadline()); }

void HeldResults::begin_task() {
  std::lock_guard lock(m_mutex);
  if (m_write_before_task && !m_failed && (m_count > 0 || !m_channel.connection().output().empty())) {
    auto sent = queue_locked();
    if (sent) sent = write_locked();
    if (!sent) m_failed = std::move(sent).error();
  }
  m_in_task = true;
  ++m_begun;
  if (m_watcher_idle && (m_count > 0 || !m_channel.connection().output().empty())) m_wake.notify_one();
}

Result<void> HeldResults::send_now(Message message) {
  std::lock_guard lock(m_mutex);
  if (m_failed) return *m_failed;
  AUTHRUN_TRY(queue_locked());
  return m_channel.send(std::move(message));
}

Result<void> HeldResults::keep_alive() {
  std::lock_guard lock(m_mutex);
  if (m_failed) return *m_failed;
  if (!m_in_task) return {};
  AUTHRUN_TRY(queue_locked());
  if (auto sent = m_channel.send(KeepAlive{}); !sent) {
    m_failed = sent.error();
    return sent;
  }
  return {};
}

void HeldResults::watch() {
  std::unique_lock lock(m_mutex);
  // Only while a task runs (m_in_task) is the channel ours to touch: the task loop then waits for the lock
  // before it uses the channel again.
  auto holding = [this] { return m_in_task && (m_count > 0 || !m_channel.connection().output().empty()); };
  std::uint64_t begun_seen = m_begun;
  for (;;) {
    if (m_stop) return;
    if (holding()) {
      const auto due = m_held_since + max_hold;
      if (Clock::now() < due) {
        m_wake.wait_until(lock, due, [this] { return m_stop; });
        continue;
      }
      auto sent = queue_locked();
      if (sent) sent = write_locked();
      if (!sent) {
        m_failed = std::move(sent).error();
        return;
      }
      continue;
    }
    if (m_begun != begun_seen) {
      // Tasks keep coming: look again after max_hold (a result held meanwhile is still sent max_hold after it
      // was held) instead of being woken by begin_task, which would cost the task loop a futex call and this
      // thread a wake-up for every batch.
      begun_seen = m_begun;
      m_wake.wait_for(lock, max_hold, [this] { return m_stop; });
      continue;
    }
    // No task began since the last look: sleep until begin_task wakes us.
    m_watcher_idle = true;
    m_wake.wait(lock, [&] { return m_stop || holding(); });
    m_watcher_idle = false;
    begun_seen = m_begun;
  }
}

}  // namespace authrun::worker
