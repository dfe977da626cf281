// The worker's helper threads (keep-alive, held results' watchdog, orphan watch) never take its SIGTERM or
// SIGHUP: those always interrupt the task loop's thread, whose handler stops the task's child and exits. Taken
// on another thread, the handler's SIGTERM to the child could be seen by the task loop meanwhile, which would
// answer the task "killed by SIGTERM" before the worker exits.
#pragma once

#include <functional>
#include <thread>

namespace authrun::worker {

// Starts `body` on a new thread with SIGTERM and SIGHUP blocked (inherited from birth: no moment unblocked).
std::thread start_quiet_thread(std::function<void()> body);

}  // namespace authrun::worker
