// `authrun bench`: one real worker driven synchronously (a blocking protocol::Channel over its pipes),
// spawned as the runner spawns its workers, with its start-up and handshake timed; and reaped.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "protocol/channel.hpp"
#include "protocol/result.hpp"

namespace authrun::runner::bench {

// Where one worker's start-up time went, in microseconds.
struct StartTimes {
  double spawn_us = 0;       // WorkerProcess::spawn: fork and exec, until the exec is known to have succeeded
  double first_byte_us = 0;  // from spawn returning to the worker's hello being readable (its own start-up)
  double handshake_us = 0;   // from our hello queued (key pair made) to the worker's proof verified
};

class WorkerHost;

class BenchWorker {
 public:
  // Stops the worker if stop() was not called (errors ignored; a worker that does not exit is killed).
  ~BenchWorker();
  BenchWorker(const BenchWorker&) = delete;
  BenchWorker& operator=(const BenchWorker&) = delete;

  // The established channel (blocking fds).
  protocol::Channel& channel();
  int pid() const;
  const StartTimes& start_times() const;
  // The smaller of the two pipes' capacities in bytes, as F_GETPIPE_SZ reports it after our request.
  int pipe_size() const;

  // Sends a shutdown, closes both pipes and waits up to 5 s for the worker to exit (then SIGKILL).
  // Errors: io when the worker did not exit with status 0 (the message says how it ended). Call once.
  protocol::Result<void> stop();

  struct Impl;
  explicit BenchWorker(std::unique_ptr<Impl> impl);

 private:
  friend class WorkerHost;
  std::unique_ptr<Impl> m_impl;
};

// Spawns and reaps bench workers; owns the io_context their exit waits run on. Outlives its workers.
class WorkerHost {
 public:
  explicit WorkerHost(std::vector<std::string> worker_argv);
  ~WorkerHost();
  WorkerHost(const WorkerHost&) = delete;
  WorkerHost& operator=(const WorkerHost&) = delete;

  // Spawns a worker with a fresh run key on its key pipe (fd 3), asks for `pipe_size` byte pipes
  // (F_SETPIPE_SZ; the default size is kept silently if refused), and completes the handshake asking for
  // `mode` only, within 10 s. insecure_measurement adds --allow-insecure-measurement to the worker's argv.
  // Errors: spawn_failed, io, timeout, and those of the handshake.
  protocol::Result<std::unique_ptr<BenchWorker>> start(protocol::ChannelMode mode, int pipe_size);

  // Tiny echo tasks through the runner's own event loop (WorkerLink on this host's io_context): starts
  // `jobs` workers, and once all are ready sends `tasks` tasks keeping `window` in flight on each, then
  // shuts them down and reaps them. Returns the seconds from all-ready to the last result (every echo
  // checked). Errors: those of WorkerLink, malformed for a wrong echo, timeout after 60 s.
  protocol::Result<double> engine_tiny_throughput(protocol::ChannelMode mode, int jobs, int window, std::uint64_t tasks);

  struct Impl;

 private:
  std::unique_ptr<Impl> m_impl;
};

}  // namespace authrun::runner::bench
