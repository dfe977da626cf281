// authrun-fault-worker: an SDK worker for the fault tests, with `echo` (returns its args) and `die` (the worker
// kills itself with SIGKILL at once: a task that kills its worker, without the time a child process takes).
#include <csignal>

#include <unistd.h>

#include "authrun/worker.hpp"

int main(int argc, char** argv) {
  authrun::worker::Registry registry;
  registry.add("echo", "returns args", [](authrun::worker::json&& args) -> authrun::worker::FunctionResult { return std::move(args); });
  registry.add("die", "kills this worker (SIGKILL)", [](authrun::worker::json&&) -> authrun::worker::FunctionResult {
    ::kill(::getpid(), SIGKILL);
    return authrun::worker::json(nullptr);
  });
  return authrun::worker::main(argc, argv, registry);
}
