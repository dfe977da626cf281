// The start-up window, end to end: authrun-key-race (tests/attacks/key_race.cpp) copies starting workers'
// fds with pidfd_getfd and peeks at them, or attaches to them with ptrace, as the same unprivileged user.
// Hand-over v2 must give it 0 keys; the old hand-over (reproduced by the attack program only) must lose
// keys to the same attacker, which shows the test able to fail.
#include <doctest/doctest.h>

#include <chrono>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "tests/helpers/test_util.hpp"

using namespace authrun::test;

namespace {

std::string race_bin() {
  const std::string runner = authrun_bin();
  return runner.substr(0, runner.rfind('/') + 1) + "authrun-key-race";
}

// The value of `field` on the RESULT line in `err`; -1 if there is none.
long field(const std::string& err, const std::string& name) {
  const std::regex re(" RESULT .*\\b" + name + "=([0-9]+)");
  std::smatch m;
  for (const std::string& line : split_lines(err)) {
    if (std::regex_search(line, m, re)) return std::stol(m[1]);
  }
  return -1;
}

// `argv` as uid/gid `uid` when we are root (the attack program, given --uid, drops to the same user), else
// as is. Attacks that run at the same time use different users, so that one's hunter never meets another's
// workers.
std::vector<std::string> as_attackers_user(std::vector<std::string> argv, int uid) {
  if (::geteuid() != 0) return argv;
  argv.insert(argv.begin(), {"/usr/bin/setpriv", "--reuid=" + std::to_string(uid), "--regid=" + std::to_string(uid), "--clear-groups"});
  return argv;
}

std::string echo_tasks(int n) {
  std::string lines;
  for (int i = 1; i <= n; ++i) lines += R"({"id":)" + std::to_string(i) + R"(,"fn":"echo","args":)" + std::to_string(i) + "}\n";
  return lines;
}

}  // namespace

TEST_CASE("keyrace: pidfd_getfd + MSG_PEEK on 200 starting workers gets 0 keys from hand-over v2") {
  RunOutput r = run_program({race_bin(), "race", "v2", "200", worker_bin()}, "", std::chrono::seconds(170));
  INFO("stderr:\n" << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(field(r.err, "spawns") == 200);
  CHECK(field(r.err, "keys_obtained") == 0);
  CHECK(field(r.err, "answered") == 200);  // every worker still got its key
  MESSAGE("fds copied during the window: " << field(r.err, "fd_copies") << " (fd 3 is the rendezvous: nothing secret)");
}

TEST_CASE("keyrace: the same attacker against the old hand-over (key in fd 3 before the spawn) gets keys") {
  RunOutput r = run_program({race_bin(), "race", "v1", "200", worker_bin()}, "", std::chrono::seconds(170));
  INFO("stderr:\n" << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(field(r.err, "spawns") == 200);
  CHECK(field(r.err, "keys_obtained") > 0);
}

TEST_CASE("keyrace: a wrapper's fd 3 holds nothing while it runs, and the worker it execs gets its key") {
  const std::string wrapped = "sleep 0.05; exec " + std::string(worker_bin());
  RunOutput v2 = run_program({race_bin(), "race", "v2", "20", "/bin/sh", "-c", wrapped}, "", std::chrono::seconds(120));
  INFO("v2 stderr:\n" << v2.err);
  CHECK(field(v2.err, "keys_obtained") == 0);
  CHECK(field(v2.err, "answered") == 20);
  CHECK(field(v2.err, "fd_copies") > 0);  // the wrapper sleeps: its fds were there for the taking
  RunOutput v1 = run_program({race_bin(), "race", "v1", "20", "/bin/sh", "-c", wrapped}, "", std::chrono::seconds(120));
  INFO("v1 stderr:\n" << v1.err);
  CHECK(field(v1.err, "keys_obtained") == 20);
}

TEST_CASE("keyrace: a wrapper that forks the worker instead of exec'ing it is refused, naming both pids") {
  RunOutput r = run_program({authrun_bin(), "run", "--no-progress", "-j", "1", "--worker",
                             "/bin/sh -c '" + std::string(worker_bin()) + "; true'"},
                            echo_tasks(2), std::chrono::seconds(60));
  INFO("stderr:\n" << r.err);
  CHECK(r.exit_code != 0);
  CHECK(std::regex_search(r.err, std::regex("key request from pid [0-9]+, not worker [0-9]+")));
  CHECK(r.out.empty());
}

TEST_CASE("keyrace: a blind /proc hunter during 10 batches of the real runner (same user) gets 0 keys") {
  RunOutput hunt;
  std::thread hunter([&] { hunt = run_program({race_bin(), "--uid", "65533", "hunt", "8"}, "", std::chrono::seconds(60)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the hunter is scanning
  int ok = 0;
  for (int batch = 0; batch < 10; ++batch) {
    RunOutput r = run_program(as_attackers_user({authrun_bin(), "run", "--no-progress", "-j", "4", "-"}, 65533), echo_tasks(8),
                              std::chrono::seconds(60));
    if (r.exit_code == 0) ++ok;
  }
  hunter.join();
  INFO("hunter:\n" << hunt.err);
  CHECK(ok == 10);
  CHECK(field(hunt.err, "keys_obtained") == 0);
  MESSAGE("workers seen: " << field(hunt.err, "workers_seen") << ", fds copied: " << field(hunt.err, "fd_copies"));
}

TEST_CASE("keyrace: a tracer attaching from birth: the worker refuses to run, and the runner trusts none it holds") {
  TempDir dir;
  ::chmod(dir.path().c_str(), 0777);  // the runner below may run as uid 65532
  const std::string audit = dir.path() + "/audit.jsonl";
  RunOutput hunt;
  // The hunter must outlive every batch: a tracer that exits detaches, and one that detaches inside a worker's
  // start-up window is the residual SECURITY.md names (no check can see it). Sanitizer builds start slowly.
  std::thread hunter([&] { hunt = run_program({race_bin(), "--uid", "65532", "hunt", "40", "--ptrace"}, "", std::chrono::seconds(120)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::string errs;
  for (int batch = 0; batch < 6; ++batch) {
    RunOutput r = run_program(as_attackers_user({authrun_bin(), "run", "--no-progress", "-j", "4", "--audit-log", audit, "-"}, 65532),
                              echo_tasks(8), std::chrono::seconds(60));
    errs += r.err;
  }
  hunter.join();
  INFO("hunter:\n" << hunt.err);
  const long attached = field(hunt.err, "attached");
  CHECK(attached >= 0);  // the hunter ran to its end and reported (field() is -1 when it did not)
  // No attached worker ever completed a handshake.
  std::smatch m;
  const std::string pids = std::regex_search(hunt.err, m, std::regex(" pids=([0-9,-]+)")) ? m[1].str() : "-";
  std::set<std::string> traced;
  for (std::size_t at = 0; pids != "-" && at < pids.size();) {
    const std::size_t comma = pids.find(',', at);
    traced.insert(pids.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
    at = comma == std::string::npos ? pids.size() : comma + 1;
  }
  const std::string log = read_file(audit);
  for (const std::string& line : split_lines(log)) {
    if (line.find("\"event\":\"handshake\"") == std::string::npos || line.find("\"ok\":true") == std::string::npos) continue;
    std::smatch w;
    REQUIRE(std::regex_search(line, w, std::regex("\"worker\":([0-9]+)")));
    CHECK_MESSAGE(traced.count(w[1].str()) == 0, "worker " << w[1].str() << " was traced and still trusted");
  }
  if (attached > 0) CHECK(contains(errs, "refusing to run: traced by pid"));
  MESSAGE("workers attached from birth: " << attached);
}

TEST_CASE("keyrace: the runner refuses to run under a tracer unless --allow-ptrace") {
  if (::access("/usr/bin/strace", X_OK) != 0) return;  // the tracer used here
  // LeakSanitizer cannot run under ptrace: a sanitizer build would fail at exit for that alone.
  RunOutput refused = run_program({"/usr/bin/strace", "-f", "-o", "/dev/null", "-E", "ASAN_OPTIONS=detect_leaks=0", authrun_bin(), "run", "--no-progress", "-j", "1", "-"},
                                  echo_tasks(2), std::chrono::seconds(60));
  INFO("stderr:\n" << refused.err);
  CHECK(refused.exit_code != 0);
  CHECK(contains(refused.err, "authrun: refusing to run: traced by pid"));
  CHECK(refused.out.empty());
  RunOutput allowed = run_program({"/usr/bin/strace", "-f", "-o", "/dev/null", "-E", "ASAN_OPTIONS=detect_leaks=0", authrun_bin(), "run", "--no-progress", "-j", "1",
                                   "--allow-ptrace", "--worker", std::string(worker_bin()) + " --allow-ptrace", "-"},
                                  echo_tasks(2), std::chrono::seconds(60));
  INFO("stderr:\n" << allowed.err);
  CHECK(allowed.exit_code == 0);
  CHECK(split_lines(allowed.out).size() == 2);
}
