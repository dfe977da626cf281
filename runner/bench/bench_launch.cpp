// `authrun bench`'s launcher section.
#include "runner/bench/bench_launch.hpp"

#include <algorithm>

#include "runner/bench/bench_measure.hpp"
#include "runner/bench/bench_report.hpp"

namespace authrun::runner::bench {

using namespace protocol;

LauncherBench::LauncherBench(WorkerHost& host, const LaunchSpec& launch, bool quick, int pipe_size,
                             std::function<void(const std::string&)> progress)
    : m_host(host), m_launch(launch), m_quick(quick), m_pipe_size(pipe_size), m_progress(std::move(progress)) {
  // The mode each uses by default (authenticated here, encrypted through a launcher), and the local pipe
  // encrypted as well, so that the launcher's own cost is separable from the cipher's.
  for (auto [mode, launched] : {std::pair{ChannelMode::authenticated, false}, std::pair{ChannelMode::encrypted, false},
                                std::pair{ChannelMode::encrypted, true}}) {
    Lane& lane = m_lanes.emplace_back();
    lane.mode = mode;
    lane.launched = launched;
    lane.path.via = launched ? launch.launcher.name() : "local";
    lane.path.host = launched ? launch.site.host : "";
    lane.path.mode = mode_label(mode);
  }
}

Result<LaunchSection> LauncherBench::run(bool& echo_failed) {
  AUTHRUN_TRY(time_starts());
  AUTHRUN_TRY(time_tiny_round_trips());
  AUTHRUN_TRY(time_tiny_tasks());
  echo_failed = !time_echoes();
  LaunchSection section;
  section.launcher = m_launch.launcher.name();
  section.argv = m_launch.argv();
  section.key_delivery = m_launch.delivery == KeyDelivery::key_file ? "key file" : "stdin";
  for (Lane& lane : m_lanes) section.paths.push_back(std::move(lane.path));
  return section;
}

Result<void> LauncherBench::stop() {
  Result<void> first;
  for (Lane& lane : m_lanes) {
    if (!lane.worker) continue;
    if (auto stopped = lane.worker->stop(); !stopped && first) first = std::move(stopped);
    lane.worker.reset();
  }
  return first;
}

std::string LauncherBench::name(const Lane& lane) { return lane.path.label() + " (" + lane.path.mode + ")"; }

Result<std::unique_ptr<BenchWorker>> LauncherBench::start(const Lane& lane) {
  return lane.launched ? m_host.start_launched(m_launch, lane.mode, m_pipe_size) : m_host.start(lane.mode, m_pipe_size);
}

// Spawn to verified proof, over fresh workers; the last of each lane stays.
Result<void> LauncherBench::time_starts() {
  const int samples = m_quick ? 2 : 5;
  std::vector<std::vector<double>> times(m_lanes.size());
  for (int i = 0; i < samples; ++i) {
    for (std::size_t l = 0; l < m_lanes.size(); ++l) {
      Lane& lane = m_lanes[l];
      m_progress("launcher: start " + std::to_string(i + 1) + "/" + std::to_string(samples) + ", " + name(lane));
      if (lane.worker) AUTHRUN_TRY(lane.worker->stop());
      auto started = start(lane);
      if (!started) {
        // A launched worker's error names where it ran already.
        Error why = std::move(started).error();
        return lane.launched ? why : with_name(lane, "starting a worker", std::move(why));
      }
      lane.worker = std::move(*started);
      times[l].push_back(lane.worker->start_us());
    }
  }
  for (std::size_t l = 0; l < m_lanes.size(); ++l) m_lanes[l].path.start = summarize(std::move(times[l]));
  return {};
}

// Tiny echoes one at a time, in rounds taking the lanes in turn.
Result<void> LauncherBench::time_tiny_round_trips() {
  std::vector<std::vector<double>> rtts(m_lanes.size());
  for (int round = 0; round < (m_quick ? 2 : 5); ++round) {
    for (std::size_t l = 0; l < m_lanes.size(); ++l) {
      m_progress("launcher: tiny round trips, " + name(m_lanes[l]));
      auto latency = tiny_latency(*m_lanes[l].worker, m_quick ? 30 : 200);
      if (!latency) return with_name(m_lanes[l], "tiny round trips", std::move(latency).error());
      rtts[l].insert(rtts[l].end(), latency->begin(), latency->end());
    }
  }
  for (std::size_t l = 0; l < m_lanes.size(); ++l) {
    Lane& lane = m_lanes[l];
    lane.path.tiny_rtt = summarize(std::move(rtts[l]));
    // A launcher that picks the host itself (srun): the worker named it, ahead of its first result.
    if (lane.launched && lane.path.host.empty()) lane.path.host = lane.worker->peer_host();
  }
  return {};
}

// Tiny echoes with k_window in flight on one worker: about half a second's worth (a fixed 200 with --quick).
Result<void> LauncherBench::time_tiny_tasks() {
  for (Lane& lane : m_lanes) {
    m_progress("launcher: tiny tasks, " + name(lane));
    const double rtt_s = std::max(lane.path.tiny_rtt.p50_us, 1.0) / 1e6;
    const auto tasks = m_quick ? std::uint64_t{200}
                               : static_cast<std::uint64_t>(std::clamp(0.5 * k_window / rtt_s, 500.0, 50000.0));
    auto seconds = tiny_throughput_seconds({lane.worker.get()}, k_window, tasks);
    if (!seconds) return with_name(lane, "tiny tasks", std::move(seconds).error());
    lane.path.tiny_tasks = TinyThroughput{"channel", lane.path.mode, 1, k_window, tasks, *seconds, double(tasks) / *seconds};
  }
  return {};
}

// Raw-attachment echoes of each size, verified byte for byte. False if any came back wrong; a lane whose
// channel broke measures nothing more.
bool LauncherBench::time_echoes() {
  bool all_ok = true;
  for (std::size_t size : k_echo_sizes) {
    const std::string payload = make_payload(size);
    for (Lane& lane : m_lanes) {
      if (!lane.worker) continue;
      m_progress("launcher: raw echo " + size_text(size) + ", " + name(lane));
      RepsPolicy policy;
      policy.target_seconds = 0.5;
      if (m_quick) {
        policy.fixed = 2;
        policy.warmup = 1;
      }
      bool broken = false;
      Row row = measure_row(*lane.worker, Codec::raw, lane.mode, payload, payload.size(), policy, broken);
      all_ok = all_ok && row.failure.empty();
      if (broken) {
        std::ignore = lane.worker->stop();
        lane.worker.reset();
      }
      lane.path.echoes.push_back(std::move(row));
    }
  }
  return all_ok;
}

Error LauncherBench::with_name(const Lane& lane, const std::string& what, Error why) {
  return Error{why.code, what + " over " + name(lane) + ": " + why.message};
}

}  // namespace authrun::runner::bench
