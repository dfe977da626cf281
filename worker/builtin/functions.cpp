// The built-in functions, registered through Registry.
#include "worker/builtin/functions.hpp"

#include "worker/builtin/basic_functions.hpp"
#include "worker/builtin/exec_function.hpp"

namespace authrun::worker {

void register_builtins(Registry& registry) {
  registry
      .add("echo", "returns its args (and any raw attachment) unchanged",
           [](json&& args, Attachment&) { return echo_function(std::move(args)); })
      .add("exec", "runs {argv, env?, cwd?, stdin?, timeout?, max_output?}; returns exit status and output",
           exec_function)
      .add("fail", "returns the error {type?, message?, details?}", fail_function)
      .add("hash", "BLAKE2b-256 of {data} or {base64}; returns {blake2b, size}", hash_function)
      .add("sleep", "sleeps {seconds} (0..86400); returns {slept}", sleep_function);
}

const Registry& builtins() {
  static const Registry registry = [] {
    Registry r;
    register_builtins(r);
    return r;
  }();
  return registry;
}

FunctionResult call_function(std::string_view fn, json&& args, Attachment& attachment) {
  return builtins().call(fn, std::move(args), attachment);
}

}  // namespace authrun::worker
