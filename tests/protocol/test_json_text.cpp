// scan_json: accepts and refuses exactly what the JSON parser does, and splits objects into raw members.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "protocol/json_codec.hpp"
#include "protocol/json_text.hpp"

using namespace authrun::protocol;

TEST_CASE("json text: the scanner agrees with the parser on valid and invalid JSON") {
  const std::vector<std::string> cases = {
      "{}", "[]", "0", "-0", "1.5e-3", "-1E+2", "\"\"", "true", "false", "null", " {\"a\" : [1, {\"b\": null}] } ",
      "\"caf\\u00e9\"", "\"\\ud83d\\ude00\"", "\"\xc3\xa9\"", "\"\xf0\x9f\x98\x80\"", "[1,2,3]", "{\"a\":1,\"a\":2}",
      // invalid
      "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\"}", "{a:1}", "01", "1.", ".5", "-", "1e", "+1", "tru", "nul",
      "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud83d\"", "\"\\ude00\"", "\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"",
      "\"\xf4\x90\x80\x80\"", "\"\t\"", std::string("\"a\0b\"", 5), std::string("[1]\0", 4), "[1] 2", "{\"a\":1}}",
      "[[[]]", "{\"a\":[1,2}", "NaN", "Infinity"};
  std::vector<JsonMember> members;
  for (const auto& text : cases) {
    CAPTURE(text);
    const bool parser_ok = parse_json(text).has_value();
    const bool scanner_ok = scan_json(text, members).has_value();
    CHECK(scanner_ok == parser_ok);
  }
}

TEST_CASE("json text: members keep their raw text, depth is limited") {
  std::vector<JsonMember> members;
  auto kind = scan_json(R"( {"id" : 123456789012345678901234567890, "k\"ey":{"x": [1, 2.50]} ,"s":"a\u0041"} )", members);
  REQUIRE(kind);
  CHECK(*kind == JsonKind::object);
  REQUIRE(members.size() == 3);
  CHECK(members[0].raw_key == "id");
  CHECK(members[0].value == "123456789012345678901234567890");
  CHECK(members[1].raw_key == "k\\\"ey");
  CHECK(decode_json_string(members[1].raw_key) == "k\"ey");
  CHECK(members[1].value == R"({"x": [1, 2.50]})");
  CHECK(members[2].value == R"("a\u0041")");
  CHECK(*scan_json("[1]", members) == JsonKind::array);
  CHECK(members.empty());

  std::string deep(64, '[');
  deep += std::string(64, ']');
  CHECK(scan_json(deep, members).has_value());
  std::string too_deep = "[" + deep + "]";
  auto r = scan_json(too_deep, members);
  REQUIRE(!r);
  CHECK(r.error().code == ErrorCode::json_too_deep);
  std::string deep_object = "{\"a\":" + deep + "}";
  CHECK(scan_json(deep_object, members).error().code == ErrorCode::json_too_deep);
  std::string huge(1000000, '[');
  CHECK(scan_json(huge, members).error().code == ErrorCode::json_too_deep);
}

TEST_CASE("json text: an array splits into its elements' exact texts, checked as a whole") {
  std::vector<std::string_view> elements;
  REQUIRE(scan_json_array(" [ {\"a\" : [1,2]} , \"x,]\" ,3.5e1,[] ] ", elements));
  REQUIRE(elements.size() == 4);
  CHECK(elements[0] == "{\"a\" : [1,2]}");
  CHECK(elements[1] == "\"x,]\"");
  CHECK(elements[2] == "3.5e1");
  CHECK(elements[3] == "[]");
  REQUIRE(scan_json_array("[]", elements));
  CHECK(elements.empty());
  for (const char* bad : {"{}", "1", "[1,]", "[1 2]", "[1", "[1] 2", "[\"\xff\"]"}) {
    CAPTURE(bad);
    auto r = scan_json_array(bad, elements);
    REQUIRE(!r);
    CHECK(r.error().code == ErrorCode::malformed);
  }
  CHECK(scan_json_array("[[[1]]]", elements, 3));
  CHECK(scan_json_array("[[[1]]]", elements, 2).error().code == ErrorCode::json_too_deep);
}

TEST_CASE("json text: an array's object elements are split into their members in the same pass") {
  std::vector<std::string_view> elements;
  ElementMembers em;
  REQUIRE(scan_json_array(R"([{"id":1,"v":{"a":[1]}}, 7, {}, { "k" : "x,}" }])", elements, limits::json_max_depth, &em));
  REQUIRE(elements.size() == 4);
  REQUIRE(em.ends == std::vector<std::size_t>{2, 2, 2, 3});
  CHECK((em.members[0].raw_key == "id" && em.members[0].value == "1"));
  CHECK((em.members[1].raw_key == "v" && em.members[1].value == R"({"a":[1]})"));
  CHECK((em.members[2].raw_key == "k" && em.members[2].value == R"("x,}")"));
  // The depth counts the array: its objects are at 2, their values' containers below.
  CHECK(scan_json_array(R"([{"a":[1]}])", elements, 3, &em));
  CHECK(scan_json_array(R"([{"a":[1]}])", elements, 2, &em).error().code == ErrorCode::json_too_deep);
  CHECK(scan_json_array(R"([{"a":1}])", elements, 1, &em).error().code == ErrorCode::json_too_deep);
  // A bad element is refused as without the members.
  CHECK(scan_json_array(R"([{"a":1,}])", elements, limits::json_max_depth, &em).error().code == ErrorCode::malformed);
  CHECK(scan_json_array(R"([{"a" 1}])", elements, limits::json_max_depth, &em).error().code == ErrorCode::malformed);
}

TEST_CASE("json text: a special byte is found at every place of the eight-byte steps") {
  // The scanner skips plain ASCII eight bytes at a time: each byte that needs a look, at each offset.
  const std::vector<std::string> specials = {"\x01", "\x1f", "\t", "\x7f", "\x80", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                             "\xc3", "\xed\xa0\x80", "\\", "\\n", "\\u00e9", "\"", std::string(1, '\0'), " ", "~"};
  std::vector<JsonMember> members;
  for (const auto& special : specials) {
    for (std::size_t k = 0; k <= 17; ++k) {
      std::string text(1, '"');
      text.append(k, 'a').append(special).append(17 - k, 'b').push_back('"');
      CAPTURE(text);
      CHECK(scan_json(text, members).has_value() == parse_json(text).has_value());
      CHECK(plain_ascii_end(text.data() + 1, text.data() + text.size() - 1) - text.data() - 1 ==
            static_cast<std::ptrdiff_t>(special == " " || special == "~" || special == "\x7f" ? 18 : k));
    }
  }
}
