// Blocking fd helpers: poll() with a deadline, EINTR/EAGAIN handled here once.
#include "protocol/fd.hpp"

#include <cerrno>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

namespace authrun::protocol {

namespace {

Error errno_error(const char* what) {
  return make_error(ErrorCode::io, std::string(what) + ": " + std::strerror(errno));
}

// Waits until `fd` is ready for `events` or the deadline passes. A deadline already passed still gets one
// non-waiting poll, so data that is there is found.
Result<void> wait_ready(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    int timeout_ms = -1;
    bool last = false;
    if (deadline != Clock::time_point::max()) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
      last = left <= 0;
      timeout_ms = last ? 0 : left > 1'000'000'000 ? 1'000'000'000 : static_cast<int>(left);
    }
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, timeout_ms);
    if (n > 0) return {};
    if (n == 0 && last) return make_error(ErrorCode::timeout, "deadline passed");
    if (n == 0) continue;  // re-check the deadline
    if (errno != EINTR) return errno_error("poll");
  }
}

}  // namespace

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    close();
    m_fd = std::exchange(other.m_fd, -1);
  }
  return *this;
}

void Fd::close() {
  if (m_fd >= 0) ::close(std::exchange(m_fd, -1));
}

Result<Pipe> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return errno_error("pipe2");
  return Pipe{Fd(fds[0]), Fd(fds[1])};
}

Result<Pipe> make_socket_pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return errno_error("socketpair");
  return Pipe{Fd(fds[0]), Fd(fds[1])};
}

Result<void> set_nonblocking(int fd, bool on) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return errno_error("fcntl(F_GETFL)");
  flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (::fcntl(fd, F_SETFL, flags) != 0) return errno_error("fcntl(F_SETFL)");
  return {};
}

Result<std::size_t> read_some(int fd, std::span<std::byte> buf, Clock::time_point deadline) {
  for (;;) {
    // On a blocking fd read() would wait past the deadline: poll first whenever there is one.
    if (deadline != Clock::time_point::max()) AUTHRUN_TRY(wait_ready(fd, POLLIN, deadline));
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return errno_error("read");
    AUTHRUN_TRY(wait_ready(fd, POLLIN, deadline));
  }
}

Result<void> read_exact(int fd, std::span<std::byte> buf, Clock::time_point deadline) {
  std::size_t got = 0;
  while (got < buf.size()) {
    AUTHRUN_TRY_ASSIGN(std::size_t n, read_some(fd, buf.subspan(got), deadline));
    if (n == 0) {
      if (got == 0) return make_error(ErrorCode::eof, "end of input");
      return make_error(ErrorCode::truncated,
                        "end of input after " + std::to_string(got) + " of " + std::to_string(buf.size()) + " bytes");
    }
    got += n;
  }
  return {};
}

Result<std::size_t> write_some(int fd, std::span<const iovec> iov, Clock::time_point deadline) {
  for (;;) {
    ssize_t n = ::writev(fd, iov.data(), static_cast<int>(iov.size()));
    if (n > 0) return static_cast<std::size_t>(n);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return errno_error("write");
    AUTHRUN_TRY(wait_ready(fd, POLLOUT, deadline));
  }
}

Result<void> write_all(int fd, std::span<const std::byte> buf, Clock::time_point deadline) {
  while (!buf.empty()) {
    iovec v{const_cast<std::byte*>(buf.data()), buf.size()};
    AUTHRUN_TRY_ASSIGN(std::size_t n, write_some(fd, std::span<const iovec>(&v, 1), deadline));
    buf = buf.subspan(n);
  }
  return {};
}

}  // namespace authrun::protocol
