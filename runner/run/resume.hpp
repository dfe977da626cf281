// --resume: which task ids a previous run's results file already holds a successful result for.
#pragma once

#include <string>
#include <unordered_set>

#include "protocol/result.hpp"

namespace authrun::runner {

// The ids (as compact JSON text, e.g. "7" or "\"a\"") of every line with "ok": true in the results file at
// `path`. A missing file means nothing is done yet. Lines that are not result objects (a last line cut off
// by a crash) are passed over and counted in `unreadable`. Errors: io (the file exists but cannot be read).
protocol::Result<std::unordered_set<std::string>> load_done_ids(const std::string& path, std::size_t& unreadable);

}  // namespace authrun::runner
