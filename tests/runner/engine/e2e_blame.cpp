// A worker's death is charged to the task that was running, and only to it: with task batches and held
// results, the tasks of its batch that had finished (their results died with the worker) and those not yet
// begun go back uncharged, and each echo ends ok exactly once. The killer here kills its worker at once (the
// SDK test worker's `die`, Python's os.kill), so that results held in the worker die with it every time:
// before the progress page, the runner charged the first of them (issue 25).
#include <doctest/doctest.h>

#include <map>
#include <regex>
#include <string>
#include <vector>

#include "protocol/json_codec.hpp"
#include "tests/helpers/test_util.hpp"

namespace {

using namespace authrun;
using namespace authrun::test;
using protocol::json;

std::string fault_worker_bin() {
  const std::string runner = authrun_bin();
  return runner.substr(0, runner.rfind('/') + 1) + "authrun-fault-worker";
}

// `before` echoes, the killer (`killer` as its fn and args), `after` echoes: ids "echo-N" and "killer".
std::string blame_input(int before, int after, const json& killer) {
  std::string input;
  for (int i = 0; i < before + after; ++i) {
    if (i == before) {
      json k = killer;
      k["id"] = "killer";
      input += task_line(k);
    }
    input += task_line(json{{"id", "echo-" + std::to_string(i)}, {"fn", "echo"}, {"args", i}});
  }
  return input;
}

// The number the summary puts before `what`, or -1.
int summary_count(const std::string& err, const std::string& what) {
  std::smatch m;
  const std::string summary = summary_of(err);
  if (!std::regex_search(summary, m, std::regex("([0-9]+) " + what))) return -1;
  return std::stoi(m[1].str());
}

// The killer is the only failure, charged retries + 1 attempts and as many worker deaths; each of the `echoes`
// echoes is ok exactly once with its own value.
void check_blame(const RunOutput& r, int echoes, int retries) {
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 1);
  auto results = parse_results(r.out);
  CHECK(results.size() == std::size_t(echoes + 1));
  std::map<std::string, int> seen;
  for (const json& res : results) {
    const std::string id = res["id"].get<std::string>();
    ++seen[id];
    CAPTURE(res.dump());
    if (id == "killer") {
      CHECK(res["ok"] == false);
      CHECK(res["error"]["type"] == "worker_died");
      CHECK(res["attempts"] == retries + 1);
    } else {
      CHECK(res["ok"] == true);
      CHECK(res["value"] == std::stoi(id.substr(5)));
      CHECK(res["attempts"] == 1);
    }
  }
  for (int i = 0; i < echoes; ++i) CHECK_MESSAGE(seen["echo-" + std::to_string(i)] == 1, "echo-" << i);
  CHECK(seen["killer"] == 1);
  CHECK(contains(summary_of(r.err), std::to_string(echoes) + " ok, 1 failed"));
  CHECK(summary_count(r.err, "worker deaths?") == retries + 1);
}

}  // namespace

TEST_CASE("blame: a task that kills its worker at once is charged alone, and the finished tasks of its batch are not") {
  const std::string input = blame_input(400, 400, json{{"fn", "die"}, {"args", nullptr}});
  for (const char* jobs : {"1", "2"}) {
    for (int retries : {0, 1, 2}) {
      CAPTURE(jobs);
      CAPTURE(retries);
      auto r = run_batch({"-j", jobs, "--retries", std::to_string(retries), "--worker", fault_worker_bin(), "-"}, input);
      check_blame(r, 800, retries);
    }
  }
}

TEST_CASE("blame: exec's kill -9 $PPID in a long batch is charged to the exec task alone") {
  const json killer{{"fn", "exec"}, {"args", {{"argv", {"sh", "-c", "kill -9 $PPID"}}}}};
  const std::string input = blame_input(300, 300, killer);
  for (const char* jobs : {"1", "2"}) {
    for (int retries : {0, 1}) {
      CAPTURE(jobs);
      CAPTURE(retries);
      check_blame(run_batch({"-j", jobs, "--retries", std::to_string(retries), "-"}, input), 600, retries);
    }
  }
}

TEST_CASE("blame: a worker without a progress page (through a launcher) holds no result past its next task's start") {
  // /usr/bin/env stands in for ssh: the worker gets its key on stdin and no page.
  const std::string input = blame_input(400, 400, json{{"fn", "die"}, {"args", nullptr}});
  for (int retries : {0, 1}) {
    CAPTURE(retries);
    auto r = run_batch({"-j", "2", "--retries", std::to_string(retries), "--launcher", "/usr/bin/env", "--launcher-encrypted",
                        "--worker", fault_worker_bin(), "-"},
                       input);
    check_blame(r, 800, retries);
  }
}

TEST_CASE("blame: a Python task that kills its interpreter is charged alone") {
  TempDir dir;
  const std::string module = dir.write("blame_tasks.py",
                                       "import os, signal\n"
                                       "def echo(x):\n    return x\n"
                                       "def die(x):\n    os.kill(os.getpid(), signal.SIGKILL)\n");
  const std::string input = blame_input(300, 300, json{{"fn", "die"}, {"args", {nullptr}}});
  for (const char* jobs : {"1", "2"}) {
    for (int retries : {0, 1}) {
      CAPTURE(jobs);
      CAPTURE(retries);
      auto r = run_batch({"-j", jobs, "--retries", std::to_string(retries), "--python", module, "--python-exe",
                          "/usr/bin/python3", "-"},
                         input);
      check_blame(r, 600, retries);
    }
  }
}
