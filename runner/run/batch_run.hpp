// `authrun run`: a JSONL batch on a pool of authenticated workers, one result line per task.
#pragma once

#include <string>

#include "runner/engine/engine.hpp"

namespace authrun::runner {

struct RunOptions {
  EngineOptions engine;
  std::string input = "-";   // JSONL tasks: a path, or "-" for stdin
  std::string output = "-";  // result lines: a path, or "-" for stdout
  bool keep_order = false;   // write results in input order
  std::string resume;        // skip tasks with an ok result in this results file; append to it
  bool allow_duplicate_ids = false;  // run tasks whose id an earlier line has (else they fail as bad_task)
};

// Runs the batch; returns the exit status: 0 all tasks ok, 1 some failed, 2 set-up failure (no trusted
// worker, unreadable input, unwritable output), 130/143 interrupted by SIGINT/SIGTERM. Diagnostics and the
// summary go to stderr.
int run_batch(const RunOptions& options);

}  // namespace authrun::runner
