// authrun-worker: the SDK's worker with the built-in functions.
#include "authrun/worker.hpp"
#include "worker/builtin/functions.hpp"

int main(int argc, char** argv) {
  authrun::worker::Registry registry;
  authrun::worker::register_builtins(registry);
  return authrun::worker::main(argc, argv, registry);
}
