// The worker's built-in functions: one registry, one entry per function (see functions.cpp).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "protocol/message.hpp"
#include "protocol/result.hpp"

namespace authrun::worker {

using protocol::json;
using protocol::TaskError;

// What running a function yields: its value, or a TaskError (type, message, details).
using FunctionResult = protocol::Result<json, TaskError>;

// A built-in function. It may take the args apart (they are moved in). It never throws for bad input:
// wrong args are a TaskError of type "bad_args" naming the field and what was expected.
using Function = FunctionResult (*)(json&& args);

// One registry entry.
struct FunctionEntry {
  std::string_view name;
  std::string_view summary;  // one line, for `authrun-worker --list`
  Function fn;
  bool keeps_attachment = false;  // the task's attachment goes back with the result (echo)
};

// Every built-in function, in name order.
const std::vector<FunctionEntry>& functions();

// Runs the function named `fn` on `args`. An unknown name is a TaskError of type "unknown_function"
// listing the known names; an exception escaping a function (a bug) becomes type "internal".
// `attachment` holds the task's raw attachment; on return it holds the result's (empty unless the
// function keeps it).
FunctionResult call_function(std::string_view fn, json&& args, protocol::Attachment& attachment);

// The same for a task without an attachment.
inline FunctionResult call_function(std::string_view fn, json&& args) {
  protocol::Attachment none;
  return call_function(fn, std::move(args), none);
}

}  // namespace authrun::worker
