// Workers on "another machine" through a real OpenSSH server on 127.0.0.1 (tests/fixtures/sshd-fixture,
// started by CTest): batches across ssh and local workers, a cut ssh connection, a dirty remote shell, a
// wrong key file, the remote worker's end when the runner dies.
#include <doctest/doctest.h>

#include <csignal>
#include <filesystem>
#include <map>
#include <string>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include "protocol/json_codec.hpp"
#include "tests/helpers/fixture_env.hpp"
#include "tests/helpers/test_util.hpp"

using namespace authrun;
using authrun::protocol::json;
using test::contains;
using test::parse_results;
using test::run_batch;
using test::summary_of;
using test::sleep_tasks;

namespace {

std::string launcher(const test::FixtureEnv& env, const char* opts = "SSH_OPTS") {
  return "ssh " + env.at(opts) + " -T {host}";
}

}  // namespace

TEST_CASE("ssh: a batch across -S 127.0.0.1,: runs on both, every result exactly once") {
  auto env = test::load_fixture("sshd");
  AUTHRUN_REQUIRE_FIXTURE(env);
  test::TempDir dir;
  const std::string joblog = dir.path() + "/joblog.tsv";
  const std::string audit = dir.path() + "/audit.jsonl";
  // Both hosts get tasks whatever the machine's speed: each task waits (up to 10 min) until 4 tasks have
  // started, and with one task per worker at a time that takes all 4 workers, local and over ssh alike.
  const std::string started = dir.path() + "/started";
  std::filesystem::create_directory(started);
  std::string tasks;
  for (int i = 0; i < 24; ++i) {
    const std::string script = "touch \"$1/$$\"; n=0; while [ \"$(ls \"$1\" | wc -l)\" -lt 4 ] && [ $n -lt 12000 ]; do "
                               "sleep 0.05; n=$((n+1)); done";
    tasks += test::task_line(json{{"id", i}, {"fn", "exec"}, {"args", {{"argv", {"sh", "-c", script, "sh", started}}}}});
  }
  auto r = run_batch({"-j", "2", "--window", "1", "-S", env.at("HOST") + ",:", "--launcher", launcher(env), "--joblog", joblog,
                      "--audit-log", audit, "-"},
                     tasks);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto results = parse_results(r.out);
  test::check_each_ok_once(results, 24);
  std::map<std::string, int> per_host;
  for (const json& res : results) ++per_host[res["host"].get<std::string>()];
  CHECK(per_host.size() == 2);
  CHECK(per_host[env.at("HOST")] > 0);
  CHECK(per_host["local"] > 0);
  CHECK(contains(test::read_file(joblog), "\t" + env.at("HOST") + "\t"));
  // Through ssh the channel is encrypted by default; locally it is authenticated.
  const std::string events = test::read_file(audit);
  CHECK(contains(events, R"("host":")" + env.at("HOST") + R"(","mode":"encrypted")"));
  CHECK(contains(events, R"("host":"local","mode":"authenticated")"));
}

TEST_CASE("ssh: killing the ssh client mid-task retries the task on another worker") {
  auto env = test::load_fixture("sshd");
  AUTHRUN_REQUIRE_FIXTURE(env);
  const std::string marker = "9.1101";
  test::RunOutput r;
  std::thread run([&] {
    r = run_batch({"--window", "1", "-S", env.at("HOST") + ":1,:1", "--launcher", launcher(env), "--remote-worker",
                   test::marked_worker(marker), "-v", "-"},
                  sleep_tasks(4, 3, true));
  });
  // The ssh worker logs in, proves itself and starts a task (its sleep child runs); then its connection is cut.
  CHECK(test::eventually([&] { return !test::busy_workers(marker).empty(); }));
  for (int pid : test::processes_running("ssh", marker)) ::kill(pid, SIGKILL);
  run.join();
  INFO(r.err);
  CHECK(r.exit_code == 0);
  auto results = parse_results(r.out);
  CHECK(test::check_each_ok_once(results, 4) == 1);
  CHECK(contains(r.err, "(via ssh) lost: "));
  CHECK(contains(summary_of(r.err), "1 worker death;"));
  // The worker whose connection was cut does not run on for nobody.
  CHECK(test::eventually([&] { return test::processes_running("authrun-worker", marker).empty(); }, std::chrono::seconds(10)));
}

TEST_CASE("ssh: a remote shell that prints a banner gives a clean error quoting it") {
  auto env = test::load_fixture("sshd");
  AUTHRUN_REQUIRE_FIXTURE(env);
  auto r = run_batch({"-j", "1", "-S", env.at("HOST"), "--launcher", launcher(env, "BANNER_SSH_OPTS"), "-"}, sleep_tasks(2, 0));
  CHECK(r.exit_code == 2);
  CHECK(contains(r.err, "on " + env.at("HOST") + " (via ssh): handshake failed, given no task: bad_magic"));
  CHECK(contains(r.err, "its output starts with \"Welcome to authrun-ci-node"));
  CHECK(contains(r.err, "is the channel clean?"));
  CHECK(r.out.empty());
}

TEST_CASE("ssh: a remote worker with the wrong key file is refused at the handshake") {
  auto env = test::load_fixture("sshd");
  AUTHRUN_REQUIRE_FIXTURE(env);
  test::TempDir dir;
  const std::string key = test::new_key_file(dir), other = test::new_key_file(dir, "other.key");
  auto wrong = run_batch({"-j", "1", "-S", env.at("HOST"), "--launcher", launcher(env), "--key-file", key,
                          "--remote-key-file", other, "-"},
                         sleep_tasks(2, 0));
  CHECK(wrong.exit_code == 2);
  CHECK(contains(wrong.err, "handshake failed, given no task: auth_failed"));
  CHECK(contains(summary_of(wrong.err), "0 workers trusted"));
  CHECK(!contains(wrong.out, "\"ok\":true"));
  // The right key file works (the same path on both sides: a shared filesystem).
  auto right = run_batch({"-j", "1", "-S", env.at("HOST"), "--launcher", launcher(env), "--key-file", key, "-"}, sleep_tasks(2, 0));
  INFO(right.err);
  CHECK(right.exit_code == 0);
  test::check_each_ok_once(parse_results(right.out), 2);
}

TEST_CASE("ssh: a worker missing on the far host is named as the likely cause") {
  auto env = test::load_fixture("sshd");
  AUTHRUN_REQUIRE_FIXTURE(env);
  auto r = run_batch({"-j", "1", "-S", env.at("HOST"), "--launcher", launcher(env), "--remote-worker", "/nonexistent/authrun-worker", "-"},
                     sleep_tasks(1, 0));
  CHECK(r.exit_code == 2);
  CHECK(contains(r.err, "likely cause: the worker program was not found on " + env.at("HOST")));
}

TEST_CASE("ssh: when the runner is killed, the remote worker stops its task and exits") {
  auto env = test::load_fixture("sshd");
  AUTHRUN_REQUIRE_FIXTURE(env);
  const std::string marker = "9.2202";
  test::Child runner = test::spawn_child({test::authrun_bin(), "run", "--no-progress", "-j", "1", "-S", env.at("HOST"), "--launcher",
                                          launcher(env), "--remote-worker", test::marked_worker(marker), "-"});
  test::write_text(runner.in.get(), sleep_tasks(1, 61.25, true));
  runner.in.close();
  // Running its task: PDEATHSIG cannot help here (the worker's parent is sshd's session, which lives on).
  REQUIRE(test::eventually([&] { return !test::busy_workers(marker).empty(); }));
  ::kill(runner.pid, SIGKILL);
  runner.wait();
  CHECK(test::eventually([&] { return test::processes_running("authrun-worker", marker).empty(); }, std::chrono::seconds(10)));
  CHECK(test::eventually([&] { return test::processes_running("sleep", "61.25").empty(); }, std::chrono::seconds(10)));
  CHECK(test::eventually([&] { return test::processes_running("ssh", marker).empty(); }, std::chrono::seconds(10)));
}

TEST_CASE("ssh: authrun exec -S runs commands on the far host as GNU parallel --sshlogin does, logging in once per worker") {
  auto env = test::load_fixture("sshd");
  AUTHRUN_REQUIRE_FIXTURE(env);
  std::vector<std::string> argv{test::authrun_bin(), "exec", "-k", "--tag", "-S", env.at("HOST") + ":2", "--launcher", launcher(env),
                                "-v", "--", "sh", "-c", "echo $(id -un) {}", ":::"};
  auto value = [](int i) { return std::string(1, 'v').append(std::to_string(i)); };  // not "v" + ...: GCC 12's -Wrestrict
  for (int i = 0; i < 20; ++i) argv.push_back(value(i));
  auto r = test::run_program(argv);
  INFO(r.err);
  CHECK(r.exit_code == 0);
  auto lines = test::split_lines(r.out);
  REQUIRE(lines.size() == 20);
  for (int i = 0; i < 20; ++i) CHECK(lines[std::size_t(i)] == value(i) + "\t" + env.at("USER") + " " + value(i));
  // One login per worker, not per job (the second worker may still be logging in when the jobs are done).
  const auto logins = test::count(r.err, "(via ssh): handshake ok");
  CHECK(logins >= 1);
  CHECK(logins <= 2);
}
