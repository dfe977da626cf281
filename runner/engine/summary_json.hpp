// --summary-json: a run's summary as one JSON object, for scripts (the stderr line is for people).
#pragma once

#include <cstdint>
#include <string>

#include "protocol/json_codec.hpp"
#include "protocol/result.hpp"
#include "runner/engine/engine.hpp"

namespace authrun::runner {

// The summary as JSON: tasks, ok, failed, not_started (count) and not_started_ids (the ids, as given),
// skipped, seconds, tasks_per_second, workers {slots, trusted, handshake_failures, deaths},
// hosts_set_aside, input_complete, signal (0 or its number), output_closed, setup_failed, exit_status.
protocol::json summary_json(const RunSummary& summary, std::uint64_t skipped, int slots, int exit_status);

// Writes summary_json(...) and a newline to `path` (replacing it). Errors: io, naming the path.
protocol::Result<void> write_summary_json(const std::string& path, const RunSummary& summary, std::uint64_t skipped,
                                          int slots, int exit_status);

}  // namespace authrun::runner
