// Run key generation, loading and wiping.
#include "protocol/run_key.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include "protocol/fd.hpp"

namespace authrun::protocol {

bool sodium_ready() {
  static const bool ok = ::sodium_init() >= 0;
  return ok;
}

RunKey::RunKey() {
  std::memset(m_bytes, 0, sizeof m_bytes);
  ::sodium_mlock(m_bytes, sizeof m_bytes);  // best effort: RLIMIT_MEMLOCK may forbid it
}

RunKey::~RunKey() {
  ::sodium_munlock(m_bytes, sizeof m_bytes);  // also wipes
  ::sodium_memzero(m_bytes, sizeof m_bytes);
}

RunKey::RunKey(RunKey&& other) noexcept : RunKey() {
  std::memcpy(m_bytes, other.m_bytes, sizeof m_bytes);
  ::sodium_memzero(other.m_bytes, sizeof other.m_bytes);
}

RunKey& RunKey::operator=(RunKey&& other) noexcept {
  if (this != &other) {
    std::memcpy(m_bytes, other.m_bytes, sizeof m_bytes);
    ::sodium_memzero(other.m_bytes, sizeof other.m_bytes);
  }
  return *this;
}

RunKey RunKey::generate() {
  sodium_ready();
  RunKey key;
  ::randombytes_buf(key.m_bytes, sizeof key.m_bytes);
  return key;
}

RunKey RunKey::from_bytes(std::span<const std::uint8_t, k_run_key_size> bytes) {
  RunKey key;
  std::memcpy(key.m_bytes, bytes.data(), k_run_key_size);
  return key;
}

Result<RunKey> RunKey::load_file(const std::string& path) {
  sodium_ready();
  auto fail = [&](const std::string& why) { return make_error(ErrorCode::key_invalid, "key file " + path + ": " + why); };
  // O_NONBLOCK: a FIFO (or a device) must be refused below, not block us in open() forever.
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd.valid()) return fail(std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail(std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return fail("not a regular file");
  if (st.st_uid != ::geteuid()) {
    return fail("owned by uid " + std::to_string(st.st_uid) + ", not by this user (uid " + std::to_string(::geteuid()) + ")");
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return fail(std::string("mode is ") + mode + "; it must not be readable by group or others (chmod 600 " + path + ")");
  }
  char text[2 * k_run_key_size + 2];
  std::size_t got = 0;
  while (got < sizeof text) {
    ssize_t n = ::read(fd.get(), text + got, sizeof text - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(std::strerror(errno));
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  std::size_t digits = got;
  if (digits > 0 && text[digits - 1] == '\n') --digits;
  RunKey key;
  std::size_t decoded = 0;
  bool ok = digits == 2 * k_run_key_size &&
            ::sodium_hex2bin(key.m_bytes, k_run_key_size, text, digits, nullptr, &decoded, nullptr) == 0 &&
            decoded == k_run_key_size;
  ::sodium_memzero(text, sizeof text);
  if (!ok) return fail("expected 64 hex digits and an optional newline (make one with 'authrun keygen')");
  return key;
}

Result<RunKey> RunKey::read_fd(int raw_fd) {
  sodium_ready();
  Fd fd(raw_fd);
  RunKey key;
  std::uint8_t extra = 0;
  auto got = read_exact(fd.get(), std::span<std::byte>(reinterpret_cast<std::byte*>(key.m_bytes), k_run_key_size),
                        Clock::now() + std::chrono::seconds(5));
  if (!got) {
    return make_error(ErrorCode::key_invalid, "key fd " + std::to_string(raw_fd) + ": " + got.error().message +
                                                  " (was the key read by another process?)");
  }
  auto more = read_some(fd.get(), std::span<std::byte>(reinterpret_cast<std::byte*>(&extra), 1), Clock::now());
  if (more && *more != 0) {
    return make_error(ErrorCode::key_invalid, "key fd " + std::to_string(raw_fd) + ": more than 32 bytes");
  }
  return key;
}

Result<RunKey> RunKey::read_to_end(int raw_fd, Clock::time_point deadline) {
  sodium_ready();
  Fd fd(raw_fd);
  RunKey key;
  auto got = read_exact(fd.get(), std::span<std::byte>(reinterpret_cast<std::byte*>(key.m_bytes), k_run_key_size), deadline);
  if (!got) return make_error(ErrorCode::key_invalid, "key socket: " + got.error().message);
  std::uint8_t extra = 0;
  auto more = read_some(fd.get(), std::span<std::byte>(reinterpret_cast<std::byte*>(&extra), 1), deadline);
  if (!more) return make_error(ErrorCode::key_invalid, "key socket: no end after the key: " + more.error().message);
  if (*more != 0) return make_error(ErrorCode::key_invalid, "key socket: more than 32 bytes");
  return key;
}

Result<RunKey> RunKey::request(int in_fd, int out_fd, Clock::time_point deadline) {
  sodium_ready();
  auto asked = write_all(out_fd, std::as_bytes(std::span(k_key_request.data(), k_key_request.size())), deadline);
  if (!asked) return make_error(ErrorCode::key_invalid, "asking for the key on stdout: " + asked.error().message);
  RunKey key;
  auto got = read_exact(in_fd, std::span<std::byte>(reinterpret_cast<std::byte*>(key.m_bytes), k_run_key_size), deadline);
  if (!got) return make_error(ErrorCode::key_invalid, "key on stdin: " + got.error().message);
  return key;
}

KeyRequestState key_request_state(std::span<const std::uint8_t> received) {
  const std::size_t n = std::min(received.size(), k_key_request.size());
  for (std::size_t i = 0; i < n; ++i) {
    if (received[i] != static_cast<std::uint8_t>(k_key_request[i])) return KeyRequestState::wrong;
  }
  if (received.size() < k_key_request.size()) return KeyRequestState::partial;
  return received.size() == k_key_request.size() ? KeyRequestState::complete : KeyRequestState::wrong;
}

Result<void> RunKey::write_file(const std::string& path) const {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return make_error(ErrorCode::key_invalid, "key file " + path + ": " + std::strerror(errno));
  char text[2 * k_run_key_size + 2];
  ::sodium_bin2hex(text, sizeof text, m_bytes, k_run_key_size);
  text[2 * k_run_key_size] = '\n';
  auto written = write_all(fd.get(), std::span<const std::byte>(reinterpret_cast<const std::byte*>(text), 2 * k_run_key_size + 1),
                           no_deadline());
  ::sodium_memzero(text, sizeof text);
  if (!written) return with_context(std::move(written).error(), "key file " + path);
  if (::fsync(fd.get()) != 0) return make_error(ErrorCode::io, "key file " + path + ": fsync: " + std::strerror(errno));
  return {};
}

}  // namespace authrun::protocol
