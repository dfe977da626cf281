// The ids seen so far in a JSONL input, to refuse a repeated one: each id's text, byte for byte, with the
// line that had it first. Integer ids (the common case) are kept as numbers, with no allocation per id:
// small dense ones (below 4 times the count seen, as line numbers are) in an array indexed by the id, 8
// bytes each and read in order; others in a flat hash table, 16 bytes each at most half full. Other ids
// are kept as strings.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace authrun::runner {

class IdTable {
 public:
  // Records that `id_text` (an id as JSON text) is on `line`, unless it was seen already: then returns the
  // line that had it first and records nothing.
  std::optional<std::uint64_t> insert(std::string_view id_text, std::uint64_t line);

 private:
  struct Slot {
    std::uint64_t key_plus_one = 0;  // 0: empty
    std::uint64_t line = 0;
  };
  std::optional<std::uint64_t> insert_number(std::uint64_t key, std::uint64_t line);
  void grow();

  std::vector<std::uint64_t> m_dense;  // m_dense[id]: the line of integer id `id`, 0 if not seen
  std::vector<Slot> m_slots;  // open addressing, linear probing; the size is a power of two
  std::size_t m_numbers = 0;  // integer ids seen
  std::size_t m_hashed = 0;   // of them, in m_slots
  std::unordered_map<std::string, std::uint64_t> m_others;
};

}  // namespace authrun::runner
