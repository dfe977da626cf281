// escape_peer_text: what a peer writes cannot reach a terminal or a log as control bytes or invalid UTF-8.
#include <doctest/doctest.h>

#include <string>

#include "protocol/peer_text.hpp"

using authrun::protocol::escape_peer_text;

namespace {

bool has_control_byte(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("peer text: ESC sequences and a forged summary line are shown, not obeyed") {
  const std::string attack = "x\x1b[2K\r\x1b[1Aauthrun: 6 tasks: 6 ok\n\x1b]0;pwned\x07";
  const std::string shown = escape_peer_text(attack);
  CHECK(!has_control_byte(shown));
  CHECK(shown == "x\\x1b[2K\\r\\x1b[1Aauthrun: 6 tasks: 6 ok\\n\\x1b]0;pwned\\x07");
}

TEST_CASE("peer text: printable UTF-8 is kept, C1 controls, bidi overrides and invalid UTF-8 are escaped") {
  CHECK(escape_peer_text("caf\xc3\xa9 \xe2\x82\xac") == "caf\xc3\xa9 \xe2\x82\xac");
  CHECK(escape_peer_text("a\xc2\x9b" "31m") == "a\\xc2\\x9b31m");          // C1 CSI
  CHECK(escape_peer_text("\xe2\x80\xae" "abc") == "\\xe2\\x80\\xaeabc");   // right-to-left override
  CHECK(escape_peer_text("\xff\xc0\xaf") == "\\xff\\xc0\\xaf");             // invalid, overlong '/'
  CHECK(escape_peer_text("\xed\xa0\x80") == "\\xed\\xa0\\x80");             // a surrogate
  CHECK(escape_peer_text("\xe2\x82") == "\\xe2\\x82");                      // cut short
  CHECK(escape_peer_text(std::string("a\0b", 3)) == "a\\x00b");
}

TEST_CASE("peer text: a backslash is doubled, so an escape cannot be forged") {
  CHECK(escape_peer_text("\\x1b") == "\\\\x1b");
}

TEST_CASE("peer text: the length is bounded, and a sequence cut by the bound is escaped, not split") {
  const std::string shown = escape_peer_text(std::string(1000, 'a'), 10);
  CHECK(shown == "aaaaaaaaaa... (990 more bytes)");
  CHECK(escape_peer_text("abc\xc3\xa9", 4) == "abc\\xc3... (1 more bytes)");
}
