// Text a peer sent, made safe to print: what reaches a terminal, a log or a result line cannot carry escape
// sequences, forged lines or invalid UTF-8.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace authrun::protocol {

// The most bytes of a peer's text kept in a diagnostic (outcome and error reasons and messages, excerpts).
inline constexpr std::size_t k_peer_text_max = 200;
// The most bytes of a trusted worker's error message kept in a result line (a Python exception's str(e)).
inline constexpr std::size_t k_peer_result_text_max = 256 * 1024;
// The most bytes of a trusted worker's error type kept in a result line (a module-qualified class name).
inline constexpr std::size_t k_peer_result_type_max = 1024;

// `text` with every byte that is not printable, valid UTF-8 shown as \xNN (newline, tab and carriage
// return as \n, \t, \r): C0 controls (ESC, ...), DEL, C1 controls (U+0080..U+009F), bidirectional
// overrides, invalid or overlong UTF-8; a backslash becomes \\ so the escaping cannot be forged. At most
// `max_bytes` of the input are shown; the rest is summed up as "... (N more bytes)". The result is valid
// UTF-8 and contains no control byte.
std::string escape_peer_text(std::string_view text, std::size_t max_bytes = k_peer_text_max);

}  // namespace authrun::protocol

namespace authrun::protocol {

// A trusted worker's error text for a result line (a JSON string, which escapes what must be): `text` exactly
// when it is valid UTF-8 of at most `max_bytes` (newlines and backslashes as sent), else as
// escape_peer_text(text, max_bytes) shows it.
std::string peer_result_text(std::string_view text, std::size_t max_bytes);

}  // namespace authrun::protocol
