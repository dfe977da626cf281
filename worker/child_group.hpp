// The process group of the child that the running task started, so that a worker that is stopped or
// orphaned stops it first and no task child outlives its worker.
#pragma once

#include <sys/types.h>

namespace authrun::worker {

// Records `group` (a child's pid, leader of its own process group) as the running task's child; 0 when it
// has been reaped. Async-signal-safe to read (an atomic).
void set_running_child_group(pid_t group);

// Marks the start of a child's spawn: until spawned_child_group(), the worker's SIGTERM or SIGHUP is held back
// (defer_termination), since the child about to exist is not recorded yet and would outlive the worker.
void spawning_child();
// Records the spawned child's group (as set_running_child_group; 0 if the spawn failed) and ends the hold:
// a signal held back meanwhile now stops that group and exits the worker (128 + the signal).
void spawned_child_group(pid_t group);
// For the signal handler: true (and `sig` kept for spawned_child_group) while a spawn is under way.
// Async-signal-safe.
bool defer_termination(int sig);

// Stops the recorded process group, if any, as GNU parallel does: SIGTERM, 200 ms, SIGTERM, 100 ms, SIGTERM,
// 50 ms, then SIGKILL (returning as soon as the child is reaped here). Async-signal-safe: the worker's SIGTERM
// handler and the orphan watch call it. The caller exits next.
void stop_running_child_group();

}  // namespace authrun::worker
