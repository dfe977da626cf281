// The JSONL batch format of `authrun run`: one task object per line.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "runner/engine/batch_task.hpp"
#include "runner/engine/task_feed.hpp"

namespace authrun::runner {

// Checks one line: a JSON object with "fn" (a non-empty string), optional "id" (string or number; default
// the line number), "args" (anything; default null) and "timeout" (seconds > 0), and nothing else. The
// whole line is validated as JSON (depth limit included), but nothing is rebuilt: `id_text` and `args_json`
// are the bytes as written. A line that is not a valid task comes back with `error` set (type "bad_task",
// message "NAME:LINE: what is wrong": "tasks.jsonl:3: ..."), `name` naming the input. `spare`: a buffer to
// build `args_json` in (TaskFeed::Sink::spare), so that a task costs no allocation.
BatchTask parse_task_line(std::string_view text, std::uint64_t line, std::string_view name, std::size_t max_line,
                          std::string spare = {});

// A TaskFeed producer reading JSONL from `fd` (owned), named `name` in messages. Blank lines are passed
// over; lines longer than `max_line` become bad_task errors without being held. Unless `allow_duplicate_ids`,
// a task whose id (as written) an earlier line has already becomes a bad_task naming both lines. Valid
// tasks for which `skip` (may be empty) returns true are dropped (--resume).
TaskFeed::Producer jsonl_producer(protocol::Fd fd, std::string name, std::size_t max_line,
                                  std::function<bool(const BatchTask&)> skip, bool allow_duplicate_ids);

}  // namespace authrun::runner
