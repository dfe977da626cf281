// End-to-end fault tests of `authrun run`: workers that die, tasks that time out, worker recycling and
// SIGINT, with the real binaries over real pipes.
#include <doctest/doctest.h>

#include <cerrno>
#include <filesystem>
#include <chrono>
#include <csignal>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "protocol/json_codec.hpp"
#include "tests/helpers/test_util.hpp"

namespace {

using namespace authrun;
using namespace authrun::test;
using protocol::Fd;
using protocol::json;
using Clock = std::chrono::steady_clock;

// The number the summary puts before `what` ("not started", "worker deaths"), or -1.
int summary_count(const std::string& err, const std::string& what) {
  std::smatch m;
  const std::string summary = summary_of(err);
  if (!std::regex_search(summary, m, std::regex("([0-9]+) " + what))) return -1;
  return std::stoi(m[1].str());
}

std::string echo_tasks(int n) {
  std::string input;
  for (int i = 0; i < n; ++i) input += task_line(json{{"id", "echo-" + std::to_string(i)}, {"fn", "echo"}, {"args", i}});
  return input;
}

// Checks that every result but the one with id `odd_one` is a successful echo.
void check_echoes_ok(const std::vector<json>& results, const std::string& odd_one) {
  for (const json& res : results) {
    if (res["id"] == odd_one) continue;
    CAPTURE(res.dump());
    CHECK(res["ok"] == true);
    CHECK(res["value"] == std::stoi(res["id"].get<std::string>().substr(5)));
  }
}

const json* find_id(const std::vector<json>& results, const std::string& id) {
  const json* found = nullptr;
  for (const json& res : results) {
    if (res["id"] == id) {
      CHECK_MESSAGE(found == nullptr, "two results for " << id);
      found = &res;
    }
  }
  return found;
}

// Reads stdout and stderr of `c` to their ends (or the deadline) and reaps it.
int finish(Child& c, std::string& out, std::string& err, Clock::time_point deadline) {
  c.in.close();
  while (c.out.valid() || c.err.valid()) {
    pollfd fds[2];
    int n = 0;
    if (c.out.valid()) fds[n++] = {c.out.get(), POLLIN, 0};
    if (c.err.valid()) fds[n++] = {c.err.get(), POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    if (::poll(fds, n, static_cast<int>(left)) <= 0) continue;
    for (int i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      Fd& fd = fds[i].fd == c.out.get() ? c.out : c.err;
      std::string& sink = fds[i].fd == c.out.get() ? out : err;
      char tmp[65536];
      ssize_t r = ::read(fd.get(), tmp, sizeof tmp);
      if (r > 0) sink.append(tmp, static_cast<std::size_t>(r));
      else if (r == 0 || errno != EINTR) fd.close();
    }
  }
  return c.wait();
}

}  // namespace

TEST_CASE("faults: a task that kills its worker ends as one worker_died result after its retries") {
  for (int retries : {1, 0}) {
    CAPTURE(retries);
    std::string input = echo_tasks(10);
    input += task_line(json{{"id", "killer"}, {"fn", "exec"}, {"args", {{"argv", {"sh", "-c", "kill -9 $PPID"}}}}});
    for (int i = 10; i < 20; ++i) input += task_line(json{{"id", "echo-" + std::to_string(i)}, {"fn", "echo"}, {"args", i}});
    auto r = run_batch({"-j", "2", "--retries", std::to_string(retries), "-"}, input);
    CHECK(r.exit_code == 1);
    auto results = parse_results(r.out);
    CHECK(results.size() == 21);
    const json* killer = find_id(results, "killer");
    REQUIRE(killer != nullptr);
    CHECK((*killer)["ok"] == false);
    CHECK((*killer)["error"]["type"] == "worker_died");
    CHECK((*killer)["attempts"] == retries + 1);
    check_echoes_ok(results, "killer");
    for (int i = 0; i < 20; ++i) CHECK(find_id(results, "echo-" + std::to_string(i)) != nullptr);
    CHECK(contains(summary_of(r.err), "21 tasks: 20 ok, 1 failed"));
    CHECK(summary_count(r.err, "worker deaths?") == retries + 1);
  }
}

TEST_CASE("faults: a task over its time limit ends as a timeout error and the others succeed") {
  // Runs 6 echoes and a 30 s sleep with `args`; returns the sleep's result line after the common checks.
  auto run_with_slow_task = [](const std::vector<std::string>& args, const json& slow_task) {
    std::string input = echo_tasks(6) + task_line(slow_task);
    auto t0 = Clock::now();
    auto r = run_batch(args, input);
    CHECK(Clock::now() - t0 < authrun::test::scaled(std::chrono::seconds(20)));
    CHECK(r.exit_code == 1);
    auto results = parse_results(r.out);
    CHECK(results.size() == 7);
    const json* slow = find_id(results, "slow");
    REQUIRE(slow != nullptr);
    CHECK((*slow)["ok"] == false);
    CHECK((*slow)["error"]["type"] == "timeout");
    check_echoes_ok(results, "slow");
    return *slow;
  };
  // The slow task sleeps far longer than any limit here; --timeout applies to the echoes too, which take
  // milliseconds: its limit is two seconds (scaled under the sanitizers), a hundred times their work.
  const json sleep_long = {{"id", "slow"}, {"fn", "sleep"}, {"args", {{"seconds", 3600}}}};
  SUBCASE("--timeout") {
    run_with_slow_task({"-j", "2", "--timeout", std::to_string(2 * authrun::test::time_scale()), "-"}, sleep_long);
  }
  SUBCASE("a task's own timeout field") {
    json own = sleep_long;
    own["timeout"] = 0.5;
    json slow = run_with_slow_task({"-j", "2", "--retries", "0", "-"}, own);
    CHECK(slow["attempts"] == 1);
  }
}

TEST_CASE("faults: --max-tasks-per-worker replaces workers and loses no task") {
  auto r = run_batch({"-j", "2", "--max-tasks-per-worker", "3", "-"}, echo_tasks(20));
  CHECK(r.exit_code == 0);
  auto results = parse_results(r.out);
  REQUIRE(results.size() == 20);
  check_echoes_ok(results, "");
  std::map<int, int> per_worker;
  for (const json& res : results) ++per_worker[res["worker"].get<int>()];
  CHECK(per_worker.size() > 2);
  // A retiring worker still finishes what was already sent to it: at most window (2) - 1 more.
  for (const auto& [pid, n] : per_worker) CHECK(n <= 4);
}

// Starts `authrun run -` with two workers and sends two echo tasks, then two sleeps of `seconds` (exec tasks
// that first leave a file in `dir`); returns once both echoes are answered and at least one sleep has begun.
Child start_sleeping_batch(const TempDir& dir, int seconds, std::string& out, std::string& err) {
  Child c = spawn_child({test::authrun_bin(), "run", "--no-progress", "-v", "-j", "2", "-"});
  REQUIRE(read_until(c.err.get(), err, [&](const std::string& e) { return count(e, "handshake ok") >= 2; },
                     Clock::now() + authrun::test::scaled(std::chrono::seconds(20))));
  std::string input = echo_tasks(2);
  for (int i = 0; i < 2; ++i) {
    const std::string script = "touch '" + dir.path() + "/started'; exec sleep " + std::to_string(seconds) + ".0025";
    input += task_line(json{{"id", "sleep-" + std::to_string(i)}, {"fn", "exec"}, {"args", {{"argv", {"sh", "-c", script}}}}});
  }
  write_text(c.in.get(), input);
  REQUIRE(read_until(c.out.get(), out, [&](const std::string& o) { return count(o, "\n") >= 2; },
                     Clock::now() + authrun::test::scaled(std::chrono::seconds(20))));
  REQUIRE(eventually([&] { return ::access((dir.path() + "/started").c_str(), F_OK) == 0; }));
  return c;
}

TEST_CASE("faults: SIGINT lets running tasks finish and exits 130") {
  TempDir dir;
  std::string out, err;
  Child c = start_sleeping_batch(dir, 1, out, err);
  REQUIRE(::kill(c.pid, SIGINT) == 0);
  int status = finish(c, out, err, Clock::now() + authrun::test::scaled(std::chrono::seconds(30)));
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  CHECK(contains(err, "SIGINT"));
  auto results = parse_results(out);
  std::set<std::string> ids;
  int sleeps = 0;
  for (const json& res : results) {
    CAPTURE(res.dump());
    CHECK(res["ok"] == true);
    ids.insert(res["id"].get<std::string>());
    sleeps += res["id"].get<std::string>().rfind("sleep-", 0) == 0;
  }
  CHECK(ids.size() == results.size());
  CHECK(ids.count("echo-0") == 1);
  CHECK(ids.count("echo-1") == 1);
  CHECK(sleeps >= 1);  // started before the signal, finished in the grace period
  CHECK(static_cast<int>(results.size()) + summary_count(err, "not started") == 4);
}

TEST_CASE("faults: a second SIGINT stops at once with interrupted results") {
  // The sleeps take 600 s: a run that ends within a minute (scaled) was stopped, not waited for.
  TempDir dir;
  std::string out, err;
  Child c = start_sleeping_batch(dir, 600, out, err);
  auto t0 = Clock::now();
  REQUIRE(::kill(c.pid, SIGINT) == 0);
  REQUIRE(read_until(c.err.get(), err, [](const std::string& e) { return contains(e, "SIGINT"); },
                     Clock::now() + authrun::test::scaled(std::chrono::seconds(30))));
  REQUIRE(::kill(c.pid, SIGINT) == 0);
  int status = finish(c, out, err, Clock::now() + authrun::test::scaled(std::chrono::seconds(60)));
  CHECK(Clock::now() - t0 < authrun::test::scaled(std::chrono::seconds(60)));
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  auto results = parse_results(out);
  int interrupted = 0;
  for (const json& res : results) {
    CAPTURE(res.dump());
    const std::string id = res["id"].get<std::string>();
    if (id.rfind("echo-", 0) == 0) {
      CHECK(res["ok"] == true);
    } else {
      CHECK(res["ok"] == false);
      CHECK(res["error"]["type"] == "interrupted");
      ++interrupted;
    }
  }
  CHECK(interrupted >= 1);
  CHECK(static_cast<int>(results.size()) + summary_count(err, "not started") == 4);
  // No sleep outlives its worker, not even one whose spawn the stop interrupted.
  CHECK(eventually([] { return processes_running("sleep", "600.0025").empty(); }));
}

namespace {

// How many processes have exactly this command line (arguments joined by spaces).
int count_processes(const std::string& cmdline) {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string text = test::read_file(entry.path() / "cmdline");
    for (char& c : text) {
      if (c == '\0') c = ' ';
    }
    if (!text.empty() && text.back() == ' ') text.pop_back();
    if (text == cmdline) ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("faults: a timed-out exec task takes its child process along") {
  // The worker is stopped with SIGTERM, and kills its running child's process group before it goes.
  auto r = test::run_program({test::authrun_bin(), "run", "-j", "1", "--retries", "0", "--no-progress"},
                             "{\"fn\":\"exec\",\"args\":{\"argv\":[\"sleep\",\"77.25\"]},\"timeout\":0.5}\n");
  CHECK(r.exit_code == 1);
  CHECK(r.out.find("\"type\":\"timeout\"") != std::string::npos);
  CHECK(eventually([] { return count_processes("sleep 77.25") == 0; }));
}

TEST_CASE("faults: a worker holds only the fds handed to it on purpose") {
  // stdin /dev/null, stdout a copy of stderr, stderr, and the two protocol pipes moved above 10; the key
  // rendezvous (fd 3) and the fresh socket the key came in are closed once it has its key, and nothing else
  // of the runner's reaches it.
  Child runner = spawn_child({authrun_bin(), "run", "-j", "1", "--no-progress", "-"});
  write_text(runner.in.get(), "{\"fn\":\"sleep\",\"args\":1}\n");
  std::vector<int> workers;
  REQUIRE(eventually([&] { return !(workers = children_of(runner.pid)).empty(); }));
  REQUIRE(workers.size() == 1);
  std::set<std::string> fds;
  const std::set<std::string> expected{"0", "1", "2", "10", "11"};
  eventually([&] {  // until the worker has taken its key and moved its pipes
    fds.clear();
    for (const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(workers[0]) + "/fd")) {
      fds.insert(entry.path().filename().string());
    }
    return fds == expected;
  });
  CHECK(fds == expected);
  runner.in.close();
  CHECK(WEXITSTATUS(runner.wait()) == 0);
}
