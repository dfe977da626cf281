// libFuzzer target: message bodies and JSON text. Input: [mode][a][b] then the bytes.
//   mode 0: decode_message(type a, body)          mode 1: decode_frame(type a, flags b, payload)
//   mode 2: parse_json(text, depth a)             mode 3: runner's parse_task_line(text, line a, max_line b)
//   mode 4: a result_batch body decoded with values as text, against the same body parsed
//   mode 5: a task_batch body decoded from its text (decode_frame), against the same body parsed
// Whatever decodes must encode and decode again to the same bytes; parse_json must agree with nlohmann's
// own validator whenever the depth is within the limit.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "tests/fuzz/fuzz_util.hpp"
#include "protocol/frame.hpp"
#include "protocol/json_codec.hpp"
#include "protocol/limits.hpp"
#include "protocol/message.hpp"
#include "runner/run/jsonl_input.hpp"

using namespace authrun::protocol;


namespace {

// nlohmann/json's lexer takes a NUL byte for the end of the input; parse_json refuses text with one (found
// by this target: corpus/fuzz_message_decoder/regression_*_nul), so nothing accepted may hold one.
bool has_nul(std::string_view text) { return text.find('\0') != std::string_view::npos; }

void check_no_nul(std::string_view json_text) { AUTHRUN_FUZZ_CHECK(!has_nul(json_text)); }

// Nesting depth of a value (bounded by the depth limit it was parsed under, so recursion is shallow).
int depth_of(const json& j) {
  if (!j.is_structured()) return 0;
  int deepest = 0;
  for (const json& child : j) deepest = std::max(deepest, depth_of(child));
  return deepest + 1;
}

// The depth of valid JSON text, counted without building it (any depth).
int text_depth(std::string_view text) {
  struct Counter : nlohmann::json_sax<json> {
    int depth = 0;
    int deepest = 0;
    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return true; }
    bool start_object(std::size_t) override { return enter(); }
    bool key(string_t&) override { return true; }
    bool end_object() override { return leave(); }
    bool start_array(std::size_t) override { return enter(); }
    bool end_array() override { return leave(); }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }
    bool enter() {
      deepest = std::max(deepest, ++depth);
      return true;
    }
    bool leave() {
      --depth;
      return true;
    }
  } counter;
  json::sax_parse(text.begin(), text.end(), &counter, json::input_format_t::json, false);
  return counter.deepest;
}

// The body format of a message as received (task and result remember it).
BodyFormat format_of(const Message& m) {
  if (auto* t = std::get_if<Task>(&m)) return t->format;
  if (auto* r = std::get_if<TaskResult>(&m)) return r->format;
  return BodyFormat::json;
}

std::string_view attachment_of(const Message& m) {
  if (auto* t = std::get_if<Task>(&m)) return t->attachment.view();
  if (auto* r = std::get_if<TaskResult>(&m)) return r->attachment.view();
  return {};
}

// Every decoded body, whatever its format, is within the depth limit (its values sit 1 or 2 levels down).
void check_depth(const Message& m) {
  if (auto* t = std::get_if<Task>(&m)) AUTHRUN_FUZZ_CHECK(1 + depth_of(t->args) <= limits::json_max_depth);
  if (auto* r = std::get_if<TaskResult>(&m)) {
    AUTHRUN_FUZZ_CHECK(1 + depth_of(r->value) <= limits::json_max_depth);
    AUTHRUN_FUZZ_CHECK(2 + depth_of(r->error.details) <= limits::json_max_depth);
  }
}

// A decoded message re-encoded, decoded again and re-encoded must give the same body.
void check_round_trip(const Message& m, BodyFormat format) {
  const std::string once = encode_body(m, format);
  const FrameHeader header{static_cast<std::uint8_t>(type_of(m)), static_cast<std::uint16_t>(format),
                           static_cast<std::uint32_t>(once.size())};
  auto again = decode_frame(header, std::string(once));
  AUTHRUN_FUZZ_CHECK(again.has_value());
  AUTHRUN_FUZZ_CHECK(type_of(*again) == type_of(m));
  AUTHRUN_FUZZ_CHECK(encode_body(*again, format) == once);
}

void fuzz_decode_message(std::uint8_t type, std::string_view body) {
  auto m = decode_message(type, body);
  if (!m) return;
  check_no_nul(body);
  check_depth(*m);
  AUTHRUN_FUZZ_CHECK(static_cast<std::uint8_t>(type_of(*m)) == type);
  AUTHRUN_FUZZ_CHECK(format_of(*m) == BodyFormat::json);
  check_round_trip(*m, BodyFormat::json);
}

void fuzz_decode_frame(std::uint8_t type, std::uint8_t flag_bits, std::string_view payload) {
  // Only headers that decode_header lets through reach decode_frame.
  std::uint16_t flags = flag_bits & k_known_flags;
  if ((flags & k_flag_format_mask) == k_flag_format_mask || type < k_first_data_type) flags = 0;
  const FrameHeader header{type, flags, static_cast<std::uint32_t>(payload.size())};
  auto m = decode_frame(header, std::string(payload));
  if (!m) return;
  AUTHRUN_FUZZ_CHECK(static_cast<std::uint8_t>(type_of(*m)) == type);
  const auto format = static_cast<BodyFormat>(flags & k_flag_format_mask);
  AUTHRUN_FUZZ_CHECK(format_of(*m) == format);
  std::string_view body = payload;
  if ((flags & k_flag_attachment) != 0) {
    const std::size_t body_size = load_le32(reinterpret_cast<const std::uint8_t*>(payload.data()));
    body = payload.substr(4, body_size);
    AUTHRUN_FUZZ_CHECK(attachment_of(*m) == payload.substr(4 + body_size));
  } else {
    AUTHRUN_FUZZ_CHECK(attachment_of(*m).empty());
  }
  if (format == BodyFormat::json) check_no_nul(body);
  check_depth(*m);
  check_round_trip(*m, format);
}

void fuzz_parse_json(std::string_view text, int max_depth) {
  auto parsed = parse_json(text, max_depth);
  const bool valid = !has_nul(text) && json::accept(text.begin(), text.end());
  if (!parsed) {
    // Refused only for bad syntax or real depth.
    AUTHRUN_FUZZ_CHECK(!valid || (parsed.error().code == ErrorCode::json_too_deep && text_depth(text) > max_depth));
    return;
  }
  check_no_nul(text);
  AUTHRUN_FUZZ_CHECK(valid);
  AUTHRUN_FUZZ_CHECK(depth_of(*parsed) <= max_depth);
  const std::string once = dump_json(*parsed);
  auto again = parse_json(once, max_depth);
  AUTHRUN_FUZZ_CHECK(again.has_value());
  AUTHRUN_FUZZ_CHECK(dump_json(*again) == once);
}

void fuzz_task_line(std::string_view text, std::uint64_t line, std::size_t max_line) {
  const std::string where = "fuzz:" + std::to_string(line);
  authrun::runner::BatchTask t = authrun::runner::parse_task_line(text, line, "fuzz", max_line);
  AUTHRUN_FUZZ_CHECK(t.number == line);
  if (t.error) {
    AUTHRUN_FUZZ_CHECK(t.error->type == "bad_task");
    AUTHRUN_FUZZ_CHECK(t.error->message.compare(0, where.size(), where) == 0);
    return;
  }
  AUTHRUN_FUZZ_CHECK(text.size() <= max_line);
  check_no_nul(text);
  AUTHRUN_FUZZ_CHECK(!t.fn.empty());
  AUTHRUN_FUZZ_CHECK(t.id.is_string() || t.id.is_number());
  AUTHRUN_FUZZ_CHECK(!t.timeout_s || *t.timeout_s > 0);
  auto args = parse_json(t.args_json);
  AUTHRUN_FUZZ_CHECK(args.has_value());
}

// Values kept as text must be accepted exactly when the parsed decoding accepts them, and stand for the
// same values, on one line.
void fuzz_result_batch_text(std::string_view body) {
  const FrameHeader header{static_cast<std::uint8_t>(MessageType::result_batch), 0, static_cast<std::uint32_t>(body.size())};
  auto as_text = decode_frame(header, std::string(body), true);
  auto parsed = decode_frame(header, std::string(body), false);
  AUTHRUN_FUZZ_CHECK(as_text.has_value() == parsed.has_value());
  if (!as_text) return;
  const auto& text_results = std::get<ResultBatch>(*as_text).results;
  const auto& parsed_results = std::get<ResultBatch>(*parsed).results;
  AUTHRUN_FUZZ_CHECK(text_results.size() == parsed_results.size());
  for (std::size_t i = 0; i < text_results.size(); ++i) {
    const TaskResult& t = text_results[i];
    const TaskResult& p = parsed_results[i];
    AUTHRUN_FUZZ_CHECK(t.id == p.id && t.ok == p.ok);
    if (t.value_json.empty()) {
      AUTHRUN_FUZZ_CHECK(t.value == p.value);
      continue;
    }
    AUTHRUN_FUZZ_CHECK(t.value_json.find_first_of("\r\n") == std::string::npos);
    auto value = parse_json(t.value_json);
    AUTHRUN_FUZZ_CHECK(value.has_value() && *value == p.value);
  }
}

// A task batch taken from its text (only the args parsed) must be accepted exactly when the parsed
// decoding accepts it, with the same tasks.
void fuzz_task_batch_text(std::string_view body) {
  const FrameHeader header{static_cast<std::uint8_t>(MessageType::task_batch), 0, static_cast<std::uint32_t>(body.size())};
  auto from_text = decode_frame(header, std::string(body));
  auto parsed = decode_message(static_cast<std::uint8_t>(MessageType::task_batch), body);
  AUTHRUN_FUZZ_CHECK(from_text.has_value() == parsed.has_value());
  if (!from_text) {
    // Text both malformed and too deep may be refused for either: parse_json measures the depth first,
    // the scanner meets whichever comes first.
    const ErrorCode a = from_text.error().code, b = parsed.error().code;
    AUTHRUN_FUZZ_CHECK(a == b || a == ErrorCode::json_too_deep || b == ErrorCode::json_too_deep);
    return;
  }
  const auto& text_tasks = std::get<TaskBatch>(*from_text).tasks;
  const auto& parsed_tasks = std::get<TaskBatch>(*parsed).tasks;
  AUTHRUN_FUZZ_CHECK(text_tasks.size() == parsed_tasks.size());
  for (std::size_t i = 0; i < text_tasks.size(); ++i) {
    AUTHRUN_FUZZ_CHECK(text_tasks[i].id == parsed_tasks[i].id);
    AUTHRUN_FUZZ_CHECK(text_tasks[i].fn == parsed_tasks[i].fn);
    AUTHRUN_FUZZ_CHECK(text_tasks[i].args == parsed_tasks[i].args);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 3), size - 3);
  switch (data[0] % 6) {
    case 0: fuzz_decode_message(data[1], rest); break;
    case 1: fuzz_decode_frame(data[1], data[2], rest); break;
    case 2: fuzz_parse_json(rest, data[1] == 255 ? limits::json_max_depth : data[1] % 80); break;
    case 3: fuzz_task_line(rest, data[1], data[2] == 0 ? std::size_t(1) << 20 : std::size_t(data[2]) * 16); break;
    case 4: fuzz_result_batch_text(rest); break;
    case 5: fuzz_task_batch_text(rest); break;
  }
  return 0;
}
