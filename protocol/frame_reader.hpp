// Incremental frame decoder: the caller reads bytes into read_space(), commits them, and takes complete
// frames from next(). No I/O here, so the blocking channel and the runner's event loop share it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "protocol/frame.hpp"
#include "protocol/result.hpp"

namespace authrun::protocol {

class FrameReader {
 public:
  // `max_payload` is checked against every header before anything is allocated for the frame; a frame's
  // storage then grows only as its bytes arrive.
  explicit FrameReader(std::uint32_t max_payload);

  // Changes the payload limit (the handshake raises it from the pre-auth limit).
  void set_max_payload(std::uint32_t max_payload) { m_max_payload = max_payload; }
  // From now on every data frame (type >= k_first_data_type) is followed by a k_tag_size tag.
  void expect_tags(bool on) { m_tag_size = on ? k_tag_size : 0; }

  // Where the next read should store bytes. Never empty. Small frames share one buffer, so one read can
  // bring several; a large payload is read straight into the frame's own storage, which grows (doubling)
  // as bytes arrive: an announced length is never allocated ahead of the data.
  std::span<std::uint8_t> read_space();
  // Records that `n` bytes were stored at the start of read_space().
  void commit(std::size_t n);

  // The next complete frame; nullopt if more bytes are needed. A bad header is an error and the reader
  // must not be used further.
  Result<std::optional<Frame>> next();

  // Gives the reader storage to reuse for the next large frame (a payload this side has finished with, such
  // as a sent attachment), so that receiving one does not fault in fresh zero-filled pages each time. It is
  // used only for a frame that needs more than half of it; one spare is kept (the larger).
  void offer_storage(std::string&& spare);

  // The large frame being filled in place, or nullptr: its header is known, its payload is arriving.
  const Frame* large_frame() const { return m_large ? &*m_large : nullptr; }
  // The payload bytes of the large frame that arrived since the last call (never its tag), for a caller
  // that checks a frame as it arrives. They may be changed in place (decrypted); they stay where they are
  // only until the next read_space().
  std::span<std::uint8_t> take_fresh_payload();

  // True when part of a frame has been read: end of input now means a truncated frame.
  bool mid_frame() const { return m_large.has_value() || m_end > m_begin; }
  // Bytes buffered but not yet returned as frames (the start of the stream, for error messages).
  std::span<const std::uint8_t> buffered() const { return {m_buf.data() + m_begin, m_end - m_begin}; }

 private:
  std::vector<std::uint8_t> m_buf;
  std::size_t m_begin = 0;  // first unconsumed byte in m_buf
  std::size_t m_end = 0;    // one past the last stored byte in m_buf
  std::uint32_t m_max_payload;
  std::size_t m_tag_size = 0;
  // A frame too large for m_buf, being filled in place: payload holds (the first part of) payload + tag.
  std::optional<Frame> m_large;
  std::size_t m_large_filled = 0;
  std::size_t m_large_total = 0;  // payload + tag bytes the header announced
  std::size_t m_large_taken = 0;  // payload bytes handed out by take_fresh_payload()
  std::string m_spare;            // storage offered for the next large frame
};

}  // namespace authrun::protocol
