// The orphan watch: one thread blocked in poll() on the protocol fds.
#include "worker/orphan_watch.hpp"

#include <atomic>
#include <chrono>
#include <thread>

#include <poll.h>
#include <unistd.h>

#include "worker/child_group.hpp"
#include "worker/quiet_thread.hpp"

namespace authrun::worker {

namespace {

std::atomic<bool> g_task_running{false};

constexpr int k_orphaned_exit = 4;  // as for a channel closed under a running task

void watch(int in_fd, int out_fd) {
  // No events asked: poll reports only POLLHUP (stdin's writer gone), POLLERR (stdout's reader gone) and
  // POLLRDHUP (a socket's peer shut down), never "data ready", so a queued task does not wake us.
  pollfd fds[2] = {{in_fd, POLLRDHUP, 0}, {out_fd, 0, 0}};
  for (;;) {
    int n = ::poll(fds, 2, -1);
    if (n > 0) break;
  }
  // The channel is gone. An idle worker reads the end of input and exits by itself; a task in progress
  // would run to its end for nobody.
  while (!g_task_running.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // Twice: an exec child spawned a moment ago may not have its process group recorded yet.
  stop_running_child_group();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  stop_running_child_group();
  ::_exit(k_orphaned_exit);
}

}  // namespace

void start_orphan_watch(int in_fd, int out_fd) { start_quiet_thread([in_fd, out_fd] { watch(in_fd, out_fd); }).detach(); }

RunningTask::RunningTask() { g_task_running.store(true); }
RunningTask::~RunningTask() { g_task_running.store(false); }

}  // namespace authrun::worker
