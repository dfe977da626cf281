// The one place that parses and dumps JSON: message bodies and batch lines. nlohmann/json exceptions
// never leave this file; every failure is an Error naming the field.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/limits.hpp"
#include "protocol/message.hpp"
#include "protocol/result.hpp"

namespace authrun::protocol {

// Parses JSON text, refusing nesting deeper than `max_depth` before building it. Errors: malformed (with
// the byte offset; a NUL byte anywhere is refused), json_too_deep.
Result<json> parse_json(std::string_view text, int max_depth = limits::json_max_depth);

// Dumps compact JSON. Invalid UTF-8 in strings is replaced (U+FFFD), never a throw.
std::string dump_json(const json& value);

// Appends dump_json(value) to `out`, without a string of its own.
void append_json(std::string& out, const json& value);

// Appends a non-negative integer's digits, as dump_json writes it.
void append_json_uint(std::string& out, std::uint64_t value);

// Appends `value` to `out` as dump_json(json(value)) would write it, without building a json: the
// common case (printable ASCII) is copied as is.
void append_json_string(std::string& out, std::string_view value);

// Appends a finite number in fixed notation with the fewest digits that read back as `value`, and ".0"
// when it has no fraction (1.5, 100.0, 0.00012): the same bytes as dump_json for the values a duration
// takes; a value that is not finite is written as null, as dump_json does.
void append_json_double(std::string& out, double value);

// Encodes a message body (not its attachment) in `format`.
std::string encode_body(const Message& message, BodyFormat format = BodyFormat::json);

// Decodes the JSON body of a frame of type `type`. Errors: unexpected (unknown type), malformed (names the
// field and what was wrong), json_too_deep.
Result<Message> decode_message(std::uint8_t type, std::string_view body);

// Decodes a whole data or handshake frame payload according to its header flags: the body format and, for
// tasks and results, an attachment, which keeps `payload`'s storage (no copy). Errors: as decode_message,
// and malformed for a bad attachment prefix or an attachment on another message type.
// With `values_as_text`, a JSON result_batch's successful results keep their values as checked JSON text
// (TaskResult::value_json) instead of a parsed value, for a receiver that only passes them on; a value
// that spans lines (whitespace with line breaks) is parsed as usual; so does a lone JSON result's.
// With `args_as_text`, a JSON task's args (alone or in a task_batch) are kept as checked JSON text
// (Task::args_json) instead of parsed, for a worker that parses them itself (authrun-python: integers of
// any size); a task spelt otherwise (escapes in its keys, extra members) is parsed as usual.
Result<Message> decode_frame(const FrameHeader& header, std::string&& payload, bool values_as_text = false,
                             bool args_as_text = false);

// Reads a required field of `object`, which is described as `what` in errors ("task", "line 3").
// Errors: malformed ("task: field 'fn' is missing" / "must be a string").
Result<std::string> string_field(const json& object, const char* field, const std::string& what);
Result<std::uint64_t> uint_field(const json& object, const char* field, const std::string& what);

}  // namespace authrun::protocol
