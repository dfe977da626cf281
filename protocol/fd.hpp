// RAII file descriptor and the blocking, deadline-bounded reads and writes the worker and tests use.
// Every fd this project creates is O_CLOEXEC; only the ones handed to a child on purpose lose the flag.
#pragma once

#include <chrono>
#include <cstddef>
#include <span>
#include <utility>

#include "protocol/result.hpp"

struct iovec;

namespace authrun::protocol {

using Clock = std::chrono::steady_clock;

// Owns one fd; closes it on destruction. Move-only.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : m_fd(fd) {}
  Fd(Fd&& other) noexcept : m_fd(std::exchange(other.m_fd, -1)) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { close(); }

  int get() const { return m_fd; }
  bool valid() const { return m_fd >= 0; }
  // Gives up ownership and returns the fd.
  int release() { return std::exchange(m_fd, -1); }
  // Closes now (no-op if not valid).
  void close();

 private:
  int m_fd = -1;
};

// A pipe's two ends, both O_CLOEXEC.
struct Pipe {
  Fd read;
  Fd write;
};

// Creates a pipe with O_CLOEXEC on both ends.
Result<Pipe> make_pipe();

// Creates a connected pair of Unix stream sockets, both O_CLOEXEC: `read` and `write` are the two ends.
// Unlike a pipe, a socket cannot be opened by another process through /proc/PID/fd/N, which is why keys
// travel this way.
Result<Pipe> make_socket_pair();

// Sets or clears O_NONBLOCK.
Result<void> set_nonblocking(int fd, bool on);

// Reads at least one byte (up to buf.size()) before `deadline`. Returns 0 at EOF.
// Errors: timeout, io. EINTR and EAGAIN are retried.
Result<std::size_t> read_some(int fd, std::span<std::byte> buf, Clock::time_point deadline);

// Reads exactly buf.size() bytes before `deadline`. Errors: eof (nothing read), truncated (EOF after some
// bytes), timeout, io.
Result<void> read_exact(int fd, std::span<std::byte> buf, Clock::time_point deadline);

// Writes some of `iov` (gathered) before `deadline`; returns the number of bytes written (> 0).
// Errors: timeout, io (EPIPE when the reader is gone).
Result<std::size_t> write_some(int fd, std::span<const iovec> iov, Clock::time_point deadline);

// Writes all of `buf` before `deadline`. Errors: timeout, io.
Result<void> write_all(int fd, std::span<const std::byte> buf, Clock::time_point deadline);

// A deadline far enough away to mean "no deadline".
inline Clock::time_point no_deadline() { return Clock::time_point::max(); }

// Converts a string to a byte span (no copy).
inline std::span<const std::byte> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace authrun::protocol
