// A worker child process: spawned (posix_spawn) on a pair of pipes, with the key rendezvous as fd 3 and no other
// fd of ours; killed and reaped (through its pidfd, on the owner's event loop) by its owner.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "protocol/fd.hpp"
#include "protocol/result.hpp"
#include "protocol/run_key.hpp"

namespace boost::asio {
class io_context;
}

namespace authrun::runner {

// The fd number at which a spawned worker finds its key rendezvous (authrun-worker's --key-fd default).
inline constexpr int k_worker_key_fd = 3;

class WorkerProcess {
 public:
  // The runner's ends of the worker's stdin and stdout.
  struct Pipes {
    protocol::Fd to_worker;
    protocol::Fd from_worker;
  };

  // Starts argv[0] (a path) with argv. The child gets fresh pipes as stdin and stdout, inherits stderr, and
  // gets `key_fd` (the worker's end of the key rendezvous, which holds nothing secret; may be invalid) as fd 3; every other fd is closed; signal
  // dispositions and mask are reset. A `launcher` (ssh, srun) gets a socket as stdin instead of a pipe and a
  // process group of its own, which kill() and terminate() signal as a whole. Errors: spawn_failed, naming
  // the program and errno. `pipe_size` > 0: F_SETPIPE_SZ asked for both pipes (kept at the default if refused).
  static protocol::Result<WorkerProcess> spawn(boost::asio::io_context& io, const std::vector<std::string>& argv,
                                               protocol::Fd key_fd, Pipes& pipes, bool launcher = false,
                                               int pipe_size = 0);

  WorkerProcess(WorkerProcess&&) noexcept;
  WorkerProcess& operator=(WorkerProcess&&) noexcept;
  // Kills the child if it is still running; it is reaped by the pending wait, if any.
  ~WorkerProcess();

  int pid() const;
  // Calls `on_exit(wait_status)` (as from waitpid) once the child has been reaped. Call once.
  void async_wait(std::function<void(int wait_status)> on_exit);
  // Sends SIGKILL (no-op once reaped); to its process group if it has its own.
  void kill();
  // Sends SIGTERM (no-op once reaped); to its process group if it has its own.
  void terminate();

 private:
  struct Impl;
  explicit WorkerProcess(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> m_impl;
};

// Writes `key` as the first 32 bytes of a new worker's stdin (`to_worker`), ahead of the protocol: the
// hand-over through an encrypted launcher (authrun-worker --key-stdin). Straight from the key's own memory
// into an empty pipe, so it never blocks and leaves no copy. Errors: io (EPIPE: the launcher is gone).
protocol::Result<void> write_key_prefix(int to_worker, const protocol::RunKey& key);

// "exit code 3", "signal 9 (Killed)" for a wait status.
std::string describe_wait_status(int wait_status);

}  // namespace authrun::runner
