// authrun::worker::main, the whole of a worker but its functions (authrun-worker and every SDK worker):
// options, key, protocol fds, handshake, task loop.
#include "authrun/worker.hpp"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "protocol/channel.hpp"
#include "protocol/key_handover.hpp"
#include "protocol/progress_page.hpp"
#include "protocol/run_key.hpp"
#include "protocol/tracing.hpp"
#include "protocol/version.hpp"
#include "worker/child_group.hpp"
#include "worker/keep_alive.hpp"
#include "worker/orphan_watch.hpp"
#include "worker/worker_loop.hpp"

namespace authrun::worker {

using namespace protocol;

namespace {

// The program's name, for log lines and --help: argv[0] without its directory.
std::string g_program = "authrun-worker";

void log_line(const std::string& text) {
  std::fprintf(stderr, "%s[%d]: %s\n", g_program.c_str(), static_cast<int>(::getpid()), text.c_str());
}

// SIGTERM (also what PR_SET_PDEATHSIG sends when the runner dies) and SIGHUP: take the running task's
// child with us, then go.
void on_terminate(int sig) {
  if (defer_termination(sig)) return;  // a task's child is being spawned: acted on once it is recorded
  stop_running_child_group();
  ::_exit(128 + sig);
}

// SIGINT: the running task goes on (the runner decides what happens to it); those queued do not start.
void on_interrupt(int) { mark_interrupted(); }

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_terminate;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGHUP, &sa, nullptr);
  // Ctrl-C reaches the whole foreground process group; the runner decides what happens to running tasks.
  struct sigaction si {};
  si.sa_handler = on_interrupt;
  si.sa_flags = SA_RESTART;
  sigemptyset(&si.sa_mask);
  ::sigaction(SIGINT, &si, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

// Moves the protocol off fds 0 and 1 so that nothing a task or a library prints can reach the channel:
// fd 0 becomes /dev/null and fd 1 a copy of stderr.
// Copies go above the fds a worker may inherit on purpose (the key on 3).
Result<std::pair<Fd, Fd>> take_protocol_fds() {
  Fd in(::fcntl(0, F_DUPFD_CLOEXEC, 10));
  Fd out(::fcntl(1, F_DUPFD_CLOEXEC, 10));
  if (!in.valid() || !out.valid()) return make_error(ErrorCode::io, std::string("dup of stdin/stdout: ") + std::strerror(errno));
  int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0 || ::dup2(null, 0) < 0 || ::dup2(2, 1) < 0) {
    return make_error(ErrorCode::io, std::string("redirecting stdin/stdout: ") + std::strerror(errno));
  }
  ::close(null);
  return std::pair<Fd, Fd>{std::move(in), std::move(out)};
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "unknown";
  return name;
}

// Where the run key comes from (the options).
struct KeySource {
  int fd = 3;            // inherited from the runner
  std::string file;      // --key-file
  bool request = false;  // --key-stdin: ask on the protocol fds
};

// The run key, from `source`; `in_fd` and `out_fd` are the protocol fds. Errors: the line to log (exit 3).
// The progress page the runner passes with the key on the rendezvous goes to `*progress_page`.
Result<RunKey> acquire_key(const KeySource& source, int in_fd, int out_fd, Clock::time_point deadline,
                           bool allow_ptrace, Fd* progress_page) {
  if (source.file.empty() && !source.request && ::fcntl(source.fd, F_GETFD) < 0) {
    return make_error(ErrorCode::key_invalid,
                      "no key: fd " + std::to_string(source.fd) + " is not open (" + g_program +
                          " is started by authrun, which passes its key rendezvous there; or give --key-file)");
  }
  auto key = source.request ? RunKey::request(in_fd, out_fd, deadline)
             : source.file.empty() ? receive_key_handover(source.fd, deadline, allow_ptrace, progress_page)
                                           : RunKey::load_file(source.file);
  if (!key) return make_error(key.error().code, "no usable key, refusing to run: " + key.error().message);
  return key;
}

void print_functions(const Registry& registry) {
  std::size_t width = 8;
  for (const auto& f : registry.entries()) width = std::max(width, f.name.size());
  for (const auto& f : registry.entries())
    std::printf("%-*s %s\n", static_cast<int>(width), f.name.c_str(), f.summary.c_str());
}

}  // namespace

int main(int argc, char** argv, const Registry& registry) { return main(argc, argv, registry, DynamicFunctions{}); }

int main(int argc, char** argv, const Registry& registry, const DynamicFunctions& dynamic) {
  if (argc > 0 && argv[0] != nullptr && *argv[0] != '\0') {
    const std::string_view path = argv[0];
    g_program = std::string(path.substr(path.rfind('/') + 1));
  }
  const pid_t parent = ::getppid();
  // Not dumpable: other processes of the user can no longer open our pipes through /proc/PID/fd (the frame
  // MACs would catch what they wrote, but they could read the tasks) or read our memory.
  ::prctl(PR_SET_DUMPABLE, 0);
  install_signal_handlers();
  // Backstop for "workers never outlive the runner": EOF on stdin is the first sign, this the second.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != parent) return 0;

  CLI::App app{g_program + ": runs tasks for an authrun parent over stdin/stdout after a mutual handshake.\n"
               "The key comes from an inherited fd (the runner's way) or a key file (mode 0600).", g_program};
  KeySource key_source;
  bool orphan_watch = false;
  double handshake_timeout = std::chrono::duration<double>(limits::default_handshake_timeout).count();
  std::uint32_t max_payload = limits::default_max_payload;
  bool allow_encrypted_only = false;
  bool allow_insecure = false;
  bool list = false;
  bool allow_ptrace = false;
  double outside_signal_wait = std::chrono::duration<double>(KeepAlive::interval).count();
  app.add_option("--key-fd", key_source.fd, "Ask for the run key on this inherited socket (the runner's rendezvous, PROTOCOL.md 9)")
      ->capture_default_str();
  app.add_option("--key-file", key_source.file, "Read the run key from this file (mode 0600, made by 'authrun keygen')")
      ->excludes("--key-fd");
  app.add_flag("--key-stdin", key_source.request,
               "Ask for the run key on stdout (ARUNKEY?) and read it as the first 32 bytes of stdin, ahead of the "
               "protocol (through an encrypted launcher such as ssh)")
      ->excludes("--key-fd", "--key-file");
  app.add_flag("--orphan-watch", orphan_watch,
               "Stop a running task and exit once the channel's far end is gone (authrun passes this to workers it "
               "starts through a launcher, whose parent process outlives the runner)");
  app.add_option("--handshake-timeout", handshake_timeout, "Seconds the handshake may take")->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-payload", max_payload, "Largest task payload accepted, in bytes")->capture_default_str()
      ->check(CLI::Range(std::uint32_t{1024}, limits::absolute_max_payload));
  app.add_flag("--encrypted-only", allow_encrypted_only, "Accept only the encrypted channel mode");
  app.add_flag("--allow-insecure-measurement", allow_insecure,
               "Also accept the unauthenticated channel mode (for 'authrun bench' only)");
  app.add_flag("--allow-ptrace", allow_ptrace, "Run even while traced (debugging); otherwise a tracer makes it exit 3");
  app.add_option("--outside-signal-wait", outside_signal_wait,
                 "After a task's process is killed by a signal this worker did not send (SIGTERM, SIGHUP, SIGINT, SIGQUIT, "
                 "SIGKILL: scancel, a service stop), seconds to send nothing more; the runner holds that failure meanwhile "
                 "and retries the task if the worker is stopped too")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_flag("--list", list, "List the functions this worker serves and exit");
  app.set_version_flag("--version", version_text(g_program), "Print the version and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (list) {
    print_functions(registry);
    return 0;
  }

  if (auto safe = protect_self(allow_ptrace); !safe) {
    log_line(safe.error().message);
    return 3;
  }
  auto fds = take_protocol_fds();
  if (!fds) {
    log_line(fds.error().message);
    return 2;
  }
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(handshake_timeout));
  Fd page;
  auto key = acquire_key(key_source, fds->first.get(), fds->second.get(), deadline, allow_ptrace, &page);
  if (!key) {
    log_line(key.error().message);
    return 3;
  }
  // Where the runner reads which task was running if this process dies (PROTOCOL.md section 9.1). Without
  // one (a launched worker, or a page that is not one) results are never held past the next task's start.
  std::optional<ProgressMarker> progress;
  if (page.valid()) {
    auto mapped = ProgressMarker::map(std::move(page));
    if (mapped) progress.emplace(std::move(*mapped));
    else log_line(mapped.error().message + " (going on without it)");
  }
  HandshakeConfig config{Role::worker, {ChannelMode::encrypted}, max_payload};
  if (!allow_encrypted_only) config.modes.push_back(ChannelMode::authenticated);
  if (allow_insecure) config.modes.push_back(ChannelMode::insecure_measurement);
  const int in_fd = fds->first.get(), out_fd = fds->second.get();
  Channel channel(std::move(fds->first), std::move(fds->second), *key, config);
  if (auto hs = channel.handshake(deadline); !hs) {
    // A bad frame right behind the parent's proof fails after the handshake itself succeeded.
    const bool after = channel.connection().established();
    log_line(std::string(after ? "channel closed (" : "handshake failed (") + to_string(hs.error().code) +
             "): " + hs.error().message);
    return after ? 4 : 3;
  }
  if (orphan_watch) start_orphan_watch(in_fd, out_fd);
  const bool is_dynamic = dynamic.load || dynamic.call;
  if (is_dynamic) channel.connection().set_args_as_text(true);
  // Where it runs, right away (after the program, for dynamic functions): a task that dies before its
  // first result is still placed. It also says this loop takes task batches.
  WorkerInfo info{host_name(), ::getpid()};
  info.batches = true;
  info.keepalive_ms = static_cast<std::uint32_t>(KeepAlive::interval.count());
  const auto wait = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(outside_signal_wait));
  if (auto served = serve_tasks(channel, registry, std::move(info), is_dynamic ? &dynamic : nullptr, progress ? &*progress : nullptr, wait);
      !served) {
    if (served.error().code == ErrorCode::program_failed) return 5;  // the runner says why, once
    log_line(std::string("channel closed (") + to_string(served.error().code) + "): " + served.error().message);
    return 4;
  }
  return 0;
}

}  // namespace authrun::worker
