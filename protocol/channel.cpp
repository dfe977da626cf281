// Blocking channel: drives a Connection with poll()-bounded reads and writes.
#include "protocol/channel.hpp"

#include <algorithm>
#include <chrono>

#include <sys/uio.h>

namespace authrun::protocol {

Channel::Channel(Fd in, Fd out, const RunKey& key, HandshakeConfig config, Ephemeral ephemeral)
    : m_in(std::move(in)), m_out(std::move(out)), m_connection(key, std::move(config), std::move(ephemeral)) {}

Result<void> Channel::flush(Clock::time_point deadline) {
  FrameWriter& out = m_connection.output();
  while (!out.empty()) {
    iovec iov[64];
    std::size_t n = out.gather(iov);
    AUTHRUN_TRY_ASSIGN(std::size_t written, write_some(m_out.get(), std::span<const iovec>(iov, n), deadline));
    out.consume(written);
  }
  return {};
}

Result<std::optional<Message>> Channel::step(Clock::time_point deadline) {
  const bool was_established = m_connection.established();
  auto got = m_connection.receive();
  if (!got) {
    // Tell the peer why (best effort, briefly), then report.
    std::ignore = flush(std::min(deadline, Clock::now() + std::chrono::milliseconds(200)));
    return std::move(got).error();
  }
  if (*got) return got;
  AUTHRUN_TRY(flush(deadline));
  // Just established: let handshake() return rather than wait for a message the peer need not send yet.
  if (!was_established && m_connection.established()) return got;
  auto space = m_connection.read_space();
  AUTHRUN_TRY_ASSIGN(std::size_t n, read_some(m_in.get(), std::as_writable_bytes(space), deadline));
  if (n == 0) return m_connection.end_of_input();
  m_connection.commit(n);
  return std::optional<Message>{};
}

Result<void> Channel::handshake(Clock::time_point deadline) {
  while (!m_connection.established()) {
    // A message that arrived right behind the peer's proof is kept for receive().
    AUTHRUN_TRY_ASSIGN(m_early, step(deadline));
  }
  return flush(deadline);
}

Result<Message> Channel::receive(Clock::time_point deadline) {
  if (m_early) return *std::exchange(m_early, std::nullopt);
  for (;;) {
    AUTHRUN_TRY_ASSIGN(std::optional<Message> msg, step(deadline));
    if (msg) return std::move(*msg);
  }
}

Result<void> Channel::send(Message message, Clock::time_point deadline, BodyFormat format) {
  AUTHRUN_TRY(m_connection.send(std::move(message), format));
  return flush(deadline);
}

}  // namespace authrun::protocol
