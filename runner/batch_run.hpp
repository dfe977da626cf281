// `authrun run`: a JSONL batch on a pool of authenticated workers, one result line per task.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "protocol/message.hpp"

namespace authrun::runner {

struct RunOptions {
  std::string input = "-";    // JSONL tasks: a path, or "-" for stdin
  std::string output = "-";   // result lines: a path, or "-" for stdout
  int jobs = 0;               // workers; 0 = number of cores
  bool keep_order = false;    // write results in input order
  std::vector<std::string> worker_argv;  // worker command; argv[0] resolved to a path
  std::string key_file;       // use this key for every worker instead of a fresh one each
  std::string joblog;         // write a line per task attempt here
  std::string resume;         // skip tasks with an ok result in this results file; append to it
  std::string audit_log;      // write each handshake outcome and channel end as a JSON line here
  int retries = 1;            // extra attempts for a task whose worker died or timed out
  std::optional<double> timeout_s;       // per-task limit, unless the task gives its own
  double handshake_timeout_s = 5;
  int window = 2;             // tasks in flight per worker
  int max_tasks_per_worker = 0;          // recycle a worker after this many tasks; 0 = never
  double grace_s = 10;        // after SIGINT/SIGTERM: how long in-flight tasks may take to finish
  protocol::ChannelMode mode = protocol::ChannelMode::authenticated;
  std::uint32_t max_payload = 0;         // 0 = protocol default
  bool progress = false;      // progress line on stderr
  bool verbose = false;       // log every handshake, not just failures
};

// Runs the batch; returns the exit status: 0 all tasks ok, 1 some failed, 2 set-up failure (no trusted
// worker, unreadable input), 130/143 interrupted by SIGINT/SIGTERM. Diagnostics and the summary go to stderr.
int run_batch(const RunOptions& options);

}  // namespace authrun::runner
