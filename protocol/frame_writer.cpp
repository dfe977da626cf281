// Output queue of encoded frames.
#include "protocol/frame_writer.hpp"

#include <algorithm>

#include <sys/uio.h>

#include "protocol/limits.hpp"

namespace authrun::protocol {

namespace {

// Written-out storage smaller than this goes back to the allocator (which recycles small blocks itself).
constexpr std::size_t k_worth_reusing = std::size_t(1) << 20;

// A frame queued unsealed is sealed in pieces of this size (small enough to stay in the cache between its
// sealing and its write), until this many bytes are ready to write.
constexpr std::size_t k_seal_piece = std::size_t(256) << 10;
constexpr std::size_t k_seal_ahead = std::size_t(256) << 10;

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

void FrameWriter::push_sealing(const HeaderBytes& header, std::string first, std::string second, std::size_t second_offset,
                               FrameSeal seal, std::size_t tag_size) {
  append_small(header.data(), header.size());
  bool waiting = false;  // a part of this frame waits to be sealed: the parts after it wait too
  auto add = [&](std::string bytes, std::size_t offset) {
    const std::size_t n = bytes.size() - offset;
    if (n == 0) return;
    if (!waiting && n < limits::zero_copy_threshold) {
      seal.update(std::span(reinterpret_cast<std::uint8_t*>(bytes.data()) + offset, n));
      append_small(bytes.data() + offset, n);
      return;
    }
    m_pending += n;
    m_chunks.push_back(Chunk{std::move(bytes), offset, false, 0});
    waiting = true;
  };
  add(std::move(first), 0);
  add(std::move(second), second_offset);
  if (!waiting) {
    const Tag tag = seal.finish();
    append_small(tag.data(), tag_size);
    return;
  }
  m_pending += tag_size;
  m_chunks.push_back(Chunk{std::string(tag_size, '\0'), 0, false, 0, true});
  m_seals.push_back(std::move(seal));
}

void FrameWriter::seal_ahead() {
  if (m_seals.empty()) return;
  // Bytes ready in front of the first chunk that is not.
  std::size_t ready = 0;
  std::size_t written = m_front_offset;
  auto it = m_chunks.begin();
  for (; it != m_chunks.end() && it->sealed == std::string::npos; ++it) {
    ready += it->bytes.size() - it->begin - written;
    written = 0;
  }
  while (ready < k_seal_ahead && it != m_chunks.end()) {
    Chunk& c = *it;
    if (c.sealed == std::string::npos) {
      ready += c.bytes.size() - c.begin - written;
    } else if (c.tag) {
      const Tag tag = m_seals.front().finish();
      m_seals.pop_front();
      std::copy_n(tag.begin(), c.bytes.size(), c.bytes.begin());
      c.sealed = std::string::npos;
      ready += c.bytes.size() - written;
    } else {
      ready += c.sealed - written;
      const std::size_t size = c.bytes.size() - c.begin;
      while (ready < k_seal_ahead && c.sealed < size) {
        const std::size_t n = std::min(k_seal_piece, size - c.sealed);
        m_seals.front().update(std::span(reinterpret_cast<std::uint8_t*>(c.bytes.data()) + c.begin + c.sealed, n));
        c.sealed += n;
        ready += n;
      }
      if (c.sealed < size) return;
      c.sealed = std::string::npos;
    }
    written = 0;
    ++it;
  }
}

std::size_t FrameWriter::gather(std::span<iovec> out) {
  seal_ahead();
  std::size_t used = 0;
  std::size_t offset = m_front_offset;
  for (Chunk& c : m_chunks) {
    if (used == out.size()) break;
    c.coalescing = false;  // an async write may hold pointers into it
    const std::size_t end = c.sealed == std::string::npos ? c.bytes.size() : c.begin + c.sealed;
    if (end > c.begin + offset) {
      out[used].iov_base = const_cast<char*>(c.bytes.data() + c.begin + offset);
      out[used].iov_len = end - c.begin - offset;
      ++used;
    }
    if (c.sealed != std::string::npos) break;  // the rest waits for its sealing
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
