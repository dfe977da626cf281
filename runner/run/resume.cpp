// --resume: reading a previous run's results.
#include "runner/run/resume.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "protocol/json_text.hpp"

namespace authrun::runner {

protocol::Result<std::unordered_set<std::string>> load_done_ids(const std::string& path, std::size_t& unreadable) {
  std::unordered_set<std::string> done;
  unreadable = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return done;
    return protocol::make_error(protocol::ErrorCode::io, "cannot read " + path + ": " + std::strerror(errno));
  }
  std::vector<protocol::JsonMember> members;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    auto kind = protocol::scan_json(line, members);
    std::string_view id, ok;
    if (kind && *kind == protocol::JsonKind::object) {
      for (const auto& m : members) {
        if (m.raw_key == "id") id = m.value;
        else if (m.raw_key == "ok") ok = m.value;
      }
    }
    if (id.empty() || ok.empty()) {
      ++unreadable;
      continue;
    }
    if (ok == "true") done.emplace(id);  // the id's text as written: matched byte for byte
  }
  return done;
}

}  // namespace authrun::runner
