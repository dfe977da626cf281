// Output queue of encoded frames. Small frames are coalesced into one buffer (one write sends several);
// a large payload stays in the string it was built in and goes out by writev (no copy).
#pragma once

#include <cstddef>
#include <deque>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "protocol/frame.hpp"

struct iovec;

namespace authrun::protocol {

class FrameWriter {
 public:
  // Queues header, payload and (if non-empty) tag. Takes ownership of the payload.
  void push(const HeaderBytes& header, std::string payload, std::span<const std::uint8_t> tag);
  // The same for a payload in two parts: `first`, then `second` from `second_offset` on (an attachment
  // that shares its storage with a received frame). Takes ownership of both.
  void push(const HeaderBytes& header, std::string first, std::string second, std::size_t second_offset,
            std::span<const std::uint8_t> tag);

  // True when nothing is left to write.
  bool empty() const { return m_chunks.empty(); }
  // Bytes still to write.
  std::size_t pending_bytes() const { return m_pending; }
  // Fills `out` with the bytes still to write, in order; returns how many entries were used. The bytes
  // stay where they are until consume() passes them, even if more frames are pushed meanwhile.
  std::size_t gather(std::span<iovec> out);
  // Records that `n` bytes from the front were written.
  void consume(std::size_t n);
  // The storage of the largest payload written out since the last call (empty if none): the connection
  // hands it to its reader for the next large frame instead of letting it go back to the allocator.
  std::string take_spent() { return std::exchange(m_spent, std::string()); }

 private:
  // Appends bytes to the last chunk if it is a coalescing buffer, else starts one.
  void append_small(const void* data, std::size_t n);

  // Queues a payload part: copied into the coalescing buffer if small, else kept as its own chunk.
  void append_part(std::string bytes, std::size_t offset);

  struct Chunk {
    std::string bytes;
    std::size_t begin;  // bytes before this offset are not part of the stream
    bool coalescing;  // small-frame buffer that later small frames may be appended to (never once gathered)
  };
  std::deque<Chunk> m_chunks;
  std::size_t m_front_offset = 0;  // bytes of m_chunks.front() already written
  std::size_t m_pending = 0;
  std::string m_spent;  // the largest own chunk written out (see take_spent)
};

}  // namespace authrun::protocol
