// The run summary as JSON.
#include "runner/engine/summary_json.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace authrun::runner {

using namespace protocol;

json summary_json(const RunSummary& s, std::uint64_t skipped, int slots, int exit_status) {
  json ids = json::array();
  for (const std::string& id : s.not_started) {
    auto parsed = parse_json(id);  // ids are kept as JSON text
    ids.push_back(parsed ? std::move(*parsed) : json(id));
  }
  const std::uint64_t tasks = s.ok + s.failed;
  return json{{"tasks", tasks},
              {"ok", s.ok},
              {"failed", s.failed},
              {"not_started", s.not_started.size()},
              {"not_started_ids", std::move(ids)},
              {"skipped", skipped},
              {"seconds", s.seconds},
              {"tasks_per_second", s.seconds > 0 ? double(tasks) / s.seconds : 0.0},
              {"workers",
               {{"slots", slots}, {"trusted", s.trusted}, {"handshake_failures", s.handshake_failures}, {"deaths", s.deaths}}},
              {"hosts_set_aside", s.hosts_set_aside},
              {"task_frames", s.task_frames},
              {"input_complete", !s.input_cut},
              {"signal", s.signal},
              {"output_closed", s.output_closed},
              {"setup_failed", s.setup_failed},
              {"exit_status", exit_status}};
}

Result<void> write_summary_json(const std::string& path, const RunSummary& s, std::uint64_t skipped, int slots,
                                int exit_status) {
  std::FILE* f = std::fopen(path.c_str(), "we");
  if (!f) return make_error(ErrorCode::io, "cannot write the summary to " + path + ": " + std::strerror(errno));
  const std::string text = dump_json(summary_json(s, skipped, slots, exit_status)) + "\n";
  const bool written = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !written) {
    return make_error(ErrorCode::io, "cannot write the summary to " + path + ": " + std::strerror(errno));
  }
  return {};
}

}  // namespace authrun::runner
