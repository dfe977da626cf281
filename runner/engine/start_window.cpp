// The start-up window: Yama, unreadable executables, the runner's own start, wrappers, SIGCONT.
#include "runner/engine/start_window.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

#include <fcntl.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "protocol/fd.hpp"
#include "protocol/tracing.hpp"

namespace authrun::runner {

namespace {

int g_own_dumpable = -1;  // PR_GET_DUMPABLE at note_own_start(); -1 before
std::atomic<std::uint64_t> g_continues{0};
std::atomic<bool> g_watching{false};

void on_continue(int) { g_continues.fetch_add(1, std::memory_order_relaxed); }

std::string octal_mode(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

std::string base_name(const std::string& path) { return path.substr(path.rfind('/') + 1); }

}  // namespace

int yama_scope() {
  protocol::Fd fd(::open("/proc/sys/kernel/yama/ptrace_scope", O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return -1;
  char text[8] = {};
  if (::read(fd.get(), text, sizeof text - 1) <= 0 || text[0] < '0' || text[0] > '9') return -1;
  return text[0] - '0';
}

void note_own_start() {
  if (g_own_dumpable < 0) g_own_dumpable = ::prctl(PR_GET_DUMPABLE);
}

bool own_start_sealed() { return g_own_dumpable == 0 || g_own_dumpable == 2; }

SealCheck executable_seal(const std::string& path) {
  const int scope = yama_scope();
  if (scope >= 1) return {true, "Yama ptrace_scope " + std::to_string(scope) + ": no other process of the user may attach"};
  if (::getuid() == 0 || ::geteuid() == 0) return {true, "run as root: only root (CAP_SYS_PTRACE) may attach"};
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {false, path + ": " + std::strerror(errno)};
  const std::string mode = "mode " + octal_mode(st.st_mode) + ", owner uid " + std::to_string(st.st_uid);
  // access() answers for the real uid and gids: whether the kernel lets the user running it read the file,
  // which is what decides whether its execve leaves it dumpable.
  if (::access(path.c_str(), R_OK) != 0) {
    return {true, "not readable by uid " + std::to_string(::getuid()) + " (" + mode + "): non-dumpable from its start"};
  }
  return {false, "readable by uid " + std::to_string(::getuid()) + " (" + mode + ")"};
}

bool is_wrapper(const std::vector<std::string>& argv) {
  if (argv.empty()) return false;
  const std::string name = base_name(argv[0]);
  for (const char* shell : {"sh", "bash", "dash", "zsh", "ksh", "mksh", "busybox", "env", "nice", "nohup", "setsid",
                            "timeout", "stdbuf", "taskset", "chrt", "ionice"}) {
    if (name == shell) return true;
  }
  protocol::Fd fd(::open(argv[0].c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  char magic[2] = {};
  return fd.valid() && ::read(fd.get(), magic, 2) == 2 && magic[0] == '#' && magic[1] == '!';
}

WindowReport assess_start_window(const std::vector<std::string>& worker_argv) {
  WindowReport r;
  const SealCheck self = executable_seal("/proc/self/exe");
  const int scope = yama_scope();
  r.runner_sealed = own_start_sealed() || self.sealed;
  r.runner_why = own_start_sealed() && !self.sealed ? "started non-dumpable" : self.why;
  if (worker_argv.empty()) {
    r.workers_sealed = true;
    r.workers_why = "no worker runs here";
    return r;
  }
  r.worker_program = worker_argv[0];
  r.wrapper = is_wrapper(worker_argv);
  const SealCheck worker = executable_seal(worker_argv[0]);
  if (r.wrapper) {
    // Yama keeps tracers off a wrapper too, but not readers of its pipes through /proc (a read-mode access).
    r.workers_sealed = false;
    r.workers_why = base_name(worker_argv[0]) + " is a wrapper (a shell, env or script): until it execs the worker it is " +
                    (scope >= 1 ? "open to /proc readers of its pipes" : "dumpable, whatever the worker's own mode");
  } else {
    r.workers_sealed = worker.sealed;
    r.workers_why = worker.why;
  }
  return r;
}

std::string window_warning(const WindowReport& r) {
  std::string text;
  // Run as root, only root could attach to or open anything of ours: the wrapper exposes nothing more.
  const bool as_root = ::getuid() == 0 || ::geteuid() == 0;
  if (r.wrapper && !as_root) {
    text += "authrun: warning: the worker command " + r.worker_program +
            " is a wrapper: until it execs the worker, any process of your user may attach to it (no Yama) or open its "
            "pipes through /proc, make it ask for the key and keep that key, and read its tasks in authenticated "
            "mode; name the worker program itself (--require-sealed refuses wrappers)\n";
  }
  std::string open;
  if (!r.runner_sealed) open += "authrun itself (" + r.runner_why + ")";
  if (!r.workers_sealed && !r.wrapper) {
    open += (open.empty() ? "" : " and ") + base_name(r.worker_program) + " (" + r.workers_why + ")";
  }
  if (!open.empty()) {
    text += "authrun: warning: start-up window open: " + open + ", and " +
            (yama_scope() < 0 ? std::string("this kernel has no Yama") : "Yama ptrace_scope is 0") +
            ": any process of your user may attach to them as they start and take the keys (SECURITY.md, \"The start-up "
            "window\"). Remedy: install authrun (cmake --install or the .deb: root-owned, mode 0711), or "
            "sysctl kernel.yama.ptrace_scope=1; --require-sealed refuses to run instead, --no-window-warning hides this\n";
  }
  return text;
}

std::string sealed_refusal(const WindowReport& r) {
  if (r.wrapper) {
    return "--require-sealed: refusing to run: the worker command " + r.worker_program + " is a wrapper (" + r.workers_why +
           "); give the worker program itself";
  }
  if (!r.runner_sealed) {
    return "--require-sealed: refusing to run: authrun did not start sealed (" + r.runner_why +
           "); install it root-owned with mode 0711 (cmake --install, the .deb) or sysctl kernel.yama.ptrace_scope=1";
  }
  if (!r.workers_sealed) {
    return "--require-sealed: refusing to run: the worker " + r.worker_program + " does not start sealed (" + r.workers_why +
           "); install it root-owned with mode 0711 (cmake --install, the .deb) or sysctl kernel.yama.ptrace_scope=1";
  }
  return {};
}

std::string window_status_text(const std::string& directory) {
  std::string text = "ptrace policy: " + protocol::ptrace_policy();
  const SealCheck self = executable_seal("/proc/self/exe");
  const bool runner = own_start_sealed() || self.sealed;
  text += "\nstart-up window of authrun: " + std::string(runner ? "sealed (" : "OPEN (") +
          (own_start_sealed() && !self.sealed ? std::string("started non-dumpable") : self.why) + ")";
  for (const char* program : {"authrun-worker", "authrun-python"}) {
    const std::string path = directory + "/" + program;
    if (::access(path.c_str(), X_OK) != 0) continue;
    const SealCheck seal = executable_seal(path);
    text += "\nstart-up window of " + std::string(program) + ": " + (seal.sealed ? "sealed (" : "OPEN (") + seal.why + ")";
  }
  return text;
}

void watch_continues() {
  if (g_watching.exchange(true)) return;
  struct sigaction sa {};
  sa.sa_handler = on_continue;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGCONT, &sa, nullptr);
}

std::uint64_t continues() { return g_continues.load(std::memory_order_relaxed); }

void mask_continue(bool blocked) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCONT);
  ::pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &set, nullptr);
}

}  // namespace authrun::runner
