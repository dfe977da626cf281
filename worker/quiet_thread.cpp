// Helper threads that the worker's termination signals do not reach.
#include "worker/quiet_thread.hpp"

#include <signal.h>

namespace authrun::worker {

std::thread start_quiet_thread(std::function<void()> body) {
  sigset_t stops;
  sigemptyset(&stops);
  sigaddset(&stops, SIGTERM);
  sigaddset(&stops, SIGHUP);
  sigset_t before;
  ::pthread_sigmask(SIG_BLOCK, &stops, &before);  // a signal that comes meanwhile waits, and is taken below
  std::thread thread(std::move(body));
  ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
  return thread;
}

}  // namespace authrun::worker
