// --resume: reading a previous run's results.
#include "runner/run/resume.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "protocol/json_codec.hpp"

namespace authrun::runner {

protocol::Result<std::unordered_set<std::string>> load_done_ids(const std::string& path, std::size_t& unreadable) {
  std::unordered_set<std::string> done;
  unreadable = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return done;
    return protocol::make_error(protocol::ErrorCode::io, "cannot read " + path + ": " + std::strerror(errno));
  }
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    auto j = protocol::parse_json(line);
    if (!j || !j->is_object() || !j->contains("id") || !j->contains("ok")) {
      ++unreadable;
      continue;
    }
    if ((*j)["ok"] == true) done.insert(protocol::dump_json((*j)["id"]));
  }
  return done;
}

}  // namespace authrun::runner
