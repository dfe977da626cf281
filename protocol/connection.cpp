// One end of a channel, without I/O.
#include "protocol/connection.hpp"

#include <cassert>
#include <cstdio>

#include "protocol/json_codec.hpp"
#include "protocol/limits.hpp"
#include "protocol/peer_text.hpp"

namespace authrun::protocol {

Connection::Connection(const RunKey& key, HandshakeConfig config, Ephemeral ephemeral)
    : m_reader(limits::pre_auth_max_payload),
      m_handshake(key, config, std::move(ephemeral)),
      m_own_max_payload(config.max_payload),
      m_role(config.role) {
  const OutFrame& hello = m_handshake.hello();
  m_writer.push(hello.header, hello.payload, {});
}

std::span<std::uint8_t> Connection::read_space() {
  if (std::string spent = m_writer.take_spent(); spent.capacity() > 0) m_reader.offer_storage(std::move(spent));
  return m_reader.read_space();
}

void Connection::commit(std::size_t n) {
  m_reader.commit(n);
  check_arriving();
}

void Connection::check_arriving() {
  if (!m_session || m_failed) return;
  const Frame* large = m_reader.large_frame();
  if (large == nullptr || is_handshake_type(large->header.type)) return;
  FrameProtector& rx = m_session->rx;
  if (!rx.opening()) rx.begin_open(large->header_bytes);
  if (auto fresh = m_reader.take_fresh_payload(); !fresh.empty()) rx.update_open(fresh);
}

Error Connection::fail(Error error) {
  if (!m_failed && error.code != ErrorCode::peer_refused && error.code != ErrorCode::program_failed) {
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

namespace {

// The first bytes of a stream that is not ours, quoted readably (a shell banner, an error message).
std::string quote_start(std::span<const std::uint8_t> bytes) {
  std::string out = "\"";
  out += escape_peer_text(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), 48);
  out += '"';
  return out;
}

}  // namespace

Result<std::optional<Message>> Connection::receive_one() {
  for (;;) {
    auto next = m_reader.next();
    if (!next && next.error().code == ErrorCode::bad_magic && !m_session) {
      return make_error(ErrorCode::bad_magic, "peer does not speak the authrun protocol: its output starts with " +
                                                  quote_start(m_reader.buffered()) +
                                                  "; is the channel clean? Something printed to its stdout before the "
                                                  "protocol began (a shell start-up file such as ~/.bashrc, a login "
                                                  "banner, the launcher itself), or the program is not an authrun worker");
    }
    AUTHRUN_TRY_ASSIGN(std::optional<Frame> frame, std::move(next));
    if (!frame) {
      check_arriving();  // a large frame may have just begun
      return std::optional<Message>{};
    }
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
    if (type == static_cast<std::uint8_t>(MessageType::outcome)) {
      // The peer rejected our proof after we had accepted its own: it says why, then closes.
      auto msg = decode_message(type, frame->payload);
      if (msg) {
        if (auto* outcome = std::get_if<Outcome>(&*msg)) {
          return make_error(ErrorCode::peer_refused, "peer refused the handshake: " + escape_peer_text(outcome->reason) + ": " +
                                                             escape_peer_text(outcome->message));
        }
      }
    }
    if (is_handshake_type(type)) {
      return make_error(ErrorCode::unexpected,
                        std::string("unexpected ") + to_string(static_cast<MessageType>(type)) + " after the handshake");
    }
    if (m_session->rx.opening()) {
      AUTHRUN_TRY(m_session->rx.finish_open(frame->tag));  // checked as it arrived
    } else {
      AUTHRUN_TRY(m_session->rx.open(frame->header_bytes, frame->payload, frame->tag));
    }
    AUTHRUN_TRY_ASSIGN(Message msg, decode_frame(frame->header, std::move(frame->payload), m_values_as_text, m_args_as_text));
    ++m_frames_received;
    if (auto* e = std::get_if<ProtocolError>(&msg)) {
      // A Python worker whose modules failed to import: the run stops (retrying cannot help).
      if (e->code == to_string(ErrorCode::program_failed)) {
        return make_error(ErrorCode::program_failed, escape_peer_text(e->message));
      }
      return make_error(ErrorCode::peer_refused, "peer closed the channel: " + escape_peer_text(e->code) + ": " +
                                                           escape_peer_text(e->message));
    }
    if (auto* info = std::get_if<WorkerInfo>(&msg)) {
      if (m_role != Role::parent || m_peer_info) return make_error(ErrorCode::unexpected, "unexpected worker_info message");
      m_peer_info = std::move(*info);
      continue;
    }
    if (std::holds_alternative<KeepAlive>(msg)) {
      // Its arrival was the point (the worker is alive while a task runs); nothing to hand on.
      if (m_role != Role::parent) return make_error(ErrorCode::unexpected, "unexpected keepalive message");
      continue;
    }
    return std::optional<Message>{std::move(msg)};
  }
}

Result<void> Connection::send(Message message, BodyFormat format) {
  Attachment attachment;
  if (auto* task = std::get_if<Task>(&message)) attachment = std::move(task->attachment);
  if (auto* result = std::get_if<TaskResult>(&message)) attachment = std::move(result->attachment);
  if (auto* output = std::get_if<Output>(&message)) attachment = std::move(output->data);
  std::uint16_t flags = static_cast<std::uint16_t>(format);
  if (!attachment.empty()) flags |= k_flag_attachment;
  return send_frame(type_of(message), flags, encode_body(message, format), std::move(attachment));
}

Result<void> Connection::send_body(MessageType type, std::string body, BodyFormat format, Attachment attachment) {
  std::uint16_t flags = static_cast<std::uint16_t>(format);
  if (!attachment.empty()) flags |= k_flag_attachment;
  return send_frame(type, flags, std::move(body), std::move(attachment));
}

Result<void> Connection::send_frame(MessageType type, std::uint16_t flags, std::string body, Attachment attachment) {
  assert(m_session && !is_handshake_type(static_cast<std::uint8_t>(type)));
  const bool attached = (flags & k_flag_attachment) != 0;
  const std::size_t size = attached ? 4 + body.size() + attachment.size() : body.size();
  if (size > m_session->peer_max_payload) {
    return make_error(ErrorCode::frame_too_large, std::string(to_string(type)) + " of " + std::to_string(size) +
                                                      " bytes exceeds the peer's limit of " +
                                                      std::to_string(m_session->peer_max_payload));
  }
  HeaderBytes header = encode_header(FrameHeader{static_cast<std::uint8_t>(type), flags, static_cast<std::uint32_t>(size)});
  FrameProtector& tx = m_session->tx;
  const bool keyed = tx.tag_size() != 0;
  if (!attached && (!keyed || body.size() < limits::zero_copy_threshold)) {
    Tag tag = tx.seal(header, body);
    m_writer.push(header, std::move(body), std::span<const std::uint8_t>(tag.data(), tx.tag_size()));
    return {};
  }
  if (!attached) {
    // A large body is sealed as it is written (see FrameWriter::push_sealing), as an attachment is below.
    m_writer.push_sealing(header, std::move(body), std::string(), 0, tx.begin_seal(header), tx.tag_size());
    return {};
  }
  std::string first(4, '\0');
  store_le32(reinterpret_cast<std::uint8_t*>(first.data()), static_cast<std::uint32_t>(body.size()));
  first += body;
  if (!keyed) {
    m_writer.push(header, std::move(first), std::move(attachment.storage), attachment.offset, {});
    return {};
  }
  // Sealed in two parts, in place, piece by piece as they are written: the attachment is never copied,
  // and its sealing overlaps the peer's reading of the pieces before.
  m_writer.push_sealing(header, std::move(first), std::move(attachment.storage), attachment.offset, tx.begin_seal(header),
                        tx.tag_size());
  return {};
}

Error Connection::end_of_input() const {
  if (m_reader.mid_frame()) return make_error(ErrorCode::truncated, "peer closed the channel inside a frame");
  if (!m_session) return make_error(ErrorCode::eof, "peer closed the channel during the handshake");
  return make_error(ErrorCode::eof, "peer closed the channel");
}

}  // namespace authrun::protocol
