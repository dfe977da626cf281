// What authrun tells its user and its scripts: --version, a closed output (EPIPE), plurals, counters, the
// progress line, --summary-json, exec's help and its word about stdin. Real binaries over real pipes.
#include <doctest/doctest.h>

#include <regex>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include "protocol/json_codec.hpp"
#include "tests/helpers/test_util.hpp"

using namespace authrun::test;
using authrun::protocol::json;

namespace {

std::string echo_tasks(int n) {
  std::string input;
  for (int i = 0; i < n; ++i) input += task_line(json{{"id", i}, {"fn", "echo"}, {"args", i}});
  return input;
}

json read_json_file(const std::string& path) {
  auto parsed = authrun::protocol::parse_json(read_file(path));
  REQUIRE(parsed.has_value());
  return *parsed;
}

}  // namespace

TEST_CASE("output: --version on authrun, every subcommand and authrun-worker names the version, protocol and commit") {
  std::vector<std::vector<std::string>> commands{{authrun_bin()}, {worker_bin()}};
  for (const char* sub : {"run", "exec", "bench", "keygen"}) commands.push_back({authrun_bin(), sub});
  for (auto argv : commands) {
    argv.push_back("--version");
    INFO(argv[0] << " " << argv[argv.size() - 2]);
    auto r = run_program(argv);
    CHECK(r.exit_code == 0);
    CHECK(r.err.empty());
    const auto lines = split_lines(r.out);
    // authrun adds its start-up window: the ptrace policy, then authrun, authrun-worker and authrun-python
    // (built beside them here) (SECURITY.md).
    const bool runner = argv[0] == authrun_bin();
    REQUIRE(lines.size() == (runner ? 7u : 3u));
    if (runner) {
      CHECK(lines[3].rfind("ptrace policy: ", 0) == 0);
      CHECK(lines[4].rfind("start-up window of authrun: ", 0) == 0);
      CHECK(lines[5].rfind("start-up window of authrun-worker: ", 0) == 0);
      CHECK(lines[6].rfind("start-up window of authrun-python: ", 0) == 0);
    }
    CHECK(std::regex_match(lines[0], std::regex("authrun(-worker)? [0-9]+\\.[0-9]+\\.[0-9]+")));
    CHECK(lines[1] == "protocol version 1");
    CHECK(std::regex_match(lines[2], std::regex("commit [0-9a-z][-0-9a-z.]*")));
  }
}

TEST_CASE("output: a reader that goes away ends the run quietly with 141, and only written results count") {
  TempDir dir;
  const std::string tasks = dir.write("many.jsonl", echo_tasks(3000));
  const std::string summary = dir.path() + "/summary.json";
  for (const bool keep_order : {false, true}) {
    INFO("keep_order " << keep_order);
    std::vector<std::string> argv{authrun_bin(), "run", tasks, "-j", "2", "--summary-json", summary};
    if (keep_order) argv.push_back("-k");
    Child c = spawn_child(argv);
    c.in.close();
    // Read the first result line, then go away as `head -1` does.
    std::string out;
    REQUIRE(read_until(c.out.get(), out, [](const std::string& b) { return b.find('\n') != std::string::npos; },
                       std::chrono::steady_clock::now() + std::chrono::seconds(120)));
    c.out.close();
    std::string err;
    read_until(c.err.get(), err, [](const std::string&) { return false; },
               std::chrono::steady_clock::now() + std::chrono::seconds(120));
    const int status = c.wait();
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 141);
    CHECK(err.empty());
    const json s = read_json_file(summary);
    CHECK(s["output_closed"] == true);
    CHECK(s["exit_status"] == 141);
    // Lines that reached the pipe: at least the one read; never more than were produced.
    CHECK(s["ok"].get<int>() >= 1);
    CHECK(s["ok"].get<int>() < 3000);
    CHECK(s["failed"] == 0);
  }
}

TEST_CASE("output: the summary is in English for one of each, and --summary-json holds the same figures") {
  TempDir dir;
  const std::string summary = dir.path() + "/summary.json";
  auto r = run_batch({"-j", "1", "--summary-json", summary}, echo_tasks(1));
  CHECK(r.exit_code == 0);
  CHECK(contains(summary_of(r.err), "authrun: 1 task: 1 ok, 0 failed, 0 not started; 1 worker trusted, "
                                    "0 handshake failures, 0 worker deaths; "));
  const json s = read_json_file(summary);
  CHECK(s["tasks"] == 1);
  CHECK(s["ok"] == 1);
  CHECK(s["failed"] == 0);
  CHECK(s["not_started"] == 0);
  CHECK(s["not_started_ids"] == json::array());
  CHECK(s["workers"]["slots"] == 1);
  CHECK(s["workers"]["trusted"] == 1);
  CHECK(s["workers"]["handshake_failures"] == 0);
  CHECK(s["input_complete"] == true);
  CHECK(s["exit_status"] == 0);
  CHECK(s["seconds"].get<double>() > 0);
  CHECK(s["tasks_per_second"].get<double>() > 0);
}

TEST_CASE("output: a worker that fails every handshake: the count matches the failures logged, and a read input "
          "is not said to be cut") {
  TempDir dir;
  const std::string summary = dir.path() + "/summary.json";
  auto r = run_batch({"-j", "2", "--worker", "/bin/cat", "--summary-json", summary}, echo_tasks(1));
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 2);
  const std::size_t logged = count(r.err, ": handshake failed, given no task: ");
  CHECK(logged >= 1);
  CHECK(contains(summary_of(r.err), "0 workers trusted, " + std::to_string(logged) + " handshake failure"));
  CHECK(!contains(r.err, "not read to its end"));
  CHECK(contains(r.err, "authrun: not started: 0\n"));
  const json s = read_json_file(summary);
  CHECK(s["workers"]["handshake_failures"] == logged);
  CHECK(s["not_started_ids"] == json::array({0}));
  CHECK(s["input_complete"] == true);
  CHECK(s["setup_failed"] == true);
}

TEST_CASE("output: --progress with a file input shows a bar to 100% and never more tasks running than workers") {
  TempDir dir;
  std::string input = "\n";  // blank lines are no tasks
  input += echo_tasks(200);
  input += "\n  \n";
  const std::string tasks = dir.write("tasks.jsonl", input);
  auto r = run_program({authrun_bin(), "run", tasks, "-j", "2", "--progress", "-o", "/dev/null"});
  CHECK(r.exit_code == 0);
  CHECK(contains(r.err, "100% 200/200"));
  const std::regex counters("([0-9]+) running on ([0-9]+) workers?");
  int lines = 0;
  for (const std::string& line : split_lines(r.err)) {
    std::smatch m;
    if (!std::regex_search(line, m, counters)) continue;
    ++lines;
    INFO(line);
    CHECK(std::stoi(m[1].str()) <= std::stoi(m[2].str()));
    CHECK(std::stoi(m[2].str()) <= 2);
  }
  CHECK(lines >= 2);  // the first and the final line at least
}

TEST_CASE("output: exec --bar on stdin shows a percentage of what was read") {
  auto r = run_program({authrun_bin(), "exec", "--bar", "-j", "2", "--", "true"}, "a\nb\nc\nd\n");
  CHECK(r.exit_code == 0);
  CHECK(contains(r.err, "100% 4/4"));
}

TEST_CASE("output: exec --help shows the sources and replacement strings") {
  auto r = run_program({authrun_bin(), "exec", "--help"});
  CHECK(r.exit_code == 0);
  for (const char* part : {":::", "::::", "{}", "{.}", "{/}", "{#}", "{%}", "{1}", "cross product"}) {
    INFO(part);
    CHECK(contains(r.out, part));
  }
}

TEST_CASE("output: exec whose reader goes away ends quietly with 141, as GNU parallel") {
  const std::string command = std::string("'") + authrun_bin() +
                              "' exec -k -j 2 -- echo ::: $(seq 1 20000) | head -1; echo \"status ${PIPESTATUS[0]}\"";
  auto r = run_program({"/bin/bash", "-c", command}, "", std::chrono::seconds(120));
  CHECK(r.exit_code == 0);
  CHECK(r.out == "1\nstatus 141\n");
  CHECK(r.err.empty());
}
