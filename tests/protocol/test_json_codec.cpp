// Message bodies: every type round-trips; each malformed body gives an error naming the field; nesting is
// limited before anything is built.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "protocol/json_codec.hpp"
#include "protocol/limits.hpp"
#include "protocol/message.hpp"

using namespace authrun::protocol;

namespace {

std::uint8_t type_byte(MessageType t) { return static_cast<std::uint8_t>(t); }

Message round_trip(const Message& m) {
  auto decoded = decode_message(type_byte(type_of(m)), encode_body(m));
  REQUIRE(decoded.has_value());
  REQUIRE(decoded->index() == m.index());
  return *decoded;
}

// Decodes `body` as `type` and checks that it fails with `code` and a message containing every `parts`.
void check_fails(MessageType type, const std::string& body, ErrorCode code, std::initializer_list<const char*> parts) {
  auto decoded = decode_message(type_byte(type), body);
  REQUIRE(!decoded.has_value());
  CHECK(decoded.error().code == code);
  for (const char* part : parts) {
    INFO("message: ", decoded.error().message, "; expected to contain: ", part);
    CHECK(decoded.error().message.find(part) != std::string::npos);
  }
  if (type != MessageType::task_batch) return;
  // A task_batch frame is taken from its text (decode_frame): it must fail alike.
  FrameHeader header{type_byte(type), 0, static_cast<std::uint32_t>(body.size())};
  auto from_text = decode_frame(header, std::string(body));
  REQUIRE(!from_text.has_value());
  CHECK(from_text.error().code == code);
  for (const char* part : parts) {
    INFO("from its text: ", from_text.error().message, "; expected to contain: ", part);
    CHECK(from_text.error().message.find(part) != std::string::npos);
  }
}

const std::string k_hex64(64, 'a');

std::string hello_body(const std::string& replace_key = "", const std::string& with = "") {
  json j = {{"role", "worker"},       {"versions", {1}},           {"nonce", k_hex64},
            {"epk", std::string(64, 'b')}, {"modes", {"authenticated"}}, {"max_payload", 1024}};
  if (!replace_key.empty()) {
    if (with.empty()) j.erase(replace_key);
    else j[replace_key] = json::parse(with);
  }
  return j.dump();
}

std::string nested(int depth, const std::string& inner = "1") {
  return std::string(static_cast<std::size_t>(depth), '[') + inner + std::string(static_cast<std::size_t>(depth), ']');
}

}  // namespace

TEST_CASE("json_codec: hello round trips") {
  Hello h;
  h.role = Role::worker;
  h.versions = {1, 7};
  for (std::size_t i = 0; i < 32; ++i) {
    h.nonce[i] = static_cast<std::uint8_t>(i);
    h.ephemeral_public_key[i] = static_cast<std::uint8_t>(0xff - i);
  }
  h.modes = {ChannelMode::encrypted, ChannelMode::authenticated, ChannelMode::insecure_measurement};
  h.max_payload = 123456;
  auto out = std::get<Hello>(round_trip(h));
  CHECK(out.role == h.role);
  CHECK(out.versions == h.versions);
  CHECK(out.nonce == h.nonce);
  CHECK(out.ephemeral_public_key == h.ephemeral_public_key);
  CHECK(out.modes == h.modes);
  CHECK(out.max_payload == h.max_payload);
  // Keys sorted, hex lower case, no spaces: the bytes the transcript hash covers are predictable.
  CHECK(encode_body(h).substr(0, 8) == "{\"epk\":\"");
  CHECK(encode_body(h).find("\"nonce\":\"000102030405") != std::string::npos);
}

TEST_CASE("json_codec: proof round trips") {
  Proof p;
  for (std::size_t i = 0; i < 32; ++i) p.mac[i] = static_cast<std::uint8_t>(i * 7);
  CHECK(std::get<Proof>(round_trip(p)).mac == p.mac);
}

TEST_CASE("json_codec: outcome round trips") {
  Outcome o{false, "auth_failed", "proof does not verify"};
  auto out = std::get<Outcome>(round_trip(o));
  CHECK(!out.ok);
  CHECK(out.reason == o.reason);
  CHECK(out.message == o.message);
}

TEST_CASE("json_codec: task round trips") {
  Task t{18446744073709551615ull, "echo", json::parse(R"([1,"two",{"three":[3.5,null,true]}])")};
  auto out = std::get<Task>(round_trip(t));
  CHECK(out.id == t.id);
  CHECK(out.fn == "echo");
  CHECK(out.args == t.args);
  CHECK(encode_body(Task{1, "echo", json::parse("[1,2,3]")}) == R"({"args":[1,2,3],"fn":"echo","id":1})");
}

TEST_CASE("json_codec: task without args has null args") {
  auto decoded = decode_message(type_byte(MessageType::task), R"({"id":3,"fn":"noop"})");
  REQUIRE(decoded.has_value());
  CHECK(std::get<Task>(*decoded).args.is_null());
}

TEST_CASE("json_codec: successful result round trips") {
  TaskResult r;
  r.id = 42;
  r.ok = true;
  r.value = json::parse(R"({"sum":6})");
  auto out = std::get<TaskResult>(round_trip(r));
  CHECK(out.id == 42);
  CHECK(out.ok);
  CHECK(out.value == r.value);
}

TEST_CASE("json_codec: result with a null value round trips") {
  TaskResult r;
  r.id = 1;
  auto out = std::get<TaskResult>(round_trip(r));
  CHECK(out.ok);
  CHECK(out.value.is_null());
}

TEST_CASE("json_codec: failed result round trips") {
  TaskResult r;
  r.id = 7;
  r.ok = false;
  r.error = TaskError{"bad_args", "args must be an array", json::parse(R"({"got":"object"})")};
  auto out = std::get<TaskResult>(round_trip(r));
  CHECK(out.id == 7);
  CHECK(!out.ok);
  CHECK(out.error.type == "bad_args");
  CHECK(out.error.message == r.error.message);
  CHECK(out.error.details == r.error.details);

  r.error.details = nullptr;
  auto no_details = std::get<TaskResult>(round_trip(r));
  CHECK(no_details.error.details.is_null());
  CHECK(encode_body(r).find("details") == std::string::npos);
}

TEST_CASE("json_codec: protocol error round trips") {
  ProtocolError e{"bad_mac", "frame 3 failed authentication"};
  auto out = std::get<ProtocolError>(round_trip(e));
  CHECK(out.code == e.code);
  CHECK(out.message == e.message);
}

TEST_CASE("json_codec: shutdown round trips") {
  CHECK(encode_body(Shutdown{}) == "{}");
  round_trip(Shutdown{});
}

TEST_CASE("json_codec: invalid UTF-8 is replaced when encoding, never thrown") {
  Task t{1, "bad\xff\xfe", json::array({std::string("\xc3")})};
  std::string body = encode_body(t);
  CHECK(body.find("\xef\xbf\xbd") != std::string::npos);  // U+FFFD
  CHECK(decode_message(type_byte(MessageType::task), body).has_value());
}

TEST_CASE("json_codec: task without id") {
  check_fails(MessageType::task, R"({"fn":"echo","args":[]})", ErrorCode::malformed, {"task", "'id'", "missing"});
}

TEST_CASE("json_codec: task with id of the wrong type") {
  check_fails(MessageType::task, R"({"id":"1","fn":"echo"})", ErrorCode::malformed, {"'id'", "non-negative integer"});
}

TEST_CASE("json_codec: task with a negative id") {
  check_fails(MessageType::task, R"({"id":-1,"fn":"echo"})", ErrorCode::malformed, {"'id'"});
}

TEST_CASE("json_codec: task with a fractional id") {
  check_fails(MessageType::task, R"({"id":1.5,"fn":"echo"})", ErrorCode::malformed, {"'id'"});
}

TEST_CASE("json_codec: task without fn") {
  check_fails(MessageType::task, R"({"id":5})", ErrorCode::malformed, {"task 5", "'fn'", "missing"});
}

TEST_CASE("json_codec: task with fn of the wrong type") {
  check_fails(MessageType::task, R"({"id":5,"fn":["echo"]})", ErrorCode::malformed, {"task 5", "'fn'", "must be a string"});
}

TEST_CASE("json_codec: hello with a bad hex nonce") {
  check_fails(MessageType::hello, hello_body("nonce", "\"" + std::string(63, 'a') + "g\""), ErrorCode::malformed,
              {"hello", "'nonce'", "64 hex digits"});
}

TEST_CASE("json_codec: hello with a short nonce") {
  check_fails(MessageType::hello, hello_body("nonce", "\"abcd\""), ErrorCode::malformed, {"'nonce'", "64 hex digits"});
}

TEST_CASE("json_codec: hello with a nonce that is not a string") {
  check_fails(MessageType::hello, hello_body("nonce", "12"), ErrorCode::malformed, {"'nonce'", "must be a string"});
}

TEST_CASE("json_codec: hello without epk") {
  check_fails(MessageType::hello, hello_body("epk"), ErrorCode::malformed, {"'epk'", "missing"});
}

TEST_CASE("json_codec: hello with an unknown mode") {
  check_fails(MessageType::hello, hello_body("modes", R"(["authenticated","turbo"])"), ErrorCode::malformed,
              {"hello", "unknown channel mode 'turbo'"});
}

TEST_CASE("json_codec: hello with an empty mode list") {
  check_fails(MessageType::hello, hello_body("modes", "[]"), ErrorCode::malformed, {"'modes'"});
}

TEST_CASE("json_codec: hello with modes that are not strings") {
  check_fails(MessageType::hello, hello_body("modes", "[1]"), ErrorCode::malformed, {"'modes'", "strings"});
}

TEST_CASE("json_codec: hello with an unknown role") {
  check_fails(MessageType::hello, hello_body("role", "\"admin\""), ErrorCode::malformed, {"'role'"});
}

TEST_CASE("json_codec: hello with versions that are not an array") {
  check_fails(MessageType::hello, hello_body("versions", "1"), ErrorCode::malformed, {"'versions'"});
}

TEST_CASE("json_codec: hello with versions that are not integers") {
  check_fails(MessageType::hello, hello_body("versions", R"(["1"])"), ErrorCode::malformed, {"'versions'"});
}

TEST_CASE("json_codec: hello with a version out of range") {
  // 2^32 + 1 must not be read as version 1.
  check_fails(MessageType::hello, hello_body("versions", "[4294967297]"), ErrorCode::malformed, {"'versions'"});
  check_fails(MessageType::hello, hello_body("versions", "[-1]"), ErrorCode::malformed, {"'versions'"});
}

TEST_CASE("json_codec: hello with max_payload too large") {
  check_fails(MessageType::hello, hello_body("max_payload", "4294967295"), ErrorCode::malformed, {"'max_payload'"});
}

TEST_CASE("json_codec: hello without max_payload") {
  check_fails(MessageType::hello, hello_body("max_payload"), ErrorCode::malformed, {"'max_payload'", "missing"});
}

TEST_CASE("json_codec: proof with a bad mac") {
  check_fails(MessageType::proof, R"({"mac":"xyz"})", ErrorCode::malformed, {"proof", "'mac'"});
}

TEST_CASE("json_codec: outcome with ok that is not a boolean") {
  check_fails(MessageType::outcome, R"({"ok":"no","reason":"x","message":"y"})", ErrorCode::malformed, {"'ok'", "boolean"});
}

TEST_CASE("json_codec: outcome without reason") {
  check_fails(MessageType::outcome, R"({"ok":false,"message":"y"})", ErrorCode::malformed, {"'reason'"});
}

TEST_CASE("json_codec: a failure's outside_signal round trips, and is left out when 0") {
  TaskResult r;
  r.id = 9;
  r.ok = false;
  r.error = TaskError{"signal", "exec: 'sh' was killed by SIGTERM", nullptr};
  CHECK(encode_body(r).find("outside_signal") == std::string::npos);
  CHECK(std::get<TaskResult>(round_trip(r)).error.outside_signal == 0);
  r.error.outside_signal = 15;
  CHECK(encode_body(r).find(R"("outside_signal":15)") != std::string::npos);
  CHECK(std::get<TaskResult>(round_trip(r)).error.outside_signal == 15);
  // Inside a result_batch too (a failed entry is decoded as a lone result is).
  auto batch = std::get<ResultBatch>(round_trip(ResultBatch{{r}}));
  REQUIRE(batch.results.size() == 1);
  CHECK(batch.results[0].error.outside_signal == 15);
}

TEST_CASE("json_codec: a failure's outside_signal must be a signal number") {
  for (const char* bad : {"0", "65", "-15", "15.5", "\"TERM\"", "null", "true"}) {
    CAPTURE(bad);
    check_fails(MessageType::result,
                std::string(R"({"id":3,"ok":false,"error":{"type":"signal","message":"m","outside_signal":)") + bad + "}}",
                ErrorCode::malformed, {"result 3 error", "'outside_signal'", "1 to 64"});
  }
}

TEST_CASE("json_codec: successful result without value") {
  check_fails(MessageType::result, R"({"id":3,"ok":true})", ErrorCode::malformed, {"result 3", "'value'", "missing"});
}

TEST_CASE("json_codec: failed result whose error is not an object") {
  check_fails(MessageType::result, R"({"id":3,"ok":false,"error":"boom"})", ErrorCode::malformed, {"result 3", "'error'"});
}

TEST_CASE("json_codec: failed result whose error lacks a type") {
  check_fails(MessageType::result, R"({"id":3,"ok":false,"error":{"message":"m"}})", ErrorCode::malformed,
              {"result 3 error", "'type'"});
}

TEST_CASE("json_codec: result without ok") {
  check_fails(MessageType::result, R"({"id":3,"value":1})", ErrorCode::malformed, {"'ok'", "missing"});
}

TEST_CASE("json_codec: protocol error without code") {
  check_fails(MessageType::error, R"({"message":"m"})", ErrorCode::malformed, {"error", "'code'"});
}

TEST_CASE("json_codec: unknown message type") {
  for (int type : {0, 4, 15, 30, 255}) {  // 21 is program, 22 output, 23 and 24 the batches
    auto decoded = decode_message(static_cast<std::uint8_t>(type), "{}");
    REQUIRE(!decoded.has_value());
    CHECK(decoded.error().code == ErrorCode::unexpected);
    CHECK(decoded.error().message.find("unknown message type " + std::to_string(type)) != std::string::npos);
  }
}

TEST_CASE("json_codec: worker_info round trip and field errors") {
  auto decoded = decode_message(static_cast<std::uint8_t>(MessageType::worker_info),
                                encode_body(WorkerInfo{"node07", 41234}, BodyFormat::json));
  REQUIRE(decoded.has_value());
  const auto& info = std::get<WorkerInfo>(*decoded);
  CHECK(info.host == "node07");
  CHECK(info.pid == 41234);
  // Only host name characters reach logs and results: a terminal escape does not.
  auto escaped = decode_message(static_cast<std::uint8_t>(MessageType::worker_info), "{\"host\":\"n\\u001b[2Jx\",\"pid\":1}");
  REQUIRE(escaped.has_value());
  CHECK(std::get<WorkerInfo>(*escaped).host == "n??2Jx");
  // Non-ASCII characters are kept whole (UTF-8), each byte of anything unprintable becomes '?': invalid
  // UTF-8, a C1 control (U+009B, a CSI), a bidirectional override (U+202E).
  auto host_of = [](const std::string& host) {
    auto got = decode_message(static_cast<std::uint8_t>(MessageType::worker_info), json{{"host", host}, {"pid", 1}}.dump());
    REQUIRE(got.has_value());
    return std::get<WorkerInfo>(*got).host;
  };
  CHECK(host_of("nod\xc3\xa9") == "nod\xc3\xa9");
  CHECK(host_of("\xe3\x83\x8e\xe3\x83\xbc\xe3\x83\x89-7") == "\xe3\x83\x8e\xe3\x83\xbc\xe3\x83\x89-7");
  CHECK(host_of("a\xc2\x9b" "b") == "a??b");
  CHECK(host_of("a\xe2\x80\xae" "b") == "a???b");
  CHECK(host_of("a b/c") == "a?b?c");
  CHECK(host_of(std::string(255, 'h')).size() == 255);
  // Bytes, not characters, count: 128 two-byte characters are 256 bytes.
  std::string wide;
  for (int i = 0; i < 128; ++i) wide += "\xc3\xa9";
  check_fails(MessageType::worker_info, json{{"host", wide}, {"pid", 1}}.dump(), ErrorCode::malformed, {"worker_info", "255 bytes"});
  check_fails(MessageType::worker_info, R"({"pid":1})", ErrorCode::malformed, {"worker_info", "'host'"});
  check_fails(MessageType::worker_info, R"({"host":"h","pid":-1})", ErrorCode::malformed, {"worker_info", "pid"});
  check_fails(MessageType::worker_info, "{\"host\":\"" + std::string(256, 'h') + "\",\"pid\":1}", ErrorCode::malformed,
              {"worker_info", "255"});
}

TEST_CASE("json_codec: body that is not an object") {
  for (const char* body : {"[1,2]", "\"task\"", "42", "null", "true"}) {
    CAPTURE(body);
    check_fails(MessageType::task, body, ErrorCode::malformed, {"task body must be a JSON object"});
  }
}

TEST_CASE("json_codec: invalid JSON") {
  check_fails(MessageType::task, R"({"id":1,"fn":"echo",)", ErrorCode::malformed, {"task body", "column"});
  check_fails(MessageType::task, R"({"id":1}}")", ErrorCode::malformed, {"task body"});
  check_fails(MessageType::result, "", ErrorCode::malformed, {"result body"});
  check_fails(MessageType::hello, "{'role':'worker'}", ErrorCode::malformed, {"hello body"});
}

TEST_CASE("json_codec: nesting exactly at the limit is accepted") {
  auto parsed = parse_json(nested(limits::json_max_depth));
  CHECK(parsed.has_value());
  // In a task body the object itself is one level.
  std::string body = R"({"id":1,"fn":"echo","args":)" + nested(limits::json_max_depth - 1) + "}";
  CHECK(decode_message(type_byte(MessageType::task), body).has_value());
}

TEST_CASE("json_codec: nesting one past the limit is rejected") {
  auto parsed = parse_json(nested(limits::json_max_depth + 1));
  REQUIRE(!parsed.has_value());
  CHECK(parsed.error().code == ErrorCode::json_too_deep);
  std::string body = R"({"id":1,"fn":"echo","args":)" + nested(limits::json_max_depth) + "}";
  check_fails(MessageType::task, body, ErrorCode::json_too_deep, {"task body"});
}

TEST_CASE("json_codec: objects count toward the depth") {
  std::string deep;
  for (int i = 0; i <= limits::json_max_depth; ++i) deep += "{\"a\":";
  deep += "1" + std::string(static_cast<std::size_t>(limits::json_max_depth + 1), '}');
  auto parsed = parse_json(deep);
  REQUIRE(!parsed.has_value());
  CHECK(parsed.error().code == ErrorCode::json_too_deep);
}

TEST_CASE("json_codec: 100000-deep input is rejected without crashing") {
  auto parsed = parse_json(nested(100'000));
  REQUIRE(!parsed.has_value());
  CHECK(parsed.error().code == ErrorCode::json_too_deep);
  // Unclosed, and as a message body.
  check_fails(MessageType::task, std::string(100'000, '['), ErrorCode::json_too_deep, {});
  std::string objects;
  for (int i = 0; i < 100'000; ++i) objects += "{\"a\":";
  check_fails(MessageType::result, objects, ErrorCode::json_too_deep, {});
}

TEST_CASE("json_codec: brackets inside strings are not counted") {
  std::string brackets(1000, '[');
  std::string body = R"({"id":1,"fn":")" + brackets + R"(","args":[")" + std::string(1000, '{') + R"(\"[[["]})";
  auto decoded = decode_message(type_byte(MessageType::task), body);
  REQUIRE(decoded.has_value());
  CHECK(std::get<Task>(*decoded).fn == brackets);
  CHECK(std::get<Task>(*decoded).args[0] == std::string(1000, '{') + "\"[[[");
}

TEST_CASE("json_codec: an escaped backslash ends before the closing quote") {
  // "\\" is a complete string; the brackets after it are structure and must be counted.
  std::string text = "[\"\\\\\"," + nested(limits::json_max_depth) + "]";
  auto parsed = parse_json(text);
  REQUIRE(!parsed.has_value());
  CHECK(parsed.error().code == ErrorCode::json_too_deep);
}

TEST_CASE("json_codec: stray closing brackets do not buy extra depth") {
  std::string text = std::string(10, ']') + nested(limits::json_max_depth + 5);
  auto parsed = parse_json(text);
  REQUIRE(!parsed.has_value());
  CHECK(parsed.error().code == ErrorCode::malformed);
}

TEST_CASE("json_codec: field readers name the field and the place") {
  json j = json::parse(R"({"name":"x","count":3,"neg":-2})");
  CHECK(*string_field(j, "name", "line 3") == "x");
  CHECK(*uint_field(j, "count", "line 3") == 3);
  auto missing = string_field(j, "other", "line 3");
  REQUIRE(!missing.has_value());
  CHECK(missing.error().message == "line 3: field 'other' is missing");
  auto wrong = uint_field(j, "neg", "line 4");
  REQUIRE(!wrong.has_value());
  CHECK(wrong.error().message == "line 4: field 'neg' must be a non-negative integer");
  auto not_object = string_field(json::array(), "name", "line 5");
  REQUIRE(!not_object.has_value());
  CHECK(not_object.error().message.find("line 5") == 0);
}

namespace {

FrameHeader data_header(MessageType type, std::uint16_t flags, std::size_t length) {
  return FrameHeader{static_cast<std::uint8_t>(type), flags, static_cast<std::uint32_t>(length)};
}

std::string with_attachment(const std::string& body, const std::string& attachment) {
  std::string payload(4, '\0');
  store_le32(reinterpret_cast<std::uint8_t*>(payload.data()), static_cast<std::uint32_t>(body.size()));
  return payload + body + attachment;
}

}  // namespace

TEST_CASE("json_codec: task and result round trip in CBOR and MessagePack") {
  for (BodyFormat format : {BodyFormat::json, BodyFormat::cbor, BodyFormat::msgpack}) {
    CAPTURE(int(format));
    Task t{9, "echo", json::parse(R"([1,"two",{"three":[3.5,null,true]}])")};
    std::string body = encode_body(t, format);
    if (format != BodyFormat::json) CHECK(body.find('{') == std::string::npos);
    auto decoded = decode_frame(data_header(MessageType::task, static_cast<std::uint16_t>(format), body.size()),
                                std::move(body));
    REQUIRE(decoded.has_value());
    Task out = std::get<Task>(*decoded);
    CHECK(out.id == 9);
    CHECK(out.args == t.args);
    CHECK(out.format == format);

    TaskResult r;
    r.id = 9;
    r.value = json::object({{"k", 1}});
    std::string rbody = encode_body(r, format);
    auto rdecoded = decode_frame(data_header(MessageType::result, static_cast<std::uint16_t>(format), rbody.size()),
                                 std::move(rbody));
    REQUIRE(rdecoded.has_value());
    CHECK(std::get<TaskResult>(*rdecoded).value == r.value);
  }
}

TEST_CASE("json_codec: attachment is split from the body") {
  std::string body = encode_body(Task{3, "sha256", nullptr});
  std::string attachment = std::string("\0\xff raw bytes", 12);
  std::string payload = with_attachment(body, attachment);
  auto decoded = decode_frame(data_header(MessageType::task, k_flag_attachment, payload.size()), std::move(payload));
  REQUIRE(decoded.has_value());
  Task t = std::get<Task>(*decoded);
  CHECK(t.fn == "sha256");
  CHECK(t.attachment.view() == attachment);
}

TEST_CASE("json_codec: attachment frame shorter than its body length prefix") {
  std::string payload = "\x01\x00";
  auto decoded = decode_frame(data_header(MessageType::task, k_flag_attachment, payload.size()), std::move(payload));
  REQUIRE(!decoded.has_value());
  CHECK(decoded.error().code == ErrorCode::malformed);
}

TEST_CASE("json_codec: attachment body length beyond the payload") {
  std::string body = encode_body(Task{3, "x", nullptr});
  std::string payload = with_attachment(body, "");
  store_le32(reinterpret_cast<std::uint8_t*>(payload.data()), static_cast<std::uint32_t>(body.size() + 1));
  auto decoded = decode_frame(data_header(MessageType::task, k_flag_attachment, payload.size()), std::move(payload));
  REQUIRE(!decoded.has_value());
  CHECK(decoded.error().code == ErrorCode::malformed);
  CHECK(decoded.error().message.find("exceeds") != std::string::npos);
}

TEST_CASE("json_codec: attachment on a message that cannot carry one") {
  std::string payload = with_attachment("{}", "data");
  auto decoded = decode_frame(data_header(MessageType::shutdown, k_flag_attachment, payload.size()), std::move(payload));
  REQUIRE(!decoded.has_value());
  CHECK(decoded.error().code == ErrorCode::malformed);
}

TEST_CASE("json_codec: binary format on a message that cannot use one") {
  std::string body = encode_body(ProtocolError{"bad_mac", "m"}, BodyFormat::cbor);
  auto decoded = decode_frame(data_header(MessageType::error, 1, body.size()), std::move(body));
  REQUIRE(!decoded.has_value());
  CHECK(decoded.error().code == ErrorCode::malformed);
}

TEST_CASE("json_codec: invalid CBOR") {
  std::string body = "\xa1\x62id";  // a map of one entry, cut after the key
  auto decoded = decode_frame(data_header(MessageType::task, 1, body.size()), std::move(body));
  REQUIRE(!decoded.has_value());
  CHECK(decoded.error().code == ErrorCode::malformed);
  CHECK(decoded.error().message.find("CBOR") != std::string::npos);
}

TEST_CASE("json_codec: CBOR task missing its id names the field") {
  std::string body = encode_body(Task{1, "echo", nullptr}, BodyFormat::cbor);
  json j = json::from_cbor(body);
  j.erase("id");
  std::vector<std::uint8_t> bytes = json::to_cbor(j);
  auto decoded = decode_frame(data_header(MessageType::task, 1, bytes.size()), std::string(bytes.begin(), bytes.end()));
  REQUIRE(!decoded.has_value());
  CHECK(decoded.error().message.find("'id'") != std::string::npos);
}

TEST_CASE("json_codec: 100000-deep CBOR and MessagePack are rejected without crashing") {
  // 0x81 / 0x91: an array of one element, nested 100000 times around the integer 1.
  for (auto [format, byte] : {std::pair{BodyFormat::cbor, '\x81'}, std::pair{BodyFormat::msgpack, '\x91'}}) {
    CAPTURE(int(format));
    std::string body = "\xa1\x62id" + std::string(100'000, byte) + "\x01";
    if (format == BodyFormat::msgpack) body = "\x81\xa2id" + std::string(100'000, byte) + "\x01";
    auto decoded = decode_frame(data_header(MessageType::task, static_cast<std::uint16_t>(format), body.size()),
                                std::move(body));
    REQUIRE(!decoded.has_value());
    CHECK(decoded.error().code == ErrorCode::json_too_deep);
  }
}

TEST_CASE("json_codec: CBOR nesting exactly at the limit is accepted") {
  json args = 1;
  for (int i = 0; i < limits::json_max_depth - 1; ++i) args = json::array({args});
  std::string body = encode_body(Task{1, "echo", args}, BodyFormat::cbor);
  auto decoded = decode_frame(data_header(MessageType::task, 1, body.size()), std::move(body));
  REQUIRE(decoded.has_value());
  args = json::array({args});
  std::string deeper = encode_body(Task{1, "echo", args}, BodyFormat::cbor);
  auto refused = decode_frame(data_header(MessageType::task, 1, deeper.size()), std::move(deeper));
  REQUIRE(!refused.has_value());
  CHECK(refused.error().code == ErrorCode::json_too_deep);
}

TEST_CASE("json_codec: a NUL byte ends nothing: text after it is not ignored") {
  const std::string text("{\"fn\":\"a\"}\0{\"fn\":", 17);
  auto parsed = parse_json(text);
  REQUIRE(!parsed);
  CHECK(parsed.error().code == ErrorCode::malformed);
  CHECK(parsed.error().message.find("NUL byte at offset 10") != std::string::npos);
  auto msg = decode_message(static_cast<std::uint8_t>(MessageType::task), std::string("{\"id\":1,\"fn\":\"f\"}\0junk", 22));
  REQUIRE(!msg);
  CHECK(msg.error().code == ErrorCode::malformed);
}

TEST_CASE("json_codec: output message (type 22) carries its bytes as the attachment, field errors") {
  const std::string bytes("caf\xe9\0\xff", 6);
  Output o;
  o.id = 12;
  o.is_stderr = true;
  std::string body = encode_body(o);
  CHECK(json::parse(body) == json{{"id", 12}, {"stream", "stderr"}});
  std::string payload = with_attachment(body, bytes);
  auto decoded = decode_frame(data_header(MessageType::output, k_flag_attachment, payload.size()), std::move(payload));
  REQUIRE(decoded.has_value());
  const Output& got = std::get<Output>(*decoded);
  CHECK(got.id == 12);
  CHECK(got.is_stderr);
  CHECK(got.data.view() == bytes);
  CHECK(type_of(*decoded) == MessageType::output);
  CHECK(std::string(to_string(MessageType::output)) == "output");

  check_fails(MessageType::output, R"({"stream":"stdout"})", ErrorCode::malformed, {"output", "'id'"});
  check_fails(MessageType::output, R"({"id":1})", ErrorCode::malformed, {"output for task 1", "'stream'"});
  check_fails(MessageType::output, R"({"id":1,"stream":"stdin"})", ErrorCode::malformed, {"output for task 1", "'stream'", "stdout"});
  // Its body is JSON: a CBOR output frame is refused.
  std::string cbor = encode_body(o, BodyFormat::cbor);
  auto refused = decode_frame(data_header(MessageType::output, static_cast<std::uint16_t>(BodyFormat::cbor), cbor.size()), std::move(cbor));
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error().code == ErrorCode::malformed);
  // The message says what is wrong (the format), not that output frames take no attachment: they do.
  CHECK(refused.error().message.find("JSON body") != std::string::npos);
  CHECK(refused.error().message.find("no attachment") == std::string::npos);
}

TEST_CASE("json_codec: task_batch and result_batch round trip, entries in order") {
  TaskBatch batch;
  for (std::uint64_t i = 0; i < 5; ++i) batch.tasks.emplace_back(i, "echo", json{{"i", i}});
  auto tasks = std::get<TaskBatch>(round_trip(batch)).tasks;
  REQUIRE(tasks.size() == 5);
  for (std::uint64_t i = 0; i < 5; ++i) {
    CHECK(tasks[i].id == i);
    CHECK(tasks[i].fn == "echo");
    CHECK(tasks[i].args == json{{"i", i}});
  }
  ResultBatch results;
  results.results.emplace_back(1, true, json("one"));
  results.results.emplace_back(2, false, nullptr, TaskError{"boom", "it failed", json{{"at", 3}}});
  auto back = std::get<ResultBatch>(round_trip(results)).results;
  REQUIRE(back.size() == 2);
  CHECK((back[0].id == 1 && back[0].ok && back[0].value == "one"));
  CHECK((back[1].id == 2 && !back[1].ok && back[1].error.type == "boom" && back[1].error.details == json{{"at", 3}}));
}

TEST_CASE("json_codec: a task_batch frame is taken from its text: the same tasks as parsed") {
  // Plain entries (only their args parsed) and unusual ones (decoded as a parsed batch's are) alike.
  const std::string body =
      R"({"tasks":[{"id":1,"fn":"echo","args":[1,"caf\u00e9\n",{"b":2.5,"a":null}]},)"
      R"({"args":-7,"fn":"f\u006e","id":2},)"  // keys in another order; an escape in the fn
      R"({"i\u0064":3,"fn":"x"},)"              // an escape in a key
      R"({"id":4,"fn":"y","other":true},)"      // a field a task does not have
      R"({"id":5,"fn":"z","id":6},)"            // a key twice: its last value counts
      R"({"id":7,"fn":"w"}]})";                // no args
  FrameHeader header{type_byte(MessageType::task_batch), 0, static_cast<std::uint32_t>(body.size())};
  auto from_text = decode_frame(header, std::string(body));
  auto parsed = decode_message(type_byte(MessageType::task_batch), body);
  REQUIRE(from_text.has_value());
  REQUIRE(parsed.has_value());
  const auto& got = std::get<TaskBatch>(*from_text).tasks;
  const auto& want = std::get<TaskBatch>(*parsed).tasks;
  REQUIRE(got.size() == 6);
  REQUIRE(want.size() == 6);
  for (std::size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i].id == want[i].id);
    CHECK(got[i].fn == want[i].fn);
    CHECK(got[i].args == want[i].args);
  }
  CHECK(got[0].args == json::parse(R"([1,"caf\u00e9\n",{"a":null,"b":2.5}])"));
  CHECK((got[1].id == 2 && got[1].fn == "fn" && got[1].args == -7));
  CHECK((got[2].id == 3 && got[3].id == 4 && got[4].id == 6 && got[5].args.is_null()));
  // Another spelling of the body (checked whole first) gives the same, and a member after the tasks too.
  for (const std::string& other : {std::string(R"( { "tasks" : [{"id":1,"fn":"echo"}] } )"),
                                  std::string(R"({"tasks":[{"id":1,"fn":"echo"}],"x":[2]})")}) {
    CAPTURE(other);
    FrameHeader h{type_byte(MessageType::task_batch), 0, static_cast<std::uint32_t>(other.size())};
    auto decoded = decode_frame(h, std::string(other));
    REQUIRE(decoded.has_value());
    const auto& tasks = std::get<TaskBatch>(*decoded).tasks;
    REQUIRE(tasks.size() == 1);
    CHECK((tasks[0].id == 1 && tasks[0].fn == "echo" && tasks[0].args.is_null()));
  }
  // Numbers that are no task id fail as they do parsed.
  check_fails(MessageType::task_batch, R"({"tasks":[{"id":18446744073709551616,"fn":"a"}]})", ErrorCode::malformed,
              {"task_batch tasks[0]", "'id'"});
  check_fails(MessageType::task_batch, R"({"tasks":[{"id":-1,"fn":"a"}]})", ErrorCode::malformed, {"tasks[0]", "'id'"});
  check_fails(MessageType::task_batch, R"({"tasks":[{"id":1.0,"fn":"a"}]})", ErrorCode::malformed, {"tasks[0]", "'id'"});
  check_fails(MessageType::task_batch, R"({"tasks":[{"id":1,"fn":"a","args":[1e400]}]})", ErrorCode::malformed, {});
}

TEST_CASE("json_codec: a successful result's JSON body is the bytes its body object dumps to") {
  // The worker writes it without building the object; a peer in another language must see the same bytes.
  TaskResult r(9, true, json{{"b", {1, 2.5, "x\u00e9"}}, {"a", nullptr}});
  CHECK(encode_body(r) == json{{"id", 9}, {"ok", true}, {"value", r.value}}.dump());
}

TEST_CASE("json_codec: a bad batch names the batch and the entry") {
  check_fails(MessageType::task_batch, R"({})", ErrorCode::malformed, {"task_batch", "'tasks'", "missing"});
  check_fails(MessageType::task_batch, R"({"tasks":[]})", ErrorCode::malformed, {"task_batch", "'tasks'", "1 to 4096"});
  check_fails(MessageType::task_batch, R"({"tasks":{"id":1}})", ErrorCode::malformed, {"'tasks'", "array"});
  check_fails(MessageType::task_batch, R"({"tasks":[{"id":1,"fn":"a"},7]})", ErrorCode::malformed,
              {"task_batch tasks[1]", "object"});
  check_fails(MessageType::task_batch, R"({"tasks":[{"id":1,"fn":"a"},{"id":2}]})", ErrorCode::malformed,
              {"task_batch tasks[1]", "'fn'"});
  check_fails(MessageType::result_batch, R"({"results":[{"id":1,"ok":"yes"}]})", ErrorCode::malformed,
              {"result_batch results[0]", "'ok'"});
  std::string many = R"({"tasks":[)";
  for (std::size_t i = 0; i <= limits::max_batch_entries; ++i) many += (i ? "," : "") + std::string(R"({"id":1,"fn":"a"})");
  check_fails(MessageType::task_batch, many + "]}", ErrorCode::malformed, {"'tasks'", "1 to 4096"});
}

TEST_CASE("json_codec: a batch's entries may nest as deep as a lone task's, and no deeper") {
  const int deepest_args = limits::json_max_depth - 1;  // the task object is one level
  const std::string task = R"({"id":1,"fn":"a","args":)" + nested(deepest_args) + "}";
  REQUIRE(decode_message(type_byte(MessageType::task), task).has_value());
  CHECK(decode_message(type_byte(MessageType::task_batch), R"({"tasks":[)" + task + "]}").has_value());
  const std::string deeper = R"({"id":1,"fn":"a","args":)" + nested(deepest_args + 1) + "}";
  check_fails(MessageType::task_batch, R"({"tasks":[)" + deeper + "]}", ErrorCode::json_too_deep, {"task_batch body"});
}

TEST_CASE("json_codec: worker_info says whether the worker takes batches") {
  WorkerInfo info{"h", 1};
  CHECK(encode_body(info) == R"({"host":"h","pid":1})");  // unchanged for a worker without batches
  info.batches = true;
  auto back = std::get<WorkerInfo>(round_trip(info));
  CHECK(back.batches);
  CHECK(!std::get<WorkerInfo>(round_trip(WorkerInfo{"h", 1})).batches);
  check_fails(MessageType::worker_info, R"({"host":"h","pid":1,"batches":"yes"})", ErrorCode::malformed,
              {"worker_info", "'batches'", "boolean"});
}

namespace {

Result<Message> decode_as_text(const std::string& body) {
  FrameHeader header{static_cast<std::uint8_t>(MessageType::result_batch), 0, static_cast<std::uint32_t>(body.size())};
  return decode_frame(header, std::string(body), true);
}

}  // namespace

TEST_CASE("json_codec: a result_batch decoded for passing on keeps successful values as their text") {
  auto decoded = decode_as_text(
      R"({"results":[{"id":1,"ok":true,"value":{"b":[1,2.5,"caf\u00e9"],"a":null}},)"
      R"({"value":"x","ok":true,"id":2},)"
      R"({"id":3,"ok":false,"error":{"type":"boom","message":"m"}},)"
      "{\"id\":4,\"ok\":true,\"value\":[1,\n2]}]}");
  REQUIRE(decoded.has_value());
  auto& results = std::get<ResultBatch>(*decoded).results;
  REQUIRE(results.size() == 4);
  // As sent, byte for byte, with the parsed value left empty.
  CHECK(results[0].id == 1);
  CHECK(results[0].value_json == R"({"b":[1,2.5,"caf\u00e9"],"a":null})");
  CHECK(results[0].value.is_null());
  CHECK((results[1].id == 2 && results[1].value_json == "\"x\""));
  // A failure, and a value spanning lines (it would break a JSONL line), are decoded as usual.
  CHECK((results[2].id == 3 && !results[2].ok && results[2].error.type == "boom"));
  CHECK((results[3].id == 4 && results[3].value_json.empty() && results[3].value == json{1, 2}));
}

TEST_CASE("json_codec: a result_batch decoded for passing on is checked as strictly as a parsed one") {
  auto fails = [](const std::string& body, ErrorCode code, const char* part) {
    CAPTURE(body);
    auto decoded = decode_as_text(body);
    REQUIRE(!decoded.has_value());
    CHECK(decoded.error().code == code);
    INFO("message: " << decoded.error().message);
    CHECK(decoded.error().message.find(part) != std::string::npos);
  };
  fails("{\"results\":[{\"id\":1,\"ok\":true,\"value\":\"\xff\"}]}", ErrorCode::malformed, "UTF-8");
  fails(R"({"results":[{"id":1,"ok":true,"value":[1,]}]})", ErrorCode::malformed, "result_batch body");
  fails(R"({"results":[{"id":-1,"ok":true,"value":1}]})", ErrorCode::malformed, "result_batch results[0]");
  fails(R"({"results":[{"id":1,"ok":true}]})", ErrorCode::malformed, "'value'");
  fails(R"({"results":[7]})", ErrorCode::malformed, "results[0] must be an object");
  fails(R"({"results":[]})", ErrorCode::malformed, "1 to 4096");
  fails(R"({"results":{}})", ErrorCode::malformed, "1 to 4096");
  fails(R"({"other":1})", ErrorCode::malformed, "'results'");
  fails(R"([1])", ErrorCode::malformed, "must be a JSON object");
  const std::string deep = R"({"results":[{"id":1,"ok":true,"value":)" + nested(limits::json_max_depth - 1) + "}]}";
  CHECK(decode_as_text(deep).has_value());
  const std::string deeper = R"({"results":[{"id":1,"ok":true,"value":)" + nested(limits::json_max_depth) + "}]}";
  fails(deeper, ErrorCode::json_too_deep, "result_batch");
}

namespace {

Result<Message> decode_typed(MessageType type, const std::string& body, bool values_as_text, bool args_as_text) {
  FrameHeader header{static_cast<std::uint8_t>(type), 0, static_cast<std::uint32_t>(body.size())};
  return decode_frame(header, std::string(body), values_as_text, args_as_text);
}

}  // namespace

TEST_CASE("json_codec: a lone result decoded for passing on keeps its value as text: an integer beyond 64 bits stays exact") {
  const std::string big = "340282366920938463463374607431768211457";  // 2**128 + 1
  auto decoded = decode_typed(MessageType::result, R"({"id":7,"ok":true,"value":[)" + big + "]}", true, false);
  REQUIRE(decoded.has_value());
  const auto& r = std::get<TaskResult>(*decoded);
  CHECK(r.id == 7);
  CHECK(r.value_json == "[" + big + "]");
  // Parsed, the same number becomes a double: what the text path is for.
  auto parsed = decode_typed(MessageType::result, R"({"id":7,"ok":true,"value":[)" + big + "]}", false, false);
  REQUIRE(parsed.has_value());
  CHECK(std::get<TaskResult>(*parsed).value[0].is_number_float());
  // A failed result is decoded as usual.
  auto failed = decode_typed(MessageType::result, R"({"id":8,"ok":false,"error":{"type":"t","message":"m"}})", true, false);
  REQUIRE(failed.has_value());
  CHECK(std::get<TaskResult>(*failed).value_json.empty());
  // And a value's text is what the encoder sends when it is set.
  TaskResult out;
  out.id = 9;
  out.value_json = big;
  CHECK(encode_body(out) == R"({"id":9,"ok":true,"value":)" + big + "}");
}

TEST_CASE("json_codec: tasks decoded with args as text keep them exact, alone and in a batch") {
  const std::string big = "-18446744073709551617";
  auto lone = decode_typed(MessageType::task, R"({"id":1,"fn":"f","args":[)" + big + R"(,{"a":1}]})", false, true);
  REQUIRE(lone.has_value());
  const auto& t = std::get<Task>(*lone);
  CHECK((t.id == 1 && t.fn == "f"));
  CHECK(t.args_json == "[" + big + R"(,{"a":1}])");
  CHECK(t.args.is_null());
  auto batch = decode_typed(MessageType::task_batch,
                            R"({"tasks":[{"id":2,"fn":"g","args":)" + big + R"(},{"id":3,"fn":"h"}]})", false, true);
  REQUIRE(batch.has_value());
  const auto& tasks = std::get<TaskBatch>(*batch).tasks;
  REQUIRE(tasks.size() == 2);
  CHECK(tasks[0].args_json == big);
  CHECK((tasks[1].fn == "h" && tasks[1].args_json.empty() && tasks[1].args.is_null()));
  // Malformed text is refused as on the parsed path.
  CHECK(!decode_typed(MessageType::task, R"({"id":1,"fn":"f","args":[1,})", false, true).has_value());
}

TEST_CASE("json_codec: append_json_string writes what dump_json writes, escapes and bad UTF-8 included") {
  const std::vector<std::string> pieces = {"a", "\"", "\\", "\n", "\r", "\t", "\b", "\f", "\x01", "\x1f", "\x7f",
                                           "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xc3", "\xff", "\xed\xa0\x80",
                                           "\xe0\x80\xaf", "/", std::string(1, '\0'), "xxxxxxx"};
  std::uint32_t seed = 12345;
  const auto next = [&seed] { return seed = seed * 1664525u + 1013904223u; };
  for (int i = 0; i < 3000; ++i) {
    std::string s;
    for (std::uint32_t n = next() % 12; n > 0; --n) s += pieces[next() % pieces.size()];
    std::string out = "prefix:";
    append_json_string(out, s);
    CAPTURE(s);
    CHECK(out == "prefix:" + dump_json(json(s)));
  }
}
