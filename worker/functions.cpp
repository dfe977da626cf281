// The registry of built-in functions and the dispatcher that runs one by name.
#include "worker/functions.hpp"

#include "worker/basic_functions.hpp"
#include "worker/exec_function.hpp"

#include <exception>
#include <string>

namespace authrun::worker {

const std::vector<FunctionEntry>& functions() {
  static const std::vector<FunctionEntry> entries = {
      {"echo", "returns its args (and any raw attachment) unchanged", echo_function, true},
      {"exec", "runs {argv, env?, cwd?, stdin?, timeout?, max_output?}; returns exit status and output",
       exec_function},
      {"fail", "returns the error {type?, message?, details?}", fail_function},
      {"hash", "BLAKE2b-256 of {data} or {base64}; returns {blake2b, size}", hash_function},
      {"sleep", "sleeps {seconds} (0..86400); returns {slept}", sleep_function},
  };
  return entries;
}

FunctionResult call_function(std::string_view fn, json&& args, protocol::Attachment& attachment) {
  const FunctionEntry* entry = nullptr;
  for (const auto& e : functions()) {
    if (e.name == fn) entry = &e;
  }
  if (!entry || !entry->keeps_attachment) attachment = protocol::Attachment{};
  if (!entry) {
    std::string known;
    json names = json::array();
    for (const auto& e : functions()) {
      known += (known.empty() ? "" : ", ") + std::string(e.name);
      names.push_back(std::string(e.name));
    }
    // The name comes from the peer: keep the message short whatever it sent.
    const std::string shown = fn.size() > 100 ? std::string(fn.substr(0, 100)) + "..." : std::string(fn);
    return TaskError{"unknown_function", "unknown function '" + shown + "' (known: " + known + ")",
                     json{{"known", std::move(names)}}};
  }
  // A function throwing is a bug; the task fails, the worker goes on.
  try {
    return entry->fn(std::move(args));
  } catch (const std::exception& e) {
    return TaskError{"internal", std::string(entry->name) + ": internal error: " + e.what(), nullptr};
  } catch (...) {
    return TaskError{"internal", std::string(entry->name) + ": internal error: unknown exception", nullptr};
  }
}

}  // namespace authrun::worker
