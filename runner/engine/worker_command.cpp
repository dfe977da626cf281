// Finding the programs the engine starts: the worker command, a launcher, an interpreter.
#include "runner/engine/worker_command.hpp"

#include <climits>
#include <cstdlib>

#include <sys/stat.h>
#include <unistd.h>

#include "runner/engine/launcher.hpp"

namespace authrun::runner {

using namespace protocol;

std::string own_directory() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string self(buf, static_cast<std::size_t>(n));
  return self.substr(0, self.rfind('/'));
}

std::string default_worker_path() { return own_directory() + "/authrun-worker"; }

Result<void> resolve_program(std::string& prog, const std::string& what) {
  if (prog.find('/') == std::string::npos) {
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/bin:/bin";
    std::string found;
    for (std::size_t start = 0; start <= dirs.size();) {
      std::size_t end = dirs.find(':', start);
      if (end == std::string::npos) end = dirs.size();
      std::string candidate = (end > start ? dirs.substr(start, end - start) : ".") + "/" + prog;
      if (::access(candidate.c_str(), X_OK) == 0) {
        found = candidate;
        break;
      }
      start = end + 1;
    }
    if (found.empty()) return make_error(ErrorCode::usage, what + " program '" + prog + "' not found on PATH");
    prog = found;
  }
  struct stat st {};
  if (::stat(prog.c_str(), &st) != 0) return make_error(ErrorCode::usage, what + " program '" + prog + "' does not exist");
  if (!S_ISREG(st.st_mode) || ::access(prog.c_str(), X_OK) != 0) {
    return make_error(ErrorCode::usage, what + " program '" + prog + "' is not an executable file");
  }
  return {};
}

Result<std::vector<std::string>> resolve_worker_command(const std::string& command) {
  AUTHRUN_TRY_ASSIGN(std::vector<std::string> words, split_command(command, "worker command"));
  AUTHRUN_TRY(resolve_program(words[0], "worker"));
  return words;
}

}  // namespace authrun::runner
