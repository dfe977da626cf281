// End-to-end tests of `authrun run` and `authrun keygen`: the real binaries over real pipes, no mocks.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "protocol/json_codec.hpp"
#include "tests/helpers/test_util.hpp"

namespace {

using namespace authrun;
using namespace authrun::test;
using protocol::json;
using Clock = std::chrono::steady_clock;

std::string exec_line(const std::string& id, json args) {
  return task_line(json{{"id", id}, {"fn", "exec"}, {"args", std::move(args)}});
}

std::string write_script(const test::TempDir& dir, const std::string& name, const std::string& body) {
  std::string path = dir.write(name, body);
  REQUIRE(::chmod(path.c_str(), 0755) == 0);
  return path;
}

}  // namespace

TEST_CASE("run: 10000 echo tasks come back exactly once each with their value") {
  std::string input;
  std::vector<std::string> ids;
  for (int i = 0; i < 10000; ++i) {
    ids.push_back("task-" + std::to_string(i));
    input += task_line(json{{"id", ids.back()}, {"fn", "echo"}, {"args", {{"n", i}, {"s", "value " + std::to_string(i)}}}});
  }
  for (bool keep_order : {false, true}) {
    CAPTURE(keep_order);
    std::vector<std::string> options{"-j", "2"};
    if (keep_order) options.push_back("--keep-order");
    options.push_back("-");
    auto r = run_batch(options, input);
    CHECK(r.exit_code == 0);
    CHECK(contains(summary_of(r.err), "10000 tasks: 10000 ok, 0 failed"));
    auto results = parse_results(r.out);
    REQUIRE(results.size() == 10000);
    std::map<std::string, int> seen;
    for (std::size_t k = 0; k < results.size(); ++k) {
      const json& res = results[k];
      REQUIRE(res.at("id").is_string());
      const std::string id = res.at("id").get<std::string>();
      REQUIRE(id.rfind("task-", 0) == 0);
      const int n = std::stoi(id.substr(5));
      ++seen[id];
      CHECK(res.at("ok") == true);
      CHECK(res.at("value") == json{{"n", n}, {"s", "value " + std::to_string(n)}});
      CHECK(res.at("attempts") == 1);
      CHECK(res.at("worker").is_number_integer());
      if (keep_order) CHECK(id == ids[k]);
    }
    CHECK(seen.size() == 10000);
    CHECK(std::all_of(seen.begin(), seen.end(), [](const auto& kv) { return kv.second == 1; }));
  }
}

TEST_CASE("run: exec tasks that exit non-zero, are killed, time out or overflow fail with their own type") {
  test::TempDir dir;
  const std::string cwd = std::filesystem::canonical(dir.path()).string();
  std::string input;
  input += exec_line("exit3", {{"argv", {"sh", "-c", "echo partial; exit 3"}}});
  input += exec_line("signal", {{"argv", {"sh", "-c", "kill -9 $$"}}});
  input += exec_line("output", {{"argv", {"sh", "-c", "echo to-out; echo to-err >&2"}}});
  input += exec_line("truncated", {{"argv", {"sh", "-c", "printf 0123456789abcdef"}}, {"max_output", 4}});
  input += exec_line("cwd", {{"argv", {"pwd"}}, {"cwd", cwd}});
  input += exec_line("env", {{"argv", {"sh", "-c", "printf %s \"$AUTHRUN_E2E_VAR\""}}, {"env", {{"AUTHRUN_E2E_VAR", "hello env"}}}});
  input += exec_line("stdin", {{"argv", {"cat"}}, {"stdin", "line 1\nline 2\n"}});
  input += exec_line("timeout", {{"argv", {"sleep", "30"}}, {"timeout", 0.3}});
  auto t0 = Clock::now();
  auto r = run_batch({"-j", "2", "-"}, input);
  CHECK(Clock::now() - t0 < authrun::test::scaled(std::chrono::seconds(20)));
  CHECK(r.exit_code == 1);
  CHECK(contains(summary_of(r.err), "8 tasks: 4 ok, 4 failed"));
  std::map<std::string, json> by_id;
  for (auto& res : parse_results(r.out)) by_id[res.at("id").get<std::string>()] = res;
  REQUIRE(by_id.size() == 8);
  const std::map<std::string, std::string> failing{
      {"exit3", "exit_status"}, {"signal", "signal"}, {"truncated", "output_too_large"}, {"timeout", "timeout"}};
  for (auto& [id, res] : by_id) {
    CAPTURE(id);
    if (failing.count(id)) {
      REQUIRE(res.at("ok") == false);
      CHECK(res["error"]["type"] == failing.at(id));
    } else {
      REQUIRE(res.at("ok") == true);
    }
  }
  const json& exit3 = by_id["exit3"]["error"]["details"];
  CHECK(exit3["exit_code"] == 3);
  CHECK(exit3["signal"].is_null());
  CHECK(exit3["stdout"] == "partial\n");
  CHECK(by_id["exit3"]["error"]["message"] == "exec: 'sh' exited with status 3");
  CHECK(by_id["signal"]["error"]["details"]["signal"] == 9);
  CHECK(by_id["signal"]["error"]["details"]["exit_code"].is_null());
  CHECK(by_id["output"]["value"]["stdout"] == "to-out\n");
  CHECK(by_id["output"]["value"]["stderr"] == "to-err\n");
  CHECK(by_id["output"]["value"]["exit_code"] == 0);
  CHECK(by_id["truncated"]["error"]["details"]["stdout"] == "0123");
  CHECK(by_id["truncated"]["error"]["details"]["stdout_truncated"] == true);
  CHECK(by_id["truncated"]["error"]["details"]["stdout_bytes"] == 16);
  CHECK(by_id["output"]["value"]["stdout_truncated"] == false);
  CHECK(by_id["cwd"]["value"]["stdout"] == cwd + "\n");
  CHECK(by_id["env"]["value"]["stdout"] == "hello env");
  CHECK(by_id["stdin"]["value"]["stdout"] == "line 1\nline 2\n");
  CHECK(by_id["timeout"]["error"]["details"]["timed_out"] == true);
  CHECK(by_id["output"]["value"]["timed_out"] == false);
}

TEST_CASE("run: exec output that is not UTF-8 round-trips through stdout_base64, argv_base64 and stdin_base64 go in") {
  test::TempDir dir;
  std::string data(4096, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 7919 + 13) % 256);
  const std::string file = dir.write("data.bin", data);
  std::string input;
  input += exec_line("cat", {{"argv", {"cat", file}}});
  // "caf\xe9" as an argument, given in base64: printf %s prints it back.
  input += exec_line("arg", {{"argv_base64", {"cHJpbnRm", "JXM=", "Y2Fm6Q=="}}});
  input += exec_line("stdin", {{"argv", {"cat"}}, {"stdin_base64", "AP8BCg=="}});
  auto r = run_batch({"-j", "2", "-"}, input);
  CHECK(r.exit_code == 0);
  std::map<std::string, json> by_id;
  for (auto& res : parse_results(r.out)) by_id[res.at("id").get<std::string>()] = res;
  REQUIRE(by_id.size() == 3);
  CHECK_FALSE(by_id["cat"]["value"].contains("stdout"));
  const std::string b64 = by_id["cat"]["value"]["stdout_base64"].get<std::string>();
  // Decode with the system's base64 to compare byte for byte with the file.
  const std::string decoded_path = dir.path() + "/decoded.bin";
  auto dec = run_program({"/bin/sh", "-c", "base64 -d > " + decoded_path}, b64);
  CHECK(dec.exit_code == 0);
  std::ifstream in(decoded_path, std::ios::binary);
  const std::string decoded((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(decoded == data);
  CHECK(by_id["arg"]["value"]["stdout_base64"] == "Y2Fm6Q==");
  CHECK(by_id["stdin"]["value"]["stdout_base64"] == "AP8BCg==");
}

TEST_CASE("run: bad task lines, unknown functions and bad args fail alone, the batch completes with exit 1") {
  std::string input;
  input += task_line(json{{"id", "good-1"}, {"fn", "echo"}, {"args", 1}});  // line 1
  input += "this is not json\n";                                             // line 2
  input += "[1, 2, 3]\n";                                                    // line 3
  input += task_line(json{{"id", "no-fn"}, {"args", 1}});                    // line 4
  input += task_line(json{{"id", json::array({1})}, {"fn", "echo"}});        // line 5
  input += task_line(json{{"id", "extra"}, {"fn", "echo"}, {"colour", "red"}});  // line 6
  input += task_line(json{{"id", "unknown-fn"}, {"fn", "no_such_function"}});    // line 7
  input += task_line(json{{"id", "bad-args"}, {"fn", "sleep"}, {"args", "soon"}});  // line 8
  input += task_line(json{{"id", "good-2"}, {"fn", "hash"}, {"args", {{"data", "abc"}}}});  // line 9
  auto r = run_batch({"-j", "2", "-"}, input);
  CHECK(r.exit_code == 1);
  CHECK(contains(summary_of(r.err), "9 tasks: 2 ok, 7 failed"));
  auto results = parse_results(r.out);
  REQUIRE(results.size() == 9);
  std::map<int, json> bad_by_line;
  std::map<std::string, json> by_id;
  for (auto& res : results) {
    if (res["ok"] == false && res["error"]["type"] == "bad_task") {
      bad_by_line[res["error"]["details"]["line"].get<int>()] = res;
    } else {
      by_id[res["id"].get<std::string>()] = res;
    }
  }
  REQUIRE(bad_by_line.size() == 5);
  for (int line : {2, 3, 4, 5, 6}) {
    CAPTURE(line);
    REQUIRE(bad_by_line.count(line) == 1);
    CHECK(contains(bad_by_line[line]["error"]["message"].get<std::string>(), "stdin:" + std::to_string(line) + ":"));
    CHECK(bad_by_line[line]["worker"].is_null());
  }
  CHECK(contains(bad_by_line[4]["error"]["message"].get<std::string>(), "'fn'"));
  CHECK(contains(bad_by_line[5]["error"]["message"].get<std::string>(), "'id'"));
  CHECK(contains(bad_by_line[6]["error"]["message"].get<std::string>(), "colour"));
  CHECK(bad_by_line[2]["id"] == 2);  // a line without a usable id is named by its line number
  CHECK(bad_by_line[4]["id"] == "no-fn");
  CHECK(by_id["unknown-fn"]["ok"] == false);
  CHECK(by_id["unknown-fn"]["error"]["type"] == "unknown_function");
  CHECK(by_id["bad-args"]["ok"] == false);
  CHECK(by_id["bad-args"]["error"]["type"] == "bad_args");
  CHECK(by_id["good-1"]["ok"] == true);
  CHECK(by_id["good-1"]["value"] == 1);
  CHECK(by_id["good-2"]["ok"] == true);
  CHECK(by_id["good-2"]["value"]["size"] == 3);
}

TEST_CASE("run: tasks start before the input ends (a slow producer gets each result before sending more)") {
  Child c = spawn_child({test::authrun_bin(), "run", "--no-progress", "-j", "2", "-"});
  std::string out;
  for (int i = 0; i < 5; ++i) {
    const std::string id = "slow-" + std::to_string(i);
    write_text(c.in.get(), task_line(json{{"id", id}, {"fn", "echo"}, {"args", i}}));
    const bool got = read_until(c.out.get(), out, [&](const std::string& b) { return contains(b, "\"" + id + "\""); },
                                Clock::now() + std::chrono::seconds(20));
    REQUIRE_MESSAGE(got, "no result for " << id << " while the input is still open");
  }
  c.in.close();
  read_until(c.out.get(), out, [](const std::string&) { return false; }, Clock::now() + std::chrono::seconds(20));
  std::string err;
  read_until(c.err.get(), err, [](const std::string&) { return false; }, Clock::now() + std::chrono::seconds(20));
  int status = c.wait();
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  auto results = parse_results(out);
  REQUIRE(results.size() == 5);
  for (int i = 0; i < 5; ++i) {
    CHECK(results[i]["id"] == "slow-" + std::to_string(i));
    CHECK(results[i]["value"] == i);
  }
  CHECK(contains(summary_of(err), "5 tasks: 5 ok"));
}

TEST_CASE("run: tasks from a file, results to a file with -o, blank lines ignored") {
  test::TempDir dir;
  std::string input = "\n";
  input += task_line(json{{"id", "a"}, {"fn", "echo"}, {"args", "A"}});
  input += "   \n\n";
  input += task_line(json{{"id", "b"}, {"fn", "echo"}, {"args", "B"}});
  input += "\n";
  const std::string tasks = dir.write("tasks.jsonl", input);
  const std::string results_path = dir.path() + "/results.jsonl";
  auto r = run_batch({"-j", "2", "-o", results_path, tasks}, "");
  CHECK(r.exit_code == 0);
  CHECK(r.out.empty());
  CHECK(contains(summary_of(r.err), "2 tasks: 2 ok, 0 failed"));
  auto results = parse_results(test::read_file(results_path));
  REQUIRE(results.size() == 2);
  std::map<std::string, json> by_id;
  for (auto& res : results) by_id[res["id"].get<std::string>()] = res;
  CHECK(by_id["a"]["value"] == "A");
  CHECK(by_id["b"]["value"] == "B");

  auto missing = run_batch({"-j", "2", dir.path() + "/no-such-tasks.jsonl"}, "");
  CHECK(missing.exit_code == 2);
  CHECK(contains(missing.err, "no-such-tasks.jsonl"));
}

TEST_CASE("run: a worker that does not speak the protocol is refused at the handshake and given no task") {
  test::TempDir dir;
  const std::string junk = write_script(dir, "junk.sh", "#!/bin/sh\necho 'junk junk junk'\nexec sleep 30\n");
  const std::string silent = write_script(dir, "silent.sh", "#!/bin/sh\nexec sleep 30\n");
  std::string input;
  for (int i = 0; i < 4; ++i) input += task_line(json{{"id", i}, {"fn", "echo"}, {"args", i}});
  // Not yet here: a worker that exits at once (WorkerLink::shutdown re-enters Engine::on_gone while
  // Engine::maybe_finish iterates m_workers, and the runner crashes now and then).
  for (const std::string& worker : {std::string("/bin/cat"), junk, silent}) {
    CAPTURE(worker);
    auto t0 = Clock::now();
    auto r = run_batch({"-j", "2", "--handshake-timeout", "1", "--worker", worker, "-"}, input);
    CHECK(Clock::now() - t0 < authrun::test::scaled(std::chrono::seconds(20)));
    CHECK(r.exit_code == 2);
    CHECK(contains(r.err, "handshake"));
    CHECK(!contains(r.out, "\"ok\":true"));
    CHECK(contains(summary_of(r.err), "0 workers trusted"));
  }
}

TEST_CASE("run: a worker path that does not exist or is not executable is a set-up error") {
  test::TempDir dir;
  const std::string not_exec = dir.write("not-exec.sh", "#!/bin/sh\nexit 0\n");
  const std::string input = task_line(json{{"fn", "echo"}});
  auto missing = run_batch({"--worker", dir.path() + "/no-such-worker", "-"}, input);
  CHECK(missing.exit_code == 2);
  CHECK(contains(missing.err, "no-such-worker"));
  CHECK(contains(missing.err, "does not exist"));
  CHECK(missing.out.empty());
  auto plain = run_batch({"--worker", not_exec, "-"}, input);
  CHECK(plain.exit_code == 2);
  CHECK(contains(plain.err, "not an executable"));
  CHECK(plain.out.empty());
}

TEST_CASE("run: keygen writes a 0600 key file once and never overwrites it") {
  test::TempDir dir;
  const std::string key = dir.path() + "/run.key";
  auto r = test::run_program({test::authrun_bin(), "keygen", key});
  CHECK(r.exit_code == 0);
  struct stat st {};
  REQUIRE(::stat(key.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(st.st_size == 65);
  const std::string first = test::read_file(key);
  auto again = test::run_program({test::authrun_bin(), "keygen", key});
  CHECK(again.exit_code == 2);
  CHECK(test::read_file(key) == first);

  // The key it wrote works for a batch.
  auto run = run_batch({"-j", "2", "--key-file", key, "-"}, task_line(json{{"id", "k"}, {"fn", "echo"}, {"args", 7}}));
  CHECK(run.exit_code == 0);
  CHECK(contains(run.out, "\"ok\":true"));
}

TEST_CASE("run: a key file readable by others is refused") {
  test::TempDir dir;
  const std::string key = dir.path() + "/run.key";
  REQUIRE(test::run_program({test::authrun_bin(), "keygen", key}).exit_code == 0);
  REQUIRE(::chmod(key.c_str(), 0644) == 0);
  auto r = run_batch({"-j", "2", "--key-file", key, "-"}, task_line(json{{"fn", "echo"}}));
  CHECK(r.exit_code == 2);
  CHECK(contains(r.err, "chmod 600"));
  CHECK(!contains(r.out, "\"ok\":true"));
}

TEST_CASE("run: no worker outlives the runner") {
  // As a subreaper this process inherits whatever the runner leaves behind, so a leaked worker (alive, or
  // killed by its parent-death signal and not reaped) shows up as a child of ours.
  REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
  struct SubreaperOff {
    ~SubreaperOff() { ::prctl(PR_SET_CHILD_SUBREAPER, 0); }
  } subreaper_off;
  Child c = spawn_child({test::authrun_bin(), "run", "--no-progress", "-j", "2", "-"});
  std::string out;
  write_text(c.in.get(), task_line(json{{"id", "first"}, {"fn", "echo"}, {"args", 1}}));
  REQUIRE(read_until(c.out.get(), out, [](const std::string& b) { return contains(b, "\n"); },
                     Clock::now() + std::chrono::seconds(20)));
  // While the input is open the workers are children of the runner: the scan finds them.
  std::vector<int> workers;
  for (auto deadline = Clock::now() + authrun::test::scaled(std::chrono::seconds(10)); Clock::now() < deadline;) {
    workers = children_of(c.pid);
    if (workers.size() == 2) break;
    ::usleep(20'000);
  }
  CHECK(workers.size() == 2);
  write_text(c.in.get(), task_line(json{{"id", "second"}, {"fn", "exec"}, {"args", {{"argv", {"true"}}}}}));
  c.in.close();
  read_until(c.out.get(), out, [](const std::string&) { return false; }, Clock::now() + std::chrono::seconds(20));
  const pid_t runner = c.pid;
  int status = c.wait();
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(children_of(runner).empty());
  const auto leaked = children_of(::getpid());
  CHECK_MESSAGE(leaked.empty(), "processes left behind by the runner: " << leaked.size());
  for (int pid : leaked) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  for (int pid : workers) CHECK(::kill(pid, 0) != 0);
}

TEST_CASE("batch: an open-file limit too small for -j starts as many workers as fit, says so, and runs every task") {
  std::string tasks;
  for (int i = 1; i <= 40; ++i) tasks += R"({"id":)" + std::to_string(i) + R"(,"fn":"echo","args":)" + std::to_string(i) + "}\n";
  // ulimit -n in sh sets the hard limit too, so the runner cannot raise it back.
  RunOutput r = run_program({"/bin/sh", "-c", "ulimit -n 64 && exec \"$0\" run --no-progress -j 17 -", authrun_bin()}, tasks,
                            std::chrono::seconds(60));
  INFO("stderr:\n" << r.err);
  CHECK(r.exit_code == 0);
  CHECK(contains(r.err, "the open-file limit (64) leaves room for 8 workers: starting 8 instead of 17"));
  CHECK(split_lines(r.out).size() == 40);
  CHECK(contains(r.err, "40 tasks: 40 ok"));
}
