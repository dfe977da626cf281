// Incremental frame decoder.
#include "protocol/frame_reader.hpp"

#include <algorithm>
#include <cstring>

#include "protocol/limits.hpp"

namespace authrun::protocol {

FrameReader::FrameReader(std::uint32_t max_payload) : m_buf(limits::read_buffer_size), m_max_payload(max_payload) {}

std::span<std::uint8_t> FrameReader::read_space() {
  if (m_large) {
    if (m_large_filled == m_large->payload.size() && m_large_filled < m_large_total) {
      std::string& p = m_large->payload;
      if (p.capacity() > p.size()) {
        // Storage already held (a reused buffer): use it before growing.
        p.resize(std::min(m_large_total, p.capacity()));
      } else {
        // Grow as the bytes arrive (doubling, so each byte is copied about once more): a peer that announces
        // a large frame and sends little costs little.
        p.resize(std::min(m_large_total, 2 * p.size()));
      }
    }
    auto* p = reinterpret_cast<std::uint8_t*>(m_large->payload.data());
    return {p + m_large_filled, m_large->payload.size() - m_large_filled};
  }
  if (m_end == m_buf.size()) {
    // Only the start of a frame that fits the buffer is here: move it to the front.
    std::memmove(m_buf.data(), m_buf.data() + m_begin, m_end - m_begin);
    m_end -= m_begin;
    m_begin = 0;
  }
  return {m_buf.data() + m_end, m_buf.size() - m_end};
}

void FrameReader::offer_storage(std::string&& spare) {
  if (spare.capacity() > m_spare.capacity()) m_spare = std::move(spare);
}

std::span<std::uint8_t> FrameReader::take_fresh_payload() {
  if (!m_large) return {};
  const std::size_t end = std::min<std::size_t>(m_large_filled, m_large->header.length);
  if (end <= m_large_taken) return {};
  auto* p = reinterpret_cast<std::uint8_t*>(m_large->payload.data());
  std::span<std::uint8_t> fresh(p + m_large_taken, end - m_large_taken);
  m_large_taken = end;
  return fresh;
}

void FrameReader::commit(std::size_t n) {
  if (m_large) {
    m_large_filled += n;
  } else {
    m_end += n;
  }
}

namespace {

// Moves the trailing tag out of `frame.payload` (which holds payload + tag).
void split_tag(Frame& frame, std::size_t tag_size) {
  if (tag_size == 0) return;
  std::size_t n = frame.header.length;
  std::memcpy(frame.tag.data(), frame.payload.data() + n, tag_size);
  frame.payload.resize(n);
}

}  // namespace

Result<std::optional<Frame>> FrameReader::next() {
  if (m_large) {
    if (m_large_filled < m_large_total) return std::optional<Frame>{};
    Frame done = std::move(*m_large);
    m_large.reset();
    m_large_filled = 0;
    split_tag(done, done.header.type >= k_first_data_type ? m_tag_size : 0);
    return std::optional<Frame>{std::move(done)};
  }
  std::size_t avail = m_end - m_begin;
  if (avail < k_header_size) {
    if (m_begin == m_end) m_begin = m_end = 0;
    // Bytes that cannot start a frame fail now, not once a whole header has arrived: a short banner
    // followed by silence is reported at once instead of at the handshake deadline.
    for (std::size_t i = 0; i < avail && i < k_frame_magic.size(); ++i) {
      if (m_buf[m_begin + i] != k_frame_magic[i]) {
        return make_error(ErrorCode::bad_magic, "not an authrun frame: the first bytes are not \"ARUN\"");
      }
    }
    return std::optional<Frame>{};
  }
  const std::uint8_t* start = m_buf.data() + m_begin;
  AUTHRUN_TRY_ASSIGN(FrameHeader h, decode_header(std::span<const std::uint8_t, k_header_size>(start, k_header_size),
                                                  m_max_payload));
  const std::size_t tag_size = h.type >= k_first_data_type ? m_tag_size : 0;
  std::size_t body = std::size_t(h.length) + tag_size;
  Frame frame;
  frame.header = h;
  std::copy(start, start + k_header_size, frame.header_bytes.begin());
  if (avail >= k_header_size + body) {
    frame.payload.assign(reinterpret_cast<const char*>(start + k_header_size), body);
    m_begin += k_header_size + body;
    if (m_begin == m_end) m_begin = m_end = 0;
    split_tag(frame, tag_size);
    return std::optional<Frame>{std::move(frame)};
  }
  if (k_header_size + body <= m_buf.size() / 2) return std::optional<Frame>{};  // wait; read_space compacts
  // Large frame (within the limit checked above): storage for what has come and a first step, grown by
  // read_space as more arrives, never before.
  std::size_t have = avail - k_header_size;
  if (m_spare.capacity() >= limits::read_buffer_size && body > m_spare.capacity() / 2) {
    // A spare this frame fills more than half of: no fresh pages (and no zero-filling) for what it holds.
    frame.payload = std::move(m_spare);
    m_spare = std::string();
    frame.payload.resize(std::min(body, std::max(have, frame.payload.capacity())));
  } else {
    frame.payload.resize(std::min(body, std::max(have, limits::read_buffer_size)));
  }
  std::memcpy(frame.payload.data(), start + k_header_size, have);
  m_begin = m_end = 0;
  m_large = std::move(frame);
  m_large_filled = have;
  m_large_total = body;
  m_large_taken = 0;
  return std::optional<Frame>{};
}

}  // namespace authrun::protocol
