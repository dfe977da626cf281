// The JSONL batch format.
#include "runner/run/jsonl_input.hpp"

#include <memory>

#include "protocol/json_codec.hpp"
#include "runner/engine/line_reader.hpp"

namespace authrun::runner {

using namespace protocol;

namespace {

BatchTask bad_line(BatchTask t, const std::string& where, const std::string& why) {
  t.error = TaskError{"bad_task", where + ": " + why, json{{"line", t.number}}};
  return t;
}

}  // namespace

BatchTask parse_task_line(std::string_view text, std::uint64_t line, const std::string& where, std::size_t max_line) {
  BatchTask t;
  t.number = line;
  t.id = line;
  if (text.size() > max_line) {
    return bad_line(std::move(t), where, "line of " + std::to_string(text.size()) + " bytes is longer than the limit of " +
                                             std::to_string(max_line));
  }
  auto parsed = parse_json(text);
  if (!parsed) return bad_line(std::move(t), where, "not valid JSON: " + parsed.error().message);
  json& j = *parsed;
  if (!j.is_object()) return bad_line(std::move(t), where, std::string("a task must be a JSON object, not ") + j.type_name());
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    if (k != "id" && k != "fn" && k != "args" && k != "timeout") {
      return bad_line(std::move(t), where, "unknown field '" + k + "' (a task has id, fn, args and timeout)");
    }
  }
  if (auto id = j.find("id"); id != j.end()) {
    if (!id->is_string() && !id->is_number()) return bad_line(std::move(t), where, "field 'id' must be a string or a number");
    t.id = *id;
  }
  auto fn = j.find("fn");
  if (fn == j.end()) return bad_line(std::move(t), where, "field 'fn' is missing");
  if (!fn->is_string() || fn->get_ref<const std::string&>().empty()) {
    return bad_line(std::move(t), where, "field 'fn' must be a non-empty string");
  }
  t.fn = fn->get<std::string>();
  if (auto to = j.find("timeout"); to != j.end()) {
    if (!to->is_number() || to->get<double>() <= 0) {
      return bad_line(std::move(t), where, "field 'timeout' must be a positive number of seconds");
    }
    t.timeout_s = to->get<double>();
  }
  auto args = j.find("args");
  t.args_json = args == j.end() ? "null" : dump_json(*args);
  return t;
}

TaskFeed::Producer jsonl_producer(Fd fd, std::string name, std::size_t max_line, std::function<bool(const BatchTask&)> skip) {
  auto input = std::make_shared<Fd>(std::move(fd));
  return [input, name = std::move(name), max_line, skip = std::move(skip)](TaskFeed::Sink& sink) {
    std::uint64_t line = 0;
    return read_lines(input->get(), name, sink.stop_fd(), max_line, [&](std::string_view text, std::size_t length) {
      ++line;
      if (length > 0 && text.empty() && length > max_line) {
        BatchTask t;
        t.number = line;
        t.id = line;
        return sink.emit(bad_line(std::move(t), name + ":" + std::to_string(line),
                                  "line of " + std::to_string(length) + " bytes is longer than the limit of " +
                                      std::to_string(max_line)));
      }
      if (text.find_first_not_of(" \t\r") == std::string_view::npos) return true;  // blank line
      BatchTask t = parse_task_line(text, line, name + ":" + std::to_string(line), max_line);
      if (!t.error && skip && skip(t)) return true;
      return sink.emit(std::move(t));
    });
  };
}

}  // namespace authrun::runner
