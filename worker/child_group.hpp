// The process group of the child that the running task started, so that a worker that is stopped or
// orphaned stops it first and no task child outlives its worker.
#pragma once

#include <sys/types.h>

namespace authrun::worker {

// Records `group` (a child's pid, leader of its own process group) as the running task's child; 0 when it
// has been reaped. Async-signal-safe to read (an atomic).
void set_running_child_group(pid_t group);

// Stops the recorded process group, if any, as GNU parallel does: SIGTERM, 200 ms, SIGTERM, 100 ms, SIGTERM,
// 50 ms, then SIGKILL (returning as soon as the child is reaped here). Async-signal-safe: the worker's SIGTERM
// handler and the orphan watch call it. The caller exits next.
void stop_running_child_group();

}  // namespace authrun::worker
