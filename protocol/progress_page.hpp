// The progress page (PROTOCOL.md section 9.1): a small shared memory file the runner hands a worker it spawns,
// with its key, in which the worker marks the task it is running. After the worker's death the runner reads
// which task was running: the death is charged to that task, at no cost per task on the channel.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "protocol/fd.hpp"
#include "protocol/result.hpp"

namespace authrun::protocol {

// The page's size and its three little-endian 64-bit words (PROTOCOL.md section 9.1).
inline constexpr std::size_t k_progress_page_size = 64;
inline constexpr std::size_t k_progress_magic_at = 0;    // k_progress_magic once the worker has mapped the page
inline constexpr std::size_t k_progress_task_at = 8;     // the id of the task begun last
inline constexpr std::size_t k_progress_running_at = 16;  // 1 while that task runs, 0 otherwise
inline constexpr std::uint64_t k_progress_magic = 0x3130'4750'4e55'5241;  // "ARUNPG01" in little-endian bytes

// What the runner read from a dead worker's page. Untrusted: the worker wrote it.
struct ProgressSeen {
  bool kept = false;                     // the worker mapped the page and marked its tasks there
  std::optional<std::uint64_t> running;  // the task it was running when it ended, if any (only when kept)
};

// --- The runner's side ---

// A sealed memfd of k_progress_page_size zero bytes (O_CLOEXEC; it cannot shrink or grow, so a worker cannot
// make a reader fault), handed to one worker with its key.
class ProgressPage {
 public:
  // Errors: io (memfd_create, ftruncate or the seals failed).
  static Result<ProgressPage> create();
  int fd() const { return m_fd.get(); }
  // Reads the page (pread: nothing is mapped in the runner). Meaningful once the worker is gone.
  ProgressSeen read() const;

 private:
  explicit ProgressPage(Fd fd) : m_fd(std::move(fd)) {}
  Fd m_fd;
};

// --- The worker's side ---

// The page mapped in the worker, where the task loop marks each task's beginning and end: two stores to
// memory, no system call. Move-only; unmaps on destruction.
class ProgressMarker {
 public:
  // Maps `page` (the fd is closed after): it must be a sealed memfd (F_SEAL_SHRINK) of at least
  // k_progress_page_size bytes. Writes the magic word. The mapping is not inherited by a fork
  // (MADV_DONTFORK): only this process marks it. Errors: io, naming what the fd is not.
  static Result<ProgressMarker> map(Fd page);
  ProgressMarker(ProgressMarker&& other) noexcept;
  ProgressMarker& operator=(ProgressMarker&& other) noexcept;
  ProgressMarker(const ProgressMarker&) = delete;
  ProgressMarker& operator=(const ProgressMarker&) = delete;
  ~ProgressMarker();

  // The task `id` begins (its id, then the running word, each a release store).
  void begin(std::uint64_t id);
  // The task begun last has ended (its function returned): nothing runs now.
  void end();

 private:
  explicit ProgressMarker(void* base) : m_base(base) {}
  void* m_base = nullptr;
};

}  // namespace authrun::protocol
