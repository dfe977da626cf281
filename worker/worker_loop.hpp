// The worker's task loop: after the handshake, receive a task, run it, send its result, until shutdown.
#pragma once

#include "authrun/worker.hpp"
#include "protocol/channel.hpp"
#include "protocol/progress_page.hpp"
#include "protocol/result.hpp"

namespace authrun::worker {

// Serves tasks with the functions of `registry` on an established channel until a shutdown message (returns
// success) or the end of input (success if it fell between frames). Errors: any protocol error (the peer has
// been told why). Each task's beginning and end are marked on `progress` (the runner's page, PROTOCOL.md
// section 9.1) if there is one; without one, what is held is written before each task begins, so that the
// runner knows the first task it has no result for was the one running.
protocol::Result<void> serve_tasks(protocol::Channel& channel, const Registry& registry,
                                   protocol::ProgressMarker* progress);

}  // namespace authrun::worker
