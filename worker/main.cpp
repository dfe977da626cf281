// authrun-worker: serves tasks over stdin/stdout after the mutual handshake.
#include "worker/worker_main.hpp"

int main(int argc, char** argv) { return authrun::worker::worker_main(argc, argv); }
