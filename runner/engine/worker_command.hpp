// Finding the programs the engine starts: the worker command, a launcher, an interpreter.
#pragma once

#include <string>
#include <vector>

#include "protocol/result.hpp"

namespace authrun::runner {

// Splits a --worker command into words (spaces separate; single or double quotes group; no other shell
// syntax) and resolves the first word to an executable path: as given if it has a '/', else by PATH.
// Errors: usage ("worker program 'x' not found on PATH" / "is not executable").
protocol::Result<std::vector<std::string>> resolve_worker_command(const std::string& command);

// Resolves `prog` to an executable path: as given if it has a '/', else by PATH. `what` names it in
// errors. Errors: usage ("launcher program 'srun' not found on PATH" / "is not an executable file").
protocol::Result<void> resolve_program(std::string& prog, const std::string& what);

// The directory of the running executable ("." if /proc/self/exe cannot be read).
std::string own_directory();

// The default worker: authrun-worker in the directory of the running authrun.
std::string default_worker_path();

}  // namespace authrun::runner
