// escape_peer_text: control bytes and invalid UTF-8 made visible, length bounded.
#include "protocol/peer_text.hpp"

#include <cstdio>

namespace authrun::protocol {

namespace {

// Length of the valid, printable UTF-8 sequence starting at text[i], or 0 if it is not one.
std::size_t printable_sequence(std::string_view text, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = b(i);
  if (c >= 0x20 && c < 0x7f) return 1;
  std::size_t n = 0;
  unsigned min = 0, cp = 0;
  if (c >= 0xc2 && c <= 0xdf) n = 2, min = 0x80, cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef) n = 3, min = 0x800, cp = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4) n = 4, min = 0x10000, cp = c & 0x07;
  else return 0;
  if (i + n > text.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  if (cp >= 0x80 && cp <= 0x9f) return 0;  // C1 controls (0x9b is a CSI on some terminals)
  // Bidirectional overrides and isolates can reorder what a terminal shows.
  if ((cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069)) return 0;
  return n;
}

}  // namespace

std::string escape_peer_text(std::string_view text, std::size_t max_bytes) {
  std::string out;
  const std::size_t shown = text.size() < max_bytes ? text.size() : max_bytes;
  out.reserve(shown + 16);
  std::size_t i = 0;
  while (i < shown) {
    if (text[i] == '\\') {
      out += "\\\\";
      ++i;
      continue;
    }
    const std::size_t n = printable_sequence(text, i);
    if (n > 0 && i + n <= shown) {
      out.append(text.substr(i, n));
      i += n;
      continue;
    }
    const char c = text[i];
    if (c == '\n' || c == '\t' || c == '\r') {
      out += c == '\n' ? "\\n" : c == '\t' ? "\\t" : "\\r";
      ++i;
      continue;
    }
    char esc[8];
    std::snprintf(esc, sizeof esc, "\\x%02x", static_cast<unsigned>(static_cast<unsigned char>(text[i])));
    out += esc;
    ++i;
  }
  if (text.size() > shown) out += "... (" + std::to_string(text.size() - shown) + " more bytes)";
  return out;
}

}  // namespace authrun::protocol

namespace authrun::protocol {

std::string peer_result_text(std::string_view text, std::size_t max_bytes) {
  if (text.size() > max_bytes) return escape_peer_text(text, max_bytes);
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (c == 0) return escape_peer_text(text, max_bytes);
      ++i;
      continue;
    }
    std::size_t n = 0;
    unsigned min = 0, cp = 0;
    if (c >= 0xc2 && c <= 0xdf) n = 2, min = 0x80, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef) n = 3, min = 0x800, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4) n = 4, min = 0x10000, cp = c & 0x07;
    else return escape_peer_text(text, max_bytes);
    if (i + n > text.size()) return escape_peer_text(text, max_bytes);
    for (std::size_t k = 1; k < n; ++k) {
      const auto b = static_cast<unsigned char>(text[i + k]);
      if ((b & 0xc0) != 0x80) return escape_peer_text(text, max_bytes);
      cp = (cp << 6) | (b & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return escape_peer_text(text, max_bytes);
    i += n;
  }
  return std::string(text);
}

}  // namespace authrun::protocol
