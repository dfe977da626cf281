// A worker with the key that breaks the data phase's order (PROTOCOL.md sections 6 and 7): output for a task
// that did not ask to stream, a result or a result_batch out of turn. The runner stops that worker, tells it
// why in an error message (code unexpected), and runs the task elsewhere.
#include <doctest/doctest.h>

#include <string>

#include <sys/stat.h>

#include "tests/helpers/test_util.hpp"

using namespace authrun::test;

namespace {

std::string impostor_bin() {
  const std::string runner = authrun_bin();
  return runner.substr(0, runner.rfind('/') + 1) + "authrun-impostor";
}

// A --worker script in `dir`: the first worker spawned runs `first`, every later one the real worker.
std::string first_only(const TempDir& dir, const std::string& first) {
  std::string path = dir.write("worker.sh", "#!/bin/sh\nif mkdir '" + dir.path() + "/first' 2>/dev/null; then exec " +
                                                first + "; fi\nexec '" + worker_bin() + "'\n");
  ::chmod(path.c_str(), 0755);
  return path;
}

std::string echo_tasks(int n) {
  std::string lines;
  for (int i = 1; i <= n; ++i) lines += R"({"id":)" + std::to_string(i) + R"(,"fn":"echo","args":)" + std::to_string(i) + "}\n";
  return lines;
}

}  // namespace

TEST_CASE("stray frames: output or a result out of turn gets an error message (unexpected), and the task runs elsewhere") {
  // (The runner numbers tasks from 0 on the wire: input id 1 is task 0 there.)
  const std::pair<const char*, const char*> cases[] = {
      {"output", "worker sent output for task 0, which did not ask to stream"},
      {"result", "worker answered task 1 out of turn"},
      {"result-batch", "worker answered task 1 out of turn"},
  };
  for (const auto& [kind, why] : cases) {
    CAPTURE(kind);
    TempDir dir;
    RunOutput r = run_program({authrun_bin(), "run", "--no-progress", "-j", "1", "--worker",
                               first_only(dir, impostor_bin() + " stray " + kind)},
                              echo_tasks(3), std::chrono::seconds(60));
    INFO("stderr:\n" << r.err);
    CHECK(r.exit_code == 0);
    CHECK(count(r.out, "\"ok\":true") == 3);
    CHECK(contains(r.err, why));
    // What the impostor read after its stray frame: the runner's error message, not just the end.
    CHECK(contains(r.err, "RESULT mode=stray stray_sent=1 answer=unexpected"));
    CHECK(contains(r.err, "peer closed the channel: unexpected: " + std::string(why)));
  }
}
