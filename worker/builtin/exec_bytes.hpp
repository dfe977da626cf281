// Bytes in JSON for `exec`: UTF-8 validity, base64 both ways, and a readable cut of a long argument.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace authrun::worker {

// True if `s` is well-formed UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF).
bool is_utf8(std::string_view s);

// Standard base64 with padding.
std::string to_base64(std::string_view bytes);

// Decodes standard, padded base64 (no whitespace); nullopt if it is not that.
std::optional<std::string> from_base64(std::string_view text);

// `s` if it is short, else its first bytes and "... (N bytes)": for error messages that quote an argument.
std::string cut_for_message(std::string_view s, std::size_t keep = 80);

}  // namespace authrun::worker
