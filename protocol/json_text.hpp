// JSON text checked and split without building a DOM: a task line's fields are forwarded as the bytes they
// were (ids kept exactly as written, args sent on as they came).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "protocol/limits.hpp"
#include "protocol/result.hpp"

namespace authrun::protocol {

// One member of a JSON object: its key as written between the quotes (escapes not decoded) and the exact
// text of its value.
struct JsonMember {
  std::string_view raw_key;
  std::string_view value;
};

// What a JSON text's top-level value is.
enum class JsonKind { object, array, string, number, boolean, null };

// The name nlohmann's type_name() gives the kind ("object", "array", "string", "number", "boolean", "null").
const char* to_string(JsonKind kind);

// Checks that `text` is exactly one JSON value (RFC 8259: UTF-8 validated, \u escapes and surrogate pairs
// checked, no NUL byte, whitespace around allowed), nested no deeper than `max_depth`, and says what kind it
// is. When it is an object, `members` (cleared first) gets its top-level members in order, as views into
// `text`. Errors: malformed ("... at byte N"), json_too_deep.
Result<JsonKind> scan_json(std::string_view text, std::vector<JsonMember>& members,
                           int max_depth = limits::json_max_depth);

// The members of an array's object elements, found in the same pass: element i's are
// members[ends[i - 1]] up to members[ends[i]] (ends[-1] taken as 0); an element that is no object has none.
struct ElementMembers {
  std::vector<JsonMember> members;
  std::vector<std::size_t> ends;
};

// Checks that `text` is exactly one JSON array, as scan_json checks a value, and puts the exact text of
// each of its elements in `elements` (cleared first), in order; with `element_members`, the members of
// each element that is an object too (cleared first). Errors: as scan_json, and malformed when the value
// is not an array.
Result<void> scan_json_array(std::string_view text, std::vector<std::string_view>& elements,
                             int max_depth = limits::json_max_depth, ElementMembers* element_members = nullptr);

// The first byte from `p` on (before `end`) that a JSON string cannot hold as it is written: a control
// character, '"', '\\' or a byte of a multi-byte UTF-8 sequence; `end` when there is none. Eight bytes a step.
const char* plain_ascii_end(const char* p, const char* end);

// The length of the valid UTF-8 sequence (RFC 3629: no overlong forms, no surrogates, nothing past
// U+10FFFF) of two to four bytes starting at `p` (before `end`), or 0 when there is none.
int utf8_sequence_length(const char* p, const char* end);

// The string a JSON string's raw contents (between its quotes, as scan_json checked them) stand for.
std::string decode_json_string(std::string_view raw);

}  // namespace authrun::protocol
