// --resume: which task ids a previous run's results file already holds a successful result for.
#pragma once

#include <string>
#include <unordered_set>

#include "protocol/result.hpp"

namespace authrun::runner {

// The ids of every line with "ok": true in the results file at `path`, as the JSON text the line has (e.g.
// 7 or "a"), matched byte for byte against input ids. A missing file means nothing is done yet. Lines that
// are not result objects (a last line cut off by a crash) are passed over and counted in `unreadable`.
// Errors: io (the file exists but cannot be read).
protocol::Result<std::unordered_set<std::string>> load_done_ids(const std::string& path, std::size_t& unreadable);

}  // namespace authrun::runner
