// `authrun bench`: what one run measured, and its three renderings (table, JSON, CSV).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "protocol/message.hpp"

namespace authrun::runner::bench {

// "8 B", "64 KiB", "1.5 MiB": a size for people.
std::string size_text(std::size_t bytes);

// Summary of a set of timings, in microseconds.
struct Stats {
  std::size_t count = 0;
  double mean_us = 0;
  double p50_us = 0;
  double p99_us = 0;
  double min_us = 0;
  double max_us = 0;
};

// Mean and nearest-rank percentiles (sorts `samples`). All zero for an empty set.
Stats summarize(std::vector<double> samples);

// One codec x mode x size measurement: `reps` echo round trips, each verified byte for byte.
struct Row {
  std::string codec;
  std::string mode;
  std::size_t size = 0;
  int reps = 0;
  double encode_us = 0;       // mean: payload bytes -> Task (args json or attachment), runner side
  Stats rtt;                  // Channel send (body serialised, sealed, written) .. result received and parsed
  double decode_us = 0;       // mean: payload taken out of the parsed result, result freed
  double mb_s = 0;            // 2 x size / (encode + rtt + decode): each direction's payload counted once
  double tasks_per_s = 0;     // 1 / (encode + rtt + decode)
  double wire_per_byte = 0;   // task frame bytes written (header + payload + tag) / size
  double worker_cpu_us = -1;  // the worker's on-CPU time per task (/proc/PID/schedstat); -1 if unknown
  double runner_cpu_us = 0;   // this process's CPU time per task (includes the untimed verification)
  long runner_peak_kib = -1;  // VmHWM over the row (reset before it); includes the payload itself
  long worker_peak_kib = -1;  // the worker's VmHWM over the row (reset before it)
  double nlohmann_us = -1;    // in-process: 2 x (dump + parse) of the same args (both directions); -1 for raw
  double raw_mb_s = 0;        // the raw pipe echo at the same size (this run)
  double vs_raw = 0;          // mb_s / raw_mb_s
  double vs_pingpong = 0;     // rtt p50 / raw ping-pong p50
  double vs_nlohmann = -1;    // rtt mean / nlohmann_us
  std::string failure;        // empty when every echo matched
};

// The raw pipe echo of one size: parent writes the bytes, a forked child reads them all and writes them back.
struct RawPipeRow {
  std::size_t size = 0;
  Stats rtt;
  double mb_s = 0;  // 2 x size / mean rtt
};

// Spawn and handshake times over several fresh workers of one mode.
struct StartRow {
  std::string mode;
  Stats spawn;
  Stats first_byte;
  Stats handshake;
};

// Tiny echo tasks pipelined over `jobs` workers with `window` tasks in flight per worker.
struct TinyThroughput {
  std::string driver;  // "channel": a poll loop over blocking Channels; "engine": the runner's WorkerLink event loop
  std::string mode;
  int jobs = 0;
  int window = 0;
  std::uint64_t tasks = 0;
  double seconds = 0;
  double tasks_per_s = 0;
};

// Tiny echo tasks one at a time (no pipelining): the round-trip latency a single task sees.
// Measured in rounds alternating with the raw ping-pong, so that both see the same CPU placements.
struct TinyLatency {
  std::string mode;
  Stats rtt;
  Stats pingpong;          // the raw ping-pong rounds interleaved with these
  double vs_pingpong = 0;  // rtt p50 / pingpong p50
  // Runner and worker pinned to one CPU, then to two: against the raw ping-pong pinned the same way, the
  // comparison that does not depend on where the scheduler happened to put the processes. count 0 if
  // pinning was not possible.
  Stats same_cpu;
  Stats cross_cpu;
  // The raw ping-pong measured in rounds alternating with same_cpu / cross_cpu, pinned the same way (the
  // raw child where the worker is): what those are judged against.
  Stats same_cpu_pingpong;
  Stats cross_cpu_pingpong;
};

// One worker of the launcher section: the local pipe or the launcher, in one channel mode.
struct LaunchPath {
  std::string via;   // "local", or the launcher's name ("ssh", "srun")
  std::string host;  // for a launched worker: the -S host, or the one the worker named ("" if neither)
  std::string mode;
  Stats start;                // spawn until the worker's proof verified, over fresh workers
  Stats tiny_rtt;             // tiny echoes one at a time over a blocking channel
  TinyThroughput tiny_tasks;  // tiny echoes with a window in flight on one worker
  std::vector<Row> echoes;    // raw-attachment echoes (1 MiB, 16 MiB), each verified byte for byte

  // "local", "127.0.0.1 via ssh", "node1 via srun" (or "via srun").
  std::string label() const;
};

// A launcher measured next to the local pipe in the same run (`bench -S HOST`, `--slurm`, `--launcher`).
struct LaunchSection {
  std::string launcher;           // its name: "ssh", "srun"
  std::vector<std::string> argv;  // the command that started the launched worker
  std::string key_delivery;       // "stdin" (a fresh key ahead of the protocol) or "key file"
  std::vector<LaunchPath> paths;  // the local pipe (authenticated, encrypted), then the launched worker last
};

struct Machine {
  int cpus = 0;
  std::string cpu_model;
  std::string kernel;
  long memory_mib = 0;
  int pipe_size = 0;            // bytes, as in effect on the workers' and raw baseline's pipes
  int pipe_size_requested = 0;  // what F_SETPIPE_SZ asked for
  std::vector<std::string> worker_argv;
};

// A reported target (never asserted): `value` against `limit`.
struct Target {
  std::string name;
  std::string detail;
  bool met = false;
  bool measured = true;  // false: no row measured it (a --quick run); then `met` is false and means nothing
};

struct Report {
  Machine machine;
  std::vector<std::string> notes;
  Stats pingpong;            // raw pipe, 64 B, unpinned, measured before the rows
  Stats pingpong_end;        // the same, after the rows (placement on CPUs may differ)
  Stats pingpong_same_cpu;   // both processes pinned to CPU 0 (count 0 if pinning failed)
  Stats pingpong_cross_cpu;  // pinned to CPUs 0 and 1 (count 0 with one CPU or if pinning failed)
  std::vector<RawPipeRow> raw_pipe;
  std::vector<StartRow> starts;
  std::vector<TinyLatency> tiny_latency;
  std::vector<TinyThroughput> tiny_throughput;
  std::vector<Row> rows;
  std::optional<LaunchSection> launcher;  // only when a launcher was given
  std::vector<Target> targets;
  long runner_max_rss_kib = 0;  // getrusage ru_maxrss: the whole process lifetime
  double seconds = 0;           // the whole run
};

// Fills report.targets from the measurements.
void evaluate_targets(Report& report);

// The readable table (stdout).
void print_table(const Report& report, std::FILE* out);

// One JSON object: machine, notes, baselines, rows, targets.
protocol::json to_json(const Report& report);

// One line per measurement after a header line; every line has the header's column count.
std::string to_csv(const Report& report);

}  // namespace authrun::runner::bench
