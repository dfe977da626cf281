// TracerPid from /proc, PR_SET_DUMPABLE, and Yama's ptrace_scope.
#include "protocol/tracing.hpp"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "protocol/fd.hpp"

namespace authrun::protocol {

namespace {

// Reads a small /proc file whole (up to 8 KiB); its owner goes to `owner` when given. Errors: io.
Result<std::string> read_small_file(const std::string& path, unsigned* owner = nullptr) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW));
  if (!fd.valid()) return make_error(ErrorCode::io, path + ": " + std::strerror(errno));
  if (owner) {
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return make_error(ErrorCode::io, path + ": " + std::strerror(errno));
    *owner = static_cast<unsigned>(st.st_uid);
  }
  std::string text;
  char buf[4096];
  while (text.size() < 8192) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error(ErrorCode::io, path + ": " + std::strerror(errno));
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  return text;
}

}  // namespace

Result<ProcStatus> proc_status(int pid) {
  const std::string path = pid == 0 ? std::string("/proc/self/status") : "/proc/" + std::to_string(pid) + "/status";
  ProcStatus result;
  AUTHRUN_TRY_ASSIGN(std::string status, read_small_file(path, &result.owner));
  const std::string field = "\nTracerPid:";
  const auto at = status.find(field);
  if (at == std::string::npos) return make_error(ErrorCode::io, path + ": no TracerPid line");
  std::size_t i = at + field.size();
  while (i < status.size() && (status[i] == ' ' || status[i] == '\t')) ++i;
  long value = 0;
  std::size_t digits = 0;
  while (i < status.size() && status[i] >= '0' && status[i] <= '9' && digits < 10) {
    value = value * 10 + (status[i++] - '0');
    ++digits;
  }
  if (digits == 0) return make_error(ErrorCode::io, path + ": TracerPid is not a number");
  result.tracer_pid = static_cast<int>(value);
  return result;
}

Result<int> tracer_pid(int pid) {
  AUTHRUN_TRY_ASSIGN(ProcStatus status, proc_status(pid));
  return status.tracer_pid;
}

Result<void> protect_self(bool allow_ptrace) {
  if (::prctl(PR_SET_DUMPABLE, 0) != 0) {
    return make_error(ErrorCode::io, std::string("prctl(PR_SET_DUMPABLE, 0): ") + std::strerror(errno));
  }
  AUTHRUN_TRY_ASSIGN(int tracer, tracer_pid());
  if (tracer != 0 && !allow_ptrace) {
    return make_error(ErrorCode::key_invalid,
                      "refusing to run: traced by pid " + std::to_string(tracer) + " (--allow-ptrace to permit)");
  }
  return {};
}

std::string ptrace_policy() {
  auto scope = read_small_file("/proc/sys/kernel/yama/ptrace_scope");
  if (!scope) return "no Yama (any process of the same user may attach to a dumpable one)";
  const std::string s = scope->substr(0, scope->find_first_of(" \n"));
  if (s == "0") return "Yama ptrace_scope 0 (any process of the same user may attach to a dumpable one)";
  if (s == "1") return "Yama ptrace_scope 1 (only an ancestor may attach)";
  if (s == "2") return "Yama ptrace_scope 2 (only CAP_SYS_PTRACE may attach)";
  if (s == "3") return "Yama ptrace_scope 3 (no process may attach)";
  return "Yama ptrace_scope " + s;
}

}  // namespace authrun::protocol
