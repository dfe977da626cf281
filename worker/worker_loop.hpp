// The worker's task loop: after the handshake, receive a task, run it, send its result, until shutdown.
#pragma once

#include <optional>

#include "protocol/channel.hpp"
#include "protocol/result.hpp"

namespace authrun::worker {

// Serves tasks on an established channel until a shutdown message (returns success) or the end of input
// (success if it fell between frames). `introduce`, if given, goes out in the same write as the first
// result (a parent that gives no task never has to read it). Errors: any protocol error (the peer has
// been told why).
protocol::Result<void> serve_tasks(protocol::Channel& channel, std::optional<protocol::WorkerInfo> introduce = {});

}  // namespace authrun::worker
