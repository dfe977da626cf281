// Output queue of encoded frames. Small frames are coalesced into one buffer (one write sends several);
// a large payload stays in the string it was built in and goes out by writev (no copy). A large payload
// may also be queued unsealed: it is then sealed piece by piece just before each piece is written, so that
// sealing overlaps the peer's reading and each piece is still in the cache when it is written.
#pragma once

#include <cstddef>
#include <deque>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "protocol/frame.hpp"
#include "protocol/frame_protector.hpp"

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

  // The same for a frame not yet sealed: its parts (`second` from `second_offset` on) are sealed by `seal`
  // in order, small ones at once, large ones piece by piece as gather() reaches them, and its tag
  // (`tag_size` bytes) follows them once the last is sealed. Frames pushed later go out after that tag,
  // whatever their own sealing. Takes ownership of both parts.
  void push_sealing(const HeaderBytes& header, std::string first, std::string second, std::size_t second_offset,
                    FrameSeal seal, std::size_t tag_size);

  // True when nothing is left to write.
  bool empty() const { return m_chunks.empty(); }
  // Bytes still to write.
  std::size_t pending_bytes() const { return m_pending; }
  // Fills `out` with the bytes ready to write, in order; returns how many entries were used (> 0 unless
  // empty()). First seals the next pieces of a frame queued unsealed, until some hundred KiB are ready.
  // The bytes given stay where they are, unchanged, until consume() passes them, even if more frames are
  // pushed or sealed meanwhile.
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
  // Seals pieces of the frames queued unsealed until `m_ready` reaches the target or all is sealed.
  void seal_ahead();

  struct Chunk {
    std::string bytes;
    std::size_t begin;  // bytes before this offset are not part of the stream
    bool coalescing;  // small-frame buffer that later small frames may be appended to (never once gathered)
    std::size_t sealed = std::string::npos;  // unsealed part or tag of m_seals.front(): bytes (from begin) ready
    bool tag = false;  // the tag of m_seals.front(), filled in once its last part is sealed
  };
  std::deque<Chunk> m_chunks;
  std::deque<FrameSeal> m_seals;  // frames queued unsealed, in queue order (empty: every byte is ready)
  std::size_t m_front_offset = 0;  // bytes of m_chunks.front() already written
  std::size_t m_pending = 0;
  std::string m_spent;  // the largest own chunk written out (see take_spent)
};

}  // namespace authrun::protocol
