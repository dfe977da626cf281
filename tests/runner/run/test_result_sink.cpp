// ResultSink: --keep-order holds lines back, and counts what they cost.
#include <doctest/doctest.h>

#include <cstdio>
#include <string>

#include "runner/run/result_sink.hpp"

using authrun::runner::ResultSink;

TEST_CASE("result sink: held lines are counted in bytes as well as lines, and released in order") {
  std::FILE* out = std::tmpfile();
  REQUIRE(out != nullptr);
  ResultSink sink(out, true);
  const std::string big(4 << 20, 'x');
  for (std::uint64_t seq = 1; seq <= 10; ++seq) REQUIRE(sink.write(seq, big, true));
  CHECK(sink.held() == 10);
  CHECK(sink.held_bytes() == 10 * big.size());
  REQUIRE(sink.write(0, "first", true));
  CHECK(sink.held() == 0);
  CHECK(sink.held_bytes() == 0);
  REQUIRE(sink.flush());
  CHECK(sink.written_ok() == 11);
  CHECK(std::ftell(out) == static_cast<long>(6 + 10 * (big.size() + 1)));
  std::fclose(out);
}

TEST_CASE("result sink: lines are queued until flush, then written with one write") {
  std::FILE* out = std::tmpfile();
  REQUIRE(out != nullptr);
  ResultSink sink(out, false);
  REQUIRE(sink.write(0, "a", true));
  REQUIRE(sink.write(1, "b", false));
  CHECK(sink.written_ok() == 0);
  CHECK(std::ftell(out) == 0);
  REQUIRE(sink.flush());
  CHECK(sink.written_ok() == 1);
  CHECK(sink.written_failed() == 1);
  CHECK(std::ftell(out) == 4);
  std::fclose(out);
}

TEST_CASE("result sink: a large line goes out at once, after the lines queued before it, and is counted") {
  std::FILE* out = std::tmpfile();
  REQUIRE(out != nullptr);
  ResultSink sink(out, false);
  const std::string big(ResultSink::k_flush_bytes + 3, 'y');
  REQUIRE(sink.write(0, "a", true));
  REQUIRE(sink.write(1, big, false));
  CHECK(sink.written_ok() == 1);  // "a" went out first, then the large line
  CHECK(sink.written_failed() == 1);
  REQUIRE(sink.write(2, "b", true));
  REQUIRE(sink.flush());
  CHECK(sink.written_ok() == 2);
  std::string got(std::size_t(std::ftell(out)), '\0');
  std::rewind(out);
  REQUIRE(std::fread(got.data(), 1, got.size(), out) == got.size());
  CHECK(got == "a\n" + big + "\nb\n");
  std::fclose(out);
}
