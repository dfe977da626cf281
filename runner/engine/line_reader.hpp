// Reads a stream line by line without holding more than one line, and without waiting past a stop signal.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace authrun::runner {

// Called once per line (without its newline; a last line without one counts too). A line longer than
// `max_line` is not kept: `text` is then empty and `length` says how long it was. Return false to stop.
using LineHandler = std::function<bool(std::string_view text, std::size_t length)>;

// Reads `fd` to its end, or until `stop_fd` (may be -1) becomes readable or the handler returns false.
// Returns nullopt, or "NAME: read: ERROR" when reading failed. Lines end at `delimiter` (exec's -0 and -d).
std::optional<std::string> read_lines(int fd, const std::string& name, int stop_fd, std::size_t max_line,
                                      const LineHandler& on_line, char delimiter = '\n');

}  // namespace authrun::runner
