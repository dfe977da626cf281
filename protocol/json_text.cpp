// A validating JSON scanner: one pass, no allocation but the members list, no recursion.
#include "protocol/json_text.hpp"

#include <cstdint>
#include <cstring>

#include "protocol/json_codec.hpp"

namespace authrun::protocol {

namespace {

class Scanner {
 public:
  Scanner(std::string_view text, int max_depth) : m_p(text.data()), m_begin(text.data()), m_end(text.data() + text.size()), m_max_depth(max_depth) {}

  // Scans the whole text, which must be one array; fills `elements` with its elements' texts.
  Result<void> run_array(std::vector<std::string_view>& elements, ElementMembers* element_members) {
    elements.clear();
    if (element_members) {
      element_members->members.clear();
      element_members->ends.clear();
    }
    skip_space();
    if (m_p == m_end || *m_p != '[') return fail("a JSON array was expected");
    ++m_p;
    m_depth = 1;
    if (m_depth > m_max_depth) return make_error(ErrorCode::json_too_deep, "JSON nested deeper than " + std::to_string(m_max_depth));
    skip_space();
    if (m_p != m_end && *m_p == ']') {
      ++m_p;
    } else {
      for (;;) {
        skip_space();
        const char* start = m_p;
        if (element_members && m_p != m_end && *m_p == '{') {
          AUTHRUN_TRY(object(element_members->members));
        } else {
          AUTHRUN_TRY(value());
        }
        if (element_members) element_members->ends.push_back(element_members->members.size());
        elements.emplace_back(start, std::size_t(m_p - start));
        skip_space();
        if (m_p == m_end) return fail("the array is not closed");
        if (*m_p == ',') {
          ++m_p;
          continue;
        }
        if (*m_p == ']') {
          ++m_p;
          break;
        }
        return fail("',' or ']' was expected in an array");
      }
    }
    skip_space();
    if (m_p != m_end) return fail("unexpected text after the JSON value");
    return {};
  }

  // Scans the whole text; fills `members` when the top level is an object.
  Result<JsonKind> run(std::vector<JsonMember>& members) {
    members.clear();
    skip_space();
    if (m_p == m_end) return fail("empty input, a JSON value was expected");
    const JsonKind kind = kind_at();
    if (kind == JsonKind::object) {
      AUTHRUN_TRY(object(members));
    } else {
      AUTHRUN_TRY(value());
    }
    skip_space();
    if (m_p != m_end) return fail("unexpected text after the JSON value");
    return kind;
  }

 private:
  JsonKind kind_at() const {
    switch (*m_p) {
      case '{': return JsonKind::object;
      case '[': return JsonKind::array;
      case '"': return JsonKind::string;
      case 't': case 'f': return JsonKind::boolean;
      case 'n': return JsonKind::null;
      default: return JsonKind::number;
    }
  }

  Error fail(const std::string& what) const {
    return make_error(ErrorCode::malformed, what + " at byte " + std::to_string(m_p - m_begin));
  }

  void skip_space() {
    while (m_p != m_end && (*m_p == ' ' || *m_p == '\t' || *m_p == '\n' || *m_p == '\r')) ++m_p;
  }

  // The object at m_p, inside m_depth containers, its members appended to `members`.
  Result<void> object(std::vector<JsonMember>& members) {
    ++m_p;  // '{'
    ++m_depth;
    if (m_depth > m_max_depth) return make_error(ErrorCode::json_too_deep, "JSON nested deeper than " + std::to_string(m_max_depth));
    skip_space();
    if (m_p != m_end && *m_p == '}') {
      ++m_p;
      --m_depth;
      return {};
    }
    for (;;) {
      skip_space();
      if (m_p == m_end || *m_p != '"') return fail("an object key (a string) was expected");
      const char* key_start = m_p + 1;
      AUTHRUN_TRY(string());
      const std::string_view key(key_start, std::size_t(m_p - 1 - key_start));
      skip_space();
      if (m_p == m_end || *m_p != ':') return fail("':' was expected after an object key");
      ++m_p;
      skip_space();
      const char* value_start = m_p;
      AUTHRUN_TRY(value());
      members.push_back(JsonMember{key, std::string_view(value_start, std::size_t(m_p - value_start))});
      skip_space();
      if (m_p == m_end) return fail("the object is not closed");
      if (*m_p == ',') {
        ++m_p;
        continue;
      }
      if (*m_p == '}') {
        ++m_p;
        --m_depth;
        return {};
      }
      return fail("',' or '}' was expected in an object");
    }
  }

  // One value at m_p (whitespace before it skipped), nested containers included, iteratively.
  Result<void> value() {
    // Open containers below this value: true for an object. m_depth counts the enclosing ones as well.
    const int base = m_depth;
    std::uint64_t kinds[2] = {0, 0};  // bit i: container at relative depth i is an object (max depth 128)
    auto is_object = [&](int rel) { return (kinds[rel / 64] >> (rel % 64)) & 1U; };
    int open = 0;
    for (;;) {
      skip_space();
      if (m_p == m_end) return fail("a JSON value was expected");
      const char c = *m_p;
      bool closed_scalar = true;
      if (c == '{' || c == '[') {
        if (base + open + 1 > m_max_depth || open + 1 > 128) {
          return make_error(ErrorCode::json_too_deep, "JSON nested deeper than " + std::to_string(m_max_depth));
        }
        const bool obj = c == '{';
        if (obj) kinds[open / 64] |= std::uint64_t(1) << (open % 64);
        else kinds[open / 64] &= ~(std::uint64_t(1) << (open % 64));
        ++open;
        ++m_p;
        skip_space();
        if (m_p != m_end && *m_p == (obj ? '}' : ']')) {
          ++m_p;
          --open;
        } else {
          if (obj) AUTHRUN_TRY(key_colon());
          closed_scalar = false;
        }
      } else if (c == '"') {
        AUTHRUN_TRY(string());
      } else if (c == 't') {
        AUTHRUN_TRY(literal("true"));
      } else if (c == 'f') {
        AUTHRUN_TRY(literal("false"));
      } else if (c == 'n') {
        AUTHRUN_TRY(literal("null"));
      } else if (c == '-' || (c >= '0' && c <= '9')) {
        AUTHRUN_TRY(number());
      } else {
        return fail(c == '\0' ? "a NUL byte" : "unexpected character");
      }
      if (!closed_scalar) continue;
      // After a value: close containers, or go on to the next element.
      for (;;) {
        if (open == 0) return {};
        skip_space();
        if (m_p == m_end) return fail("unexpected end of input in a container");
        const bool obj = is_object(open - 1);
        if (*m_p == ',') {
          ++m_p;
          if (obj) {
            skip_space();
            AUTHRUN_TRY(key_colon());
          }
          break;
        }
        if (*m_p == (obj ? '}' : ']')) {
          ++m_p;
          --open;
          continue;
        }
        return fail(obj ? "',' or '}' was expected in an object" : "',' or ']' was expected in an array");
      }
    }
  }

  Result<void> key_colon() {
    skip_space();
    if (m_p == m_end || *m_p != '"') return fail("an object key (a string) was expected");
    AUTHRUN_TRY(string());
    skip_space();
    if (m_p == m_end || *m_p != ':') return fail("':' was expected after an object key");
    ++m_p;
    return {};
  }

  Result<void> literal(std::string_view word) {
    if (std::size_t(m_end - m_p) < word.size() || std::string_view(m_p, word.size()) != word) return fail("invalid literal");
    m_p += word.size();
    return {};
  }

  Result<void> number() {
    if (*m_p == '-') ++m_p;
    auto digit = [&] { return m_p != m_end && *m_p >= '0' && *m_p <= '9'; };
    if (!digit()) return fail("invalid number");
    if (*m_p == '0') ++m_p;
    else while (digit()) ++m_p;
    if (m_p != m_end && *m_p == '.') {
      ++m_p;
      if (!digit()) return fail("invalid number");
      while (digit()) ++m_p;
    }
    if (m_p != m_end && (*m_p == 'e' || *m_p == 'E')) {
      ++m_p;
      if (m_p != m_end && (*m_p == '+' || *m_p == '-')) ++m_p;
      if (!digit()) return fail("invalid number");
      while (digit()) ++m_p;
    }
    return {};
  }

  // Four hex digits after "\u"; -1 if they are not.
  int hex4() {
    if (m_end - m_p < 4) return -1;
    int v = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = m_p[i];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= h - '0';
      else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
      else return -1;
    }
    m_p += 4;
    return v;
  }

  Result<void> string() {
    ++m_p;  // '"'
    for (;;) {
      m_p = plain_ascii_end(m_p, m_end);  // the common case: plain ASCII
      if (m_p == m_end) return fail("the string is not closed");
      const auto c = static_cast<unsigned char>(*m_p);
      if (c == '"') {
        ++m_p;
        return {};
      }
      if (c < 0x20) return fail(c == 0 ? "a NUL byte" : "a control character in a string (it must be escaped)");
      if (c == '\\') {
        ++m_p;
        if (m_p == m_end) return fail("the string is not closed");
        const char e = *m_p++;
        if (e == 'u') {
          const int u = hex4();
          if (u < 0) return fail("invalid \\u escape");
          if (u >= 0xDC00 && u <= 0xDFFF) return fail("a lone low surrogate in a \\u escape");
          if (u >= 0xD800 && u <= 0xDBFF) {
            if (m_end - m_p < 2 || m_p[0] != '\\' || m_p[1] != 'u') return fail("a high surrogate without its low surrogate");
            m_p += 2;
            const int low = hex4();
            if (low < 0xDC00 || low > 0xDFFF) return fail("a high surrogate without its low surrogate");
          }
        } else if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' && e != 'r' && e != 't') {
          return fail("invalid escape in a string");
        }
        continue;
      }
      AUTHRUN_TRY(utf8_sequence());
    }
  }

  // One multi-byte UTF-8 sequence.
  Result<void> utf8_sequence() {
    const int len = utf8_sequence_length(m_p, m_end);
    if (len == 0) return fail("invalid UTF-8 in a string");
    m_p += len;
    return {};
  }

  const char* m_p;
  const char* m_begin;
  const char* m_end;
  int m_max_depth;
  int m_depth = 0;
};

}  // namespace

const char* plain_ascii_end(const char* p, const char* end) {
  constexpr std::uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  // Whether any byte of the word is zero (exact for the word as a whole, which is all this asks).
  const auto any_zero = [](std::uint64_t v) { return (v - ones) & ~v & highs; };
  while (end - p >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    const std::uint64_t special = (w & highs) | ((w - 0x20 * ones) & ~w & highs) | any_zero(w ^ ('"' * ones)) |
                                  any_zero(w ^ ('\\' * ones));
    if (special != 0) break;
    p += 8;
  }
  while (p != end) {
    const auto c = static_cast<unsigned char>(*p);
    if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\') break;
    ++p;
  }
  return p;
}

int utf8_sequence_length(const char* p, const char* end) {
  const auto b0 = static_cast<unsigned char>(*p);
  int len;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) len = 2;
  else if (b0 == 0xE0) len = 3, lo = 0xA0;
  else if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF) len = 3;
  else if (b0 == 0xED) len = 3, hi = 0x9F;
  else if (b0 == 0xF0) len = 4, lo = 0x90;
  else if (b0 >= 0xF1 && b0 <= 0xF3) len = 4;
  else if (b0 == 0xF4) len = 4, hi = 0x8F;
  else return 0;
  if (end - p < len) return 0;
  const auto b1 = static_cast<unsigned char>(p[1]);
  if (b1 < lo || b1 > hi) return 0;
  for (int i = 2; i < len; ++i) {
    const auto b = static_cast<unsigned char>(p[i]);
    if (b < 0x80 || b > 0xBF) return 0;
  }
  return len;
}

const char* to_string(JsonKind kind) {
  switch (kind) {
    case JsonKind::object: return "object";
    case JsonKind::array: return "array";
    case JsonKind::string: return "string";
    case JsonKind::number: return "number";
    case JsonKind::boolean: return "boolean";
    case JsonKind::null: return "null";
  }
  return "?";
}

Result<JsonKind> scan_json(std::string_view text, std::vector<JsonMember>& members, int max_depth) {
  return Scanner(text, max_depth).run(members);
}

Result<void> scan_json_array(std::string_view text, std::vector<std::string_view>& elements, int max_depth,
                             ElementMembers* element_members) {
  return Scanner(text, max_depth).run_array(elements, element_members);
}

std::string decode_json_string(std::string_view raw) {
  if (raw.find('\\') == std::string_view::npos) return std::string(raw);
  std::string quoted;
  quoted.reserve(raw.size() + 2);
  quoted += '"';
  quoted += raw;
  quoted += '"';
  auto parsed = parse_json(quoted);
  return parsed && parsed->is_string() ? parsed->get<std::string>() : std::string(raw);
}

}  // namespace authrun::protocol
