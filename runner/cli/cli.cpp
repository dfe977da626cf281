// The `authrun` command line.
#include "runner/cli/cli.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <CLI/CLI.hpp>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "protocol/limits.hpp"
#include "protocol/run_key.hpp"
#include "protocol/tracing.hpp"
#include "protocol/version.hpp"
#include "runner/run/batch_run.hpp"
#include "runner/bench/bench.hpp"
#include "runner/exec/exec_command.hpp"
#include "runner/cli/jobs_count.hpp"
#include "runner/engine/launcher.hpp"
#include "runner/engine/python_worker.hpp"
#include "runner/engine/worker_command.hpp"

namespace authrun::runner {

using namespace protocol;

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
  std::string mode;  // "" = the default for where the worker runs
  bool progress = false, no_progress = false;
  std::string launcher, remote_worker;
  bool launcher_encrypted = false, slurm = false;
  std::vector<std::string> sshlogins;

  // Whether any option asks for workers through a launcher.
  bool launching() const { return slurm || !launcher.empty() || !sshlogins.empty(); }
  // The worker command here: --worker, or authrun-worker next to this program; resolved to a path.
  Result<std::vector<std::string>> local_worker() const {
    return resolve_worker_command(worker_command.empty() ? default_worker_path() : worker_command);
  }
};

void add_launch_options(CLI::App& cmd, EngineOptions& e, EngineFlags& f) {
  auto* launcher = cmd.add_option("--launcher", f.launcher,
                                  "Start each worker through this command, e.g. 'ssh -T {host}' or 'srun -u -N1 -n1 "
                                  "--exact'; {host}, {slot} and {worker} are substituted (the worker command goes "
                                  "last unless placed), words are passed as argv, not through a local shell");
  cmd.add_flag("--launcher-encrypted", f.launcher_encrypted,
               "The launcher's channel is encrypted end to end (ssh is taken to be): a fresh key may be sent through it");
  auto* sshlogin = cmd.add_option("-S,--sshlogin", f.sshlogins,
                                  "Spread workers over hosts: host[:slots],... (':' is this machine; -j slots each "
                                  "by default); through --launcher, or 'ssh -T -o BatchMode=yes {host}'");
  auto* slurm = cmd.add_flag("--slurm", f.slurm,
                             "Start the workers as steps of the current Slurm allocation (or as one-task jobs "
                             "outside one) with srun -u; needs --key-file");
  slurm->excludes(launcher)->excludes(sshlogin);
  cmd.add_option("--remote-key-file", e.remote_key_file,
                 "Where launched workers find the --key-file key (default: the same path)")->needs("--key-file");
  cmd.add_option("--remote-worker", f.remote_worker,
                 "Worker command where the launcher runs it (default: the --worker command, or this authrun-worker's path)");
}

void add_engine_options(CLI::App& cmd, EngineOptions& e, EngineFlags& f, bool timeout_kills_worker) {
  e.jobs = 0;
  // GNU parallel's forms (+N, -N, N%, 0) become a number first.
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cmd.add_option("-j,--jobs", e.jobs, "Workers to start: N, +N/-N (cores plus/minus N), N% of the cores, 0 (64) (default: cores)")
      ->transform(CLI::Validator(
          [cores](std::string& text) {
            auto n = parse_jobs(text, cores);
            if (!n) return std::string("expected N, +N, -N, N% or 0");
            text = std::to_string(*n);
            return std::string();
          },
          "N|+N|-N|N%"))
      ->check(CLI::Range(1, 1024));
  cmd.add_option("--worker", f.worker_command,
                 "Worker command to run instead of authrun-worker (any program that speaks the protocol)");
  cmd.add_option("--key-file", e.key_file, "Use this key (from 'authrun keygen') for every worker instead of a fresh key each");
  cmd.add_option("--joblog", e.joblog, "Write a tab-separated line per task attempt to this file");
  cmd.add_option("--summary-json", e.summary_json,
                 "Write the run's summary (counts, times, tasks/s, workers, hosts set aside, ids not started) to this file "
                 "as one JSON object");
  cmd.add_option("--audit-log", e.audit_log, "Append each worker's handshake outcome and channel end to this file as JSON lines");
  cmd.add_option("--retries", e.retries, "Extra attempts for a task whose worker died or timed out")
      ->capture_default_str()->check(CLI::Range(0, 100));
  if (timeout_kills_worker) {
    cmd.add_option("--timeout", e.timeout_s, "Seconds a task may run (a task's own \"timeout\" wins)")->check(CLI::PositiveNumber);
  }
  cmd.add_option("--handshake-timeout", e.handshake_timeout_s,
                 "Seconds a worker has to complete the handshake (default 5; 30 through a launcher)")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--window", e.window, "Tasks in flight per worker (default: adapted to the task durations each worker shows)")
      ->check(CLI::Range(1, 1024));
  cmd.add_option("--max-tasks-per-worker", e.max_tasks_per_worker, "Replace a worker after this many tasks (0: never)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd.add_option("--grace", e.grace_s, "After SIGINT/SIGTERM, seconds running tasks may take to finish")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd.add_option("--mode", f.mode,
                 "Channel mode: authenticated or encrypted (default: authenticated here, encrypted through a launcher)")
      ->check(CLI::IsMember({"authenticated", "encrypted"}));
  cmd.add_option("--max-payload", e.max_payload, "Largest frame payload in bytes (default 256 MiB + 64 KiB)")
      ->check(CLI::Range(std::uint32_t{1024}, limits::absolute_max_payload));
  cmd.add_option("--max-in-flight-bytes", e.max_in_flight_bytes,
                 "Task payload bytes sent to workers and not yet answered; over it no new task is taken until results "
                 "come back (a larger task runs alone)")
      ->capture_default_str()->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40));
  // exec's --progress is GNU parallel's (exec adds it); run's is its --bar.
  cmd.add_flag(timeout_kills_worker ? "--progress,--bar" : "--bar", f.progress, "Show a progress line on stderr (default when stderr is a terminal)");
  cmd.add_flag("--no-progress", f.no_progress, "Never show the progress line");
  cmd.add_flag("-v,--verbose", e.verbose, "Log every handshake, not only failures");
  cmd.add_flag("--allow-ptrace", e.allow_ptrace,
               "Run even while this runner or a worker is traced (debugging); otherwise a tracer is refused");
  add_launch_options(cmd, e, f);
}

// Where the workers run: sites, launcher, remote worker command, key delivery. Errors: usage.
Result<void> finish_launch_options(EngineOptions& e, const EngineFlags& f, int default_slots) {
  if (!f.launching()) {
    e.sites = {Site{"", true, default_slots}};
    return {};
  }
  if (f.slurm) {
    e.launcher = slurm_launcher();
    int slots = default_slots;
    if (const char* n = std::getenv("SLURM_NTASKS"); n && std::atoi(n) > 0 && e.jobs == 0) slots = std::atoi(n);
    e.sites = {Site{"", false, slots}};
  } else {
    if (!f.launcher.empty()) {
      AUTHRUN_TRY_ASSIGN(e.launcher, parse_launcher(f.launcher, f.launcher_encrypted));
    } else {
      e.launcher = default_ssh_launcher();
    }
    const bool has_host = f.launcher.empty() || f.launcher.find("{host}") != std::string::npos;
    if (f.sshlogins.empty()) {
      if (has_host) return make_error(ErrorCode::usage, "--launcher has {host} but no -S/--sshlogin gives hosts");
      e.sites = {Site{"", false, default_slots}};
    } else {
      AUTHRUN_TRY_ASSIGN(e.sites, parse_sshlogins(f.sshlogins, default_slots));
      const bool remote = std::any_of(e.sites.begin(), e.sites.end(), [](const Site& s) { return !s.local; });
      if (remote && !has_host) return make_error(ErrorCode::usage, "with -S/--sshlogin, --launcher must contain {host}");
    }
  }
  if (std::any_of(e.sites.begin(), e.sites.end(), [](const Site& s) { return !s.local; })) {
    AUTHRUN_TRY(resolve_program(e.launcher.words[0], "launcher"));
    AUTHRUN_TRY_ASSIGN(e.key_delivery, choose_key_delivery(e.launcher, !e.key_file.empty()));
    if (e.remote_key_file.empty()) e.remote_key_file = e.key_file;  // a shared filesystem: the same path
    const std::string& remote = !f.remote_worker.empty() ? f.remote_worker : f.worker_command;
    if (remote.empty()) {
      e.remote_worker_argv = {default_worker_path()};
    } else {
      AUTHRUN_TRY_ASSIGN(e.remote_worker_argv, split_command(remote, "remote worker command"));
    }
  }
  return {};
}

// Each worker costs the runner 4 fds (its two pipes, its pidfd, its key rendezvous until answered); 32 are
// kept for everything else (input, output, logs, the spawn in progress).
constexpr rlim_t k_fds_per_worker = 4;
constexpr rlim_t k_fds_reserved = 32;

// Raises the soft open-file limit to the hard one, then lowers the sites' slots (the last site first, at
// least one each) to what the limit allows, saying so. Returns false (message printed) if even that is too many.
bool fit_jobs_to_fd_limit(EngineOptions& e) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return true;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  if (lim.rlim_cur == RLIM_INFINITY) return true;
  const long allowed = lim.rlim_cur > k_fds_reserved ? static_cast<long>((lim.rlim_cur - k_fds_reserved) / k_fds_per_worker) : 0;
  long jobs = 0;
  for (const Site& site : e.sites) jobs += site.slots;
  if (jobs <= allowed) return true;
  if (allowed < static_cast<long>(e.sites.size())) {
    std::fprintf(stderr, "authrun: the open-file limit (%lu) leaves room for %ld workers, fewer than one per host (raise it with ulimit -n)\n",
                 static_cast<unsigned long>(lim.rlim_cur), allowed);
    return false;
  }
  long excess = jobs - allowed;
  for (auto it = e.sites.rbegin(); it != e.sites.rend() && excess > 0; ++it) {
    const long cut = std::min<long>(excess, it->slots - 1);
    it->slots -= static_cast<int>(cut);
    excess -= cut;
  }
  std::fprintf(stderr, "authrun: the open-file limit (%lu) leaves room for %ld workers: starting %ld instead of %ld (raise it with ulimit -n)\n",
               static_cast<unsigned long>(lim.rlim_cur), allowed, allowed, jobs);
  return true;
}

// Completes the engine options after parsing. Returns false (message printed) if the worker is unusable.
bool finish_engine_options(EngineOptions& e, const EngineFlags& f, bool progress_by_default) {
  // A tracer that attached before our prctl could read every key we make: refuse, as workers do.
  if (auto tracer = tracer_pid(); tracer && *tracer != 0 && !e.allow_ptrace) {
    std::fprintf(stderr, "authrun: refusing to run: traced by pid %d (--allow-ptrace to permit)\n", *tracer);
    return false;
  }
  const int default_slots = e.jobs ? e.jobs : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (auto launch = finish_launch_options(e, f, default_slots); !launch) {
    std::fprintf(stderr, "authrun: %s\n", launch.error().message.c_str());
    return false;
  }
  if (!fit_jobs_to_fd_limit(e)) return false;
  e.jobs = 0;
  for (const Site& site : e.sites) e.jobs += site.slots;
  // The worker here is resolved (and must exist) only if some worker runs here.
  if (std::any_of(e.sites.begin(), e.sites.end(), [](const Site& s) { return s.local; })) {
    auto worker = f.local_worker();
    if (!worker) {
      std::fprintf(stderr, "authrun: %s\n", worker.error().message.c_str());
      return false;
    }
    e.worker_argv = std::move(*worker);
  }
  if (!f.mode.empty()) e.mode = f.mode == "encrypted" ? ChannelMode::encrypted : ChannelMode::authenticated;
  e.progress = !f.no_progress && (f.progress || (progress_by_default && ::isatty(2)));
  return true;
}

}  // namespace

int run_cli(int argc, char** argv) {
  // Not dumpable: other processes of the user cannot open our pipes through /proc/PID/fd or read the keys
  // in our memory (root and CAP_SYS_PTRACE still can; see SECURITY.md).
  ::prctl(PR_SET_DUMPABLE, 0);
  CLI::App app{"authrun: run batches of tasks on worker processes that prove, by a mutual handshake over a\n"
               "secret key, that the runner started them; every frame after it is authenticated.",
               "authrun"};
  app.require_subcommand(1);

  RunOptions run;
  EngineFlags run_flags;
  CLI::App* run_cmd = app.add_subcommand("run", "Run a JSONL batch: one task per line, one result line per task");
  run_cmd->add_option("tasks", run.input, "Tasks file (JSONL), or - for stdin")->capture_default_str();
  run_cmd->add_option("-o,--output", run.output, "Results file (JSONL), or - for stdout")->capture_default_str();
  run_cmd->add_flag("-k,--keep-order", run.keep_order, "Write results in input order");
  run_cmd->add_flag("--allow-duplicate-ids", run.allow_duplicate_ids,
                    "Run tasks whose id an earlier line has (by default they fail as bad_task naming both lines)");
  run_cmd->add_option("--resume", run.resume,
                      "Skip tasks that have an ok result in this results file, and append the new results to it")
      ->excludes("--output");
  add_engine_options(*run_cmd, run.engine, run_flags, true);
  std::vector<std::string> python_modules;
  std::string python_exe;
  run_cmd->add_option("--python", python_modules,
                      "Run Python functions: workers are Python interpreters that import this module (a file "
                      "dir/name.py, or package.module; repeatable) after their handshake; a task's fn is module.function")
      ->excludes("--worker");
  run_cmd->add_option("--import-timeout", run.engine.import_timeout_s,
                      "Seconds a Python worker may take to import the program (--timeout counts from then)")
      ->capture_default_str()->check(CLI::PositiveNumber)->needs("--python");
  run_cmd->add_option("--python-exe", python_exe,
                      "The Python interpreter for --python (default: the one authrun-python embeds; a venv of its "
                      "version also runs in authrun-python; any other runs the ctypes bootstrap and starts readable)")
      ->needs("--python");

  ExecOptions exec;
  EngineFlags exec_flags;
  CLI::App* exec_cmd = app.add_subcommand(
      "exec", "Run a command once per argument, as GNU parallel does: authrun exec [options] -- COMMAND [ARGS...] ::: A B C");
  exec_cmd->prefix_command();
  exec_cmd->add_flag("-k,--keep-order", exec.keep_order, "Print jobs' output in input order");
  exec_cmd->add_flag("--tag", exec.tag, "Prefix each output line with the job's arguments and a tab");
  exec_cmd->add_flag("--shell", exec.shell, "Run the command through /bin/sh -c (arguments are quoted)");
  exec_cmd->add_flag("--link,--xapply", exec.link, "Pair the input sources (first values together, ...) instead of crossing them");
  exec_cmd->add_option("--results", exec.results_dir, "Store each job's stdout, stderr and exit status in DIR/<job number>/");
  exec_cmd->add_option("--halt", exec.halt, "never, or now|soon,fail|success|done=N|P% (now kills running jobs, soon lets them finish)")
      ->capture_default_str();
  exec_cmd->add_flag("--dry-run", exec.dry_run, "Print the commands, run nothing");
  exec_cmd->add_flag("--resume", exec.resume, "Skip the jobs that the --joblog file records as done");
  exec_cmd->add_option("--timeout", exec.timeout_s, "Seconds a job may run (then it is killed and counts as failed)")
      ->check(CLI::PositiveNumber);
  // GNU parallel's everyday input and output options (runner/exec/exec_command.hpp says what each does).
  std::vector<std::string> arg_files;
  std::string replace_str, delimiter;
  bool null_delimited = false, xargs = false, spread = false, context = false;
  exec_cmd->add_option("-a,--arg-file", arg_files, "Read input values from FILE (like :::: FILE)")->allow_extra_args(false);
  exec_cmd->add_option("-I", replace_str, "Use STR instead of {} in the command");
  exec_cmd->add_flag("--null", null_delimited, "Input values end with a NUL byte, not a newline (also -0)");
  exec_cmd->add_option("-d,--delimiter", delimiter, "Input values end with this character (\\n, \\t, \\0 or one character)");
  exec_cmd->add_option("--colsep", exec.colsep, "Split each input line into columns {1} {2} ... at this string");
  exec_cmd->add_flag("-r,--no-run-if-empty", exec.skip_empty, "No job for an empty input line");
  exec_cmd->add_option("-N,-n,--max-args", exec.max_args, "Values per job (from one input source)")->check(CLI::Range(1, 100000));
  exec_cmd->add_flag("-m", spread, "As many values per job as fit (128 KiB), {} as separate words");
  exec_cmd->add_flag("--xargs", xargs, "As -m");
  exec_cmd->add_flag("-X", context, "As -m, but a word with {} is repeated once per value");
  exec_cmd->add_flag("-q,--quote", exec.quote, "Never run a one-word command through the shell");
  exec_cmd->add_option("--tagstring", exec.tagstring, "Prefix each output line with this (replacement strings allowed) and a tab");
  exec_cmd->add_flag("--line-buffer,--lb", exec.line_buffer, "Print whole lines as they come instead of a job's output at its end");
  exec_cmd->add_flag("-u,--ungroup", exec.ungroup, "Print output as it comes (lines of jobs may mix)");
  exec_cmd->add_flag("--resume-failed", exec.resume_failed, "Like --resume, but run the failed jobs again");
  exec_cmd->add_flag("--retry-failed", exec.retry_failed,
                     "Run the --joblog's failed jobs again, their commands from the joblog (the command line's are ignored)");
  bool eta = false, parallel_progress = false;
  exec_cmd->add_flag("--eta", eta, "Show GNU parallel's progress lines with the estimated time left, on stderr");
  // `exec --progress` is GNU parallel's --progress; --bar is authrun's line (add_engine_options).
  exec_cmd->add_flag("--progress", parallel_progress, "Show GNU parallel's progress lines on stderr");
  exec_cmd->add_option("--env", exec.env, "Give every job this environment variable's value (also on other hosts)")->allow_extra_args(false);
  // --pipe and --delay (runner/exec/exec_pipe.hpp): GNU parallel's syntax, checked once parsed.
  PipeFlags pipe_flags;
  std::string recstart_text, recend_text;
  exec_cmd->add_flag("--pipe,--spreadstdin", exec.pipe, "Cut stdin into chunks at record ends; each job gets one on its stdin");
  exec_cmd->add_option("--block,--block-size,--blocksize", pipe_flags.block,
                       "--pipe: bytes read per chunk, then cut at the last record end (K M G: powers of 1024, k m g: of 1000)")
      ->capture_default_str();
  CLI::Option* recend_opt = exec_cmd->add_option("--recend", recend_text, "--pipe: records end with this string (default \\n; \\0 \\t \\r \\n escapes)");
  CLI::Option* recstart_opt = exec_cmd->add_option("--recstart", recstart_text, "--pipe: records start with this string");
  exec_cmd->add_option("--delay", pipe_flags.delay, "Wait this long between job starts (seconds, or with units: 1m30s)");
  add_engine_options(*exec_cmd, exec.engine, exec_flags, false);
  exec_cmd->get_option("--retries")->description(
      "Attempts in all for a job whose command fails, is killed or times out, or whose worker dies (0: no limit), "
      "as GNU parallel's --retries (without it only a worker's death is retried, once)");
  exec_cmd->footer(
      "Arguments (after the command):\n"
      "  ::: A B C     the values A, B and C\n"
      "  :::: FILE     the lines of FILE (- for stdin)\n"
      "  (none)        the lines of stdin\n"
      "  Several sources combine as a cross product, the first outermost.\n"
      "Replacement strings in the command (without any, the values are appended):\n"
      "  {}            the value\n"
      "  {.}           the value without its extension\n"
      "  {/}  {//}     its basename, its dirname\n"
      "  {/.}          its basename without extension\n"
      "  {#}  {%}      the job number, the worker slot\n"
      "  {1}  {2} ...  the value of source 1, 2 ... (and {1.} {1/} {1//} {1/.})\n"
      "Example: authrun exec -k --tag -- echo {#} {.} {/} ::: /x/y/f.txt /a/b.tar.gz");

  BenchOptions bench;
  EngineOptions bench_engine;
  EngineFlags bench_flags;
  CLI::App* bench_cmd = app.add_subcommand(
      "bench", "Measure IPC overhead: echo round trips per payload size, codec and channel mode; with a launcher "
               "(-S HOST, --slurm, --launcher), its cost next to the local pipe");
  bench_cmd->add_option("--worker", bench_flags.worker_command, "Worker command to measure instead of authrun-worker");
  bench_cmd->add_option("--key-file", bench_engine.key_file,
                        "Key (from 'authrun keygen') the launched worker reads where it runs (--slurm needs one)");
  add_launch_options(*bench_cmd, bench_engine, bench_flags);
  add_bench_options(*bench_cmd, bench);
  bench_cmd->footer("With a launcher, one worker is started through it (on the first -S host that is not ':') and "
                    "measured next to local workers in the same run: start, tiny round trip, tiny tasks/s, 1 and 16 MiB echoes.");

  std::string key_path;
  CLI::App* keygen_cmd = app.add_subcommand("keygen", "Write a new key file (mode 0600) for workers started by other means");
  keygen_cmd->add_option("file", key_path, "Where to write the key (must not exist)")->required();

  // --version on authrun and on every subcommand.
  const std::string version = version_text("authrun");
  app.set_version_flag("--version", version, "Print the version (authrun's, the protocol's, the git commit) and exit");
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    sub->set_version_flag("--version", version, "Print the version and exit");
  }

  // `exec`'s command follows "--" and may hold anything, ":::" included: CLI11 gets only what precedes it.
  std::vector<std::string> exec_words;
  std::vector<std::string> exec_args;  // exec's own options, with -0 spelled --null (CLI11 takes no digit names)
  std::vector<char*> exec_argv;
  if (argc > 1 && std::string(argv[1]) == "exec") {
    bool command = false;
    for (int i = 0; i < argc; ++i) {
      command = command || std::string(argv[i]) == "--";
      exec_args.emplace_back(!command && std::string(argv[i]) == "-0" ? "--null" : argv[i]);
    }
    for (auto& a : exec_args) exec_argv.push_back(a.data());
    argv = exec_argv.data();
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
    // The local worker always runs (the launcher is measured against it); a launched one too when asked.
    const bool launched = bench_flags.launching();
    auto prepared = [&]() -> Result<void> {
      AUTHRUN_TRY_ASSIGN(bench.worker_argv, bench_flags.local_worker());
      if (!launched && !bench_engine.key_file.empty()) {
        return make_error(ErrorCode::usage, "bench: --key-file is for a launched worker (give -S, --slurm or --launcher)");
      }
      AUTHRUN_TRY(finish_launch_options(bench_engine, bench_flags, 1));
      AUTHRUN_TRY_ASSIGN(bench.launch, bench_launch_spec(bench_engine, launched));
      return {};
    }();
    if (!prepared) {
      std::fprintf(stderr, "authrun: %s\n", prepared.error().message.c_str());
      return 2;
    }
    return run_bench(bench);
  }
  if (exec_cmd->parsed()) {
    std::vector<std::string> words = exec_cmd->remaining();
    if (!words.empty() && words[0].size() > 1 && words[0][0] == '-') {
      std::fprintf(stderr, "authrun exec: unknown option %s (the command goes after --)\n", words[0].c_str());
      return 255;
    }
    words.insert(words.end(), exec_words.begin(), exec_words.end());
    if (exec.retry_failed) words = {"true", ":::", ""};  // ignored: the joblog gives the commands
    auto command = split_exec_words(words);
    if (!command) {
      std::fprintf(stderr, "authrun exec: %s\n", command.error().message.c_str());
      return 255;
    }
    exec.command = std::move(*command);
    // -a FILE: input sources ahead of any ::: ones (a lone stdin source is replaced).
    if (!arg_files.empty()) {
      auto& sources = exec.command.sources;
      if (sources.size() == 1 && sources[0].file == "-" && std::find(exec_words.begin(), exec_words.end(), "::::") == exec_words.end()) sources.clear();
      for (std::size_t i = arg_files.size(); i-- > 0;) sources.insert(sources.begin(), ArgSource{{}, arg_files[i], false});
    }
    if (!replace_str.empty()) {
      for (auto& word : exec.command.command) {
        for (std::size_t at = 0; (at = word.find(replace_str, at)) != std::string::npos; at += 2) word.replace(at, replace_str.size(), "{}");
      }
    }
    if (null_delimited) exec.delimiter = '\0';
    // --colsep is a regular expression for GNU parallel; here a literal string, with \t meaning a tab.
    for (std::size_t at = 0; (at = exec.colsep.find("\\t", at)) != std::string::npos;) exec.colsep.replace(at, 2, "\t");
    if (!delimiter.empty()) {
      if (delimiter == "\\n") exec.delimiter = '\n';
      else if (delimiter == "\\t") exec.delimiter = '\t';
      else if (delimiter == "\\0") exec.delimiter = '\0';
      else if (delimiter.size() == 1) exec.delimiter = delimiter[0];
      else {
        std::fprintf(stderr, "authrun exec: -d takes one character, \\n, \\t or \\0 (got '%s')\n", delimiter.c_str());
        return 255;
      }
    }
    if (context) exec.multi = ExecOptions::Multi::context;
    else if (spread || xargs) exec.multi = ExecOptions::Multi::spread;
    if (exec.line_buffer && exec.ungroup) {
      std::fprintf(stderr, "authrun exec: --line-buffer and -u exclude each other\n");
      return 255;
    }
    if (recend_opt->count() > 0) pipe_flags.recend = recend_text;
    if (recstart_opt->count() > 0) pipe_flags.recstart = recstart_text;
    pipe_flags.sources = !arg_files.empty() || std::any_of(words.begin(), words.end(), [](const std::string& w) {
      return w == ":::" || w == "::::" || w == ":::+" || w == "::::+";
    });
    if (auto piped = apply_pipe_flags(pipe_flags, exec); !piped) {
      std::fprintf(stderr, "authrun exec: %s\n", piped.error().message.c_str());
      return 255;
    }
    if (!finish_engine_options(exec.engine, exec_flags, false)) return 255;
    if (exec_cmd->count("--retries") > 0) exec.retries = exec.engine.retries;
    if ((eta || parallel_progress) && !exec_flags.no_progress) {
      exec.engine.progress = true;
      exec.engine.progress_style = eta ? EngineOptions::ProgressStyle::parallel_eta : EngineOptions::ProgressStyle::parallel;
    }
    return run_exec(exec);
  }
  if (!finish_engine_options(run.engine, run_flags, true)) return 2;
  if (!python_modules.empty()) {
    if (auto py = use_python_workers(run.engine, python_modules, python_exe, !run_flags.remote_worker.empty()); !py) {
      std::fprintf(stderr, "authrun: %s\n", py.error().message.c_str());
      return 2;
    }
  }
  return run_batch(run);
}

}  // namespace authrun::runner
