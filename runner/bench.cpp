// `authrun bench` (placeholder until the benchmark lands; not committed in this form).
#include "runner/bench.hpp"

#include <cstdio>

#include <CLI/CLI.hpp>

namespace authrun::runner {

void add_bench_options(CLI::App&, BenchOptions&) {}

int run_bench(const BenchOptions&) {
  std::fprintf(stderr, "authrun bench: not built yet\n");
  return 2;
}

}  // namespace authrun::runner
