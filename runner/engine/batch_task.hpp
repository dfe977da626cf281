// One task on its way from the input to a worker: what the engine needs to send it and to report it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "protocol/message.hpp"

namespace authrun::runner {

using protocol::json;

struct BatchTask {
  std::uint64_t seq = 0;     // 0-based position among the tasks the engine is given (dense: input order)
  std::uint64_t number = 0;  // 1-based position in the input: a JSONL line number, or an exec job number
  json id;                   // the task's id as the user sees it
  std::string id_text;       // the id as JSON text exactly as written (JSONL input); empty: use dump of id
  std::string fn;
  std::string args_json;     // the args, encoded once in args_format (sent as is, and again on a retry)
  protocol::BodyFormat args_format = protocol::BodyFormat::json;  // exec: CBOR (arguments are bytes)
  std::string attachment;    // raw bytes sent after the args (a Python pool's pickled call); a task with
                             // one goes alone, not in a task_batch
  std::optional<double> timeout_s;           // this task's limit, if it has its own
  std::optional<protocol::TaskError> error;  // set when the input was not a valid task (no worker needed)
  json context;              // what the front end needs to report the task (exec: its arguments)
};

// The task's id as JSON text: as written in the input, else its id dumped.
std::string id_json(const BatchTask& task);

}  // namespace authrun::runner
