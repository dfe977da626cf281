// What the fuzz targets share: the check that turns a broken property into a finding, and deterministic
// chunking of input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

// Aborts (a finding for libFuzzer) when a property of the code under test does not hold.
#define AUTHRUN_FUZZ_CHECK(cond)                                                     \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                  \
    }                                                                                \
  } while (false)

namespace authrun::fuzz {

// Deterministic chunk sizes (xorshift), so that a crashing input replays exactly. Mode 0: one byte at a
// time; 1: up to 16; 2: up to 4096; 3: as much as there is room for.
class Chunker {
 public:
  Chunker(std::uint8_t mode, std::uint8_t seed) : m_mode(mode & 3), m_state(0x9E3779B9u ^ (seed * 0x01000193u)) {}
  // The size of the next chunk, at most `space`.
  std::size_t next(std::size_t space) {
    m_state ^= m_state << 13;
    m_state ^= m_state >> 17;
    m_state ^= m_state << 5;
    std::size_t n = space;
    switch (m_mode) {
      case 0: n = 1; break;
      case 1: n = 1 + m_state % 16; break;
      case 2: n = 1 + m_state % 4096; break;
      default: break;
    }
    return n < space ? n : space;
  }

 private:
  std::uint8_t m_mode;
  std::uint32_t m_state;
};

}  // namespace authrun::fuzz
