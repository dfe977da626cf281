// The JSONL batch format.
#include "runner/run/jsonl_input.hpp"

#include <charconv>
#include <memory>
#include <utility>

#include "protocol/json_codec.hpp"
#include "protocol/json_text.hpp"
#include "runner/engine/line_reader.hpp"
#include "runner/run/id_table.hpp"

namespace authrun::runner {

using namespace protocol;

namespace {

// Task `t` (its number set) refused: the message names the input `name` and the line.
BatchTask bad_line(BatchTask t, std::string_view name, const std::string& why) {
  t.error = TaskError{"bad_task", std::string(name) + ":" + std::to_string(t.number) + ": " + why, json{{"line", t.number}}};
  return t;
}

}  // namespace

BatchTask parse_task_line(std::string_view text, std::uint64_t line, std::string_view name, std::size_t max_line,
                          std::string spare) {
  BatchTask t;
  t.args_json = std::move(spare);
  t.number = line;
  t.id = line;
  if (text.size() > max_line) {
    return bad_line(std::move(t), name, "line of " + std::to_string(text.size()) + " bytes is longer than the limit of " +
                                             std::to_string(max_line));
  }
  // Checked in full, split into its fields, nothing rebuilt: the id and args go on as the text they were.
  thread_local std::vector<JsonMember> members;
  auto kind = scan_json(text, members);
  if (!kind) return bad_line(std::move(t), name, "not valid JSON: " + kind.error().message);
  if (*kind != JsonKind::object) return bad_line(std::move(t), name, std::string("a task must be a JSON object, not ") + to_string(*kind));
  std::string_view id, fn, args, timeout;
  for (const JsonMember& m : members) {
    const std::string key = decode_json_string(m.raw_key);
    // As nlohmann's objects did: a field given twice counts with its last value.
    if (key == "id") id = m.value;
    else if (key == "fn") fn = m.value;
    else if (key == "args") args = m.value;
    else if (key == "timeout") timeout = m.value;
    else return bad_line(std::move(t), name, "unknown field '" + key + "' (a task has id, fn, args and timeout)");
  }
  if (!id.empty()) {
    if (id.front() != '"' && id.front() != '-' && (id.front() < '0' || id.front() > '9')) {
      return bad_line(std::move(t), name, "field 'id' must be a string or a number");
    }
    t.id_text = std::string(id);
  } else {
    t.id_text = std::to_string(line);
  }
  if (fn.empty()) return bad_line(std::move(t), name, "field 'fn' is missing");
  if (fn.front() != '"' || fn.size() == 2) return bad_line(std::move(t), name, "field 'fn' must be a non-empty string");
  t.fn = decode_json_string(fn.substr(1, fn.size() - 2));
  if (!timeout.empty()) {
    double seconds = 0;
    const bool is_number = timeout.front() == '-' || (timeout.front() >= '0' && timeout.front() <= '9');
    if (!is_number || std::from_chars(timeout.data(), timeout.data() + timeout.size(), seconds).ec != std::errc() ||
        !(seconds > 0)) {
      return bad_line(std::move(t), name, "field 'timeout' must be a positive number of seconds");
    }
    t.timeout_s = seconds;
  }
  t.args_json.assign(args.empty() ? std::string_view("null") : args);
  return t;
}

TaskFeed::Producer jsonl_producer(Fd fd, std::string name, std::size_t max_line, std::function<bool(const BatchTask&)> skip,
                                  bool allow_duplicate_ids) {
  auto input = std::make_shared<Fd>(std::move(fd));
  return [input, name = std::move(name), max_line, skip = std::move(skip), allow_duplicate_ids](TaskFeed::Sink& sink) {
    std::uint64_t line = 0;
    IdTable seen;
    return read_lines(input->get(), name, sink.stop_fd(), max_line, [&](std::string_view text, std::size_t length) {
      ++line;
      if (length > 0 && text.empty() && length > max_line) {
        BatchTask t;
        t.number = line;
        t.id = line;
        return sink.emit(bad_line(std::move(t), name,
                                  "line of " + std::to_string(length) + " bytes is longer than the limit of " +
                                      std::to_string(max_line)));
      }
      if (text.find_first_not_of(" \t\r") == std::string_view::npos) return true;  // blank line
      BatchTask t = parse_task_line(text, line, name, max_line, sink.spare());
      if (!t.error && !allow_duplicate_ids) {
        if (auto first = seen.insert(t.id_text, line)) {
          t = bad_line(std::move(t), name,
                       "duplicate id " + t.id_text + ": " + name + ":" + std::to_string(*first) +
                           " has it already (--allow-duplicate-ids runs both)");
          t.error->details["duplicate_of_line"] = *first;
          return sink.emit(std::move(t));
        }
      }
      if (!t.error && skip && skip(t)) return true;
      return sink.emit(std::move(t));
    });
  };
}

}  // namespace authrun::runner
