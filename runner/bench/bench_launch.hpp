// `authrun bench`'s launcher section: the cost of a launcher (ssh, srun) measured next to the local pipe in
// the same run — start to verified handshake, tiny round trips, tiny tasks/s, raw-attachment echoes — over a
// local worker in each mode and a launched one, taken in turns so that all three see the same machine.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "protocol/result.hpp"
#include "runner/bench/bench_report.hpp"
#include "runner/bench/bench_worker.hpp"

namespace authrun::runner::bench {

class LauncherBench {
 public:
  // Workers come from `host` (local) and through `launch`; `quick` for a short run; pipes of `pipe_size`
  // bytes; `progress` is told what is being measured.
  LauncherBench(WorkerHost& host, const LaunchSpec& launch, bool quick, int pipe_size,
                std::function<void(const std::string&)> progress);

  // Runs every measurement; echo failures are recorded in the rows (and make `echo_failed` true). Errors:
  // a worker that does not start, a channel that fails outside the echoes (tiny tasks), naming the worker.
  protocol::Result<LaunchSection> run(bool& echo_failed);

  // Stops the workers that served the section. Errors: the first that did not exit cleanly.
  protocol::Result<void> stop();

 private:
  struct Lane {
    protocol::ChannelMode mode = protocol::ChannelMode::authenticated;
    bool launched = false;
    std::unique_ptr<BenchWorker> worker;  // the last one started: it serves the measurements after the starts
    LaunchPath path;
  };

  static constexpr int k_window = 8;
  static constexpr std::size_t k_echo_sizes[] = {1u << 20, 16u << 20};

  // "127.0.0.1 via ssh (encrypted)", for messages.
  static std::string name(const Lane& lane);
  static protocol::Error with_name(const Lane& lane, const std::string& what, protocol::Error why);
  protocol::Result<std::unique_ptr<BenchWorker>> start(const Lane& lane);
  // Spawn to verified proof, over fresh workers; the last of each lane stays.
  protocol::Result<void> time_starts();
  // Tiny echoes one at a time, in rounds taking the lanes in turn.
  protocol::Result<void> time_tiny_round_trips();
  // Tiny echoes with k_window in flight on one worker.
  protocol::Result<void> time_tiny_tasks();
  // Raw-attachment echoes of each size, verified byte for byte. False if any came back wrong.
  bool time_echoes();

  WorkerHost& m_host;
  const LaunchSpec& m_launch;
  bool m_quick;
  int m_pipe_size;
  std::function<void(const std::string&)> m_progress;
  std::vector<Lane> m_lanes;
};

}  // namespace authrun::runner::bench
