// The version a program of this build reports: the project's, the protocol's, and the git commit.
#pragma once

#include <string>
#include <string_view>

namespace authrun::protocol {

// The project version (CMake's project VERSION), e.g. "0.1.0".
std::string_view project_version();
// `git describe --always --dirty` of the checkout it was built from, or "unknown".
std::string_view git_commit();
// What `--version` prints: "PROGRAM VERSION" on the first line (the form help2man reads), then the
// protocol version and the commit, each on a line of its own (no newline at the end).
std::string version_text(std::string_view program);

}  // namespace authrun::protocol
