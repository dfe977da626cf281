// End-to-end tests of what a run may spend, with the real binaries over real pipes: tasks too large for
// some workers go to one whose announced limit fits (else one clear error), the in-flight byte budget, and
// the memory --keep-order holds behind a slow task.
#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "protocol/json_codec.hpp"
#include "tests/helpers/test_util.hpp"

namespace {

using namespace authrun;
using namespace authrun::test;
using protocol::json;

constexpr int k_small_limit = 4096;

// A worker command: the first worker it starts announces a limit of k_small_limit bytes and writes its pid to
// DIR/small_pid; every later one waits half a second, then announces the default (256 MiB + 64 KiB). The
// wait makes the small worker the first trusted, so that it is offered a large task and refuses it, and has
// the small tasks to itself meanwhile; without it, on a busy machine the large worker could run every task
// before the small one is through its handshake.
// The wrapper execs the worker, which keeps its pid.
std::string first_small_worker(const TempDir& dir) {
  const std::string script = dir.write(
      "worker.sh", "#!/bin/sh\nif mkdir '" + dir.path() + "/first' 2>/dev/null; then echo $$ > '" + dir.path() +
                       "/small_pid'; exec '" + worker_bin() + "' --max-payload " + std::to_string(k_small_limit) +
                       "; fi\nsleep 0.5\nexec '" + worker_bin() + "'\n");
  REQUIRE(::chmod(script.c_str(), 0755) == 0);
  return script;
}

// `n` echo tasks, ids 0..n-1; the even ones carry 8000 bytes (too large for the small worker).
std::string mixed_echoes(int n) {
  std::string input;
  for (int i = 0; i < n; ++i) {
    const json args = i % 2 == 0 ? json(std::string(8000, 'x')) : json(i);
    input += task_line(json{{"id", i}, {"fn", "echo"}, {"args", args}});
  }
  return input;
}

TEST_CASE("limits: a task too large for one worker runs on a worker whose limit fits") {
  TempDir dir;
  const int n = 40;
  auto run = run_batch({"-j", "2", "--worker", first_small_worker(dir)}, mixed_echoes(n));
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  const auto results = parse_results(run.out);
  CHECK(check_each_ok_once(results, n) == 0);
  std::ifstream pid_file(dir.path() + "/small_pid");
  int small_pid = 0;
  pid_file >> small_pid;
  REQUIRE(small_pid > 0);
  std::set<int> big_ran_on;
  int small_ran = 0;
  for (const json& r : results) {
    if (!r.value("ok", false)) continue;
    const int id = r["id"].get<int>();
    CHECK(r["value"] == (id % 2 == 0 ? json(std::string(8000, 'x')) : json(id)));
    if (id % 2 == 0) big_ran_on.insert(r["worker"].get<int>());
    if (r["worker"].get<int>() == small_pid) ++small_ran;
  }
  // Both workers took part; every large task ran on the one that takes it, none on the small one. The large
  // tasks waiting for it held nothing back: the small worker ran every small task meanwhile.
  CHECK(contains(summary_of(run.err), "2 workers trusted"));
  CHECK(small_ran == n / 2);
  CHECK(big_ran_on.size() == 1);
  CHECK(big_ran_on.count(small_pid) == 0);
  CHECK_FALSE(contains(run.err, "too_large"));
}

TEST_CASE("limits: a task larger than every worker's limit ends in one clear error") {
  TempDir dir;
  const int n = 10;
  const std::string worker = std::string(worker_bin()) + " --max-payload " + std::to_string(k_small_limit);
  auto run = run_batch({"-j", "2", "--worker", worker}, mixed_echoes(n));
  CAPTURE(run.err);
  CHECK(run.exit_code == 1);
  const auto results = parse_results(run.out);
  REQUIRE(results.size() == std::size_t(n));
  std::map<int, int> seen;
  for (const json& r : results) {
    CAPTURE(r.dump());
    const int id = r["id"].get<int>();
    ++seen[id];
    if (id % 2 == 1) {
      CHECK(r["ok"] == true);
      continue;
    }
    CHECK(r["ok"] == false);
    CHECK(r["error"]["type"] == "too_large");
    // The size of the task frame and the largest limit among the workers, both named.
    const std::string message = r["error"]["message"].get<std::string>();
    CHECK(std::regex_search(message, std::regex("task of 80[0-9][0-9] payload bytes exceeds every worker's limit "
                                                "\\(largest: 4096 bytes\\)")));
  }
  CHECK(seen.size() == std::size_t(n));
  for (const auto& [id, times] : seen) CHECK(times == 1);
  CHECK(contains(summary_of(run.err), "5 ok, 5 failed, 0 not started"));
}

TEST_CASE("limits: over the in-flight byte budget, tasks run one at a time") {
  TempDir dir;
  const std::string log = dir.path() + "/log";
  // Four exec tasks of ~100 KB each (padding in $0), each logging its start and end; four workers.
  std::string input;
  for (int i = 0; i < 4; ++i) {
    const std::string script = "echo start >> '" + log + "'; sleep 0.2; echo end >> '" + log + "'";
    input += task_line(
        json{{"id", i}, {"fn", "exec"}, {"args", {{"argv", {"sh", "-c", script, std::string(100000, 'p')}}}}});
  }
  auto run = run_batch({"-j", "4", "--max-in-flight-bytes", "50000"}, input);
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  CHECK(check_each_ok_once(parse_results(run.out), 4) == 0);
  // Each task is larger than the budget: it ran alone, so starts and ends alternate.
  CHECK(read_file(log) == "start\nend\nstart\nend\nstart\nend\nstart\nend\n");
}

TEST_CASE("limits: --keep-order holds a bounded number of bytes behind a slow task, and loses nothing") {
  TempDir dir;
  constexpr int k_tasks = 60;
  constexpr int k_release = 40;                // the slow task waits for this many fast ones to start, or
  constexpr int k_budget_results = 17;         // (the budget stops the runner near here) for this many and no
                                               // new one for 2 s; never longer than scaled(120 s)
  constexpr std::size_t k_result = 4'000'000;  // bytes of stdout per fast task
  const std::string started = dir.write("started", ""), released = dir.path() + "/released";
  const int polls = static_cast<int>(1200 * time_scale());
  const std::string slow = "i=0; last=-1; still=0; while :; do n=$(wc -l < '" + started + "'); [ $n -ge " +
                           std::to_string(k_release) + " ] && break; if [ $n -ge " + std::to_string(k_budget_results) +
                           " ]; then if [ $n = $last ]; then still=$((still+1)); else still=0; fi; [ $still -ge 20 ] && "
                           "break; fi; last=$n; i=$((i+1)); [ $i -ge " + std::to_string(polls) +
                           " ] && break; sleep 0.1; done; echo $n > '" + released + "'";
  std::string input = task_line(json{{"id", 0}, {"fn", "exec"}, {"args", {{"argv", {"sh", "-c", slow}}}}});
  for (int i = 1; i < k_tasks; ++i) {
    const std::string fast = "echo x >> '" + started + "'; head -c " + std::to_string(k_result) + " /dev/zero | tr '\\0' a";
    input += task_line(json{{"id", i}, {"fn", "exec"}, {"args", {{"argv", {"sh", "-c", fast}}}}});
  }
  const std::string in_path = dir.write("tasks.jsonl", input);
  const std::string out_path = dir.path() + "/out", err_path = dir.path() + "/err";
  // Without ASan's quarantine, freed result buffers are given back at once, as in a plain build.
  const std::string command = "ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0\" exec '" +
                              std::string(authrun_bin()) + "' run --no-progress -k -j 2 '" + in_path + "' >'" +
                              out_path + "' 2>'" + err_path + "'";
  Child c = spawn_child({"/bin/sh", "-c", command});
  c.in.close();
  int status = 0;
  rusage usage{};
  REQUIRE(::wait4(c.pid, &status, 0, &usage) == c.pid);
  c.pid = -1;
  const std::string err = read_file(err_path);
  CAPTURE(err);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);

  // While the slow task ran, the runner stopped taking tasks once the held lines passed 64 MiB (16 results
  // of 4 MB; +1 that crosses it, +1 still in flight on the other worker, +1 queued behind the slow one).
  const int ran_before_release = std::stoi(read_file(released));
  CHECK(ran_before_release >= k_budget_results);
  CHECK(ran_before_release <= 24);

  // Nothing lost, nothing reordered, every result whole.
  std::ifstream out(out_path);
  std::string line;
  int next = 0;
  while (std::getline(out, line)) {
    const json r = json::parse(line);
    REQUIRE(r["id"] == next);
    CHECK(r["ok"] == true);
    if (next > 0) CHECK(r["value"]["stdout"].get<std::string>().size() == k_result);
    ++next;
  }
  CHECK(next == k_tasks);

  // The runner's peak: at most 18 held lines (72 MB), the results in flight (2 workers x window 2, each
  // seen as bytes, JSON and a line: 3 copies of 4 MB), and the process itself. Holding every result
  // would take 236 MB and more.
  const long peak_kib = usage.ru_maxrss;
  long bound_kib = 18 * 4000 + 4 * 3 * 4000 + 48 * 1024;
#if defined(__SANITIZE_ADDRESS__)
  bound_kib += bound_kib / 8 + 64 * 1024;  // shadow memory and the allocator's own
#endif
  MESSAGE("runner peak RSS " << peak_kib / 1024 << " MiB, bound " << bound_kib / 1024 << " MiB; " << ran_before_release
                             << " fast tasks ran before the slow one ended");
  CHECK(peak_kib < bound_kib);
}

}  // namespace
