// JSON parsing with a depth limit, message bodies, field-named errors.
#include "protocol/json_codec.hpp"

#include <sodium.h>

#include <cctype>
#include <charconv>
#include <climits>
#include <cmath>
#include <array>
#include <limits>
#include <optional>
#include <span>
#include <utility>

#include "protocol/json_text.hpp"
#include "protocol/peer_text.hpp"

namespace authrun::protocol {

namespace {

// Finds the nesting depth of JSON text without building anything; stops early once past `max_depth`.
// Strings are skipped (with their escapes), so brackets inside them do not count.
int scan_depth(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > max_depth) return depth;
    } else if (c == ']' || c == '}') --depth;
  }
  return 0;
}

// Builds the value of a CBOR or MessagePack body in one pass (nlohmann's own DOM builder), refusing nesting
// deeper than the limit as it goes. The library's binary readers recurse once per level, so stopping at the
// limit also bounds the stack; and a byte string is moved into the value, not copied again.
class DepthLimitedBuilder {
 public:
  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  DepthLimitedBuilder(json& result, int max_depth) : m_dom(result, false), m_max(max_depth) {}
  bool null() { return m_dom.null(); }
  bool boolean(bool v) { return m_dom.boolean(v); }
  bool number_integer(number_integer_t v) { return m_dom.number_integer(v); }
  bool number_unsigned(number_unsigned_t v) { return m_dom.number_unsigned(v); }
  bool number_float(number_float_t v, const string_t& s) { return m_dom.number_float(v, s); }
  bool string(string_t& v) { return m_dom.string(v); }
  bool binary(binary_t& v) { return m_dom.binary(v); }
  bool start_object(std::size_t n) { return enter() && m_dom.start_object(n); }
  bool key(string_t& k) { return m_dom.key(k); }
  bool end_object() {
    --m_depth;
    return m_dom.end_object();
  }
  bool start_array(std::size_t n) { return enter() && m_dom.start_array(n); }
  bool end_array() {
    --m_depth;
    return m_dom.end_array();
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    m_error = e.what();
    return false;
  }
  bool too_deep() const { return m_too_deep; }
  const std::string& error() const { return m_error; }

 private:
  bool enter() {
    if (++m_depth <= m_max) return true;
    m_too_deep = true;
    return false;
  }
  nlohmann::detail::json_sax_dom_parser<json> m_dom;
  int m_max;
  int m_depth = 0;
  bool m_too_deep = false;
  std::string m_error;
};

// Parses a CBOR or MessagePack body with the depth limit checked while it is built.
Result<json> parse_binary(std::string_view body, BodyFormat format, int max_depth) {
  const char* name = format == BodyFormat::cbor ? "CBOR" : "MessagePack";
  const auto input_format = format == BodyFormat::cbor ? json::input_format_t::cbor : json::input_format_t::msgpack;
  json result;
  DepthLimitedBuilder builder(result, max_depth);
  try {
    if (!json::sax_parse(body.begin(), body.end(), &builder, input_format, true)) {
      if (builder.too_deep()) {
        return make_error(ErrorCode::json_too_deep, std::string(name) + " nested deeper than " + std::to_string(max_depth) + " levels");
      }
      return make_error(ErrorCode::malformed, std::string(name) + ": " +
                                                  (builder.error().empty() ? std::string("invalid input") : builder.error()));
    }
    return result;
  } catch (const json::exception& e) {
    return make_error(ErrorCode::malformed, std::string(name) + ": " + e.what());
  }
}

Error field_error(const std::string& what, const char* field, const char* problem) {
  return make_error(ErrorCode::malformed, what + ": field '" + field + "' " + problem);
}

Result<const json*> find_field(const json& object, const char* field, const std::string& what) {
  if (!object.is_object()) return make_error(ErrorCode::malformed, what + ": body must be a JSON object");
  auto it = object.find(field);
  if (it == object.end()) return field_error(what, field, "is missing");
  return &*it;
}

std::string to_hex(const Bytes32& bytes) {
  char out[65];
  ::sodium_bin2hex(out, sizeof out, bytes.data(), bytes.size());
  return out;
}

Result<Bytes32> hex32_field(const json& object, const char* field, const std::string& what) {
  AUTHRUN_TRY_ASSIGN(std::string hex, string_field(object, field, what));
  Bytes32 out{};
  std::size_t n = 0;
  if (hex.size() != 64 || ::sodium_hex2bin(out.data(), out.size(), hex.data(), hex.size(), nullptr, &n, nullptr) != 0 ||
      n != 32) {
    return field_error(what, field, "must be 64 hex digits");
  }
  return out;
}

Result<ChannelMode> mode_from_string(const std::string& s, const std::string& what) {
  for (ChannelMode m : {ChannelMode::authenticated, ChannelMode::encrypted, ChannelMode::insecure_measurement}) {
    if (s == to_string(m)) return m;
  }
  return make_error(ErrorCode::malformed, what + ": unknown channel mode '" + s + "'");
}

Result<Message> decode_hello(const json& j) {
  const std::string what = "hello";
  Hello h;
  AUTHRUN_TRY_ASSIGN(std::string role, string_field(j, "role", what));
  if (role == "parent") h.role = Role::parent;
  else if (role == "worker") h.role = Role::worker;
  else return field_error(what, "role", "must be \"parent\" or \"worker\"");
  AUTHRUN_TRY_ASSIGN(const json* versions, find_field(j, "versions", what));
  if (!versions->is_array() || versions->empty() || versions->size() > 16) {
    return field_error(what, "versions", "must be a non-empty array of at most 16 integers");
  }
  for (const json& v : *versions) {
    // Range-checked before narrowing to int: 4294967297 must not read as version 1.
    if (!v.is_number_unsigned() || v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT_MAX)) {
      return field_error(what, "versions", "must hold integers from 0 to 2147483647");
    }
    h.versions.push_back(static_cast<int>(v.get<std::uint64_t>()));
  }
  AUTHRUN_TRY_ASSIGN(h.nonce, hex32_field(j, "nonce", what));
  AUTHRUN_TRY_ASSIGN(h.ephemeral_public_key, hex32_field(j, "epk", what));
  AUTHRUN_TRY_ASSIGN(const json* modes, find_field(j, "modes", what));
  if (!modes->is_array() || modes->empty() || modes->size() > 8) {
    return field_error(what, "modes", "must be a non-empty array of at most 8 strings");
  }
  for (const json& m : *modes) {
    if (!m.is_string()) return field_error(what, "modes", "must hold strings");
    AUTHRUN_TRY_ASSIGN(ChannelMode mode, mode_from_string(m.get<std::string>(), what));
    h.modes.push_back(mode);
  }
  AUTHRUN_TRY_ASSIGN(std::uint64_t max_payload, uint_field(j, "max_payload", what));
  if (max_payload > limits::absolute_max_payload) return field_error(what, "max_payload", "is too large");
  h.max_payload = static_cast<std::uint32_t>(max_payload);
  return Message{h};
}

Result<Message> decode_outcome(const json& j) {
  Outcome o;
  AUTHRUN_TRY_ASSIGN(const json* ok, find_field(j, "ok", "outcome"));
  if (!ok->is_boolean()) return field_error("outcome", "ok", "must be a boolean");
  o.ok = ok->get<bool>();
  AUTHRUN_TRY_ASSIGN(o.reason, string_field(j, "reason", "outcome"));
  AUTHRUN_TRY_ASSIGN(o.message, string_field(j, "message", "outcome"));
  return Message{o};
}

Result<Message> decode_task(json&& j) {
  Task t;
  AUTHRUN_TRY_ASSIGN(t.id, uint_field(j, "id", "task"));
  const std::string what = "task " + std::to_string(t.id);
  AUTHRUN_TRY_ASSIGN(t.fn, string_field(j, "fn", what));
  auto args = j.find("args");
  if (args != j.end()) t.args = std::move(*args);
  return Message{std::move(t)};
}

Result<Message> decode_result(json&& j) {
  TaskResult r;
  AUTHRUN_TRY_ASSIGN(r.id, uint_field(j, "id", "result"));
  const std::string what = "result " + std::to_string(r.id);
  AUTHRUN_TRY_ASSIGN(const json* ok, find_field(j, "ok", what));
  if (!ok->is_boolean()) return field_error(what, "ok", "must be a boolean");
  r.ok = ok->get<bool>();
  if (r.ok) {
    auto value = j.find("value");
    if (value == j.end()) return field_error(what, "value", "is missing");
    r.value = std::move(*value);
    return Message{std::move(r)};
  }
  AUTHRUN_TRY_ASSIGN(const json* error, find_field(j, "error", what));
  if (!error->is_object()) return field_error(what, "error", "must be an object");
  AUTHRUN_TRY_ASSIGN(r.error.type, string_field(*error, "type", what + " error"));
  AUTHRUN_TRY_ASSIGN(r.error.message, string_field(*error, "message", what + " error"));
  auto details = error->find("details");
  if (details != error->end()) r.error.details = *details;
  auto outside = error->find("outside_signal");
  if (outside != error->end()) {
    if (!outside->is_number_unsigned() || outside->get<std::uint64_t>() < 1 || outside->get<std::uint64_t>() > 64)
      return field_error(what + " error", "outside_signal", "must be a signal number from 1 to 64");
    r.error.outside_signal = outside->get<int>();
  }
  return Message{std::move(r)};
}

Result<Message> decode_protocol_error(const json& j) {
  ProtocolError e;
  AUTHRUN_TRY_ASSIGN(e.code, string_field(j, "code", "error"));
  AUTHRUN_TRY_ASSIGN(e.message, string_field(j, "message", "error"));
  return Message{e};
}

Result<Message> decode_worker_info(const json& j) {
  WorkerInfo info;
  AUTHRUN_TRY_ASSIGN(info.host, string_field(j, "host", "worker_info"));
  AUTHRUN_TRY_ASSIGN(std::uint64_t pid, uint_field(j, "pid", "worker_info"));
  if (info.host.size() > 255) return make_error(ErrorCode::malformed, "worker_info field \"host\" is longer than 255 bytes");
  // Shown in logs and results: only the characters of a host name, in UTF-8 (others become '?').
  info.host = sanitize_host_name(info.host);
  if (pid > std::uint64_t(std::numeric_limits<std::int64_t>::max())) return make_error(ErrorCode::malformed, "worker_info field \"pid\" is out of range");
  info.pid = static_cast<std::int64_t>(pid);
  if (auto batches = j.find("batches"); batches != j.end()) {
    if (!batches->is_boolean()) return field_error("worker_info", "batches", "must be a boolean");
    info.batches = batches->get<bool>();
  }
  if (j.contains("keepalive_ms")) {
    AUTHRUN_TRY_ASSIGN(std::uint64_t every, uint_field(j, "keepalive_ms", "worker_info"));
    if (every < 1 || every > 3600000) return field_error("worker_info", "keepalive_ms", "must be 1 to 3600000");
    info.keepalive_ms = static_cast<std::uint32_t>(every);
  }
  return Message{std::move(info)};
}

// A batch's entry list that is not an array of 1 to max_batch_entries entries.
Error batch_size_error(const char* type, const char* field) {
  const std::string problem = "must be an array of 1 to " + std::to_string(limits::max_batch_entries) + " objects";
  return field_error(type, field, problem.c_str());
}

// Entry `i` of a batch's `field`, decoded as its own message would be; errors name the entry
// ("task_batch tasks[3]: ...").
template <typename Entry>
Result<Entry> decode_batch_entry(json&& entry, const char* type, const char* field, std::size_t i,
                                 Result<Message> (*decode_one)(json&&)) {
  const std::string where = std::string(type) + " " + field + "[" + std::to_string(i) + "]";
  if (!entry.is_object()) return make_error(ErrorCode::malformed, where + " must be an object");
  auto one = decode_one(std::move(entry));
  if (!one) return with_context(std::move(one).error(), where);
  return std::get<Entry>(std::move(*one));
}

// The entries of a task_batch ("tasks") or result_batch ("results") body.
template <typename Entry>
Result<std::vector<Entry>> decode_batch(json&& j, const char* type, const char* field,
                                        Result<Message> (*decode_one)(json&&)) {
  auto entries = j.find(field);
  if (entries == j.end()) return field_error(type, field, "is missing");
  if (!entries->is_array() || entries->empty() || entries->size() > limits::max_batch_entries) {
    return batch_size_error(type, field);
  }
  std::vector<Entry> out;
  out.reserve(entries->size());
  for (std::size_t i = 0; i < entries->size(); ++i) {
    AUTHRUN_TRY_ASSIGN(Entry one, decode_batch_entry<Entry>(std::move((*entries)[i]), type, field, i, decode_one));
    out.push_back(std::move(one));
  }
  return out;
}

Result<std::vector<std::string>> string_array(const json& j, const char* name, const std::string& what) {
  std::vector<std::string> out;
  auto it = j.find(name);
  if (it == j.end()) return out;
  if (!it->is_array()) return field_error(what, name, "must be an array of strings");
  for (const json& s : *it) {
    if (!s.is_string()) return field_error(what, name, "must be an array of strings");
    out.push_back(s.get<std::string>());
  }
  return out;
}

Result<Message> decode_program(const json& j) {
  const std::string what = "program";
  Program p;
  AUTHRUN_TRY_ASSIGN(const json* modules, find_field(j, "modules", what));
  if (!modules->is_array() || modules->empty()) return field_error(what, "modules", "must be a non-empty array");
  for (std::size_t i = 0; i < modules->size(); ++i) {
    const json& m = (*modules)[i];
    const std::string where = what + " modules[" + std::to_string(i) + "]";
    ProgramModule module;
    AUTHRUN_TRY_ASSIGN(module.name, string_field(m, "name", where));
    if (m.contains("file")) {
      AUTHRUN_TRY_ASSIGN(module.file, string_field(m, "file", where));
    }
    p.modules.push_back(std::move(module));
  }
  AUTHRUN_TRY_ASSIGN(p.sys_path, string_array(j, "sys_path", what));
  if (j.contains("cwd")) {
    AUTHRUN_TRY_ASSIGN(p.cwd, string_field(j, "cwd", what));
  }
  if (j.contains("initializer")) {
    AUTHRUN_TRY_ASSIGN(p.initializer, string_field(j, "initializer", what));
  }
  return Message{std::move(p)};
}

// The output message's body; its bytes are the attachment.
Result<Message> decode_output(const json& j) {
  Output out;
  AUTHRUN_TRY_ASSIGN(out.id, uint_field(j, "id", "output"));
  const std::string what = "output for task " + std::to_string(out.id);
  AUTHRUN_TRY_ASSIGN(std::string stream, string_field(j, "stream", what));
  if (stream != "stdout" && stream != "stderr") return field_error(what, "stream", "must be \"stdout\" or \"stderr\"");
  out.is_stderr = stream == "stderr";
  return Message{std::move(out)};
}

struct BodyEncoder {
  json operator()(const Hello& h) const {
    json versions = json::array();
    for (int v : h.versions) versions.push_back(v);
    json modes = json::array();
    for (ChannelMode m : h.modes) modes.push_back(to_string(m));
    return json{{"role", to_string(h.role)}, {"versions", versions}, {"nonce", to_hex(h.nonce)},
                {"epk", to_hex(h.ephemeral_public_key)}, {"modes", modes}, {"max_payload", h.max_payload}};
  }
  json operator()(const Proof& p) const { return json{{"mac", to_hex(p.mac)}}; }
  json operator()(const Outcome& o) const { return json{{"ok", o.ok}, {"reason", o.reason}, {"message", o.message}}; }
  json operator()(const Task& t) const { return json{{"id", t.id}, {"fn", t.fn}, {"args", t.args}}; }
  json operator()(const TaskResult& r) const {
    if (r.ok) return json{{"id", r.id}, {"ok", true}, {"value", r.value}};
    json error{{"type", r.error.type}, {"message", r.error.message}};
    if (!r.error.details.is_null()) error["details"] = r.error.details;
    if (r.error.outside_signal != 0) error["outside_signal"] = r.error.outside_signal;
    return json{{"id", r.id}, {"ok", false}, {"error", std::move(error)}};
  }
  json operator()(const ProtocolError& e) const { return json{{"code", e.code}, {"message", e.message}}; }
  json operator()(const Shutdown&) const { return json::object(); }
  json operator()(const WorkerInfo& i) const {
    json body{{"host", i.host}, {"pid", i.pid}};
    if (i.batches) body["batches"] = true;
    if (i.keepalive_ms) body["keepalive_ms"] = i.keepalive_ms;
    return body;
  }
  json operator()(const KeepAlive&) const { return json::object(); }
  json operator()(const TaskBatch& b) const {
    json tasks = json::array();
    for (const Task& t : b.tasks) tasks.push_back((*this)(t));
    return json{{"tasks", std::move(tasks)}};
  }
  json operator()(const ResultBatch& b) const {
    json results = json::array();
    for (const TaskResult& r : b.results) results.push_back((*this)(r));
    return json{{"results", std::move(results)}};
  }
  json operator()(const Program& p) const {
    json modules = json::array();
    for (const ProgramModule& m : p.modules) {
      json module{{"name", m.name}};
      if (!m.file.empty()) module["file"] = m.file;
      modules.push_back(std::move(module));
    }
    json body{{"modules", std::move(modules)}, {"sys_path", p.sys_path}};
    if (!p.cwd.empty()) body["cwd"] = p.cwd;
    if (!p.initializer.empty()) body["initializer"] = p.initializer;
    return body;
  }
  json operator()(const Output& o) const { return json{{"id", o.id}, {"stream", o.is_stderr ? "stderr" : "stdout"}}; }
};

}  // namespace

namespace {

// Parses text that has no NUL byte and nests no deeper than allowed (checked by the caller).
Result<json> parse_checked_json(std::string_view text) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 2: ..."; keep the useful part.
    std::string what = e.what();
    auto pos = what.find("] ");
    return make_error(ErrorCode::malformed, pos == std::string::npos ? what : what.substr(pos + 2));
  } catch (const json::exception& e) {
    return make_error(ErrorCode::malformed, e.what());
  }
}

}  // namespace

Result<json> parse_json(std::string_view text, int max_depth) {
  // The parser takes a NUL byte for the end of input and would ignore whatever follows it.
  if (auto nul = text.find('\0'); nul != std::string_view::npos) {
    return make_error(ErrorCode::malformed, "NUL byte at offset " + std::to_string(nul) + " (not JSON text)");
  }
  if (scan_depth(text, max_depth) > max_depth) {
    return make_error(ErrorCode::json_too_deep, "JSON nested deeper than " + std::to_string(max_depth) + " levels");
  }
  return parse_checked_json(text);
}

std::string dump_json(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

void append_json(std::string& out, const json& value) {
  nlohmann::detail::serializer<json> writer(nlohmann::detail::output_adapter<char>(out), ' ',
                                            json::error_handler_t::replace);
  writer.dump(value, false, false, 0);
}

void append_json_uint(std::string& out, std::uint64_t value) {
  char digits[20];  // 2^64 - 1 has 20
  out.append(digits, std::to_chars(digits, digits + sizeof digits, value).ptr);
}

void append_json_string(std::string& out, std::string_view value) {
  const char* p = value.data();
  const char* const end = p + value.size();
  out.reserve(out.size() + value.size() + 2);
  out += '"';
  for (;;) {
    const char* plain = plain_ascii_end(p, end);
    out.append(p, plain);
    p = plain;
    if (p == end) break;
    const auto c = static_cast<unsigned char>(*p);
    if (c >= 0x80) {
      const int len = utf8_sequence_length(p, end);
      if (len == 0) {
        // Not UTF-8: the rest as nlohmann writes it (each bad byte a U+FFFD), its opening quote dropped.
        out += dump_json(json(std::string(p, end))).substr(1);
        return;
      }
      out.append(p, std::size_t(len));
      p += len;
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\f': out += "\\f"; break;
      case '\r': out += "\\r"; break;
      default: {
        static constexpr char hex[] = "0123456789abcdef";
        const char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        out.append(e, sizeof e);
      }
    }
    ++p;
  }
  out += '"';
}

void append_json_double(std::string& out, double value) {
  if (!std::isfinite(value)) {
    out += "null";
    return;
  }
  char text[400];  // fixed notation of the largest double: 309 digits and a sign
  auto [end, ec] = std::to_chars(text, text + sizeof text, value, std::chars_format::fixed);
  out.append(text, end);
  if (std::string_view(text, std::size_t(end - text)).find('.') == std::string_view::npos) out += ".0";
}

namespace {

// Appends one value to a CBOR or MessagePack body.
void append_binary(std::string& out, const json& value, BodyFormat format) {
  if (format == BodyFormat::cbor) {
    json::to_cbor(value, nlohmann::detail::output_adapter<char>(out));
  } else {
    json::to_msgpack(value, nlohmann::detail::output_adapter<char>(out));
  }
}

// A task or successful result in CBOR or MessagePack, written straight from the message: the args or
// value (which may hold the whole payload) is serialised where it is, not copied into a body object first.
// The bytes are those nlohmann writes for the body object (a map of three entries, keys in sorted order).
std::optional<std::string> encode_binary_in_place(const Message& message, BodyFormat format) {
  const json* big = nullptr;
  std::array<std::pair<const char*, json>, 2> small;
  const char* big_key = nullptr;
  std::array<const char*, 3> order{};
  if (const auto* t = std::get_if<Task>(&message)) {
    big = &t->args, big_key = "args";
    small = {std::pair<const char*, json>{"fn", t->fn}, std::pair<const char*, json>{"id", t->id}};
    order = {"args", "fn", "id"};
  } else if (const auto* r = std::get_if<TaskResult>(&message); r && r->ok) {
    big = &r->value, big_key = "value";
    small = {std::pair<const char*, json>{"id", r->id}, std::pair<const char*, json>{"ok", true}};
    order = {"id", "ok", "value"};
  } else {
    return std::nullopt;
  }
  std::string out;
  out.push_back(static_cast<char>(format == BodyFormat::cbor ? 0xa3 : 0x83));  // a map of 3 entries
  for (const char* key : order) {
    append_binary(out, json(key), format);
    if (std::string_view(key) == big_key) {
      append_binary(out, *big, format);
    } else {
      append_binary(out, std::string_view(key) == small[0].first ? small[0].second : small[1].second, format);
    }
  }
  return out;
}

}  // namespace

std::string encode_body(const Message& message, BodyFormat format) {
  if (format != BodyFormat::json) {
    if (auto direct = encode_binary_in_place(message, format)) return std::move(*direct);
  }
  if (const auto* r = std::get_if<TaskResult>(&message); r && r->ok && format == BodyFormat::json) {
    // The bytes the body object would dump to (keys in sorted order), without copying the value into one.
    std::string out;
    out.reserve(64);
    out += "{\"id\":";
    append_json_uint(out, r->id);
    out += ",\"ok\":true,\"value\":";
    if (r->value_json.empty()) append_json(out, r->value);
    else out += r->value_json;
    out += '}';
    return out;
  }
  json j = std::visit(BodyEncoder{}, message);
  std::string out;
  switch (format) {
    case BodyFormat::json: return dump_json(j);
    case BodyFormat::cbor: json::to_cbor(j, nlohmann::detail::output_adapter<char>(out)); break;
    case BodyFormat::msgpack: json::to_msgpack(j, nlohmann::detail::output_adapter<char>(out)); break;
  }
  return out;
}

Result<std::string> string_field(const json& object, const char* field, const std::string& what) {
  AUTHRUN_TRY_ASSIGN(const json* v, find_field(object, field, what));
  if (!v->is_string()) return field_error(what, field, "must be a string");
  return v->get<std::string>();
}

Result<std::uint64_t> uint_field(const json& object, const char* field, const std::string& what) {
  AUTHRUN_TRY_ASSIGN(const json* v, find_field(object, field, what));
  if (!v->is_number_unsigned()) return field_error(what, field, "must be a non-negative integer");
  return v->get<std::uint64_t>();
}

namespace {

// The id and value text of a successful result entry {"id":N,"ok":true,"value":V} (keys in any order, none
// other) whose value has no line break; false for any other entry. `members` are the entry's, as checked by
// the scanner (none when it is no object).
bool plain_result(std::span<const JsonMember> members, std::uint64_t& id_out, std::string_view& value_out) {
  if (members.size() != 3) return false;
  std::string_view id, ok, value;
  for (const JsonMember& m : members) {
    if (m.raw_key == "id") id = m.value;
    else if (m.raw_key == "ok") ok = m.value;
    else if (m.raw_key == "value") value = m.value;
  }
  // Two memchr passes: find_first_of("\r\n") would search the two-byte set once per byte of the value.
  if (id.empty() || ok != "true" || value.empty() || value.find('\n') != std::string_view::npos ||
      value.find('\r') != std::string_view::npos) {
    return false;
  }
  auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), id_out);
  if (ec != std::errc() || end != id.data() + id.size()) return false;  // negative, fraction, too big
  value_out = value;
  return true;
}

// A plain_result entry with its value kept as text; nullopt for any other entry, which is then decoded as
// usual.
std::optional<TaskResult> result_as_text(std::span<const JsonMember> members) {
  TaskResult r;
  std::string_view value;
  if (!plain_result(members, r.id, value)) return std::nullopt;
  r.value_json = std::string(value);
  return r;
}

std::vector<Task>& batch_entries(TaskBatch& batch) { return batch.tasks; }
std::vector<TaskResult>& batch_entries(ResultBatch& batch) { return batch.results; }

// A plain task entry {"id":N,"fn":"NAME","args":A} (keys in any order, args optional, none other, no
// escapes in the keys) with its args parsed alone, or kept as their text (Task::args_json) when
// `args_as_text`; nullopt for any other entry, which is then decoded as usual. As with a parsed object, a key
// given twice counts with its last value. `members` as for result_as_text.
template <bool args_as_text>
std::optional<Task> task_from_text(std::span<const JsonMember> members) {
  std::string_view id, fn, args;
  for (const JsonMember& m : members) {
    if (m.raw_key == "id") id = m.value;
    else if (m.raw_key == "fn") fn = m.value;
    else if (m.raw_key == "args") args = m.value;
    else return std::nullopt;
  }
  if (id.empty() || fn.size() < 2 || fn.front() != '"') return std::nullopt;
  Task t;
  auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), t.id);
  if (ec != std::errc() || end != id.data() + id.size()) return std::nullopt;  // negative, fraction, too big
  t.fn = decode_json_string(fn.substr(1, fn.size() - 2));
  if constexpr (args_as_text) {
    t.args_json = std::string(args);
  } else if (!args.empty()) {
    auto parsed = parse_checked_json(args);  // the scanner found no NUL and no nesting too deep in the body
    if (!parsed) return std::nullopt;
    t.args = std::move(*parsed);
  }
  return t;
}

// A JSON batch body decoded from its text: checked in full by the scanner (UTF-8, syntax, depth) in one
// pass over the entries, which also splits each entry into its members; then each entry taken by
// `from_text`, or parsed and decoded as a parsed batch's entry would be when `from_text` declines it. The
// same messages come out as from the parsed path (fuzz_message_decoder compares them).
template <typename Entry, typename Batch>
Result<Message> decode_batch_text(std::string_view body, const char* type, const char* field,
                                  std::optional<Entry> (*from_text)(std::span<const JsonMember>),
                                  Result<Message> (*decode_one)(json&&)) {
  thread_local std::vector<JsonMember> members;
  thread_local std::vector<std::string_view> entries;
  thread_local ElementMembers entry_members;
  // The body as our encoders write it, {"FIELD":[...]}, has nothing to check but its entries; any other
  // spelling (or a failure) is checked whole, for the error to name what is wrong.
  const std::string opening = std::string("{\"") + field + "\":[";
  bool scanned = false;
  if (body.size() > opening.size() && body.substr(0, opening.size()) == opening && body.back() == '}') {
    const std::string_view list = body.substr(opening.size() - 1, body.size() - opening.size());
    scanned = scan_json_array(list, entries, limits::json_max_depth + 1, &entry_members).has_value();
  }
  if (!scanned) {
    auto kind = scan_json(body, members, limits::json_max_depth + 2);
    if (!kind) return with_context(std::move(kind).error(), std::string(type) + " body");
    if (*kind != JsonKind::object) return make_error(ErrorCode::malformed, std::string(type) + " body must be a JSON object");
    std::string_view list;
    for (const JsonMember& m : members) {
      if (m.raw_key == field) list = m.value;
    }
    if (list.empty()) return field_error(type, field, "is missing");
    if (list.front() != '[') return batch_size_error(type, field);
    AUTHRUN_TRY(scan_json_array(list, entries, limits::json_max_depth + 1, &entry_members));
  }
  if (entries.empty() || entries.size() > limits::max_batch_entries) return batch_size_error(type, field);
  Batch batch;
  auto& out = batch_entries(batch);
  out.reserve(entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const std::size_t first = i == 0 ? 0 : entry_members.ends[i - 1];
    const std::span<const JsonMember> its(entry_members.members.data() + first, entry_members.ends[i] - first);
    if (auto fast = from_text(its)) {
      out.push_back(std::move(*fast));
      continue;
    }
    auto parsed = parse_json(entries[i]);
    if (!parsed) return with_context(std::move(parsed).error(), std::string(type) + " " + field + "[" + std::to_string(i) + "]");
    AUTHRUN_TRY_ASSIGN(Entry one, decode_batch_entry<Entry>(std::move(*parsed), type, field, i, decode_one));
    out.push_back(std::move(one));
  }
  return Message{std::move(batch)};
}

Result<Message> decode_body(std::uint8_t type, std::string_view body, BodyFormat format) {
  auto t = static_cast<MessageType>(type);
  switch (t) {
    case MessageType::hello:
    case MessageType::proof:
    case MessageType::outcome:
    case MessageType::task:
    case MessageType::result:
    case MessageType::error:
    case MessageType::shutdown:
    case MessageType::worker_info:
    case MessageType::program:
    case MessageType::output:
    case MessageType::task_batch:
    case MessageType::result_batch:
    case MessageType::keepalive:
      break;
    default:
      return make_error(ErrorCode::unexpected, "unknown message type " + std::to_string(type));
  }
  const bool batch = t == MessageType::task_batch || t == MessageType::result_batch;
  const int depth = limits::json_max_depth + (batch ? 2 : 0);
  auto parsed = format == BodyFormat::json ? parse_json(body, depth) : parse_binary(body, format, depth);
  if (!parsed) return with_context(std::move(parsed).error(), std::string(to_string(t)) + " body");
  json j = std::move(*parsed);
  if (!j.is_object()) return make_error(ErrorCode::malformed, std::string(to_string(t)) + " body must be a JSON object");
  switch (t) {
    case MessageType::hello: return decode_hello(j);
    case MessageType::proof: {
      AUTHRUN_TRY_ASSIGN(Bytes32 mac, hex32_field(j, "mac", "proof"));
      return Message{Proof{mac}};
    }
    case MessageType::outcome: return decode_outcome(j);
    case MessageType::task: return decode_task(std::move(j));
    case MessageType::result: return decode_result(std::move(j));
    case MessageType::error: return decode_protocol_error(j);
    case MessageType::shutdown: return Message{Shutdown{}};
    case MessageType::keepalive: return Message{KeepAlive{}};
    case MessageType::worker_info: return decode_worker_info(j);
    case MessageType::program: return decode_program(j);
    case MessageType::output: return decode_output(j);
    case MessageType::task_batch: {
      AUTHRUN_TRY_ASSIGN(auto tasks, decode_batch<Task>(std::move(j), "task_batch", "tasks", decode_task));
      return Message{TaskBatch{std::move(tasks)}};
    }
    case MessageType::result_batch: {
      AUTHRUN_TRY_ASSIGN(auto results, decode_batch<TaskResult>(std::move(j), "result_batch", "results", decode_result));
      return Message{ResultBatch{std::move(results)}};
    }
  }
  return make_error(ErrorCode::unexpected, "unknown message type " + std::to_string(type));
}

}  // namespace

Result<Message> decode_message(std::uint8_t type, std::string_view body) {
  return decode_body(type, body, BodyFormat::json);
}

Result<Message> decode_frame(const FrameHeader& header, std::string&& payload, bool values_as_text, bool args_as_text) {
  const auto format = static_cast<BodyFormat>(header.flags & k_flag_format_mask);
  std::string_view body = payload;
  std::size_t attachment_offset = 0;
  const bool has_attachment = (header.flags & k_flag_attachment) != 0;
  if (has_attachment) {
    if (payload.size() < 4) return make_error(ErrorCode::malformed, "attachment frame shorter than its body length");
    std::uint32_t body_size = load_le32(reinterpret_cast<const std::uint8_t*>(payload.data()));
    if (body_size > payload.size() - 4) {
      return make_error(ErrorCode::malformed, "attachment frame's body length " + std::to_string(body_size) +
                                                  " exceeds its payload");
    }
    body = body.substr(4, body_size);
    attachment_offset = 4 + std::size_t(body_size);
  }
  if (format == BodyFormat::json && !has_attachment) {
    // Batches are taken from their text: only a task's args are parsed (into the json a function gets),
    // and with values_as_text a result's value is kept as the text it was.
    if (header.type == static_cast<std::uint8_t>(MessageType::task_batch)) {
      return decode_batch_text<Task, TaskBatch>(body, "task_batch", "tasks", args_as_text ? task_from_text<true> : task_from_text<false>,
                                                decode_task);
    }
    if (values_as_text && header.type == static_cast<std::uint8_t>(MessageType::result)) {
      // A lone result's value kept as text too: a number beyond 64 bits reads the same as in a batch.
      thread_local std::vector<JsonMember> members;
      auto kind = scan_json(body, members);
      TaskResult r;
      std::string_view value;
      if (kind && *kind == JsonKind::object && plain_result(members, r.id, value)) {
        // The value moved to the front of the payload it lies in: a large one is not copied to fresh pages.
        const auto at = std::size_t(value.data() - payload.data()), size = value.size();
        payload.erase(0, at);
        payload.resize(size);
        r.value_json = std::move(payload);
        return Message{std::move(r)};
      }
    }
    if (values_as_text && header.type == static_cast<std::uint8_t>(MessageType::result_batch)) {
      return decode_batch_text<TaskResult, ResultBatch>(body, "result_batch", "results", result_as_text, decode_result);
    }
  }
  if (args_as_text && format == BodyFormat::json && header.type == static_cast<std::uint8_t>(MessageType::task)) {
    thread_local std::vector<JsonMember> members;
    auto kind = scan_json(body, members);
    if (kind && *kind == JsonKind::object) {
      if (auto t = task_from_text<true>(members)) {
        if (has_attachment) t->attachment = Attachment{std::move(payload), attachment_offset};
        return Message{std::move(*t)};
      }
    }
  }
  AUTHRUN_TRY_ASSIGN(Message msg, decode_body(header.type, body, format));
  auto attach = [&](auto& m) {
    m.format = format;
    if (has_attachment) m.attachment = Attachment{std::move(payload), attachment_offset};
  };
  if (auto* task = std::get_if<Task>(&msg)) {
    attach(*task);
  } else if (auto* result = std::get_if<TaskResult>(&msg)) {
    attach(*result);
  } else if (auto* output = std::get_if<Output>(&msg)) {
    if (format != BodyFormat::json) {
      return make_error(ErrorCode::malformed, "output frames carry a JSON body (their bytes go in the attachment)");
    }
    if (has_attachment) output->data = Attachment{std::move(payload), attachment_offset};
  } else if (has_attachment || format != BodyFormat::json) {
    return make_error(ErrorCode::malformed, std::string(to_string(type_of(msg))) + " frames carry JSON bodies and no attachment");
  }
  return msg;
}

}  // namespace authrun::protocol
