// The `authrun` command line.
#include "runner/cli.hpp"

#include <cstdio>
#include <cstdlib>
#include <thread>

#include <CLI/CLI.hpp>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "protocol/limits.hpp"
#include "protocol/run_key.hpp"
#include "runner/batch_run.hpp"
#include "runner/bench.hpp"
#include "runner/exec_command.hpp"

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

namespace {

// Options `run` and `exec` share: the engine's.
struct EngineFlags {
  std::string worker_command;
  std::string mode = "authenticated";
  bool progress = false, no_progress = false;
};

void add_engine_options(CLI::App& cmd, EngineOptions& e, EngineFlags& f, bool timeout_kills_worker) {
  e.jobs = 0;
  cmd.add_option("-j,--jobs", e.jobs, "Workers to start (default: number of cores)")->check(CLI::Range(1, 1024));
  cmd.add_option("--worker", f.worker_command,
                 "Worker command to run instead of authrun-worker (any program that speaks the protocol)");
  cmd.add_option("--key-file", e.key_file, "Use this key (from 'authrun keygen') for every worker instead of a fresh key each");
  cmd.add_option("--joblog", e.joblog, "Write a tab-separated line per task attempt to this file");
  cmd.add_option("--audit-log", e.audit_log, "Append each worker's handshake outcome and channel end to this file as JSON lines");
  cmd.add_option("--retries", e.retries, "Extra attempts for a task whose worker died or timed out")
      ->capture_default_str()->check(CLI::Range(0, 100));
  if (timeout_kills_worker) {
    cmd.add_option("--timeout", e.timeout_s, "Seconds a task may run (a task's own \"timeout\" wins)")->check(CLI::PositiveNumber);
  }
  cmd.add_option("--handshake-timeout", e.handshake_timeout_s, "Seconds a worker has to complete the handshake")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd.add_option("--window", e.window, "Tasks in flight per worker")->capture_default_str()->check(CLI::Range(1, 64));
  cmd.add_option("--max-tasks-per-worker", e.max_tasks_per_worker, "Replace a worker after this many tasks (0: never)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd.add_option("--grace", e.grace_s, "After SIGINT/SIGTERM, seconds running tasks may take to finish")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd.add_option("--mode", f.mode, "Channel mode: authenticated or encrypted")
      ->capture_default_str()->check(CLI::IsMember({"authenticated", "encrypted"}));
  cmd.add_option("--max-payload", e.max_payload, "Largest frame payload in bytes (default 256 MiB + 64 KiB)")
      ->check(CLI::Range(std::uint32_t{1024}, limits::absolute_max_payload));
  cmd.add_flag("--progress,--bar", f.progress, "Show a progress line on stderr (default when stderr is a terminal)");
  cmd.add_flag("--no-progress", f.no_progress, "Never show the progress line");
  cmd.add_flag("-v,--verbose", e.verbose, "Log every handshake, not only failures");
}

// Completes the engine options after parsing. Returns false (message printed) if the worker is unusable.
bool finish_engine_options(EngineOptions& e, const EngineFlags& f, bool progress_by_default) {
  auto worker = resolve_worker_command(f.worker_command.empty() ? default_worker_path() : f.worker_command);
  if (!worker) {
    std::fprintf(stderr, "authrun: %s\n", worker.error().message.c_str());
    return false;
  }
  e.worker_argv = std::move(*worker);
  if (e.jobs == 0) e.jobs = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  e.mode = f.mode == "encrypted" ? ChannelMode::encrypted : ChannelMode::authenticated;
  e.progress = !f.no_progress && (f.progress || (progress_by_default && ::isatty(2)));
  return true;
}

}  // namespace

int run_cli(int argc, char** argv) {
  // Not dumpable: other processes of the user cannot open our pipes through /proc/PID/fd or read the keys
  // in our memory (root and CAP_SYS_PTRACE still can; see SECURITY.md).
  ::prctl(PR_SET_DUMPABLE, 0);
  CLI::App app{"authrun: run batches of tasks on worker processes that prove, by a mutual handshake over a\n"
               "secret key, that the runner started them; every frame after it is authenticated."};
  app.require_subcommand(1);

  RunOptions run;
  EngineFlags run_flags;
  CLI::App* run_cmd = app.add_subcommand("run", "Run a JSONL batch: one task per line, one result line per task");
  run_cmd->add_option("tasks", run.input, "Tasks file (JSONL), or - for stdin")->capture_default_str();
  run_cmd->add_option("-o,--output", run.output, "Results file (JSONL), or - for stdout")->capture_default_str();
  run_cmd->add_flag("-k,--keep-order", run.keep_order, "Write results in input order");
  run_cmd->add_option("--resume", run.resume,
                      "Skip tasks that have an ok result in this results file, and append the new results to it")
      ->excludes("--output");
  add_engine_options(*run_cmd, run.engine, run_flags, true);

  ExecOptions exec;
  EngineFlags exec_flags;
  CLI::App* exec_cmd = app.add_subcommand(
      "exec", "Run a command once per argument, as GNU parallel does: authrun exec [options] -- COMMAND [ARGS...] ::: A B C");
  exec_cmd->prefix_command();
  exec_cmd->add_flag("-k,--keep-order", exec.keep_order, "Print jobs' output in input order");
  exec_cmd->add_flag("--tag", exec.tag, "Prefix each output line with the job's arguments and a tab");
  exec_cmd->add_flag("--shell", exec.shell, "Run the command through /bin/sh -c (arguments are quoted)");
  exec_cmd->add_option("--results", exec.results_dir, "Store each job's stdout, stderr and exit status in DIR/<job number>/");
  exec_cmd->add_option("--halt", exec.halt, "never, now,fail=N (kill running jobs) or soon,fail=N (let them finish)")
      ->capture_default_str();
  exec_cmd->add_flag("--dry-run", exec.dry_run, "Print the commands, run nothing");
  exec_cmd->add_flag("--resume", exec.resume, "Skip the jobs that the --joblog file records as done");
  exec_cmd->add_option("--timeout", exec.timeout_s, "Seconds a job may run (then it is killed and counts as failed)")
      ->check(CLI::PositiveNumber);
  add_engine_options(*exec_cmd, exec.engine, exec_flags, false);

  BenchOptions bench;
  EngineFlags bench_flags;
  CLI::App* bench_cmd = app.add_subcommand("bench", "Measure IPC overhead: echo round trips per payload size, codec and channel mode");
  bench_cmd->add_option("--worker", bench_flags.worker_command, "Worker command to measure instead of authrun-worker");
  add_bench_options(*bench_cmd, bench);

  std::string key_path;
  CLI::App* keygen_cmd = app.add_subcommand("keygen", "Write a new key file (mode 0600) for workers started by other means");
  keygen_cmd->add_option("file", key_path, "Where to write the key (must not exist)")->required();

  // `exec`'s command follows "--" and may hold anything, ":::" included: CLI11 gets only what precedes it.
  std::vector<std::string> exec_words;
  if (argc > 1 && std::string(argv[1]) == "exec") {
    for (int i = 2; i < argc; ++i) {
      if (std::string(argv[i]) == "--") {
        exec_words.assign(argv + i + 1, argv + argc);
        argc = i;
        break;
      }
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int status = app.exit(e);
    return status == 0 ? 0 : exec_cmd->parsed() ? 255 : 2;
  }
  if (keygen_cmd->parsed()) return keygen(key_path);
  if (bench_cmd->parsed()) {
    EngineOptions e;
    if (!finish_engine_options(e, bench_flags, false)) return 2;
    bench.worker_argv = std::move(e.worker_argv);
    return run_bench(bench);
  }
  if (exec_cmd->parsed()) {
    std::vector<std::string> words = exec_cmd->remaining();
    if (!words.empty() && words[0].size() > 1 && words[0][0] == '-') {
      std::fprintf(stderr, "authrun exec: unknown option %s (the command goes after --)\n", words[0].c_str());
      return 255;
    }
    words.insert(words.end(), exec_words.begin(), exec_words.end());
    auto command = split_exec_words(words);
    if (!command) {
      std::fprintf(stderr, "authrun exec: %s\n", command.error().message.c_str());
      return 255;
    }
    exec.command = std::move(*command);
    if (!finish_engine_options(exec.engine, exec_flags, false)) return 255;
    return run_exec(exec);
  }
  if (!finish_engine_options(run.engine, run_flags, true)) return 2;
  return run_batch(run);
}

}  // namespace authrun::runner
