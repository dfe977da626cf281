// Workers never outlive their runner, even when the runner is on another machine. Locally PR_SET_PDEATHSIG
// covers the runner's death; through a launcher (ssh, srun) the parent process is the launcher's daemon, so
// the worker watches its channel instead: once the far end of its stdin hangs up or its stdout has no
// reader any more (the runner died, the ssh connection was cut, the srun step was cancelled) while a task
// runs, it kills the task's child process group and exits. An idle worker sees the end of input itself.
// Only on request (--orphan-watch, which authrun passes through launchers): a parent that half-closes the
// worker's stdin with tasks still queued (PROTOCOL.md section 6 allows it) must not use it.
#pragma once

namespace authrun::worker {

// Starts the watching thread for the protocol fds `in_fd` and `out_fd`. Call once.
void start_orphan_watch(int in_fd, int out_fd);

// Marks a task as running, for the watch, while it lives.
class RunningTask {
 public:
  RunningTask();
  ~RunningTask();
  RunningTask(const RunningTask&) = delete;
  RunningTask& operator=(const RunningTask&) = delete;
};

}  // namespace authrun::worker
