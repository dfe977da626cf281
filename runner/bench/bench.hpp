// `authrun bench`: what moving a payload to a worker and back costs, per codec and channel mode, against
// the raw pipe measured in the same run; and, given a launcher, what going through it costs against the
// local pipe.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "protocol/result.hpp"
#include "runner/bench/bench_worker.hpp"

namespace CLI {
class App;
}

namespace authrun::runner {

struct EngineOptions;

struct BenchOptions {
  std::vector<std::string> worker_argv;  // filled in by the command line (as for `run`)
  std::vector<std::string> sizes;        // payload sizes ("8", "64KiB", "256MiB"); empty = the default sweep
  std::vector<std::string> codecs;       // empty = all
  std::vector<std::string> modes;        // empty = all
  int repetitions = 0;                   // round trips per row; 0 = chosen per size
  std::string json_path;                 // --json FILE
  std::string csv_path;                  // --csv FILE
  bool quick = false;                    // a small sweep for tests
  std::optional<bench::LaunchSpec> launch;  // a launcher to measure next to the local pipe
};

// The launcher `bench` measures, from engine options that finish_launch_options completed: the first site
// that is not local. nullopt when `launch_options_given` is false. Errors: usage when launch options were
// given but name no remote site (-S : only).
protocol::Result<std::optional<bench::LaunchSpec>> bench_launch_spec(const EngineOptions& engine, bool launch_options_given);

// Adds the bench options to the `bench` subcommand.
void add_bench_options(CLI::App& command, BenchOptions& options);

// Runs the benchmark; prints a table on stdout. Returns 0, or 2 on a set-up error (a worker, launched or not,
// that fails its handshake included), 1 if any round trip came back wrong (every echo is verified byte for
// byte).
int run_bench(const BenchOptions& options);

}  // namespace authrun::runner
