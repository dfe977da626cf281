// exec: posix_spawnp with pipes for stdin/stdout/stderr, one poll() loop, timeout by process group.
#include "worker/builtin/exec_function.hpp"

#include "protocol/fd.hpp"
#include "worker/builtin/exec_bytes.hpp"
#include "worker/child_group.hpp"
#include "worker/task_output.hpp"

#include <atomic>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace authrun::worker {
namespace {

using protocol::Clock;
using protocol::Fd;

constexpr std::size_t k_default_max_output = std::size_t{16} << 20;
constexpr std::size_t k_max_max_output = std::size_t{64} << 20;
constexpr double k_max_timeout_seconds = 366.0 * 86400;
constexpr std::size_t k_io_chunk = 64 * 1024;
constexpr std::size_t k_stream_chunk = 1024 * 1024;   // most bytes sent in one output message
constexpr int k_child_pipe_size = 1024 * 1024;        // F_SETPIPE_SZ for a streamed child's stdout

TaskError bad_args(std::string message) { return TaskError{"bad_args", std::move(message), nullptr}; }
TaskError exec_failed(std::string message) { return TaskError{"exec_failed", std::move(message), nullptr}; }

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

struct ExecArgs {
  std::vector<std::string> argv;  // bytes
  std::vector<std::pair<std::string, std::string>> env;  // additions and overrides
  std::optional<std::string> cwd;
  std::optional<std::string> stdin_text;
  std::optional<Clock::duration> timeout;
  std::size_t max_output = k_default_max_output;
  bool stream = false;  // send output as it comes (output messages) instead of in the value
};

// A byte string given as a string, a CBOR byte string, or (base64 == true) a base64 string.
std::optional<std::string> bytes_of(json& v, bool base64) {
  if (base64) {
    if (!v.is_string()) return std::nullopt;
    return from_base64(v.get_ref<const std::string&>());
  }
  if (v.is_string()) return std::move(v.get_ref<std::string&>());
  if (v.is_binary()) {
    const auto& b = v.get_binary();
    return std::string(b.begin(), b.end());
  }
  return std::nullopt;
}

protocol::Result<ExecArgs, TaskError> parse_args(json&& args) {
  if (!args.is_object())
    return bad_args("exec: args must be an object with argv (a non-empty array of strings)");
  static constexpr std::string_view known[] = {"argv", "argv_base64", "env", "cwd", "stdin", "stdin_base64",
                                               "timeout", "max_output", "stream"};
  for (const auto& item : args.items()) {
    if (std::find(std::begin(known), std::end(known), item.key()) == std::end(known))
      return bad_args("exec: unknown field args." + item.key() +
                      " (known: argv, argv_base64, env, cwd, stdin, stdin_base64, timeout, max_output, stream)");
  }
  // Optional fields given as null count as absent.
  auto field = [&](const char* name) -> json* {
    auto it = args.find(name);
    return it == args.end() || it->is_null() ? nullptr : &*it;
  };

  ExecArgs out;
  json* argv = field("argv");
  json* argv64 = field("argv_base64");
  if (argv && argv64) return bad_args("exec: give args.argv or args.argv_base64, not both");
  const bool b64 = argv64 != nullptr;
  const std::string argv_name = b64 ? "args.argv_base64" : "args.argv";
  const char* elements = b64 ? "base64 strings" : "strings or byte strings";
  if (b64) argv = argv64;
  if (!argv || !argv->is_array() || argv->empty())
    return bad_args("exec: " + argv_name + " must be a non-empty array of " + elements);
  out.argv.reserve(argv->size());
  for (std::size_t i = 0; i < argv->size(); ++i) {
    auto arg = bytes_of((*argv)[i], b64);
    if (!arg)
      return bad_args("exec: " + argv_name + " must be a non-empty array of " + elements + " (element " +
                      std::to_string(i) + " is not)");
    if (has_nul(*arg)) return bad_args("exec: " + argv_name + "[" + std::to_string(i) + "] contains a NUL byte");
    out.argv.push_back(std::move(*arg));
  }

  if (json* env = field("env")) {
    if (!env->is_object()) return bad_args("exec: args.env must be an object of string values");
    for (auto& item : env->items()) {
      const std::string& name = item.key();
      if (name.empty() || name.find('=') != std::string::npos || has_nul(name))
        return bad_args("exec: args.env name '" + name + "' is invalid (empty, or contains '=' or NUL)");
      auto value = bytes_of(item.value(), false);
      if (!value) return bad_args("exec: args.env." + name + " must be a string or a byte string");
      if (has_nul(*value)) return bad_args("exec: args.env." + name + " contains a NUL byte");
      out.env.emplace_back(name, std::move(*value));
    }
  }

  if (json* cwd = field("cwd")) {
    if (!cwd->is_string() || cwd->get_ref<const std::string&>().empty() ||
        has_nul(cwd->get_ref<const std::string&>()))
      return bad_args("exec: args.cwd must be a non-empty string (a directory)");
    out.cwd = std::move(cwd->get_ref<std::string&>());
  }

  json* text = field("stdin");
  json* text64 = field("stdin_base64");
  if (text && text64) return bad_args("exec: give args.stdin or args.stdin_base64, not both");
  if (text) {
    out.stdin_text = bytes_of(*text, false);
    if (!out.stdin_text) return bad_args("exec: args.stdin must be a string or a byte string");
  } else if (text64) {
    out.stdin_text = bytes_of(*text64, true);
    if (!out.stdin_text) return bad_args("exec: args.stdin_base64 must be standard base64 with padding");
  }

  if (json* stream = field("stream")) {
    if (!stream->is_boolean()) return bad_args("exec: args.stream must be a boolean");
    out.stream = stream->get<bool>();
  }

  if (json* timeout = field("timeout")) {
    const double seconds = timeout->is_number() ? timeout->get<double>() : -1;
    if (!std::isfinite(seconds) || seconds <= 0 || seconds > k_max_timeout_seconds)
      return bad_args("exec: args.timeout must be a number of seconds > 0 and <= 31622400");
    out.timeout = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  }

  if (json* max = field("max_output")) {
    const char* expected = "exec: args.max_output must be an integer number of bytes from 0 to 67108864";
    if (!max->is_number_integer()) return bad_args(expected);
    if (max->is_number_unsigned()) {
      const auto v = max->get<std::uint64_t>();
      if (v > k_max_max_output) return bad_args(expected);
      out.max_output = static_cast<std::size_t>(v);
    } else {
      const auto v = max->get<std::int64_t>();
      if (v < 0 || static_cast<std::uint64_t>(v) > k_max_max_output) return bad_args(expected);
      out.max_output = static_cast<std::size_t>(v);
    }
  }
  return out;
}

// A child that closes its stdin early must give us EPIPE, not kill the worker. Only a default disposition
// is replaced, so a handler the worker installed on purpose stays.
void ignore_sigpipe_once() {
  static const bool done = [] {
    struct sigaction current {};
    if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
    return true;
  }();
  (void)done;
}

// The worker's environment with `overrides` replacing or adding entries.
std::vector<std::string> build_environment(
    const std::vector<std::pair<std::string, std::string>>& overrides) {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry(*e);
    std::string_view name = entry.substr(0, entry.find('='));
    bool replaced =
        std::any_of(overrides.begin(), overrides.end(), [&](const auto& o) { return o.first == name; });
    if (!replaced) env.emplace_back(entry);
  }
  for (const auto& [name, value] : overrides) env.push_back(name + "=" + value);
  return env;
}

std::vector<char*> as_pointers(std::vector<std::string>& strings) {
  std::vector<char*> ptrs;
  ptrs.reserve(strings.size() + 1);
  for (auto& s : strings) ptrs.push_back(s.data());
  ptrs.push_back(nullptr);
  return ptrs;
}

class FileActions {
 public:
  FileActions() { m_ok = posix_spawn_file_actions_init(&m_actions) == 0; }
  ~FileActions() {
    if (m_ok) posix_spawn_file_actions_destroy(&m_actions);
  }
  FileActions(const FileActions&) = delete;
  FileActions& operator=(const FileActions&) = delete;
  bool ok() const { return m_ok; }
  posix_spawn_file_actions_t* get() { return &m_actions; }

 private:
  posix_spawn_file_actions_t m_actions;
  bool m_ok = false;
};

class SpawnAttr {
 public:
  SpawnAttr() { m_ok = posix_spawnattr_init(&m_attr) == 0; }
  ~SpawnAttr() {
    if (m_ok) posix_spawnattr_destroy(&m_attr);
  }
  SpawnAttr(const SpawnAttr&) = delete;
  SpawnAttr& operator=(const SpawnAttr&) = delete;
  bool ok() const { return m_ok; }
  posix_spawnattr_t* get() { return &m_attr; }

 private:
  posix_spawnattr_t m_attr;
  bool m_ok = false;
};

// waitpid, retried on EINTR. Returns its result (-1 with errno on failure).
pid_t wait_for(pid_t pid, int* status, int flags) {
  for (;;) {
    pid_t r = waitpid(pid, status, flags);
    if (r >= 0 || errno != EINTR) return r;
  }
}

// Kills and reaps the child's process group if the function is left before the child was reaped
// (an error or exception in the middle), so no child outlives its task.
class ChildGuard {
 public:
  // Records the child spawned after spawning_child() (a SIGTERM held back meanwhile acts now).
  explicit ChildGuard(pid_t pid) : m_pid(pid) { spawned_child_group(pid); }
  ~ChildGuard() {
    set_running_child_group(0);
    if (m_pid > 0) {
      kill(-m_pid, SIGKILL);
      int status = 0;
      wait_for(m_pid, &status, 0);
    }
  }
  ChildGuard(const ChildGuard&) = delete;
  ChildGuard& operator=(const ChildGuard&) = delete;
  void reaped() {
    set_running_child_group(0);
    m_pid = -1;
  }

 private:
  pid_t m_pid;
};

// One captured stream: the bytes kept (at most `max`, unless streamed) and whether any were dropped.
struct Capture {
  Fd fd;
  bool is_stderr = false;
  std::string data;
  std::uint64_t total = 0;  // bytes the program wrote
  bool truncated = false;
  bool sink_failed = false;  // streamed: the bytes could not be delivered
};

// One read from a ready stream (one per wake-up, so a fast writer cannot starve the other streams or the
// deadline). Streamed (`sink` set): the bytes go to the sink at once. Closes the fd at EOF or on an error.
// Returns false if nothing more is available now.
bool read_once(Capture& c, std::size_t max, std::vector<char>& buf, const OutputSink* sink) {
  ssize_t n = read(c.fd.get(), buf.data(), buf.size());
  if (n < 0 && errno == EINTR) return true;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
  if (n <= 0) {
    c.fd.close();
    return false;
  }
  c.total += static_cast<std::uint64_t>(n);
  if (sink) {
    if (!c.sink_failed && !(*sink)(c.is_stderr, std::string_view(buf.data(), static_cast<std::size_t>(n))))
      c.sink_failed = true;
    return true;
  }
  const std::size_t room = max - std::min(max, c.data.size());
  const std::size_t keep = std::min(room, static_cast<std::size_t>(n));
  c.data.append(buf.data(), keep);
  if (keep < static_cast<std::size_t>(n)) c.truncated = true;
  return true;
}

// A captured stream in the value: text when it is UTF-8, else lossless base64.
void put_output(json& value, const char* name, Capture& c) {
  if (is_utf8(c.data)) value[name] = std::move(c.data);
  else value[std::string(name) + "_base64"] = to_base64(c.data);
}

int ms_until(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<decltype(left)>(left, 0, INT_MAX));
}

// The signals with which processes are stopped from outside (kill, scancel, a service manager, a hang-up),
// as opposed to those a program's own fault raises (SIGSEGV, SIGABRT, SIGPIPE...).
bool is_stop_signal(int sig) {
  return sig == SIGTERM || sig == SIGHUP || sig == SIGINT || sig == SIGQUIT || sig == SIGKILL;
}

json signal_name(int sig) {
  if (const char* abbrev = sigabbrev_np(sig)) return std::string("SIG") + abbrev;
  return "SIG" + std::to_string(sig);
}

}  // namespace

FunctionResult exec_function(json&& args) {
  auto parsed = parse_args(std::move(args));
  if (!parsed) return std::move(parsed).error();
  ExecArgs a = std::move(parsed).value();
  const OutputSink* sink = a.stream ? current_output_sink() : nullptr;
  if (a.stream && !sink) return bad_args("exec: args.stream needs a task loop that streams output (none here)");
  ignore_sigpipe_once();

  if (a.cwd) {
    // posix_spawn reports a failed chdir as if the program were missing; say what really is wrong.
    struct stat st {};
    if (stat(a.cwd->c_str(), &st) != 0)
      return exec_failed("exec: cannot use cwd '" + *a.cwd + "': " + strerror(errno));
    if (!S_ISDIR(st.st_mode)) return exec_failed("exec: cannot use cwd '" + *a.cwd + "': Not a directory");
    if (access(a.cwd->c_str(), X_OK) != 0)
      return exec_failed("exec: cannot use cwd '" + *a.cwd + "': " + strerror(errno));
  }

  protocol::Pipe in_pipe;
  if (a.stdin_text) {
    auto p = protocol::make_pipe();
    if (!p) return exec_failed("exec: cannot create a pipe: " + p.error().message);
    in_pipe = std::move(p).value();
  }
  auto out_pipe = protocol::make_pipe();
  if (!out_pipe) return exec_failed("exec: cannot create a pipe: " + out_pipe.error().message);
  auto err_pipe = protocol::make_pipe();
  if (!err_pipe) return exec_failed("exec: cannot create a pipe: " + err_pipe.error().message);

  FileActions actions;
  SpawnAttr attr;
  if (!actions.ok() || !attr.ok()) return exec_failed("exec: cannot prepare posix_spawn: out of memory");
  // dup2 onto 0/1/2 clears FD_CLOEXEC on the copies only.
  int rc = a.stdin_text
               ? posix_spawn_file_actions_adddup2(actions.get(), in_pipe.read.get(), STDIN_FILENO)
               : posix_spawn_file_actions_addopen(actions.get(), STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(actions.get(), out_pipe->write.get(), STDOUT_FILENO);
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(actions.get(), err_pipe->write.get(), STDERR_FILENO);
  // Our fds are O_CLOEXEC, but ones the worker inherited without the flag would leak: close them all.
  if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(actions.get(), STDERR_FILENO + 1);
  if (rc == 0 && a.cwd) rc = posix_spawn_file_actions_addchdir_np(actions.get(), a.cwd->c_str());
  // Own process group (a timeout kills the whole group), empty mask, every signal back to SIG_DFL
  // (SIG_IGN, e.g. our SIGPIPE, would otherwise survive exec).
  sigset_t empty_mask;
  sigset_t all_signals;
  sigemptyset(&empty_mask);
  sigfillset(&all_signals);
  if (rc == 0)
    rc = posix_spawnattr_setflags(attr.get(),
                                  POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  if (rc == 0) rc = posix_spawnattr_setpgroup(attr.get(), 0);
  if (rc == 0) rc = posix_spawnattr_setsigmask(attr.get(), &empty_mask);
  if (rc == 0) rc = posix_spawnattr_setsigdefault(attr.get(), &all_signals);
  if (rc != 0) return exec_failed(std::string("exec: cannot prepare posix_spawn: ") + strerror(rc));

  std::vector<std::string> env = build_environment(a.env);
  std::vector<char*> envp = as_pointers(env);
  std::vector<char*> argvp = as_pointers(a.argv);

  const auto start = Clock::now();
  pid_t pid = -1;
  spawning_child();  // a SIGTERM from here until the guard records the child waits for it
  rc = posix_spawnp(&pid, argvp[0], actions.get(), attr.get(), argvp.data(), envp.data());
  if (rc != 0) spawned_child_group(0);
  if (rc != 0) return exec_failed("exec: cannot run '" + cut_for_message(a.argv[0]) + "': " + strerror(rc));
  ChildGuard guard(pid);

  in_pipe.read.close();
  out_pipe->write.close();
  err_pipe->write.close();
  Fd in_fd = std::move(in_pipe.write);
  Capture out;
  out.fd = std::move(out_pipe->read);
  Capture err;
  err.fd = std::move(err_pipe->read);
  err.is_stderr = true;
  // A bigger pipe means fewer, larger output messages (best effort: the system may refuse).
  if (sink) fcntl(out.fd.get(), F_SETPIPE_SZ, k_child_pipe_size);
  const std::string no_text;
  const std::string& in_text = a.stdin_text ? *a.stdin_text : no_text;
  std::size_t in_pos = 0;
  if (in_fd.valid() && in_text.empty()) in_fd.close();
  for (int fd : {in_fd.get(), out.fd.get(), err.fd.get()}) {
    if (fd >= 0 && !protocol::set_nonblocking(fd, true))
      return exec_failed("exec: cannot make a pipe non-blocking");
  }

  const std::optional<Clock::time_point> deadline =
      a.timeout ? std::optional(start + std::min(*a.timeout, Clock::time_point::max() - start))
                : std::nullopt;
  bool timed_out = false;
  std::vector<char> buf(sink ? k_stream_chunk : k_io_chunk);

  while (out.fd.valid() || err.fd.valid()) {
    pollfd fds[3];
    nfds_t n = 0;
    int in_i = -1, out_i = -1, err_i = -1;
    if (in_fd.valid()) {
      in_i = static_cast<int>(n);
      fds[n++] = {in_fd.get(), POLLOUT, 0};
    }
    if (out.fd.valid()) {
      out_i = static_cast<int>(n);
      fds[n++] = {out.fd.get(), POLLIN, 0};
    }
    if (err.fd.valid()) {
      err_i = static_cast<int>(n);
      fds[n++] = {err.fd.get(), POLLIN, 0};
    }
    int wait_ms = -1;
    if (deadline) {
      wait_ms = ms_until(*deadline);
      if (wait_ms == 0) {
        timed_out = true;
        break;
      }
    }
    int ready = poll(fds, n, wait_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return exec_failed(std::string("exec: poll: ") + strerror(errno));
    }
    if (ready == 0) continue;  // the deadline check above decides
    if (in_i >= 0 && fds[in_i].revents) {
      const std::size_t len = std::min(k_io_chunk, in_text.size() - in_pos);
      ssize_t w = write(in_fd.get(), in_text.data() + in_pos, len);
      if (w > 0) {
        in_pos += static_cast<std::size_t>(w);
        if (in_pos == in_text.size()) in_fd.close();
      } else if (w < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
        in_fd.close();  // EPIPE: the child does not read its stdin; that is its business
      }
    }
    if (out_i >= 0 && fds[out_i].revents) read_once(out, a.max_output, buf, sink);
    if (err_i >= 0 && fds[err_i].revents) read_once(err, a.max_output, buf, sink);
    if (out.sink_failed || err.sink_failed) break;  // the channel is gone: stop the child
  }
  in_fd.close();

  int status = 0;
  pid_t reaped = 0;
  if (!timed_out && deadline) {
    // Both outputs are closed; the child normally exits right away, but it may have closed them and
    // gone on running. Poll with a growing pause so the deadline still holds.
    long pause_ns = 1'000'000;
    while ((reaped = wait_for(pid, &status, WNOHANG)) == 0) {
      const int left_ms = ms_until(*deadline);
      if (left_ms == 0) {
        timed_out = true;
        break;
      }
      timespec pause{0, std::min<long>(pause_ns, left_ms * 1'000'000L)};
      nanosleep(&pause, nullptr);
      pause_ns = std::min<long>(pause_ns * 2, 50'000'000);
    }
  }
  const bool sink_failed = out.sink_failed || err.sink_failed;
  if (timed_out || sink_failed) {
    kill(-pid, SIGKILL);
    // Keep what the group had already written; a bounded number of reads, since a process that left
    // the group could go on writing.
    for (Capture* c : {&out, &err}) {
      for (int i = 0; i < 64 && c->fd.valid() && read_once(*c, a.max_output, buf, sink); ++i) {
      }
    }
  }
  out.fd.close();
  err.fd.close();
  if (reaped == 0) reaped = wait_for(pid, &status, 0);
  guard.reaped();
  const double duration_ms =
      std::round(std::chrono::duration<double, std::milli>(Clock::now() - start).count() * 1000) / 1000;

  json exit_code = nullptr, sig = nullptr, sig_name = nullptr;
  if (reaped == pid && WIFEXITED(status)) exit_code = WEXITSTATUS(status);
  if (reaped == pid && WIFSIGNALED(status)) {
    sig = WTERMSIG(status);
    sig_name = signal_name(WTERMSIG(status));
  }
  json value{{"exit_code", exit_code},      {"signal", sig},
             {"signal_name", sig_name},     {"stdout_bytes", out.total},
             {"stderr_bytes", err.total},   {"stdout_truncated", out.truncated},
             {"stderr_truncated", err.truncated}, {"timed_out", timed_out},
             {"duration_ms", duration_ms}};
  if (!sink) {
    put_output(value, "stdout", out);
    put_output(value, "stderr", err);
  }
  // Anything but a clean exit 0 with all its output is an error of its own type, the whole value in details.
  const std::string prog = "exec: '" + cut_for_message(a.argv[0]) + "'";
  auto fail = [&](const char* type, std::string message) -> FunctionResult {
    return TaskError{type, std::move(message), std::move(value)};
  };
  if (sink_failed) return fail("output_lost", prog + ": its output could not be sent (channel failed); killed");
  if (timed_out) {
    char secs[32];
    std::snprintf(secs, sizeof secs, "%g", std::chrono::duration<double>(*a.timeout).count());
    return fail("timeout", prog + " timed out after " + secs + " s and was killed");
  }
  if (!sig.is_null()) {
    // Not ours (a time limit is "timeout", a lost channel "output_lost", and our SIGTERM handler exits): a
    // stop from outside, which may be about to reach this worker too, makes the failure wait for the
    // worker to outlive it (PROTOCOL.md section 6, outside_signal).
    const int number = WTERMSIG(status);
    TaskError failed{"signal", prog + " was killed by " + sig_name.get<std::string>(), std::move(value)};
    if (is_stop_signal(number)) failed.outside_signal = number;
    return failed;
  }
  if (exit_code.is_null()) return fail("exit_status", prog + " ended in an unknown way");
  if (exit_code.get<int>() != 0) return fail("exit_status", prog + " exited with status " + std::to_string(exit_code.get<int>()));
  if (out.truncated || err.truncated) {
    return fail("output_too_large", prog + ": " + (out.truncated ? "stdout" : "stderr") + " exceeded args.max_output (" +
                                        std::to_string(a.max_output) + " bytes; at most 67108864, or use args.stream)");
  }
  return value;
}

}  // namespace authrun::worker
