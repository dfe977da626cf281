// authrun-worker's built-in functions (echo, exec, fail, hash, sleep), registered through the SDK's Registry
// like any user's (see worker/include/authrun/worker.hpp).
#pragma once

#include <string_view>

#include "authrun/worker.hpp"

namespace authrun::worker {

// Adds echo, exec, fail, hash and sleep to `registry` (each may take its args apart: they are moved in; bad
// input is a TaskError "bad_args" naming the field, never an exception). echo gives back the task's
// attachment; the others drop it. Throws std::invalid_argument (a bug) if one of the names is taken.
void register_builtins(Registry& registry);

// A registry holding the built-ins alone, made on first use.
const Registry& builtins();

// Runs the built-in `fn` on `args` (see Registry::call): `attachment` holds the task's raw attachment; on
// return it holds the result's (empty unless the function keeps it).
FunctionResult call_function(std::string_view fn, json&& args, Attachment& attachment);

// The same for a task without an attachment.
inline FunctionResult call_function(std::string_view fn, json&& args) {
  Attachment none;
  return call_function(fn, std::move(args), none);
}

}  // namespace authrun::worker
