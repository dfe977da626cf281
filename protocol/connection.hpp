// One end of a channel, without I/O: the handshake, then protected messages. The caller moves bytes between
// the fds and read_space()/output(); the blocking Channel (worker, tests) and the runner's event loop both
// do so, so there is one implementation of the protocol's rules.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "protocol/frame_reader.hpp"
#include "protocol/frame_writer.hpp"
#include "protocol/handshake.hpp"
#include "protocol/message.hpp"
#include "protocol/result.hpp"

namespace authrun::protocol {

class Connection {
 public:
  // Queues this side's hello at once. `key` must outlive the Connection.
  Connection(const RunKey& key, HandshakeConfig config, Ephemeral ephemeral = Ephemeral::random());

  // Where to store received bytes, and how many were stored (see FrameReader). A large data frame is
  // checked (and decrypted) piece by piece as its bytes are committed, while they are in the cache; the
  // storage of a large payload this side has written out is reused for the next large frame received.
  std::span<std::uint8_t> read_space();
  void commit(std::size_t n);
  // Bytes waiting to be written to the peer.
  FrameWriter& output() { return m_writer; }

  // Processes buffered input: handshake frames are handled here (this side's proof is queued); returns the
  // next message received after the handshake, or nullopt when more input is needed. Every error is final:
  // the frame that tells the peer why (an outcome during the handshake, an error message after it) has
  // been queued, and the caller should flush output() and close. Errors: those of FrameReader::next,
  // Handshake::on_frame and decode_message, bad_mac, unexpected, peer_refused (the peer sent an error),
  // program_failed (the peer is a Python worker whose modules failed to load; the message says where).
  Result<std::optional<Message>> receive();

  // Successful results in result_batch messages keep their values as JSON text (see decode_frame), for a
  // receiver that passes them on unparsed.
  void set_values_as_text(bool on) { m_values_as_text = on; }
  // Tasks keep their args as JSON text (Task::args_json, see decode_frame), for a worker that parses them
  // itself.
  void set_args_as_text(bool on) { m_args_as_text = on; }

  // True once the peer's proof verified: data messages may be sent and will be accepted.
  bool established() const { return m_session.has_value(); }
  // The agreed terms; only when established().
  const Session& session() const { return *m_session; }

  // Queues a data message (task, result, error, shutdown) with its body in `format` and, for a task or
  // result, its attachment (moved, not copied; for an output message, its bytes); only when established(). Errors: frame_too_large when the
  // payload exceeds what the peer announced it accepts (nothing is queued).
  Result<void> send(Message message, BodyFormat format = BodyFormat::json);
  // The same for a body already encoded in `format` (the runner keeps a task's body for retries), with a task's
  // or result's `attachment` if it has one.
  Result<void> send_body(MessageType type, std::string body, BodyFormat format = BodyFormat::json,
                         Attachment attachment = {});

  // What the worker said about itself (its optional worker_info message; parent side only). receive()
  // takes that message in and does not return it; a second one, or one sent to a worker, is unexpected.
  const std::optional<WorkerInfo>& peer_info() const { return m_peer_info; }

  // Data frames received and accepted since the handshake, those receive() takes in itself (keepalive,
  // worker_info) included: a frame that arrived is a sign of life even when it carries nothing to hand on.
  std::uint64_t frames_received() const { return m_frames_received; }

  // Describes the end of input: eof if it fell between frames, truncated if inside one. Call at EOF.
  Error end_of_input() const;

 private:
  Result<std::optional<Message>> receive_one();
  Result<void> send_frame(MessageType type, std::uint16_t flags, std::string body, Attachment attachment);
  Error fail(Error error);
  // Feeds the newly arrived payload bytes of a large data frame to the receiving protector.
  void check_arriving();

  FrameReader m_reader;
  FrameWriter m_writer;
  Handshake m_handshake;
  std::uint32_t m_own_max_payload;
  Role m_role;
  std::optional<Session> m_session;
  std::optional<WorkerInfo> m_peer_info;
  std::uint64_t m_frames_received = 0;
  bool m_failed = false;
  bool m_values_as_text = false;
  bool m_args_as_text = false;
};

}  // namespace authrun::protocol
