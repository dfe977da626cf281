// my-worker: an authrun worker with functions of its own. The SDK does the rest (key, handshake, channel,
// launchers, signals): run it with `authrun run TASKS --worker ./my-worker`; `./my-worker --list` lists them.
#include <authrun/worker.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

using authrun::worker::FunctionResult;
using authrun::worker::json;
using authrun::worker::TaskError;

namespace {

TaskError bad_args(std::string message) { return TaskError{"bad_args", std::move(message), nullptr}; }

// stats: args is an array of numbers. Returns {count, mean, min, max, stdev} (stdev: population).
FunctionResult stats(const json& args) {
  if (!args.is_array() || args.empty()) return bad_args("stats: args must be a non-empty array of numbers");
  double sum = 0, lo = INFINITY, hi = -INFINITY;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (!args[i].is_number()) return bad_args("stats: args[" + std::to_string(i) + "] is not a number");
    const double x = args[i].get<double>();
    sum += x;
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  const double mean = sum / static_cast<double>(args.size());
  double squares = 0;
  for (const json& v : args) squares += (v.get<double>() - mean) * (v.get<double>() - mean);
  return json{{"count", args.size()}, {"mean", mean}, {"min", lo}, {"max", hi},
              {"stdev", std::sqrt(squares / static_cast<double>(args.size()))}};
}

// primes: {"below": n}, 2 <= n <= 100,000,000. Returns {"count": primes below n, "largest": the largest}.
FunctionResult primes(const json& args) {
  const json* below = args.is_object() && args.contains("below") ? &args["below"] : nullptr;
  if (!below || !below->is_number_integer() || *below < 2 || *below > 100'000'000)
    return bad_args("primes: args.below must be an integer from 2 to 100000000");
  const auto n = below->get<std::size_t>();
  std::vector<bool> composite(n, false);
  std::size_t count = 0, largest = 0;
  for (std::size_t i = 2; i < n; ++i) {
    if (composite[i]) continue;
    ++count;
    largest = i;
    for (std::size_t j = i * i; j < n; j += i) composite[j] = true;
  }
  return json{{"count", count}, {"largest", largest}};
}

// grep: counts the lines of a text that contain args.pattern. The text is the task's raw attachment (any
// bytes, never JSON-encoded), or args.text when the task has none. Returns {lines, matching, first_match}.
FunctionResult grep(const json& args, std::string_view attachment) {
  if (!args.is_object() || !args.contains("pattern") || !args["pattern"].is_string())
    return bad_args("grep: args.pattern must be a string");
  const auto& pattern = args["pattern"].get_ref<const std::string&>();
  std::string_view text = attachment;
  if (text.empty() && args.contains("text")) {
    if (!args["text"].is_string()) return bad_args("grep: args.text must be a string");
    text = args["text"].get_ref<const std::string&>();
  }
  std::size_t lines = 0, matching = 0;
  json first = nullptr;
  while (!text.empty()) {
    const std::size_t end = std::min(text.find('\n'), text.size());
    ++lines;
    if (text.substr(0, end).find(pattern) != std::string_view::npos) {
      if (matching++ == 0) first = lines;
    }
    text.remove_prefix(std::min(end + 1, text.size()));
  }
  return json{{"lines", lines}, {"matching", matching}, {"first_match", first}};
}

}  // namespace

int main(int argc, char** argv) {
  authrun::worker::Registry registry;
  registry.add("echo", "returns its args", [](json&& args) { return std::move(args); })
      .add("grep", "counts lines of the raw attachment (or args.text) containing args.pattern", grep)
      .add("primes", "counts the primes below args.below", primes)
      .add("stats", "count, mean, min, max, stdev of an array of numbers", stats);
  return authrun::worker::main(argc, argv, registry);
}
