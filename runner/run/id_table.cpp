// The table of ids seen.
#include "runner/run/id_table.hpp"

#include <algorithm>
#include <utility>

namespace authrun::runner {

namespace {

// The value of an id written as a plain integer below 10^19 (digits only, no leading zero: JSON allows
// none, so the text and the number determine each other); nullopt for any other id text.
std::optional<std::uint64_t> plain_integer(std::string_view text) {
  if (text.empty() || text.size() > 19 || (text[0] == '0' && text.size() > 1)) return std::nullopt;
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + std::uint64_t(c - '0');
  }
  return value;
}

std::uint64_t mix(std::uint64_t x) {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

std::optional<std::uint64_t> IdTable::insert(std::string_view id_text, std::uint64_t line) {
  if (auto number = plain_integer(id_text)) return insert_number(*number, line);
  auto [it, fresh] = m_others.try_emplace(std::string(id_text), line);
  if (!fresh) return it->second;
  return std::nullopt;
}

std::optional<std::uint64_t> IdTable::insert_number(std::uint64_t key, std::uint64_t line) {
  // A key may be in the hash table from before the dense array reached it: look in both.
  const std::uint64_t dense_limit = std::max<std::uint64_t>(65536, 4 * (m_numbers + 1));
  if (key < m_dense.size() || key < dense_limit) {
    if (key < m_dense.size() && m_dense[key] != 0) return m_dense[key];
    if (!m_slots.empty()) {
      const std::size_t mask = m_slots.size() - 1;
      for (std::size_t i = mix(key) & mask; m_slots[i].key_plus_one != 0; i = (i + 1) & mask) {
        if (m_slots[i].key_plus_one == key + 1) return m_slots[i].line;
      }
    }
    if (key >= m_dense.size()) m_dense.resize(std::min<std::uint64_t>(dense_limit, std::max<std::uint64_t>(key + 1, 2 * m_dense.size())));
    m_dense[key] = line;
    ++m_numbers;
    return std::nullopt;
  }
  if ((m_hashed + 1) * 2 > m_slots.size()) grow();
  const std::size_t mask = m_slots.size() - 1;
  for (std::size_t i = mix(key) & mask;; i = (i + 1) & mask) {
    Slot& slot = m_slots[i];
    if (slot.key_plus_one == 0) {
      slot = Slot{key + 1, line};
      ++m_numbers;
      ++m_hashed;
      return std::nullopt;
    }
    if (slot.key_plus_one == key + 1) return slot.line;
  }
}

void IdTable::grow() {
  std::vector<Slot> old = std::exchange(m_slots, std::vector<Slot>(m_slots.empty() ? 1024 : m_slots.size() * 2));
  const std::size_t mask = m_slots.size() - 1;
  for (const Slot& s : old) {
    if (s.key_plus_one == 0) continue;
    std::size_t i = mix(s.key_plus_one - 1) & mask;
    while (m_slots[i].key_plus_one != 0) i = (i + 1) & mask;
    m_slots[i] = s;
  }
}

}  // namespace authrun::runner
