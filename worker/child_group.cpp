// The running task's child process group, and GNU parallel's termination sequence for it.
#include "worker/child_group.hpp"

#include <atomic>
#include <cerrno>

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

namespace authrun::worker {

namespace {

std::atomic<pid_t> g_running_group{0};  // the child's process group while it runs (for the signal handler)
std::atomic<bool> g_spawning{false};     // a child is being spawned and not recorded yet
std::atomic<int> g_held_signal{0};       // a SIGTERM or SIGHUP that came meanwhile

// Milliseconds on the monotonic clock (clock_gettime is async-signal-safe).
long long monotonic_ms() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<long long>(now.tv_sec) * 1000 + now.tv_nsec / 1'000'000;
}

}  // namespace

void set_running_child_group(pid_t group) { g_running_group.store(group); }

void spawning_child() { g_spawning.store(true); }

void spawned_child_group(pid_t group) {
  g_running_group.store(group);
  g_spawning.store(false);
  // A signal that came while the group was unknown: act on it now (one that comes from here on is the
  // handler's own to act on, with the group known).
  if (const int sig = g_held_signal.exchange(0); sig != 0) {
    stop_running_child_group();
    ::_exit(128 + sig);
  }
}

bool defer_termination(int sig) {
  if (!g_spawning.load()) return false;
  g_held_signal.store(sig);
  if (g_spawning.load()) return true;
  // The spawn ended meanwhile: spawned_child_group may have missed the signal; take it back and act here.
  return g_held_signal.exchange(0) == 0;
}

void stop_running_child_group() {
  const pid_t group = g_running_group.load();
  if (group <= 0) return;
  // GNU parallel's termination sequence (--termseq TERM,200,TERM,100,TERM,50,KILL,25): a job may clean up.
  // Done once the child itself is reaped here (the caller exits next); what is left of its group then gets
  // SIGKILL. (The group alone cannot tell: an orphaned zombie still counts as a member until init reaps it.)
  // The waits are measured on the clock, not counted in naps: on a busy machine each nap lasts longer, and
  // the sequence must still end (with the SIGKILL) within the runner's grace for a stopped worker.
  static constexpr int k_waits_ms[] = {200, 100, 50};
  for (int wait_ms : k_waits_ms) {
    if (::kill(-group, SIGTERM) != 0) return;
    for (const long long until = monotonic_ms() + wait_ms; monotonic_ms() < until;) {
      int status = 0;
      const pid_t r = ::waitpid(group, &status, WNOHANG);
      if (r == group || (r < 0 && errno == ECHILD)) {
        ::kill(-group, SIGKILL);
        return;
      }
      timespec pause{0, 2'000'000};
      ::nanosleep(&pause, nullptr);
    }
  }
  ::kill(-group, SIGKILL);
}

}  // namespace authrun::worker
