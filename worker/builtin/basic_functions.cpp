// echo, sleep, hash and fail: the built-in functions that need no child process.
#include "worker/builtin/basic_functions.hpp"

#include "protocol/run_key.hpp"

#include <sodium.h>

#include <cerrno>
#include <cmath>
#include <ctime>

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace authrun::worker {
namespace {

TaskError bad_args(std::string message) { return TaskError{"bad_args", std::move(message), nullptr}; }

// Names the first key of `args` not in `known`, or returns an empty string.
std::string unknown_field(const json& args, std::initializer_list<std::string_view> known) {
  for (const auto& item : args.items()) {
    bool found = false;
    for (std::string_view k : known) found = found || item.key() == k;
    if (!found) return item.key();
  }
  return {};
}

constexpr double k_max_sleep_seconds = 86400;

}  // namespace

FunctionResult echo_function(json&& args) { return std::move(args); }

FunctionResult sleep_function(json&& args) {
  const char* expected =
      "sleep: args.seconds must be a number >= 0 and <= 86400 (args may also be that number)";
  json seconds_value;
  if (args.is_number()) {
    seconds_value = std::move(args);
  } else if (args.is_object()) {
    if (auto extra = unknown_field(args, {"seconds"}); !extra.empty())
      return bad_args("sleep: unknown field args." + extra + " (known: seconds)");
    auto it = args.find("seconds");
    if (it == args.end()) return bad_args(expected);
    seconds_value = std::move(*it);
  } else {
    return bad_args(expected);
  }
  if (!seconds_value.is_number()) return bad_args(expected);
  const double seconds = seconds_value.get<double>();
  if (!std::isfinite(seconds) || seconds < 0 || seconds > k_max_sleep_seconds) return bad_args(expected);

  // An absolute deadline on the monotonic clock: retrying after EINTR does not stretch the sleep.
  timespec deadline{};
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  const double whole = std::floor(seconds);
  deadline.tv_sec += static_cast<time_t>(whole);
  deadline.tv_nsec += static_cast<long>((seconds - whole) * 1e9);
  if (deadline.tv_nsec >= 1'000'000'000L) {
    deadline.tv_sec += 1;
    deadline.tv_nsec -= 1'000'000'000L;
  }
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, nullptr) == EINTR) {
  }
  return json{{"slept", std::move(seconds_value)}};
}

FunctionResult hash_function(json&& args) {
  const char* expected = "hash: args must be an object with exactly one of data (string) or base64 (string)";
  if (!args.is_object()) return bad_args(expected);
  if (auto extra = unknown_field(args, {"data", "base64"}); !extra.empty())
    return bad_args("hash: unknown field args." + extra + " (known: data, base64)");
  const auto data_it = args.find("data");
  const auto b64_it = args.find("base64");
  const bool has_data = data_it != args.end();
  const bool has_b64 = b64_it != args.end();
  if (has_data == has_b64) return bad_args(expected);
  if (has_data && !data_it->is_string()) return bad_args("hash: args.data must be a string");
  if (has_b64 && !b64_it->is_string()) return bad_args("hash: args.base64 must be a string");
  if (!protocol::sodium_ready())
    return TaskError{"internal", "hash: libsodium cannot be initialised", nullptr};

  std::vector<unsigned char> decoded;
  const unsigned char* input = nullptr;
  std::size_t input_size = 0;
  if (has_data) {
    const auto& data = data_it->get_ref<const std::string&>();
    input = reinterpret_cast<const unsigned char*>(data.data());
    input_size = data.size();
  } else {
    const auto& text = b64_it->get_ref<const std::string&>();
    decoded.resize(text.size() / 4 * 3 + 3);
    // No b64_end and no ignored characters: anything but complete, padded base64 is rejected.
    if (sodium_base642bin(decoded.data(), decoded.size(), text.data(), text.size(), nullptr, &input_size,
                          nullptr, sodium_base64_VARIANT_ORIGINAL) != 0)
      return bad_args("hash: args.base64 must be standard base64 with padding (no whitespace)");
    input = decoded.data();
  }

  unsigned char digest[crypto_generichash_BYTES];
  static_assert(crypto_generichash_BYTES == 32);
  crypto_generichash(digest, sizeof digest, input, input_size, nullptr, 0);
  char hex[sizeof digest * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  return json{{"blake2b", std::string(hex)}, {"size", input_size}};
}

FunctionResult fail_function(json&& args) {
  if (args.is_null()) args = json::object();
  if (!args.is_object())
    return bad_args("fail: args must be an object (type, message, details; all optional)");
  if (auto extra = unknown_field(args, {"type", "message", "details"}); !extra.empty())
    return bad_args("fail: unknown field args." + extra + " (known: type, message, details)");
  TaskError error{"failed", "requested failure", nullptr};
  if (auto it = args.find("type"); it != args.end()) {
    if (!it->is_string() || it->get_ref<const std::string&>().empty())
      return bad_args("fail: args.type must be a non-empty string");
    error.type = std::move(it->get_ref<std::string&>());
  }
  if (auto it = args.find("message"); it != args.end()) {
    if (!it->is_string()) return bad_args("fail: args.message must be a string");
    error.message = std::move(it->get_ref<std::string&>());
  }
  if (auto it = args.find("details"); it != args.end()) error.details = std::move(*it);
  return error;
}

}  // namespace authrun::worker
