// `authrun bench`: options, and the order of the measurements (baselines first, while the process is
// small, then the launcher section if a launcher was given, then the echo rows, then the ping-pong again).
#include "runner/bench/bench.hpp"

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include <CLI/CLI.hpp>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "protocol/limits.hpp"
#include "runner/bench/bench_launch.hpp"
#include "runner/bench/bench_measure.hpp"
#include "runner/bench/bench_report.hpp"
#include "runner/bench/bench_worker.hpp"
#include "runner/engine/engine.hpp"

namespace authrun::runner {

using namespace protocol;
using namespace bench;

namespace {

constexpr int k_pipe_size = 1 << 20;
// json-base64 and json-array stop here in the default sweep: a round trip of 32 MiB as a JSON array
// already takes seconds.
constexpr std::size_t k_json_default_cap = 32u << 20;

// "8", "64K", "64KiB", "2M", "256MiB", "1G" (K, M, G are binary multiples). nullopt if malformed.
std::optional<std::size_t> parse_size(const std::string& text) {
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  if (digits == 0 || digits > 12) return std::nullopt;
  std::size_t value = std::stoull(text.substr(0, digits));
  std::string unit = text.substr(digits);
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  static const std::map<std::string, std::size_t> units = {
      {"", 1}, {"b", 1}, {"k", 1u << 10}, {"kib", 1u << 10}, {"m", 1u << 20}, {"mib", 1u << 20}, {"g", 1u << 30}, {"gib", 1u << 30}};
  auto it = units.find(unit);
  if (it == units.end()) return std::nullopt;
  return value * it->second;
}

std::vector<std::size_t> default_sizes() {
  std::vector<std::size_t> sizes;
  for (std::size_t s = 8; s <= (128u << 20); s *= 4) sizes.push_back(s);
  sizes.push_back(256u << 20);
  return sizes;
}

// A one-line progress report on stderr, only when it is a terminal.
class Progress {
 public:
  Progress() : m_on(::isatty(2) == 1) {}
  void show(const std::string& text) {
    if (!m_on) return;
    std::fprintf(stderr, "\r\033[Kauthrun bench: %s", text.c_str());
    std::fflush(stderr);
  }
  void clear() {
    if (m_on) std::fprintf(stderr, "\r\033[K");
  }

 private:
  bool m_on;
};

Machine machine_info(const std::vector<std::string>& worker_argv) {
  Machine m;
  m.cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) m.cpu_model = line.substr(std::min(line.size(), colon + 2));
      break;
    }
  }
  utsname u{};
  if (::uname(&u) == 0) m.kernel = u.release;
  m.memory_mib = ::sysconf(_SC_PHYS_PAGES) / 1024 * ::sysconf(_SC_PAGESIZE) / 1024;
  m.pipe_size_requested = k_pipe_size;
  m.worker_argv = worker_argv;
  return m;
}

bool write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.flush();
  if (!f) std::fprintf(stderr, "authrun bench: cannot write %s\n", path.c_str());
  return bool(f);
}

}  // namespace

Result<std::optional<LaunchSpec>> bench_launch_spec(const EngineOptions& engine, bool launch_options_given) {
  if (!launch_options_given) return std::optional<LaunchSpec>();
  auto remote = std::find_if(engine.sites.begin(), engine.sites.end(), [](const Site& s) { return !s.local; });
  if (remote == engine.sites.end()) {
    return make_error(ErrorCode::usage, "bench: -S names no remote host to measure the launcher with (':' is this machine)");
  }
  LaunchSpec spec;
  spec.launcher = engine.launcher;
  spec.site = *remote;
  spec.worker_argv = engine.remote_worker_argv;
  spec.delivery = engine.key_delivery;
  spec.key_file = engine.key_file;
  spec.remote_key_file = engine.remote_key_file;
  return std::optional<LaunchSpec>(std::move(spec));
}

void add_bench_options(CLI::App& command, BenchOptions& options) {
  command.add_option("--sizes", options.sizes,
                     "Payload sizes, comma-separated, with optional K/M/KiB/MiB (default 8 B to 256 MiB in steps of 4x; "
                     "json-base64 and json-array stop at 32 MiB unless sizes are given)")
      ->delimiter(',');
  command.add_option("--codecs", options.codecs, "Codecs, comma-separated: json-base64, json-array, cbor, msgpack, raw (default all)")
      ->delimiter(',');
  command.add_option("--modes", options.modes, "Channel modes, comma-separated: authenticated, encrypted, insecure (default all)")
      ->delimiter(',');
  command.add_option("--reps", options.repetitions,
                     "Round trips per row (default: about 0.2 s a row, at least 3; at least 2000 up to 1 KiB)")
      ->check(CLI::Range(1, 10000000));
  command.add_option("--json", options.json_path, "Also write the results as one JSON object to FILE");
  command.add_option("--csv", options.csv_path, "Also write one CSV line per measurement to FILE");
  command.add_flag("--quick", options.quick,
                   "A short run for tests: sizes 8, 1K, 64K and 20 round trips a row (with a launcher: 2 starts, "
                   "2 echoes of each size)");
}

int run_bench(const BenchOptions& options) {
  std::signal(SIGPIPE, SIG_IGN);
  const auto started = Clock::now();

  // Options.
  const bool sizes_given = !options.sizes.empty();
  std::vector<std::size_t> sizes;
  for (const std::string& s : options.sizes) {
    auto size = parse_size(s);
    if (!size || *size == 0) {
      std::fprintf(stderr, "authrun bench: --sizes: '%s' is not a size (examples: 8, 64K, 1MiB)\n", s.c_str());
      return 2;
    }
    sizes.push_back(*size);
  }
  if (sizes.empty()) sizes = options.quick ? std::vector<std::size_t>{8, 1024, 64 * 1024} : default_sizes();
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  std::vector<Codec> codecs;
  for (const std::string& c : options.codecs) {
    auto codec = codec_from_string(c);
    if (!codec) {
      std::fprintf(stderr, "authrun bench: --codecs: unknown codec '%s' (json-base64, json-array, cbor, msgpack, raw)\n", c.c_str());
      return 2;
    }
    if (std::find(codecs.begin(), codecs.end(), *codec) == codecs.end()) codecs.push_back(*codec);
  }
  if (codecs.empty()) codecs.assign(std::begin(k_all_codecs), std::end(k_all_codecs));
  std::vector<ChannelMode> modes;
  for (const std::string& m : options.modes) {
    auto mode = mode_from_label(m);
    if (!mode) {
      std::fprintf(stderr, "authrun bench: --modes: unknown mode '%s' (authenticated, encrypted, insecure)\n", m.c_str());
      return 2;
    }
    if (std::find(modes.begin(), modes.end(), *mode) == modes.end()) modes.push_back(*mode);
  }
  if (modes.empty()) modes = {ChannelMode::authenticated, ChannelMode::encrypted, ChannelMode::insecure_measurement};
  const int fixed_reps = options.repetitions > 0 ? options.repetitions : options.quick ? 20 : 0;

  Report report;
  report.machine = machine_info(options.worker_argv);
  Progress progress;
  int exit_code = 0;

  // Which rows run, and why some do not.
  struct Planned {
    Codec codec;
    std::size_t size;
  };
  std::vector<Planned> plan;
  bool capped = false;
  for (std::size_t size : sizes) {
    for (Codec codec : codecs) {
      const bool json_text = codec == Codec::json_base64 || codec == Codec::json_array;
      if (!sizes_given && json_text && size > k_json_default_cap) {
        capped = true;
        continue;
      }
      if (estimated_payload_bytes(codec, size) + 4 > limits::default_max_payload) {
        report.notes.push_back(std::string(to_string(codec)) + " at " + size_text(size) +
                               " skipped: its frame would exceed the worker's default payload limit of " +
                               size_text(limits::default_max_payload));
        continue;
      }
      plan.push_back(Planned{codec, size});
    }
  }
  if (capped) {
    report.notes.push_back("json-base64 and json-array stop at 32 MiB in the default sweep: too slow beyond (a 32 MiB "
                           "json-array round trip takes seconds); give --sizes to measure larger ones");
  }
  report.notes.push_back("rtt (round trip) runs from Channel::send (body serialised, frame sealed, written) to "
                         "Channel::receive returning (read, tag verified, body parsed): serialising and parsing on both sides "
                         "are inside it; the nlohmann column is their in-process cost, for comparison");
  report.notes.push_back("worker CPU is the worker's own on-CPU time per task from /proc/PID/schedstat (not round trip minus "
                         "encode and decode)");
  report.notes.push_back("peak RSS per row is VmHWM after resetting it (clear_refs 5) just before the row, for the runner and "
                         "the worker; the runner's includes the payload it sends and checks against; ru_maxrss covers the "
                         "whole runner process");

  // Raw pipe baselines first, while this process is small (the child is forked).
  progress.show("raw pipe baseline");
  auto raw = RawPipe::start(k_pipe_size);
  if (!raw) {
    std::fprintf(stderr, "authrun bench: raw pipe baseline: %s\n", raw.error().message.c_str());
    return 2;
  }
  report.machine.pipe_size = raw->pipe_size();
  const std::string ping = make_payload(64);
  const int pingpong_reps = options.quick ? 200 : 5000;
  auto pingpong = raw->echo(ping, pingpong_reps, options.quick ? 20 : 200);
  if (!pingpong) {
    std::fprintf(stderr, "authrun bench: raw pipe ping-pong: %s\n", pingpong.error().message.c_str());
    return 2;
  }
  report.pingpong = summarize(std::move(*pingpong));
  // The same pinned, for reference: one CPU, then two (best effort; the unpinned figure is the baseline).
  for (int child_cpu : {0, 1}) {
    if (child_cpu >= report.machine.cpus || !raw->pin(0, child_cpu)) continue;
    if (auto pinned = raw->echo(ping, pingpong_reps / 2, 100)) {
      (child_cpu == 0 ? report.pingpong_same_cpu : report.pingpong_cross_cpu) = summarize(std::move(*pinned));
    }
  }
  std::ignore = raw->pin(-1, -1);
  std::map<std::size_t, double> raw_mb_s;
  for (std::size_t size : sizes) {
    progress.show("raw pipe echo " + size_text(size));
    const std::string payload = make_payload(size);
    // Expected time per echo: the pipe at ~2 GB/s each way plus a ping-pong.
    const double expected_s = 2.0 * double(size) / 2e9 + report.pingpong.p50_us / 1e6;
    const int reps = fixed_reps > 0 ? fixed_reps : choose_reps(size, expected_s, 0.1);
    auto echo = raw->echo(payload, reps, size <= 64 * 1024 ? 10 : 1);
    if (!echo) {
      std::fprintf(stderr, "authrun bench: raw pipe echo of %s: %s\n", size_text(size).c_str(), echo.error().message.c_str());
      return 2;
    }
    const Stats stats = summarize(std::move(*echo));
    RawPipeRow row{size, stats, 2.0 * double(size) / stats.mean_us};
    raw_mb_s[size] = row.mb_s;
    report.raw_pipe.push_back(row);
  }

  // Spawn and handshake, fresh workers each time; then the workers the rows use.
  WorkerHost host(options.worker_argv);
  const int samples = options.quick ? 2 : 8;
  std::map<ChannelMode, std::unique_ptr<BenchWorker>> workers;
  auto start_worker = [&](ChannelMode mode) -> std::unique_ptr<BenchWorker> {
    auto w = host.start(mode, k_pipe_size);
    if (!w) {
      progress.clear();
      std::fprintf(stderr, "authrun bench: starting a worker (%s): %s\n", mode_label(mode), w.error().message.c_str());
      return nullptr;
    }
    return std::move(*w);
  };
  for (ChannelMode mode : modes) {
    progress.show(std::string("spawn and handshake, ") + mode_label(mode));
    std::vector<double> spawn, first_byte, handshake;
    for (int i = 0; i <= samples; ++i) {
      auto w = start_worker(mode);
      if (!w) return 2;
      spawn.push_back(w->start_times().spawn_us);
      first_byte.push_back(w->start_times().first_byte_us);
      handshake.push_back(w->start_times().handshake_us);
      if (i == samples) {
        workers[mode] = std::move(w);  // the last one serves the rows
      } else if (auto stopped = w->stop(); !stopped) {
        std::fprintf(stderr, "authrun bench: %s\n", stopped.error().message.c_str());
        return 2;
      }
    }
    report.starts.push_back(StartRow{mode_label(mode), summarize(spawn), summarize(first_byte), summarize(handshake)});
    if (workers[mode]->pipe_size() < report.machine.pipe_size) report.machine.pipe_size = workers[mode]->pipe_size();
  }

  // Tiny tasks: latency one at a time, then throughput pipelined over 1 and <cores> workers.
  for (ChannelMode mode : modes) {
    progress.show(std::string("tiny tasks, ") + mode_label(mode));
    // In rounds alternating with the raw ping-pong: both then see the same mix of CPU placements.
    std::vector<double> tiny, pp;
    for (int round = 0; round < (options.quick ? 2 : 10); ++round) {
      auto latency = tiny_latency(*workers[mode], options.quick ? 50 : 200);
      auto raw_round = raw->echo(ping, options.quick ? 50 : 200, 10);
      if (!latency || !raw_round) {
        progress.clear();
        std::fprintf(stderr, "authrun bench: tiny round trips (%s): %s\n", mode_label(mode),
                     (!latency ? latency.error() : raw_round.error()).message.c_str());
        return 2;
      }
      tiny.insert(tiny.end(), latency->begin(), latency->end());
      pp.insert(pp.end(), raw_round->begin(), raw_round->end());
    }
    TinyLatency latency;
    latency.mode = mode_label(mode);
    latency.rtt = summarize(std::move(tiny));
    latency.pingpong = summarize(std::move(pp));
    latency.vs_pingpong = latency.rtt.p50_us / latency.pingpong.p50_us;
    // Pinned: the worker and the raw pipe's child on the same CPU as each other, this process on CPU 0, in
    // alternating rounds, so that the tiny round trip and the ping-pong it is judged against see the same
    // placement and the same moment's load.
    for (int worker_cpu : {0, 1}) {
      if (worker_cpu >= report.machine.cpus || !raw->pin(0, worker_cpu) || !pin_to_cpu(workers[mode]->pid(), worker_cpu)) continue;
      std::vector<double> pinned_tiny, pinned_pp;
      bool ok = true;
      for (int round = 0; round < (options.quick ? 2 : 10) && ok; ++round) {
        auto t = tiny_latency(*workers[mode], options.quick ? 50 : 100);
        auto r = raw->echo(ping, options.quick ? 50 : 100, 10);
        ok = t && r;
        if (ok) {
          pinned_tiny.insert(pinned_tiny.end(), t->begin(), t->end());
          pinned_pp.insert(pinned_pp.end(), r->begin(), r->end());
        }
      }
      if (ok) {
        (worker_cpu == 0 ? latency.same_cpu : latency.cross_cpu) = summarize(std::move(pinned_tiny));
        (worker_cpu == 0 ? latency.same_cpu_pingpong : latency.cross_cpu_pingpong) = summarize(std::move(pinned_pp));
      }
    }
    pin_to_cpu(workers[mode]->pid(), -1);
    std::ignore = raw->pin(-1, -1);
    report.tiny_latency.push_back(latency);

    std::vector<std::unique_ptr<BenchWorker>> extra;
    for (int i = 1; i < report.machine.cpus; ++i) {
      extra.push_back(start_worker(mode));
      if (!extra.back()) return 2;
    }
    std::vector<int> job_counts = {1};
    if (report.machine.cpus > 1) job_counts.push_back(report.machine.cpus);
    for (int jobs : job_counts) {
      std::vector<BenchWorker*> lanes = {workers[mode].get()};
      for (int i = 1; i < jobs; ++i) lanes.push_back(extra[static_cast<std::size_t>(i - 1)].get());
      for (int window : {2, 4}) {
        std::uint64_t tasks = options.quick ? 200 : 1000;
        if (!options.quick) {
          // Sized from a short first run: about half a second.
          auto probe = tiny_throughput_seconds(lanes, window, tasks);
          if (probe) tasks = std::clamp<std::uint64_t>(static_cast<std::uint64_t>(double(tasks) / *probe * 0.5), 1000, 500000);
        }
        auto seconds = tiny_throughput_seconds(lanes, window, tasks);
        if (!seconds) {
          progress.clear();
          std::fprintf(stderr, "authrun bench: tiny tasks (%s, -j %d): %s\n", mode_label(mode), jobs, seconds.error().message.c_str());
          return 2;
        }
        report.tiny_throughput.push_back(
            TinyThroughput{"channel", mode_label(mode), jobs, window, tasks, *seconds, double(tasks) / *seconds});
        auto engine = host.engine_tiny_throughput(mode, jobs, window, tasks);
        if (!engine) {
          progress.clear();
          std::fprintf(stderr, "authrun bench: tiny tasks through the runner's event loop (%s, -j %d): %s\n", mode_label(mode),
                       jobs, engine.error().message.c_str());
          return 2;
        }
        report.tiny_throughput.push_back(
            TinyThroughput{"engine", mode_label(mode), jobs, window, tasks, *engine, double(tasks) / *engine});
      }
    }
    for (auto& w : extra) {
      if (auto stopped = w->stop(); !stopped) {
        std::fprintf(stderr, "authrun bench: %s\n", stopped.error().message.c_str());
        exit_code = 1;
      }
    }
  }

  // The launcher next to the local pipe, before the rows: a launcher that cannot start a worker is a set-up
  // error better known before the long part.
  if (options.launch) {
    LauncherBench launcher(host, *options.launch, options.quick, k_pipe_size,
                           [&progress](const std::string& text) { progress.show(text); });
    bool echo_failed = false;
    auto section = launcher.run(echo_failed);
    auto stopped = launcher.stop();
    if (!section) {
      progress.clear();
      std::fprintf(stderr, "authrun bench: launcher: %s\n", section.error().message.c_str());
      return 2;
    }
    if (!stopped) {
      std::fprintf(stderr, "authrun bench: launcher: %s\n", stopped.error().message.c_str());
      exit_code = 1;
    }
    if (echo_failed) exit_code = 1;
    report.launcher = std::move(*section);
  }

  // The echo rows, sizes ascending; each (codec, mode) predicts its next row's time from its last.
  bool peak_reset_ok = reset_peak_rss(0);
  std::map<std::pair<Codec, ChannelMode>, std::pair<std::size_t, double>> last;  // size, seconds per round trip
  const std::size_t total_rows = plan.size() * modes.size();
  std::size_t done_rows = 0;
  std::string payload;
  for (const Planned& p : plan) {
    if (p.codec == Codec::raw || payload.size() != p.size) {
      payload.clear();
      payload.shrink_to_fit();
      // A raw row makes its own bytes (and holds them once): the runner's peak is then the channel's alone.
      if (p.codec != Codec::raw) payload = make_payload(p.size);
    }
    progress.show("nlohmann baseline " + std::string(to_string(p.codec)) + " " + size_text(p.size));
    const double nlohmann_us = nlohmann_round_trip_us(p.codec, payload, options.quick ? 0.01 : 0.1);
    for (ChannelMode mode : modes) {
      ++done_rows;
      progress.show("row " + std::to_string(done_rows) + "/" + std::to_string(total_rows) + ": " + to_string(p.codec) + " " +
                    mode_label(mode) + " " + size_text(p.size));
      if (!workers[mode]) {
        workers[mode] = start_worker(mode);
        if (!workers[mode]) return 2;
      }
      RepsPolicy policy;
      policy.fixed = fixed_reps;
      if (options.quick) policy.warmup = 2;
      if (auto it = last.find({p.codec, mode}); it != last.end()) {
        policy.predicted_rep_s = it->second.second * double(p.size) / double(it->second.first);
      }
      bool broken = false;
      Row row = measure_row(*workers[mode], p.codec, mode, payload, p.size, policy, broken);
      if (broken) {
        // The channel is unusable: this worker goes, a fresh one serves the next row.
        std::ignore = workers[mode]->stop();
        workers[mode].reset();
      }
      if (!row.failure.empty()) {
        exit_code = 1;
      } else {
        last[{p.codec, mode}] = {p.size, 1 / row.tasks_per_s};
        row.nlohmann_us = nlohmann_us;
        row.raw_mb_s = raw_mb_s[p.size];
        row.vs_raw = row.raw_mb_s > 0 ? row.mb_s / row.raw_mb_s : 0;
        row.vs_pingpong = row.rtt.p50_us / report.pingpong.p50_us;
        if (nlohmann_us > 0) row.vs_nlohmann = row.rtt.mean_us / nlohmann_us;
      }
      report.rows.push_back(std::move(row));
    }
  }
  payload.clear();
  payload.shrink_to_fit();
  if (!peak_reset_ok) report.notes.push_back("per-row peak RSS could not be reset (clear_refs refused): peaks are since start");

  progress.show("raw pipe ping-pong again");
  if (auto again = raw->echo(ping, pingpong_reps, options.quick ? 20 : 200)) report.pingpong_end = summarize(std::move(*again));
  for (auto& [mode, w] : workers) {
    if (!w) continue;
    if (auto stopped = w->stop(); !stopped) {
      std::fprintf(stderr, "authrun bench: %s\n", stopped.error().message.c_str());
      exit_code = 1;
    }
  }
  progress.clear();

  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  report.runner_max_rss_kib = usage.ru_maxrss;
  report.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  std::stable_sort(report.rows.begin(), report.rows.end(), [&](const Row& a, const Row& b) {
    auto index = [&](const std::string& codec) {
      return std::find_if(codecs.begin(), codecs.end(), [&](Codec c) { return codec == to_string(c); }) - codecs.begin();
    };
    return index(a.codec) < index(b.codec);
  });
  evaluate_targets(report);
  print_table(report, stdout);
  std::fflush(stdout);
  if (!options.json_path.empty() && !write_text(options.json_path, to_json(report).dump(2, ' ', false, json::error_handler_t::replace) + "\n")) {
    return 2;
  }
  if (!options.csv_path.empty() && !write_text(options.csv_path, to_csv(report))) return 2;
  return exit_code;
}

}  // namespace authrun::runner
