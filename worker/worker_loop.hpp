// The worker's task loop: after the handshake, receive a task, run it, send its result, until shutdown.
#pragma once

#include <chrono>

#include "authrun/worker.hpp"
#include "protocol/channel.hpp"
#include "protocol/progress_page.hpp"
#include "protocol/result.hpp"

namespace authrun::worker {

// Called from the SIGINT handler (Ctrl-C reaches the runner's whole foreground process group, workers too):
// from then on a task not started yet is answered "interrupted" without running. Async-signal-safe.
void mark_interrupted();

// Serves tasks with the functions of `registry` on an established channel until a shutdown message (returns
// success) or the end of input (success if it fell between frames). Errors: any protocol error (the peer has
// been told why). With `dynamic`, the first message must be the program (given to dynamic->load; a failure is
// sent as program_failed and returned with that code), and a task whose name `registry` lacks goes to
// dynamic->call.
// `info` is sent first (with `dynamic`: once the program has loaded, which the parent times as the import).
// Each task's beginning and end are marked on `progress` (the runner's page, PROTOCOL.md section 9.1) if there
// is one; without one, what is held is written before each task begins, so that the runner knows the first
// task it has no result for was the one running.
// After a failure whose cause was a signal from outside (TaskError::outside_signal) it sends nothing for
// `outside_signal_wait`, then a keepalive: the runner holds that failure until then (PROTOCOL.md section 6).
protocol::Result<void> serve_tasks(protocol::Channel& channel, const Registry& registry, protocol::WorkerInfo info,
                                   const DynamicFunctions* dynamic, protocol::ProgressMarker* progress,
                                   std::chrono::nanoseconds outside_signal_wait);

}  // namespace authrun::worker
