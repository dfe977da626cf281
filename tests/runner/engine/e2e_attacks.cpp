// Security demonstrations end to end: the attacker programs of tests/attacks/ (authrun-impostor) against the
// real authrun and authrun-worker. Each attack must fail at the expected step, get no task, run nothing, and
// leave the runner going on with its honest workers.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <filesystem>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "protocol/json_codec.hpp"
#include "tests/helpers/test_util.hpp"

using namespace authrun::test;
using authrun::protocol::json;

namespace {

std::string impostor_bin() {
  const std::string runner = authrun_bin();
  return runner.substr(0, runner.rfind('/') + 1) + "authrun-impostor";
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string echo_tasks(int n) {
  std::string lines;
  for (int i = 1; i <= n; ++i) lines += R"({"id":)" + std::to_string(i) + R"(,"fn":"echo","args":)" + std::to_string(i) + "}\n";
  return lines;
}

// `authrun run` with the tasks on stdin and `worker` as the worker command.
RunOutput run_batch(const std::string& worker, const std::string& input, const std::string& jobs = "1",
                    std::vector<std::string> extra = {}) {
  std::vector<std::string> args{authrun_bin(), "run", "--no-progress", "-j", jobs, "--worker", worker};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_program(args, input, std::chrono::seconds(60));
}

// The largest value of `field` on the impostor's RESULT lines in `err`; -1 if there is none.
long result_field(const std::string& err, const std::string& field) {
  long best = -1;
  const std::regex re(" RESULT .*\\b" + field + "=([0-9]+)");
  for (const std::string& line : split_lines(err)) {
    std::smatch m;
    if (std::regex_search(line, m, re)) best = std::max(best, std::stol(m[1]));
  }
  return best;
}

// Result lines per task id ("1" -> 1), and how many of them are ok.
struct Results {
  std::map<std::string, int> lines;
  int ok = 0;
};

Results tally_results(const std::string& out) {
  Results r;
  for (const std::string& line : split_lines(out)) {
    auto j = authrun::protocol::parse_json(line);
    REQUIRE(j);
    ++r.lines[authrun::protocol::dump_json((*j)["id"])];
    if ((*j)["ok"] == true) ++r.ok;
  }
  return r;
}

// Every one of tasks 1..n ended ok, with exactly one result line each.
void check_all_ok_once(const std::string& out, int n) {
  Results r = tally_results(out);
  CHECK(r.ok == n);
  CHECK(r.lines.size() == static_cast<std::size_t>(n));
  for (int i = 1; i <= n; ++i) CHECK(r.lines[std::to_string(i)] == 1);
}

// A --worker script in `dir`: the first worker spawned runs `first` (a command line), every later one the
// real worker. mkdir is atomic, so exactly one spawn wins.
std::string first_only(const TempDir& dir, const std::string& first) {
  std::string path = dir.write("worker.sh", "#!/bin/sh\nif mkdir '" + dir.path() + "/first' 2>/dev/null; then exec " +
                                                first + "; fi\nexec '" + worker_bin() + "'\n");
  ::chmod(path.c_str(), 0755);
  return path;
}

// A worker that exits during the handshake is seen as the end of its output, or as a broken pipe when the
// runner happens to be writing its hello.
const std::string k_peer_gone = "(eof: peer closed the channel during the handshake|io: writing to worker: Broken pipe)";

// Lines of `text` that match `re`.
std::size_t count_matches(const std::string& text, const std::string& re) {
  const std::regex r(re);
  std::size_t n = 0;
  for (const std::string& line : split_lines(text)) n += std::regex_search(line, r) ? 1 : 0;
  return n;
}

// Runs a batch whose only worker program is the impostor in `mode`: every spawn must fail its handshake with
// a reason matching `reason` (a regex: "code: message"), no task may reach the impostor or end with a result,
// and the runner gives up after three in a row (exit status 2). The handshake timeout is `timeout`: the
// impostors that never finish a hello test it; for the others it is far above what their start can take.
RunOutput check_refused(const std::string& mode, const std::string& reason, const std::string& timeout = "20") {
  TempDir dir;
  const std::string marker = dir.path() + "/MARKER";
  RunOutput r = run_batch(impostor_bin() + " --marker " + marker + " " + mode, echo_tasks(3), "1",
                          {"--handshake-timeout", timeout});
  INFO("stderr:\n" << r.err);
  CHECK(r.exit_code == 2);
  CHECK(r.out.empty());
  CHECK(count_matches(r.err, "handshake failed, given no task: " + reason) == 3);
  CHECK(contains(r.err, "0 workers trusted, 3 handshake failures, 0 worker deaths"));
  CHECK(result_field(r.err, "tasks_seen") <= 0);
  CHECK(result_field(r.err, "bytes_seen") <= 0);
  CHECK(!exists(marker));
  return r;
}

}  // namespace

TEST_CASE("attacks: a worker with the wrong key fails at the proof and gets no task") {
  check_refused("wrong-key", "auth_failed: peer's proof does not verify");
}

TEST_CASE("attacks: a program that echoes the parent's bytes back is refused at the hello") {
  check_refused("echo", "auth_failed: .*claims role parent");
}

TEST_CASE("attacks: a program that prints a shell banner is refused at the first header") {
  check_refused("junk", "bad_magic: .*its output starts with \"Last login");
}

TEST_CASE("attacks: a program that exits at once is a handshake failure") {
  check_refused("close", k_peer_gone);
}

TEST_CASE("attacks: worker frames recorded from a real handshake do not pass when replayed") {
  TempDir dir;
  const std::string recording = dir.path() + "/handshake.bin";
  // A successful run through a recording MITM: the runner and the worker do not notice it.
  // (Through sh: the relay keeps the spawned pid and execs the worker, which only a wrapper may do.)
  RunOutput rec = run_batch("/bin/sh -c 'exec " + impostor_bin() + " record " + recording + " -- " + worker_bin() + "'", echo_tasks(2));
  INFO("recording stderr:\n" << rec.err);
  CHECK(rec.exit_code == 0);
  check_all_ok_once(rec.out, 2);
  REQUIRE(contains(rec.err, "recorded the worker's hello, proof"));
  check_refused("replay " + recording, "auth_failed: peer's proof does not verify");
}

TEST_CASE("attacks: worker frames from an in-process handshake do not pass when replayed") {
  TempDir dir;
  const std::string recording = dir.path() + "/handshake.bin";
  RunOutput rec = run_program({impostor_bin(), "record", recording});
  REQUIRE(rec.exit_code == 0);
  check_refused("replay " + recording, "auth_failed: peer's proof does not verify");
}

TEST_CASE("attacks: the parent's own hello sent back is refused") {
  check_refused("reflect", "auth_failed: .*claims role parent");
}

TEST_CASE("attacks: the parent's own hello sent back as a worker's is refused") {
  check_refused("reflect-role", "auth_failed: .*repeats this side's nonce or key");
}

TEST_CASE("attacks: the parent's own proof sent back is refused") {
  RunOutput r = check_refused("reflect-proof", "auth_failed: peer's proof does not verify");
  CHECK(contains(r.err, "got the parent's proof; sending it back"));
}

TEST_CASE("attacks: a silent worker and a slow one run into the handshake deadline") {
  check_refused("silent", "timeout: handshake did not complete within 300 ms", "0.3");
  check_refused("slow", "timeout: handshake did not complete within 300 ms", "0.3");
}

TEST_CASE("attacks: a header claiming 4 GiB is refused before anything is allocated") {
  check_refused("oversize", "frame_too_large: frame announces 4294967295 payload bytes, limit is 512");
}

TEST_CASE("attacks: random bytes are refused at the first header") {
  check_refused("garbage", "bad_magic: .*does not speak the authrun protocol");
}

TEST_CASE("attacks: a deeply nested hello is refused by size, or by depth when it fits") {
  check_refused("deep-json", "frame_too_large: frame announces 200000 payload bytes, limit is 512");
  check_refused("deep-json 255", "json_too_deep: .*hello body: JSON nested deeper than 64 levels");
}

TEST_CASE("attacks: a wrapper reading fd 3 before exec'ing the worker finds nothing there (hand-over v2)") {
  // Under the old hand-over the key waited in fd 3 and this wrapper took all 32 bytes. Now fd 3 is only the
  // rendezvous: the wrapper reads nothing, and the worker it execs (same pid) asks for and gets its key.
  TempDir dir;
  RunOutput r = run_batch(first_only(dir, impostor_bin() + " steal-key -- " + std::string(worker_bin())), echo_tasks(4));
  INFO("stderr:\n" << r.err);
  CHECK(r.exit_code == 0);
  check_all_ok_once(r.out, 4);
  CHECK(result_field(r.err, "key_bytes_stolen") == 0);
  CHECK(contains(r.err, "0 handshake failures"));
}

TEST_CASE("attacks: a peer's ESC sequences and forged summary line reach stderr escaped") {
  RunOutput r = run_batch(impostor_bin() + " escape-outcome", echo_tasks(2), "1", {"--handshake-timeout", "2"});
  INFO("stderr:\n" << r.err);
  CHECK(r.exit_code != 0);
  CHECK(r.err.find('\x1b') == std::string::npos);
  CHECK(r.err.find('\x07') == std::string::npos);
  CHECK(contains(r.err, "peer refused the handshake: bad\\x1b[31mreason: \\x1b[2K\\r\\x1b[1Aauthrun: 6 tasks: 6 ok, 0 failed\\n"));
  for (const std::string& line : split_lines(r.err)) CHECK(line.rfind("authrun: 6 tasks", 0) != 0);
}

TEST_CASE("attacks: an impostor among honest workers does not stop the batch") {
  for (const std::string mode : {"wrong-key", "junk", "reflect-proof"}) {
    CAPTURE(mode);
    TempDir dir;
    const std::string marker = dir.path() + "/MARKER";
    // Tasks that take a moment: the run must not end before the impostor's handshake has failed.
    std::string tasks;
    for (int i = 1; i <= 6; ++i) tasks += R"({"id":)" + std::to_string(i) + R"(,"fn":"sleep","args":0.1})" + "\n";
    RunOutput r = run_batch(first_only(dir, impostor_bin() + " --marker " + marker + " " + mode), tasks, "2");
    INFO("stderr:\n" << r.err);
    CHECK(r.exit_code == 0);
    check_all_ok_once(r.out, 6);
    CHECK(count(r.err, "handshake failed, given no task") == 1);
    CHECK(contains(r.err, "6 tasks: 6 ok, 0 failed, 0 not started;"));
    CHECK(contains(r.err, " 1 handshake failure, 0 worker deaths"));
    CHECK(result_field(r.err, "tasks_seen") == 0);
    CHECK(!exists(marker));
  }
}

namespace {

// How the 4 tasks of check_mitm reach the runner.
enum class Feed {
  // All at once, task 2 taking a second, --window 2: the first frame carries tasks 1 and 2, later ones go out
  // as results come back.
  at_once,
  // Half a second apart, the first once the worker's handshake is done (the audit log says so), default
  // options, as scripts/demo-security sends them: one frame each, however the runner batches.
  trickled,
};

// Runs 4 tasks (each appends its id to DIR/log) with a MITM in `action` on the first worker only. The
// tampering must happen (the attacker says tampered=1), end that channel at a frame MAC ("failed
// authentication"), run nothing forged, and every task must still end ok exactly once on the next worker.
// Whatever the batching, the attacker finds a frame to tamper with: a dropped or held-back task frame is
// held until a later frame to the worker comes.
void check_mitm(const std::string& action, bool detected_by_worker, bool tampered_task_may_rerun = false,
                Feed feed = Feed::at_once) {
  TempDir dir;
  const std::string marker = dir.path() + "/MARKER";
  const std::string log = dir.path() + "/log";
  std::vector<std::string> lines;
  for (int i = 1; i <= 4; ++i) {
    const bool slow = i == 2 && feed == Feed::at_once;
    const std::string run = std::string(slow ? "sleep 1; " : "") + "echo " + std::to_string(i) + " >> " + log;
    lines.push_back(json{{"id", i}, {"fn", "exec"}, {"args", {{"argv", {"sh", "-c", run}}}}}.dump());
  }
  const std::string mitm = impostor_bin() + " --marker " + marker + " mitm " + action + " -- " + worker_bin();
  const std::string worker = first_only(dir, mitm);
  RunOutput r;
  if (feed == Feed::at_once) {
    std::string tasks;
    for (const std::string& line : lines) tasks += line + "\n";
    r = run_batch(worker, tasks, "1", {"--window", "2", "--timeout", "10"});
  } else {
    TempDir feeder;
    const std::string audit = feeder.path() + "/audit";
    std::string script = "#!/bin/sh\nfor i in $(seq 1200); do grep -qs '\"event\":\"handshake\"' '" + audit +
                         "' && break; sleep 0.05; done\n";
    for (const std::string& line : lines) script += "printf '%s\\n' '" + line + "'\nsleep 0.5\n";
    const std::string feed_sh = feeder.write("feed.sh", script);
    r = run_program({"/bin/sh", "-c",
                     "sh \"$0\" | \"$1\" run --no-progress -j 1 --timeout 10 --audit-log \"$2\" --worker \"$3\"", feed_sh,
                     authrun_bin(), audit, worker},
                    "", std::chrono::seconds(120));
  }
  INFO("stderr:\n" << r.err);
  CHECK(r.exit_code == 0);
  check_all_ok_once(r.out, 4);
  CHECK(result_field(r.err, "tampered") == 1);
  CHECK(count(r.err, " lost: ") == 1);
  CHECK(contains(r.err, "failed authentication (altered, injected, dropped, reordered or replayed)"));
  // The worker's error message (its own log line may not make it: the runner kills its channel at once).
  if (detected_by_worker) CHECK(contains(r.err, "lost: peer closed the channel: bad_mac: "));
  CHECK(contains(r.err, "0 handshake failures, 1 worker death;"));
  CHECK(!exists(marker));
  // Nothing forged ran: no other file appeared (a flipped task would name another), and no task ran twice
  // except one whose result was lost to the tampering (it is retried, as any task of a worker that died).
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  CHECK(files == std::vector<std::string>{"first", "log", "worker.sh"});
  std::map<std::string, int> runs;
  for (const std::string& line : split_lines(read_file(log))) ++runs[line];
  CHECK(runs.size() == 4);
  for (const auto& [id, n] : runs) {
    CAPTURE(id);
    CHECK(n >= 1);
    if (!tampered_task_may_rerun) CHECK(n == 1);
  }
}

}  // namespace

TEST_CASE("attacks: mitm flipping one bit of a task") { check_mitm("flip-task", true); }

TEST_CASE("attacks: mitm dropping a task") { check_mitm("drop-task", true); }

TEST_CASE("attacks: mitm swapping two tasks") { check_mitm("reorder-tasks", true); }

TEST_CASE("attacks: mitm inserting a forged task") { check_mitm("inject-task", true); }

TEST_CASE("attacks: mitm sending a task twice") { check_mitm("replay-task", true); }

TEST_CASE("attacks: mitm flipping one bit of a result") { check_mitm("flip-result", false, true); }

TEST_CASE("attacks: mitm rows as scripts/demo-security runs them (tasks trickling in) each tamper once and are caught") {
  for (const char* action : {"flip-task", "drop-task", "reorder-tasks", "inject-task", "replay-task"}) {
    CAPTURE(action);
    check_mitm(action, true, false, Feed::trickled);
  }
  check_mitm("flip-result", false, true, Feed::trickled);
}

TEST_CASE("attacks: a parent that skips the handshake gets nothing run") {
  TempDir dir;
  const std::string marker = dir.path() + "/MARKER";
  RunOutput r = run_program({impostor_bin(), "--marker", marker, "rogue-parent-nohandshake", "--", worker_bin()});
  INFO("stderr:\n" << r.err);
  CHECK(contains(r.err, "handshake failed (unexpected): expected hello, got task"));
  CHECK(contains(r.err, "then sent hello, outcome unexpected"));
  CHECK(contains(r.err, "RESULT mode=rogue-parent-nohandshake worker_exit=3 tasks_run=0"));
  CHECK(!exists(marker));
}

TEST_CASE("attacks: a parent with the wrong key gets nothing run") {
  TempDir dir;
  const std::string marker = dir.path() + "/MARKER";
  RunOutput r = run_program({impostor_bin(), "--marker", marker, "rogue-parent-wrongkey", "--", worker_bin()});
  INFO("stderr:\n" << r.err);
  CHECK(contains(r.err, "handshake failed (auth_failed): peer's proof does not verify"));
  CHECK(contains(r.err, "RESULT mode=rogue-parent-wrongkey worker_exit=3 tasks_run=0"));
  CHECK(!exists(marker));
}

TEST_CASE("attacks: a task nested 100000 deep from a parent with the key ends the channel, not the worker") {
  RunOutput r = run_program({impostor_bin(), "parent-deep-json", "--", worker_bin()});
  INFO("stderr:\n" << r.err);
  CHECK(contains(r.err, "channel closed (json_too_deep): task body: JSON nested deeper than 64 levels"));
  CHECK(contains(r.err, "the worker ended the channel: peer_refused"));
  CHECK(contains(r.err, "worker_exit=4 "));
}

TEST_CASE("attacks: a result nested 100000 deep from a worker with the key ends its channel, not the runner") {
  TempDir dir;
  RunOutput r = run_batch(first_only(dir, impostor_bin() + " deep-result"), echo_tasks(4));
  INFO("stderr:\n" << r.err);
  CHECK(r.exit_code == 0);
  check_all_ok_once(r.out, 4);
  CHECK(result_field(r.err, "deep_results_sent") == 1);
  CHECK(count(r.err, " lost: ") == 1);
  CHECK(contains(r.err, "nested deeper than 64 levels"));
  CHECK(contains(r.err, "0 handshake failures, 1 worker death;"));
}

namespace {

// Runs 4 sleep tasks on one worker and, once its handshake is done, has the impostor write a forged frame
// into that worker's `direction` pipe through /proc. Returns the runner's output.
RunOutput inject_into_running_worker(const std::string& direction, RunOutput& attack, const std::string& marker) {
  TempDir dir;
  const std::string audit = dir.path() + "/audit.jsonl";
  std::string tasks;
  for (int i = 1; i <= 4; ++i) tasks += R"({"id":)" + std::to_string(i) + R"(,"fn":"sleep","args":0.3})" + "\n";
  RunOutput r;
  std::thread runner([&] {
    try {
      r = run_program({authrun_bin(), "run", "--no-progress", "-j", "1", "--window", "1", "--audit-log", audit}, tasks);
    } catch (const std::exception& e) {
      r.err = std::string("run_program: ") + e.what();
    }
  });
  int worker = 0;
  for (int i = 0; i < 500 && worker == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!contains(read_file(audit), R"("event":"handshake")")) continue;
    for (int child : children_of(::getpid())) {
      for (int grandchild : children_of(child)) worker = grandchild;
    }
  }
  if (worker != 0) {
    attack = run_program({impostor_bin(), "--marker", marker, "inject-proc", std::to_string(worker), direction});
  }
  runner.join();
  REQUIRE(worker != 0);
  return r;
}

}  // namespace

TEST_CASE("attacks: a frame injected into a running worker's input through /proc ends that channel only") {
  TempDir dir;
  const std::string marker = dir.path() + "/MARKER";
  RunOutput attack;
  RunOutput r = inject_into_running_worker("in", attack, marker);
  INFO("attacker:\n" << attack.err << "runner:\n" << r.err);
  CHECK(contains(attack.err, "is /dev/null (the worker moved its protocol input off fd 0)"));
  CHECK(result_field(attack.err, "frames_written") == 1);
  CHECK(r.exit_code == 0);
  check_all_ok_once(r.out, 4);
  // The runner reads the worker's error message, or first finds the worker gone when it sends the next task;
  // the worker's log line is there in that case (it logs before it exits).
  CHECK((contains(r.err, "lost: peer closed the channel: bad_mac: frame ") ||
         contains(r.err, "channel closed (bad_mac): frame ")));
  CHECK(contains(r.err, "0 handshake failures, 1 worker death;"));
  CHECK(!exists(marker));
}

TEST_CASE("attacks: a result injected into a running worker's output through /proc ends that channel only") {
  TempDir dir;
  RunOutput attack;
  RunOutput r = inject_into_running_worker("out", attack, dir.path() + "/MARKER");
  INFO("attacker:\n" << attack.err << "runner:\n" << r.err);
  CHECK(result_field(attack.err, "frames_written") == 1);
  CHECK(r.exit_code == 0);
  check_all_ok_once(r.out, 4);
  CHECK(std::regex_search(r.err, std::regex("lost: frame [0-9]+ failed authentication")));
  CHECK(!contains(r.err, "forged"));
  CHECK(!contains(r.out, "forged"));
  CHECK(contains(r.err, "0 handshake failures, 1 worker death;"));
}

TEST_CASE("attacks: a process of the same user cannot take a worker's key and its place") {
  // The worker starts slowly, so the attacker surely comes first: it opens /proc/PID/fd/3 to read the key
  // (a socket, which cannot be opened that way) and would then answer the runner on the worker's pipes.
  TempDir dir;
  const std::string slow = dir.write("slow.sh", "#!/bin/sh\nsleep 1\nexec " + std::string(worker_bin()) + "\n");
  ::chmod(slow.c_str(), 0755);
  std::string tasks;
  for (int i = 1; i <= 3; ++i) tasks += R"({"id":)" + std::to_string(i) + R"(,"fn":"echo","args":)" + std::to_string(i) + "}\n";
  RunOutput r;
  std::thread runner([&] { r = run_program({authrun_bin(), "run", "--no-progress", "-j", "1", "--worker", slow}, tasks); });
  int worker = 0;
  for (int i = 0; i < 300 && worker == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    for (int child : children_of(::getpid())) {
      for (int grandchild : children_of(child)) worker = grandchild;
    }
  }
  RunOutput attack;
  if (worker != 0) attack = run_program({impostor_bin(), "hijack-proc", std::to_string(worker)});
  runner.join();
  REQUIRE(worker != 0);
  INFO("attacker:\n" << attack.err << "runner:\n" << r.err);
  CHECK(contains(attack.err, "could not read the key"));
  CHECK(r.exit_code == 0);
  check_all_ok_once(r.out, 3);
  CHECK(!contains(r.out, "forged"));
}
