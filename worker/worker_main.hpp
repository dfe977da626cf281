// The worker executable's entry point: options, key, handshake, then the task loop.
#pragma once

namespace authrun::worker {

// Runs the worker; returns its exit status (0 after shutdown or end of input, 2 usage, 3 key or handshake
// failure, 4 protocol error after the handshake).
int worker_main(int argc, char** argv);

}  // namespace authrun::worker
