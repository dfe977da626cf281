// The authrun worker SDK: register C++ functions by name in a Registry, then `return
// authrun::worker::main(argc, argv, registry);`. Everything else comes from the library and behaves exactly as
// in authrun-worker (itself built this way): key hand-over, mutual handshake, channel modes, launchers,
// signals, the orphan watch, --list. CMake: find_package(authrun CONFIG REQUIRED) and
// target_link_libraries(app PRIVATE authrun::worker). Example: examples/cpp-worker/.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "protocol/result.hpp"
#include "protocol/task_values.hpp"

namespace authrun::worker {

// nlohmann::json: a task's args and a result's value.
using protocol::json;
// A task's raw attachment (bytes after its JSON, never text-encoded): view() gives them, Attachment{bytes}
// makes one.
using protocol::Attachment;
// A task's failure {type, message, details}: the result line's "error". By convention "bad_args" for input a
// function cannot take, with a message naming the field.
using protocol::TaskError;
// What a function returns: its value or a TaskError (json and TaskError both convert to it).
using FunctionResult = protocol::Result<json, TaskError>;

// The functions a worker serves, by name. Fill it before main(); main() only reads it.
class Registry {
 public:
  // How every function is kept: args moved in; `attachment` holds the task's attachment when called and the
  // result's when it returns.
  using Function = std::function<FunctionResult(json&& args, Attachment& attachment)>;

  // One registered function.
  struct Entry {
    std::string name;
    std::string summary;  // one line, for --list
    Function fn;
  };

  // Registers `fn` as `name` (non-empty and not registered yet: anything else is a bug and throws
  // std::invalid_argument) with a one-line `summary` for --list. Returns *this. `fn` (copyable) is called as
  //   fn(args)                          the task's attachment is dropped; the result has none
  //   fn(args, std::string_view bytes)  reads the task's attachment (valid during the call); the result has none
  //   fn(args, const Attachment& a)     the same
  //   fn(args, Attachment& a)           reads it and may replace it: what `a` holds on return goes back with
  //                                     the result (untouched, the task's attachment is echoed)
  // with args taken as `json&&`, `json` or `const json&`. It returns a FunctionResult, a json, a TaskError,
  // anything a json can be made from, or void (the value is null). Functions run one at a time on the
  // worker's main thread. An exception escaping one becomes an "internal" error result; the worker goes on.
  template <class F>
  Registry& add(std::string name, std::string summary, F fn);

  // Runs the function `name` on `args` and `attachment` (in and out, as above). An unknown name is a
  // TaskError "unknown_function" listing the known names (also in details.known), attachment dropped.
  FunctionResult call(std::string_view name, json&& args, Attachment& attachment) const;

  // The registered functions, in name order.
  const std::vector<Entry>& entries() const { return m_entries; }

  // True if `name` is registered.
  bool has(std::string_view name) const;

 private:
  Registry& add_function(std::string name, std::string summary, Function fn);

  std::vector<Entry> m_entries;  // sorted by name, names unique
};

// Runs a worker serving `registry`, as authrun-worker does (see `PROGRAM --help`): takes the run key (fd 3
// from the runner, --key-file, or --key-stdin through an encrypted launcher), moves the protocol off fds 0
// and 1 (what functions print goes to stderr), shakes hands, then serves tasks until shutdown or end of
// input. Call it once, from the program's main: it takes the process over (non-dumpable, parent-death
// signal, handlers for SIGTERM and SIGHUP, SIGINT stops tasks not started yet, SIGPIPE ignored). --list prints the registry and
// returns. Returns the exit status once the channel has ended (or at once for --list, --help, a usage error
// or no usable key): 0 clean end, 2 usage, 3 key or handshake failure, 4 protocol error after the handshake.
int main(int argc, char** argv, const Registry& registry);

// A worker whose functions are found at run time rather than registered (authrun-python serves a Python
// program's): what it does with the program message, and with a task whose name the Registry lacks.
struct DynamicFunctions {
  // Called once with the program message's JSON body (PROTOCOL.md, program), after the handshake and before
  // any task: the parent must send it first. An error (its message saying what failed to load) goes to the
  // parent as a program_failed error, and the worker exits with status 5.
  std::function<protocol::Result<void>(const std::string& program_json)> load;
  // Runs the task `fn` on `args_json` (its args as checked JSON text, "null" when it had none) and
  // `attachment` (in and out, as Registry::Function's). Returns the value as JSON text, valid and on one line
  // (sent as it is: integers of any size stay exact), or a TaskError.
  std::function<protocol::Result<std::string, TaskError>(std::string_view fn, std::string_view args_json,
                                                         Attachment& attachment)>
      call;
};

// main() for a worker with dynamic functions as well as `registry`'s (which win for the names they hold):
// a task's args reach `dynamic.call` as their JSON text; status 5 when the program failed to load.
int main(int argc, char** argv, const Registry& registry, const DynamicFunctions& dynamic);

namespace detail {

// False for every type: a static_assert on it fires only when the template is instantiated.
template <class>
inline constexpr bool k_unsupported = false;

// Calls fn(a...) and makes its return value a FunctionResult.
template <class F, class... A>
FunctionResult call_as_result(F& fn, A&&... a) {
  using R = std::invoke_result_t<F&, A&&...>;
  if constexpr (std::is_void_v<R>) {
    std::invoke(fn, std::forward<A>(a)...);
    return json(nullptr);
  } else if constexpr (std::is_convertible_v<R, FunctionResult>) {
    return std::invoke(fn, std::forward<A>(a)...);
  } else {
    return json(std::invoke(fn, std::forward<A>(a)...));
  }
}

}  // namespace detail

template <class F>
Registry& Registry::add(std::string name, std::string summary, F fn) {
  Function f;
  if constexpr (std::is_invocable_v<F&, json&&, std::string_view>) {
    f = [fn = std::move(fn)](json&& args, Attachment& attachment) mutable {
      FunctionResult r = detail::call_as_result(fn, std::move(args), attachment.view());
      attachment = Attachment{};
      return r;
    };
  } else if constexpr (std::is_invocable_v<F&, json&&, const Attachment&>) {
    f = [fn = std::move(fn)](json&& args, Attachment& attachment) mutable {
      FunctionResult r = detail::call_as_result(fn, std::move(args), std::as_const(attachment));
      attachment = Attachment{};
      return r;
    };
  } else if constexpr (std::is_invocable_v<F&, json&&, Attachment&>) {
    f = [fn = std::move(fn)](json&& args, Attachment& attachment) mutable {
      return detail::call_as_result(fn, std::move(args), attachment);
    };
  } else if constexpr (std::is_invocable_v<F&, json&&>) {
    f = [fn = std::move(fn)](json&& args, Attachment& attachment) mutable {
      attachment = Attachment{};
      return detail::call_as_result(fn, std::move(args));
    };
  } else {
    static_assert(detail::k_unsupported<F>,
                  "Registry::add: fn must be callable as fn(json&&), fn(json&&, std::string_view), "
                  "fn(json&&, const Attachment&) or fn(json&&, Attachment&)");
  }
  return add_function(std::move(name), std::move(summary), std::move(f));
}

}  // namespace authrun::worker
