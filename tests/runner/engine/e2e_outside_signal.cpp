// End-to-end tests of a task whose exec child is ended by a signal from outside the worker (PROTOCOL.md
// section 6, "outside_signal"): Slurm's scancel, a service stop or `pkill` signal every process of a set one by
// one, the task's child before its worker, so the worker may see its child die and report it before its own
// signal comes. Its failure then waits for the worker to be heard from again: a worker stopped too makes it a
// worker death (retried); a worker that lives on makes it the task's one failed result.
#include <doctest/doctest.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <functional>
#include <string>
#include <vector>

#include <poll.h>
#include <unistd.h>

#include "protocol/json_codec.hpp"
#include "tests/helpers/test_util.hpp"

namespace {

using namespace authrun;
using namespace authrun::test;
using protocol::json;
using Clock = std::chrono::steady_clock;

// Reads the child's stdout into `out` and stderr into `err` until `done(out, err)`, both reach EOF, or the
// deadline; returns done(out, err).
bool read_both_until(Child& c, std::string& out, std::string& err,
                     const std::function<bool(const std::string&, const std::string&)>& done, Clock::time_point deadline) {
  while (!done(out, err) && (c.out.valid() || c.err.valid())) {
    pollfd fds[2];
    int n = 0;
    if (c.out.valid()) fds[n++] = {c.out.get(), POLLIN, 0};
    if (c.err.valid()) fds[n++] = {c.err.get(), POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    if (::poll(fds, nfds_t(n), static_cast<int>(left)) <= 0) continue;
    for (int i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      protocol::Fd& fd = fds[i].fd == c.out.get() ? c.out : c.err;
      std::string& sink = fds[i].fd == c.out.get() ? out : err;
      char buf[65536];
      const ssize_t r = ::read(fd.get(), buf, sizeof buf);
      if (r > 0) sink.append(buf, std::size_t(r));
      else if (r == 0 || errno != EINTR) fd.close();
    }
  }
  return done(out, err);
}

// What a run left: its stdout, its stderr, its result lines, and its exit code (-1 if it did not exit).
struct Ended {
  std::string out, err;
  std::vector<json> results;
  int exit_code = -1;
};

// Reads the run to its end (after what `out` and `err` hold already).
Ended finish(Child& c, std::string out = {}, std::string err = {}) {
  read_both_until(c, out, err, [](const std::string&, const std::string&) { return false; },
                  Clock::now() + scaled(std::chrono::seconds(60)));
  const int status = c.wait();
  Ended e{std::move(out), std::move(err), {}, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
  e.results = parse_results(e.out);
  return e;
}

// The task that a signal from outside hits: its first attempt leaves a file in `dir` and becomes a `sleep`
// (found by `marker`); a second attempt prints "again" and succeeds.
std::string victim_task(const TempDir& dir, const std::string& marker) {
  const std::string ran = dir.path() + "/ran";
  const std::string script = "if [ -e '" + ran + "' ]; then echo again; else touch '" + ran + "'; exec sleep " + marker + "; fi";
  return task_line(json{{"id", "victim"}, {"fn", "exec"}, {"args", {{"argv", {"sh", "-c", script}}}}});
}

// The victim's sleep once it runs (REQUIREd), and its worker (the sleep's parent: sh exec'd it).
std::pair<int, int> running_victim(const std::string& marker) {
  std::vector<int> sleeps;
  REQUIRE(eventually([&] { return (sleeps = processes_running("sleep", marker)).size() == 1; }));
  const int worker = parent_of(sleeps[0]);
  REQUIRE(worker > 0);
  return {sleeps[0], worker};
}

const json* result_of(const std::vector<json>& results, const std::string& id) {
  const json* found = nullptr;
  for (const json& r : results) {
    if (r["id"] != id) continue;
    CHECK_MESSAGE(found == nullptr, "two results for " << id);
    found = &r;
  }
  return found;
}

}  // namespace

TEST_CASE("outside signal: the child killed first, its worker a moment later: the task is retried as a worker death") {
  // The worker answers for its child at once and is stopped only then: the order no test of the real
  // thing (scancel) can force. The worker waits far longer than this test needs before it says it outlived
  // the signal, so the worker's own signal always comes inside that wait.
  TempDir dir;
  const std::string marker = "1000.7731";
  Child c = spawn_child({authrun_bin(), "run", "--no-progress", "-v", "-j", "1", "--retries", "1", "--worker",
                         std::string(worker_bin()) + " --outside-signal-wait 3600", "-"});
  write_text(c.in.get(), victim_task(dir, marker) + task_line(json{{"id", "after"}, {"fn", "echo"}, {"args", 1}}));
  c.in.close();
  const auto [sleep_pid, worker_pid] = running_victim(marker);
  REQUIRE(::kill(sleep_pid, SIGTERM) == 0);
  // The worker has sent the failure (the runner says it holds it; a runner that does not hold it writes it).
  std::string out, err;
  REQUIRE(read_both_until(c, out, err,
                          [](const std::string& o, const std::string& e) {
                            return contains(e, "waits until the worker is heard from") || contains(o, "\"victim\"");
                          },
                          Clock::now() + scaled(std::chrono::seconds(30))));
  REQUIRE(::kill(worker_pid, SIGTERM) == 0);
  const Ended r = finish(c, std::move(out), std::move(err));
  INFO(r.err);
  INFO(r.out);
  CHECK(r.exit_code == 0);
  CHECK(r.results.size() == 2);
  const json* victim = result_of(r.results, "victim");
  REQUIRE(victim != nullptr);
  CHECK((*victim)["ok"] == true);
  CHECK((*victim)["attempts"] == 2);
  CHECK((*victim)["value"]["stdout"] == "again\n");
  CHECK(contains(r.err, "worker " + std::to_string(worker_pid) + " lost: "));
  CHECK(contains(summary_of(r.err), "1 worker death"));
}

TEST_CASE("outside signal: only the child killed: one failed result, and its worker goes on") {
  TempDir dir;
  const std::string marker = "1000.7732";
  Child c = spawn_child({authrun_bin(), "run", "--no-progress", "-j", "1", "--retries", "1", "-"});
  write_text(c.in.get(), victim_task(dir, marker) + task_line(json{{"id", "after"}, {"fn", "echo"}, {"args", 1}}));
  c.in.close();
  const auto [sleep_pid, worker_pid] = running_victim(marker);
  REQUIRE(::kill(sleep_pid, SIGTERM) == 0);
  const Ended r = finish(c);
  INFO(r.err);
  INFO(r.out);
  CHECK(r.exit_code == 1);
  CHECK(r.results.size() == 2);
  const json* victim = result_of(r.results, "victim");
  REQUIRE(victim != nullptr);
  CHECK((*victim)["ok"] == false);
  CHECK((*victim)["attempts"] == 1);
  CHECK((*victim)["error"]["type"] == "signal");
  CHECK(contains((*victim)["error"]["message"].get<std::string>(), "SIGTERM"));
  const json* after = result_of(r.results, "after");
  REQUIRE(after != nullptr);
  CHECK((*after)["ok"] == true);
  CHECK((*after)["worker"] == worker_pid);  // the same worker ran it: it was not lost
  CHECK(contains(summary_of(r.err), " 0 worker deaths"));
}

TEST_CASE("outside signal: the child then its worker, back to back as scancel sends them: always a retry") {
  // Either order of arrival ends the same: the worker's own signal first (its handler stops the child and
  // exits, answering nothing), or the child's death first (its failure is held, and dropped when the worker dies).
  // The worker's wait is long here so that a test held up between its two kills still lands inside it (by
  // default, 0.25 s: see PROTOCOL.md section 6); the old code failed this about once in three runs of five
  // rounds with two busy loops beside it.
  for (int round = 0; round < 5; ++round) {
    CAPTURE(round);
    TempDir dir;
    const std::string marker = "1000.773" + std::to_string(3 + round);
    Child c = spawn_child({authrun_bin(), "run", "--no-progress", "-j", "1", "--retries", "1", "--worker",
                           std::string(worker_bin()) + " --outside-signal-wait 60", "-"});
    write_text(c.in.get(), victim_task(dir, marker));
    c.in.close();
    const auto [sleep_pid, worker_pid] = running_victim(marker);
    REQUIRE(::kill(sleep_pid, SIGTERM) == 0);
    REQUIRE(::kill(worker_pid, SIGTERM) == 0);
    const Ended r = finish(c);
    INFO(r.err);
    INFO(r.out);
    CHECK(r.exit_code == 0);
    REQUIRE(r.results.size() == 1);
    CHECK(r.results[0]["ok"] == true);
    CHECK(r.results[0]["attempts"] == 2);
    CHECK(contains(summary_of(r.err), "1 worker death"));
  }
}

TEST_CASE("outside signal: a process-group SIGTERM never reaches a local worker's exec child") {
  // Local workers share the runner's process group; exec runs its child in a group of its own. The kernel
  // signals a whole group at once, so the group's signal stops the runner and the worker, whose handler then
  // stops the child: nothing reports the child as killed from outside, and the run ends interrupted.
  TempDir dir;
  const std::string marker = "1000.7741";
  Child c = spawn_child({"/usr/bin/setsid", authrun_bin(), "run", "--no-progress", "-j", "1", "--retries", "1", "-"});
  write_text(c.in.get(), victim_task(dir, marker));
  c.in.close();
  const auto [sleep_pid, worker_pid] = running_victim(marker);
  CHECK(::getpgid(worker_pid) == c.pid);  // setsid made the runner a group leader, its worker in its group
  CHECK(::getpgid(sleep_pid) == sleep_pid);
  REQUIRE(::kill(-c.pid, SIGTERM) == 0);
  const Ended r = finish(c);
  INFO(r.err);
  INFO(r.out);
  REQUIRE(r.results.size() == 1);
  CHECK(r.results[0]["ok"] == false);
  CHECK(r.results[0]["error"]["type"] == "interrupted");
  CHECK(eventually([&] { return processes_running("sleep", marker).empty(); }));
}
