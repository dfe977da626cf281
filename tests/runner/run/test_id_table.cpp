// The table of ids seen: a repeat gives the first line, byte-for-byte text decides, integers and other ids
// alike, across growth.
#include <doctest/doctest.h>

#include <string>

#include "runner/run/id_table.hpp"

using authrun::runner::IdTable;

TEST_CASE("id_table: a repeated id gives the line that had it first, and is not recorded again") {
  IdTable t;
  CHECK(!t.insert("7", 1));
  CHECK(!t.insert("\"a\"", 2));
  CHECK(t.insert("7", 3) == 1u);
  CHECK(t.insert("\"a\"", 4) == 2u);
  CHECK(t.insert("7", 5) == 1u);
}

TEST_CASE("id_table: ids are compared as written: a number and a string, 1 and 1.0, big numbers") {
  IdTable t;
  CHECK(!t.insert("1", 1));
  CHECK(!t.insert("\"1\"", 2));
  CHECK(!t.insert("1.0", 3));
  CHECK(!t.insert("-1", 4));
  CHECK(!t.insert("0", 5));
  CHECK(!t.insert("9999999999999999999", 6));            // 19 digits: kept as a number
  CHECK(!t.insert("99999999999999999999", 7));           // 20 digits: kept as text
  CHECK(!t.insert("123456789012345678901234567890", 8));
  CHECK(t.insert("9999999999999999999", 9) == 6u);
  CHECK(t.insert("99999999999999999999", 10) == 7u);
  CHECK(t.insert("123456789012345678901234567890", 11) == 8u);
  CHECK(t.insert("1.0", 12) == 3u);
  CHECK(t.insert("0", 13) == 5u);
}

TEST_CASE("id_table: 300,000 integer ids, then every one again, through the table's growth") {
  IdTable t;
  for (std::uint64_t i = 0; i < 300000; ++i) REQUIRE(!t.insert(std::to_string(i * 7919), i + 1));
  for (std::uint64_t i = 0; i < 300000; ++i) REQUIRE(t.insert(std::to_string(i * 7919), 0) == i + 1);
}

TEST_CASE("id_table: sparse ids first, then the dense range grows over them: each is still found once") {
  IdTable t;
  // 1,000,000 and up are far past the dense range at first, so they go to the hash table...
  for (std::uint64_t i = 0; i < 1000; ++i) REQUIRE(!t.insert(std::to_string(1000000 + i * 3), i + 1));
  // ...then 400,000 dense ids widen the dense range past them.
  for (std::uint64_t i = 0; i < 400000; ++i) REQUIRE(!t.insert(std::to_string(i), 2000 + i));
  for (std::uint64_t i = 0; i < 1000; ++i) REQUIRE(t.insert(std::to_string(1000000 + i * 3), 0) == i + 1);
  for (std::uint64_t i = 0; i < 400000; i += 997) REQUIRE(t.insert(std::to_string(i), 0) == 2000 + i);
  // Ids the dense range now covers, not seen before, are new.
  CHECK(!t.insert("1000001", 7));
  CHECK(t.insert("1000001", 8) == 7u);
}
