// `authrun bench`: one real worker driven synchronously (a blocking protocol::Channel over its pipes),
// spawned as the runner spawns its workers (here, or through a launcher), with its start-up and handshake
// timed; and reaped.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "protocol/channel.hpp"
#include "protocol/result.hpp"
#include "runner/engine/launcher.hpp"

namespace authrun::runner::bench {

// A worker started through a launcher (ssh, srun), as the runner starts one on a site that is not local.
struct LaunchSpec {
  Launcher launcher;
  Site site;                             // a site that is not local
  std::vector<std::string> worker_argv;  // the worker command where the launcher runs it
  KeyDelivery delivery = KeyDelivery::stdin_prefix;
  std::string key_file;         // key_file delivery: where this process reads the key
  std::string remote_key_file;  // ... and where the worker reads it

  // "127.0.0.1 via ssh", or "via srun" when the launcher picks the host: for messages and the report.
  std::string where() const;
  // The argv that starts the worker (launch_argv for slot 1).
  std::vector<std::string> argv() const;
};

// Where one worker's start-up time went, in microseconds.
struct StartTimes {
  double spawn_us = 0;       // WorkerProcess::spawn: fork and exec, until the exec is known to have succeeded
  double first_byte_us = 0;  // from spawn returning to the worker's hello being readable (its own start-up, a
                             // launcher's login and the key request included)
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
  // Spawn until the worker's proof verified: the sum of the start times.
  double start_us() const;
  // The smaller of the two pipes' capacities in bytes, as F_GETPIPE_SZ reports it after our request.
  int pipe_size() const;
  // The host the worker named itself in its worker_info message (which arrives ahead of its first result);
  // "" before that, or if it sent none.
  std::string peer_host();

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
  // Errors: spawn_failed, io, timeout, and those of the handshake; after the spawn, the message also says
  // how the worker ended (it is reaped first).
  protocol::Result<std::unique_ptr<BenchWorker>> start(protocol::ChannelMode mode, int pipe_size);

  // Starts a worker through `launch` as start() does, with 30 s for its first byte and 30 s for the
  // handshake. Its key: a fresh one written as the first 32 bytes of its stdin before the handshake
  // (stdin_prefix), or the key file's, which the worker reads itself (key_file: nothing is sent). Errors:
  // those of start(), key_invalid for the key file; the message names where the worker ran, and for a
  // launcher that ended early, how and the likely cause (launch_failure_hint).
  protocol::Result<std::unique_ptr<BenchWorker>> start_launched(const LaunchSpec& launch, protocol::ChannelMode mode,
                                                                int pipe_size);

  // Tiny echo tasks through the runner's own event loop (WorkerLink on this host's io_context): starts
  // `jobs` workers, and once all are ready sends `tasks` tasks keeping `window` in flight on each, then
  // shuts them down and reaps them. Returns the seconds from all-ready to the last result (every echo
  // checked). Errors: those of WorkerLink, malformed for a wrong echo, timeout after 60 s.
  protocol::Result<double> engine_tiny_throughput(protocol::ChannelMode mode, int jobs, int window, std::uint64_t tasks);

  struct Impl;

 private:
  struct Plan;  // what to spawn and how it gets its key
  // The one spawn path under start() and start_launched().
  protocol::Result<std::unique_ptr<BenchWorker>> spawn(Plan plan, protocol::ChannelMode mode, int pipe_size);

  std::unique_ptr<Impl> m_impl;
};

}  // namespace authrun::runner::bench
