// The start-up window, end to end (SECURITY.md, "The start-up window"): the runner says whether it and its
// workers start sealed (the readable build tree is not; a root-owned 0711 copy is, for another user), and
// --require-sealed refuses to run otherwise; key requests made while the runner was stopped, from a process
// that exec'd another program, or twice on one rendezvous fail closed; a worker that goes silent while a
// task runs (SIGSTOP) is stopped and its task retried, while a long task that keeps its keep-alives succeeds.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "tests/helpers/test_util.hpp"

using namespace authrun::test;

namespace {

constexpr int k_other_uid = 65531;  // the unprivileged user a root test runs authrun as
// The sealed-layout attacks each have a user of their own too: a process left over from another test's run (a
// readable worker its runner's death has not reached yet) is then never taken for one of theirs.
constexpr int k_sealed_uid = 65527;
constexpr int k_sealed_python_uid = 65526;
constexpr int k_hijack_uid = 65530;  // ... and the one of the attacks with authrun-hijack: no other test's processes
                                     // run as it, so that the attacker meets only its own runs

std::string echo_tasks(int n) {
  std::string lines;
  for (int i = 0; i < n; ++i) lines += R"({"id":)" + std::to_string(i) + R"(,"fn":"echo","args":)" + std::to_string(i) + "}\n";
  return lines;
}

// `argv` as k_other_uid when we are root (root's processes are out of every other user's reach: as root there
// is no window to see), else as is.
std::vector<std::string> as_user(std::vector<std::string> argv, int uid = k_other_uid) {
  if (::geteuid() != 0) return argv;
  argv.insert(argv.begin(), {"/usr/bin/setpriv", "--reuid=" + std::to_string(uid), "--regid=" + std::to_string(uid),
                             "--clear-groups"});
  return argv;
}

// Under AddressSanitizer, LeakSanitizer's check at a process's exit makes it dumpable again (its tracer thread
// must attach to it), and a sealed process cannot read ASAN_OPTIONS to be told otherwise (/proc/self/environ is
// root's while it is non-dumpable): an attacker may seize a sealed worker in its last moment, after its work and
// its keys are gone. There, only what the attacker got counts, not whether it attached.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool k_exit_is_dumpable = true;
#else
constexpr bool k_exit_is_dumpable = false;
#endif

bool can_switch_user() { return ::geteuid() != 0 || ::access("/usr/bin/setpriv", X_OK) == 0; }

// authrun, authrun-worker and authrun-python copied root-owned with mode 0711 into `dir`/bin (what cmake --install and the
// .deb make), in directories another user may enter. Returns the bin directory.
std::string sealed_copy(const TempDir& dir) {
  const std::string bin = dir.path() + "/bin";
  REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
  REQUIRE(::mkdir(bin.c_str(), 0755) == 0);
  const std::string worker = worker_bin();
  const std::string python_host = worker.substr(0, worker.rfind('/')) + "/authrun-python";
  for (const std::string& from : {std::string(authrun_bin()), worker, python_host}) {
    const std::string to = bin + from.substr(from.rfind('/'));
    REQUIRE(run_program({"/bin/cp", from, to}).exit_code == 0);
    REQUIRE(::chmod(to.c_str(), 0711) == 0);
  }
  return bin;
}

}  // namespace

TEST_CASE("window: from the readable build tree a run warns once that the window is open, naming the remedy") {
  if (!can_switch_user()) return;  // (setpriv missing: reported by the keyrace tests too)
  RunOutput r = run_program(as_user({authrun_bin(), "run", "--no-progress", "-j", "2", "-"}), echo_tasks(3));
  INFO("stderr:\n" << r.err);
  CHECK(r.exit_code == 0);
  CHECK(split_lines(r.out).size() == 3);
  CHECK(count(r.err, "start-up window open") == 1);
  CHECK(contains(r.err, "authrun-worker (readable by uid"));
  CHECK(contains(r.err, "sysctl kernel.yama.ptrace_scope=1"));
  CHECK(contains(r.err, "cmake --install"));
  RunOutput quiet = run_program(as_user({authrun_bin(), "run", "--no-progress", "--no-window-warning", "-"}), echo_tasks(1));
  CHECK(quiet.exit_code == 0);
  CHECK_FALSE(contains(quiet.err, "window"));
  RunOutput strict = run_program(as_user({authrun_bin(), "run", "--no-progress", "--require-sealed", "-"}), echo_tasks(1));
  INFO("strict stderr:\n" << strict.err);
  CHECK(strict.exit_code == 2);
  CHECK(contains(strict.err, "--require-sealed: refusing to run"));
  CHECK(strict.out.empty());
  RunOutput version = run_program(as_user({authrun_bin(), "--version"}));
  CHECK(contains(version.out, "start-up window of authrun: OPEN"));
  CHECK(contains(version.out, "start-up window of authrun-worker: OPEN"));
}

TEST_CASE("window: installed root-owned with mode 0711, another user's run is sealed: no warning, --require-sealed runs") {
  if (::geteuid() != 0 || ::access("/usr/bin/setpriv", X_OK) != 0) {
    MESSAGE("not root (or no setpriv): a root-owned install cannot be made here; the package test checks the modes");
    return;
  }
  TempDir dir;
  const std::string bin = sealed_copy(dir);
  RunOutput r = run_program(as_user({bin + "/authrun", "run", "--no-progress", "-j", "2", "--require-sealed", "-"}), echo_tasks(4));
  INFO("stderr:\n" << r.err);
  CHECK(r.exit_code == 0);
  CHECK(split_lines(r.out).size() == 4);
  CHECK_FALSE(contains(r.err, "window"));
  RunOutput version = run_program(as_user({bin + "/authrun", "--version"}));
  INFO("version:\n" << version.out);
  CHECK(contains(version.out, "start-up window of authrun: sealed (not readable by uid"));
  CHECK(contains(version.out, "start-up window of authrun-worker: sealed (not readable by uid"));
  // The sealed runner with a wrapper in front of its worker: refused under --require-sealed.
  RunOutput wrapped = run_program(as_user({bin + "/authrun", "run", "--no-progress", "--require-sealed", "--worker",
                                           "/bin/sh -c 'exec " + bin + "/authrun-worker'", "-"}),
                                  echo_tasks(1));
  INFO("wrapped:\n" << wrapped.err);
  CHECK(wrapped.exit_code == 2);
  CHECK(contains(wrapped.err, "is a wrapper"));
}

TEST_CASE("window: a wrapper is named on stderr as what it exposes") {
  if (!can_switch_user()) return;
  RunOutput r = run_program(as_user({authrun_bin(), "run", "--no-progress", "--worker",
                                     "/bin/sh -c 'exec " + std::string(worker_bin()) + "'", "-"}),
                            echo_tasks(2));
  INFO("stderr:\n" << r.err);
  CHECK(r.exit_code == 0);
  CHECK(count(r.err, "is a wrapper: until it execs the worker") == 1);
}

TEST_CASE("window: a key request from a process that exec'd another program is refused, naming it") {
  // python3 is the program started; it execs authrun-worker, which asks with the same pid and fd 3.
  const std::string exec_worker = "/usr/bin/python3 -c \"import os; os.execv('" + std::string(worker_bin()) + "', ['w'])\"";
  RunOutput r = run_program({authrun_bin(), "run", "--no-progress", "--no-window-warning", "-j", "1", "--worker", exec_worker, "-"},
                            echo_tasks(1), std::chrono::seconds(60));
  INFO("stderr:\n" << r.err);
  CHECK(r.exit_code != 0);
  CHECK(contains(r.err, "which no longer runs the program started (python3)"));
  CHECK(r.out.empty());
}

TEST_CASE("window: a second key request on one rendezvous fails closed and is in the audit log") {
  TempDir dir;
  const std::string audit = dir.path() + "/audit.jsonl";
  // The first spawn asks for a key itself on fd 3 (with a fresh socket of its own, whose end it keeps across
  // the exec: else a runner slower than the exec finds nobody to take the key, and the second request is
  // never looked at), then execs the worker, which asks again; later spawns are the plain worker.
  const std::string asker = dir.write("ask.py",
      "import array, os, socket, struct, sys\n"
      "if os.path.exists(sys.argv[1]): os.execv(sys.argv[2], ['w'])\n"
      "open(sys.argv[1], 'w').close()\n"
      "mine, theirs = socket.socketpair()\n"
      "s = socket.socket(fileno=3)\n"
      "s.sendmsg([b'ARUNKEY?'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [theirs.fileno()])),\n"
      "  (socket.SOL_SOCKET, socket.SCM_CREDENTIALS, struct.pack('iII', os.getpid(), os.getuid(), os.getgid()))])\n"
      "s.detach(); os.set_inheritable(3, True); os.set_inheritable(mine.fileno(), True)\n"
      "os.execv(sys.argv[2], ['w'])\n");
  const std::string worker = "/bin/sh -c 'exec /usr/bin/python3 " + asker + " " + dir.path() + "/asked " + worker_bin() + "'";
  RunOutput r = run_program({authrun_bin(), "run", "--no-progress", "--no-window-warning", "-j", "1", "--audit-log", audit,
                             "--worker", worker, "-"},
                            echo_tasks(3), std::chrono::seconds(60));
  INFO("stderr:\n" << r.err);
  CHECK(r.exit_code == 0);  // the replacement runs every task
  CHECK(split_lines(r.out).size() == 3);
  const std::string log = read_file(audit);
  INFO("audit:\n" << log);
  // Root skips the dumpable check, so the first request is answered and the second fails closed; another user
  // sees the first refused as still dumpable. Either way that worker never ran a task.
  CHECK((contains(log, "a second key request on the rendezvous") || contains(log, "two key requests") ||
         contains(log, "still dumpable when it asks")));
  CHECK(contains(r.err, "1 handshake failure"));
}

TEST_CASE("window: key requests made while the runner was stopped are refused, the worker replaced") {
  TempDir dir;
  const std::string audit = dir.path() + "/audit.jsonl";
  // A worker that asks only after 2 s (scaled), so that the runner is surely stopped when it asks.
  const double wait_s = std::chrono::duration<double>(scaled(std::chrono::seconds(2))).count();
  const std::string worker = "/bin/sh -c 'if mkdir " + dir.path() + "/first 2>/dev/null; then sleep " + std::to_string(wait_s) +
                             "; fi; exec " + worker_bin() + "'";
  Child runner = spawn_child({authrun_bin(), "run", "--no-progress", "--no-window-warning", "-j", "1", "--audit-log", audit,
                              "--worker", worker, "-"});
  write_text(runner.in.get(), echo_tasks(2));
  runner.in = authrun::protocol::Fd();
  REQUIRE(eventually([&] { return !children_of(runner.pid).empty(); }));
  ::kill(runner.pid, SIGSTOP);
  std::this_thread::sleep_for(scaled(std::chrono::seconds(3)));  // the worker asks meanwhile
  ::kill(runner.pid, SIGCONT);
  std::string out, err;
  read_until(runner.out.get(), out, [](const std::string&) { return false; }, std::chrono::steady_clock::now() + scaled(std::chrono::seconds(60)));
  read_until(runner.err.get(), err, [](const std::string&) { return false; }, std::chrono::steady_clock::now() + scaled(std::chrono::seconds(5)));
  const int status = runner.wait();
  INFO("stderr:\n" << err);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(split_lines(out).size() == 2);
  CHECK(contains(err, "the runner was stopped and continued (SIGCONT) while worker"));
  CHECK(contains(read_file(audit), "the runner was stopped and continued"));
}

TEST_CASE("window: a long task with keep-alives outlives the silence limit several times, a stopped worker does not") {
  const double limit = std::chrono::duration<double>(scaled(std::chrono::seconds(1))).count();
  RunOutput slow = run_program({authrun_bin(), "run", "--no-progress", "--no-window-warning", "-j", "1", "--silence-limit",
                                std::to_string(limit), "-"},
                               sleep_tasks(1, 3 * limit), std::chrono::seconds(120));
  INFO("slow stderr:\n" << slow.err);
  CHECK(slow.exit_code == 0);
  auto results = parse_results(slow.out);
  REQUIRE(results.size() == 1);
  CHECK(results[0]["ok"] == true);
  CHECK(results[0]["attempts"] == 1);

  // A worker stopped (SIGSTOP) in the middle of its task sends nothing: it is stopped for good and the task
  // retried on a fresh worker.
  TempDir dir;
  const std::string marker = "30." + std::to_string(::getpid());  // a --handshake-timeout value, to find it by
  Child runner = spawn_child({authrun_bin(), "run", "--no-progress", "--no-window-warning", "-j", "1", "--silence-limit",
                              std::to_string(limit), "--worker", marked_worker(marker), "-"});
  write_text(runner.in.get(), sleep_tasks(1, 2 * limit, true));
  runner.in = authrun::protocol::Fd();
  std::vector<int> busy;
  REQUIRE(eventually([&] { return !(busy = busy_workers(marker)).empty(); }));
  ::kill(busy[0], SIGSTOP);
  std::string out, err;
  read_until(runner.out.get(), out, [](const std::string&) { return false; }, std::chrono::steady_clock::now() + scaled(std::chrono::seconds(60)));
  read_until(runner.err.get(), err, [](const std::string&) { return false; }, std::chrono::steady_clock::now() + scaled(std::chrono::seconds(5)));
  const int status = runner.wait();
  INFO("stopped stderr:\n" << err);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  auto retried = parse_results(out);
  REQUIRE(retried.size() == 1);
  CHECK(retried[0]["ok"] == true);
  CHECK(retried[0]["attempts"] == 2);
  CHECK(contains(err, "worker silent for"));
}

namespace {

std::string hijack_bin() {
  const std::string runner = authrun_bin();
  return runner.substr(0, runner.rfind('/') + 1) + "authrun-hijack";
}

// The value of `name` on authrun-hijack's RESULT line in `err`; -1 if there is none.
long hijack_field(const std::string& err, const std::string& name) {
  for (const std::string& line : split_lines(err)) {
    const auto result = line.find(" RESULT ");
    const auto at = line.find(" " + name + "=", result == std::string::npos ? line.size() : result);
    if (at != std::string::npos) return std::stol(line.substr(at + name.size() + 2));
  }
  return -1;
}

// Runs authrun-hijack (ARGS, as k_other_uid when root) while `batches` runs of `runner` (a shell command line
// of the same user) go on; returns the hijacker's stderr.
std::string under_hijack(const std::vector<std::string>& args, const std::string& runner, int batches, std::string& runs_err,
                         int uid = k_hijack_uid) {
  // The attacker watches until the runs are over (a file it looks for), at most a generous bound.
  TempDir flag_dir;
  ::chmod(flag_dir.path().c_str(), 0755);
  const std::string stop_file = flag_dir.path() + "/runs-done";
  const auto bound = scaled(std::chrono::seconds(25)) + std::chrono::seconds(60) * batches;
  std::vector<std::string> argv{hijack_bin(), "--uid", std::to_string(uid), "--stop-file", stop_file};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(std::to_string(std::chrono::duration<double>(bound).count()));
  RunOutput hijack;
  std::thread attacker([&] { hijack = run_program(argv, "", bound + std::chrono::seconds(60)); });
  std::this_thread::sleep_for(scaled(std::chrono::milliseconds(500)));  // it is watching
  for (int i = 0; i < batches; ++i) {
    runs_err += run_program(as_user({"/bin/sh", "-c", runner}, uid), "", std::chrono::seconds(60)).err;
  }
  flag_dir.write("runs-done", "");
  attacker.join();
  return hijack.err;
}

// Whether the sealed layout can be attacked here: a root-owned install needs root, the attacker x86_64.
bool can_attack_sealed() {
  if (::geteuid() == 0 && ::access(hijack_bin().c_str(), X_OK) == 0 && ::access("/usr/bin/setpriv", X_OK) == 0) return true;
  MESSAGE("needs root (a root-owned install) and authrun-hijack (x86_64): not run");
  return false;
}

// What a sealed layout must leave the attacker after `batches` runs of 8 tasks: nothing seized (see
// k_exit_is_dumpable), no request made, no key, no forged result, and every run whole.
void check_sealed_attack(const std::string& hijack, const std::string& runs, int batches) {
  INFO("hijacker:\n" << hijack << "\nruns:\n" << runs);
  REQUIRE(hijack_field(hijack, "seized") >= 0);
  if (!k_exit_is_dumpable) CHECK(hijack_field(hijack, "seized") == 0);
  CHECK(hijack_field(hijack, "asked") == 0);
  CHECK(hijack_field(hijack, "keys_obtained") == 0);
  CHECK(hijack_field(hijack, "forged") == 0);
  CHECK(count(runs, "8 ok, 0 failed") == batches);
}

}  // namespace

TEST_CASE("window: ptrace from birth through a wrapper, the worker made to ask, the runner stopped: no key") {
  if (::access(hijack_bin().c_str(), X_OK) != 0 || !can_switch_user()) {
    MESSAGE("authrun-hijack is built for x86_64 only (or no setpriv): not run");
    return;
  }
  TempDir dir;
  ::chmod(dir.path().c_str(), 0755);
  const std::string tasks = dir.write("tasks.jsonl", echo_tasks(4));
  ::chmod(tasks.c_str(), 0644);
  // The wrapper sleeps a little: the attacker seizes the shell and holds it through its exec of the worker.
  // Against the landed runner (no SIGCONT check) this attack got 36 keys of 36 workers and forged 36 results.
  // (The outer shell execs the runner: the attacker, which holds a shell it seized until that shell execs,
  // is not kept from the next worker.)
  const std::string runner = "exec " + std::string(authrun_bin()) + " run --no-progress --no-window-warning -j 1 --worker \"/bin/sh -c 'sleep 0.1; exec " +
                             worker_bin() + "'\" " + tasks;
  // The attacker watches one process at a time and can miss every run of a round: 1 round in 40 earlier this
  // session, most rounds in some states of the machine (seen late in the session, cause not found). Up to
  // three rounds, until it has carried the attack out; each request it made must have been refused as such.
  int asked = 0;
  for (int round = 0; round < 3 && asked == 0; ++round) {
    std::string runs;
    const std::string hijack = under_hijack({"--stop-runner"}, runner, 5, runs);
    INFO("hijacker:\n" << hijack << "\nruns:\n" << runs);
    REQUIRE(hijack_field(hijack, "keys_obtained") >= 0);  // it ran to its end
    CHECK(hijack_field(hijack, "keys_obtained") == 0);
    CHECK(hijack_field(hijack, "forged") == 0);
    asked = hijack_field(hijack, "asked");
    CHECK(count(runs, "given no task: key_invalid: the runner was stopped and continued (SIGCONT)") == asked);
    MESSAGE("round " << round + 1 << ": workers seized from birth: " << hijack_field(hijack, "seized") << ", made to ask: " << asked);
  }
  // Not carried out in three rounds: nothing was shown about the SIGCONT check this run (said, not failed:
  // the attacker's blindness is not the runner's fault).
  if (asked == 0) MESSAGE("the attacker seized no worker in three rounds: this run shows nothing about the SIGCONT check");
}

TEST_CASE("window: installed root-owned 0711, no worker can be seized from birth") {
  if (!can_attack_sealed()) return;
  TempDir dir;
  const std::string bin = sealed_copy(dir);
  const std::string tasks = dir.write("tasks.jsonl", echo_tasks(8));
  ::chmod(tasks.c_str(), 0644);
  std::string runs;
  const std::string hijack = under_hijack({"--stop-runner"}, bin + "/authrun run --no-progress -j 4 " + tasks, 10, runs, k_sealed_uid);
  check_sealed_attack(hijack, runs, 10);
}

TEST_CASE("window: installed root-owned 0711, no Python worker (authrun-python) can be seized from birth") {
  if (!can_attack_sealed()) return;
  // The seed's own threat: code slipped into a fresh Python interpreter. The embedded host starts sealed, so
  // the attacker that seizes readable workers from birth gets nothing: no process, no key, no forged result.
  TempDir dir;
  const std::string bin = sealed_copy(dir);
  const std::string module = dir.write("squares.py", "def square(x):\n    return x * x\n");
  ::chmod(module.c_str(), 0644);
  std::string lines;
  for (int i = 0; i < 8; ++i) lines += R"({"id":)" + std::to_string(i) + R"(,"fn":"square","args":[)" + std::to_string(i) + "]}\n";
  const std::string tasks = dir.write("tasks.jsonl", lines);
  ::chmod(tasks.c_str(), 0644);
  std::string runs;
  const std::string hijack =
      under_hijack({"--stop-runner"}, "cd " + dir.path() + " && " + bin + "/authrun run " + tasks + " --no-progress -j 4 --python squares.py", 6, runs,
                   k_sealed_python_uid);
  check_sealed_attack(hijack, runs, 6);
}

TEST_CASE("window: a Python worker keeps a long task alive too, and a stopped one is found") {
  if (::access("/usr/bin/python3", X_OK) != 0) return;
  TempDir dir;
  const std::string module = dir.write("naps.py", "import time\ndef nap(s):\n    time.sleep(s)\n    return s\n");
  const double limit = std::chrono::duration<double>(scaled(std::chrono::seconds(1))).count();
  const std::string task = R"({"id":1,"fn":"nap","args":[)" + std::to_string(3 * limit) + "]}\n";
  RunOutput r = run_program({authrun_bin(), "run", "--no-progress", "--no-window-warning", "-j", "1", "--silence-limit",
                             std::to_string(limit), "--python", module, "--python-exe", "/usr/bin/python3", "-"},
                            task, std::chrono::seconds(120));
  INFO("stderr:\n" << r.err);
  CHECK(r.exit_code == 0);
  auto results = parse_results(r.out);
  REQUIRE(results.size() == 1);
  CHECK(results[0]["ok"] == true);
  CHECK(results[0]["attempts"] == 1);
}
