// `authrun exec` and Ctrl-C, as GNU parallel behaves: running jobs get TERM (then KILL) to their process
// groups, jobs only queued never start, and authrun returns at once.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include "tests/helpers/test_util.hpp"

using namespace authrun::test;
using Clock = std::chrono::steady_clock;

TEST_CASE("exec signals: SIGINT stops running jobs with TERM, then KILL, and queued jobs never start") {
  TempDir dir;
  const std::string d = dir.path();
  // Job 1 handles TERM (records it, exits); job 2 ignores TERM (needs the KILL); jobs 3 and 4 are queued
  // behind them (window 2) and must never start. "617" marks the sleeps to find stragglers.
  // A job says it started once its trap is set.
  const std::string script =
      "if [ $0 = 1 ]; then trap 'touch " + d + "/term.$0; exit 1' TERM; fi; "
      "if [ $0 = 2 ]; then trap '' TERM; fi; "
      "touch " + d + "/started.$0; "
      "sleep 617 & wait; sleep 617 & wait";
  Child c = spawn_child({authrun_bin(), "exec", "--no-progress", "-j", "2", "--", "sh", "-c", script, ":::", "1", "2", "3", "4"});
  REQUIRE(eventually([&] { return ::access((d + "/started.1").c_str(), F_OK) == 0 && ::access((d + "/started.2").c_str(), F_OK) == 0; }));
  const auto t0 = Clock::now();
  REQUIRE(::kill(c.pid, SIGINT) == 0);
  const int status = c.wait();
  const auto took = Clock::now() - t0;
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  // The jobs sleep for 617 s: returning within a minute (scaled) means they were stopped, not waited for.
  CHECK(took < scaled(std::chrono::seconds(60)));
  CHECK(::access((d + "/term.1").c_str(), F_OK) == 0);      // job 1 got TERM
  CHECK(::access((d + "/started.3").c_str(), F_OK) != 0);   // queued: never started
  CHECK(::access((d + "/started.4").c_str(), F_OK) != 0);
  CHECK(eventually([&] { return processes_running("sleep", "617").empty(); }));  // job 2's group got KILL
}
