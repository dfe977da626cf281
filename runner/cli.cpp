// The `authrun` command line.
#include "runner/cli.hpp"

#include <cstdio>
#include <cstdlib>
#include <thread>

#include <CLI/CLI.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include "protocol/limits.hpp"
#include "protocol/run_key.hpp"
#include "runner/batch_run.hpp"

namespace authrun::runner {

using namespace protocol;

std::string default_worker_path() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "authrun-worker";
  std::string self(buf, static_cast<std::size_t>(n));
  return self.substr(0, self.rfind('/') + 1) + "authrun-worker";
}

Result<std::vector<std::string>> resolve_worker_command(const std::string& command) {
  std::vector<std::string> words;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (char c : command) {
    if (quote) {
      if (c == quote) quote = 0;
      else cur += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
    } else if (c == ' ' || c == '\t') {
      if (in_word) words.push_back(std::move(cur));
      cur.clear();
      in_word = false;
    } else {
      cur += c;
      in_word = true;
    }
  }
  if (quote) return make_error(ErrorCode::usage, "worker command has an unclosed quote: " + command);
  if (in_word) words.push_back(std::move(cur));
  if (words.empty()) return make_error(ErrorCode::usage, "worker command is empty");
  std::string& prog = words[0];
  if (prog.find('/') == std::string::npos) {
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/bin:/bin";
    std::string found;
    for (std::size_t start = 0; start <= dirs.size();) {
      std::size_t end = dirs.find(':', start);
      if (end == std::string::npos) end = dirs.size();
      std::string candidate = (end > start ? dirs.substr(start, end - start) : ".") + "/" + prog;
      if (::access(candidate.c_str(), X_OK) == 0) {
        found = candidate;
        break;
      }
      start = end + 1;
    }
    if (found.empty()) return make_error(ErrorCode::usage, "worker program '" + prog + "' not found on PATH");
    prog = found;
  }
  struct stat st {};
  if (::stat(prog.c_str(), &st) != 0) return make_error(ErrorCode::usage, "worker program '" + prog + "' does not exist");
  if (!S_ISREG(st.st_mode) || ::access(prog.c_str(), X_OK) != 0) {
    return make_error(ErrorCode::usage, "worker program '" + prog + "' is not an executable file");
  }
  return words;
}

namespace {

int keygen(const std::string& path) {
  RunKey key = RunKey::generate();
  if (auto w = key.write_file(path); !w) {
    std::fprintf(stderr, "authrun keygen: %s\n", w.error().message.c_str());
    return 2;
  }
  std::fprintf(stderr, "authrun keygen: wrote a new key to %s (mode 0600)\n", path.c_str());
  return 0;
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App app{"authrun: run batches of tasks on worker processes that prove, by a mutual handshake over a\n"
               "secret key, that the runner started them; every frame after it is authenticated."};
  app.require_subcommand(1);

  RunOptions run;
  std::string worker_command;
  std::string mode = "authenticated";
  CLI::App* run_cmd = app.add_subcommand("run", "Run a JSONL batch: one task per line, one result line per task");
  run_cmd->add_option("tasks", run.input, "Tasks file (JSONL), or - for stdin")->capture_default_str();
  run_cmd->add_option("-j,--jobs", run.jobs, "Workers to start (default: number of cores)")->check(CLI::Range(1, 1024));
  run_cmd->add_option("-o,--output", run.output, "Results file (JSONL), or - for stdout")->capture_default_str();
  run_cmd->add_flag("-k,--keep-order", run.keep_order, "Write results in input order");
  run_cmd->add_option("--worker", worker_command,
                      "Worker command to run instead of authrun-worker (any program that speaks the protocol)");
  run_cmd->add_option("--key-file", run.key_file, "Use this key (from 'authrun keygen') for every worker instead of a fresh key each");
  run_cmd->add_option("--joblog", run.joblog, "Write a tab-separated line per task attempt to this file");
  run_cmd->add_option("--resume", run.resume,
                      "Skip tasks that have an ok result in this results file, and append the new results to it")
      ->excludes("--output");
  run_cmd->add_option("--audit-log", run.audit_log,
                      "Append each worker's handshake outcome and channel end to this file as JSON lines");
  run_cmd->add_option("--retries", run.retries, "Extra attempts for a task whose worker died or timed out")
      ->capture_default_str()->check(CLI::Range(0, 100));
  run_cmd->add_option("--timeout", run.timeout_s, "Seconds a task may run (a task's own \"timeout\" wins)")
      ->check(CLI::PositiveNumber);
  run_cmd->add_option("--handshake-timeout", run.handshake_timeout_s, "Seconds a worker has to complete the handshake")
      ->capture_default_str()->check(CLI::PositiveNumber);
  run_cmd->add_option("--window", run.window, "Tasks in flight per worker")->capture_default_str()->check(CLI::Range(1, 64));
  run_cmd->add_option("--max-tasks-per-worker", run.max_tasks_per_worker, "Replace a worker after this many tasks (0: never)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  run_cmd->add_option("--grace", run.grace_s, "After SIGINT/SIGTERM, seconds running tasks may take to finish")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  run_cmd->add_option("--mode", mode, "Channel mode: authenticated or encrypted")
      ->capture_default_str()->check(CLI::IsMember({"authenticated", "encrypted"}));
  run_cmd->add_option("--max-payload", run.max_payload, "Largest frame payload in bytes (default 256 MiB + 64 KiB)")
      ->check(CLI::Range(std::uint32_t{1024}, limits::absolute_max_payload));
  bool no_progress = false, progress = false;
  run_cmd->add_flag("--progress", progress, "Show a progress line on stderr (default when stderr is a terminal)");
  run_cmd->add_flag("--no-progress", no_progress, "Never show the progress line");
  run_cmd->add_flag("-v,--verbose", run.verbose, "Log every handshake, not only failures");

  std::string key_path;
  CLI::App* keygen_cmd = app.add_subcommand("keygen", "Write a new key file (mode 0600) for workers started by other means");
  keygen_cmd->add_option("file", key_path, "Where to write the key (must not exist)")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (keygen_cmd->parsed()) return keygen(key_path);

  auto worker = resolve_worker_command(worker_command.empty() ? default_worker_path() : worker_command);
  if (!worker) {
    std::fprintf(stderr, "authrun: %s\n", worker.error().message.c_str());
    return 2;
  }
  run.worker_argv = std::move(*worker);
  if (run.jobs == 0) run.jobs = std::max(1u, std::thread::hardware_concurrency());
  run.mode = mode == "encrypted" ? ChannelMode::encrypted : ChannelMode::authenticated;
  run.progress = !no_progress && (progress || ::isatty(2));
  return run_batch(run);
}

}  // namespace authrun::runner
