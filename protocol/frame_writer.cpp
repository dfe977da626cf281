// Output queue of encoded frames.
#include "protocol/frame_writer.hpp"

#include <sys/uio.h>

#include "protocol/limits.hpp"

namespace authrun::protocol {

namespace {

// Written-out storage smaller than this goes back to the allocator (which recycles small blocks itself).
constexpr std::size_t k_worth_reusing = std::size_t(1) << 20;

}  // namespace

void FrameWriter::append_small(const void* data, std::size_t n) {
  if (n == 0) return;
  if (m_chunks.empty() || !m_chunks.back().coalescing || m_chunks.back().bytes.size() >= limits::read_buffer_size) {
    m_chunks.push_back(Chunk{std::string(), 0, true});
    m_chunks.back().bytes.reserve(limits::read_buffer_size);
  }
  m_chunks.back().bytes.append(static_cast<const char*>(data), n);
  m_pending += n;
}

void FrameWriter::append_part(std::string bytes, std::size_t offset) {
  const std::size_t n = bytes.size() - offset;
  if (n < limits::zero_copy_threshold) {
    append_small(bytes.data() + offset, n);
  } else {
    m_pending += n;
    m_chunks.push_back(Chunk{std::move(bytes), offset, false});
  }
}

void FrameWriter::push(const HeaderBytes& header, std::string payload, std::span<const std::uint8_t> tag) {
  append_small(header.data(), header.size());
  append_part(std::move(payload), 0);
  append_small(tag.data(), tag.size());
}

void FrameWriter::push(const HeaderBytes& header, std::string first, std::string second, std::size_t second_offset,
                       std::span<const std::uint8_t> tag) {
  append_small(header.data(), header.size());
  append_part(std::move(first), 0);
  append_part(std::move(second), second_offset);
  append_small(tag.data(), tag.size());
}

std::size_t FrameWriter::gather(std::span<iovec> out) {
  std::size_t used = 0;
  std::size_t offset = m_front_offset;
  for (Chunk& c : m_chunks) {
    if (used == out.size()) break;
    c.coalescing = false;  // an async write may hold pointers into it
    out[used].iov_base = const_cast<char*>(c.bytes.data() + c.begin + offset);
    out[used].iov_len = c.bytes.size() - c.begin - offset;
    ++used;
    offset = 0;
  }
  return used;
}

void FrameWriter::consume(std::size_t n) {
  m_pending -= n;
  while (n > 0) {
    Chunk& c = m_chunks.front();
    std::size_t left = c.bytes.size() - c.begin - m_front_offset;
    if (n < left) {
      m_front_offset += n;
      return;
    }
    n -= left;
    // Only a payload's own storage is worth keeping (a coalescing buffer is small).
    if (c.bytes.capacity() >= k_worth_reusing && c.bytes.capacity() > m_spent.capacity()) m_spent = std::move(c.bytes);
    m_chunks.pop_front();
    m_front_offset = 0;
  }
}

}  // namespace authrun::protocol
