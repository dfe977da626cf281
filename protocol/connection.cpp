// One end of a channel, without I/O.
#include "protocol/connection.hpp"

#include <cassert>

#include "protocol/json_codec.hpp"
#include "protocol/limits.hpp"

namespace authrun::protocol {

Connection::Connection(const RunKey& key, HandshakeConfig config, Ephemeral ephemeral)
    : m_reader(limits::pre_auth_max_payload),
      m_handshake(key, config, std::move(ephemeral)),
      m_own_max_payload(config.max_payload) {
  const OutFrame& hello = m_handshake.hello();
  m_writer.push(hello.header, hello.payload, {});
}

Error Connection::fail(Error error) {
  if (!m_failed && error.code != ErrorCode::peer_refused) {
    if (m_session) {
      std::ignore = send(ProtocolError{to_string(error.code), error.message.substr(0, 1000)});
    } else {
      OutFrame out = outcome_for(error);
      m_writer.push(out.header, std::move(out.payload), {});
    }
  }
  m_failed = true;
  return error;
}

Result<std::optional<Message>> Connection::receive() {
  if (m_failed) return make_error(ErrorCode::unexpected, "connection already failed");
  auto got = receive_one();
  if (!got) return fail(std::move(got).error());
  return got;
}

Result<std::optional<Message>> Connection::receive_one() {
  for (;;) {
    AUTHRUN_TRY_ASSIGN(std::optional<Frame> frame, m_reader.next());
    if (!frame) return std::optional<Message>{};
    const std::uint8_t type = frame->header.type;
    if (!m_session) {
      AUTHRUN_TRY_ASSIGN(std::optional<OutFrame> reply, m_handshake.on_frame(*frame));
      if (reply) m_writer.push(reply->header, std::move(reply->payload), {});
      if (m_handshake.done()) {
        m_session.emplace(m_handshake.take_session());
        m_reader.set_max_payload(m_own_max_payload);
        m_reader.expect_tags(m_session->rx.tag_size() != 0);
      }
      continue;
    }
    if (is_handshake_type(type)) {
      return make_error(ErrorCode::unexpected,
                        std::string("unexpected ") + to_string(static_cast<MessageType>(type)) + " after the handshake");
    }
    AUTHRUN_TRY(m_session->rx.open(frame->header_bytes, frame->payload, frame->tag));
    AUTHRUN_TRY_ASSIGN(Message msg, decode_message(type, frame->payload));
    if (auto* e = std::get_if<ProtocolError>(&msg)) {
      return make_error(ErrorCode::peer_refused, "peer closed the channel: " + e->code + ": " + e->message);
    }
    return std::optional<Message>{std::move(msg)};
  }
}

Result<void> Connection::send(const Message& message) { return send_body(type_of(message), encode_body(message)); }

Result<void> Connection::send_body(MessageType type, std::string payload) {
  assert(m_session && !is_handshake_type(static_cast<std::uint8_t>(type)));
  if (payload.size() > m_session->peer_max_payload) {
    return make_error(ErrorCode::frame_too_large, std::string(to_string(type)) + " of " + std::to_string(payload.size()) +
                                                      " bytes exceeds the peer's limit of " +
                                                      std::to_string(m_session->peer_max_payload));
  }
  HeaderBytes header =
      encode_header(FrameHeader{static_cast<std::uint8_t>(type), 0, static_cast<std::uint32_t>(payload.size())});
  Tag tag = m_session->tx.seal(header, payload);
  m_writer.push(header, std::move(payload), std::span<const std::uint8_t>(tag.data(), m_session->tx.tag_size()));
  return {};
}

Error Connection::end_of_input() const {
  if (m_reader.mid_frame()) return make_error(ErrorCode::truncated, "peer closed the channel inside a frame");
  if (!m_session) return make_error(ErrorCode::eof, "peer closed the channel during the handshake");
  return make_error(ErrorCode::eof, "peer closed the channel");
}

}  // namespace authrun::protocol
