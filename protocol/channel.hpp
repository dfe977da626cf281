// A blocking channel over a read fd and a write fd: the worker's side of the protocol, and the tests'.
#pragma once

#include "protocol/connection.hpp"
#include "protocol/fd.hpp"

namespace authrun::protocol {

class Channel {
 public:
  // Takes ownership of both fds (they may be the same socket, passed twice after dup). `key` must outlive it.
  Channel(Fd in, Fd out, const RunKey& key, HandshakeConfig config, Ephemeral ephemeral = Ephemeral::random());

  // Runs the handshake to completion before `deadline`. On failure this side's outcome has been sent (best
  // effort) and the channel must be dropped. Errors: as Connection::receive, plus timeout, eof, io.
  Result<void> handshake(Clock::time_point deadline);

  // Flushes what is queued, then blocks for the next message before `deadline`. Errors: eof (clean end),
  // truncated, timeout, io, and those of Connection::receive (after which the channel is finished).
  Result<Message> receive(Clock::time_point deadline = no_deadline());

  // Queues a message (body in `format`, attachment moved) and writes everything queued before `deadline`.
  Result<void> send(Message message, Clock::time_point deadline = no_deadline(), BodyFormat format = BodyFormat::json);

  // Writes everything queued before `deadline`.
  Result<void> flush(Clock::time_point deadline);

  Connection& connection() { return m_connection; }
  int in_fd() const { return m_in.get(); }
  int out_fd() const { return m_out.get(); }

 private:
  // One step of input: returns a message, nullopt (handshake progress), or an error.
  Result<std::optional<Message>> step(Clock::time_point deadline);

  Fd m_in;
  Fd m_out;
  Connection m_connection;
  std::optional<Message> m_early;  // a message received in the same read as the peer's proof
};

}  // namespace authrun::protocol
