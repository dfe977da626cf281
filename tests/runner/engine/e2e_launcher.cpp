// Workers started through a launcher, on this machine: `/usr/bin/env` (which execs the worker command that
// follows it) and small `sh -c` launchers stand in for ssh and srun, so that the launcher path — argv, key
// on stdin or from a file, encrypted mode by default, dirty channels, hosts set aside — runs in every build
// without an sshd. tests/test_launch_*.cpp do the same through a real sshd and a real Slurm.
#include <doctest/doctest.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "protocol/json_codec.hpp"
#include "tests/helpers/test_util.hpp"

using namespace authrun;
using authrun::protocol::json;
using test::contains;
using test::parse_results;
using test::run_batch;
using test::summary_of;
using test::task_line;

namespace {

std::string echo_tasks(int n) {
  std::string input;
  for (int i = 0; i < n; ++i) input += task_line(json{{"id", i}, {"fn", "echo"}, {"args", {{"n", i}}}});
  return input;
}

std::string this_host() {
  char name[256] = {};
  REQUIRE(::gethostname(name, sizeof name - 1) == 0);
  return name;
}

// The channel modes the audit log recorded for verified handshakes.
std::multiset<std::string> audited_modes(const std::string& audit_path) {
  std::multiset<std::string> modes;
  for (const std::string& line : test::split_lines(test::read_file(audit_path))) {
    json event = json::parse(line);
    if (event["event"] == "handshake" && event["ok"] == true) modes.insert(event["mode"].get<std::string>());
  }
  return modes;
}

}  // namespace

TEST_CASE("launched: workers through an encrypted launcher get a fresh key on stdin and an encrypted channel") {
  test::TempDir dir;
  const std::string audit = dir.path() + "/audit.jsonl";
  auto r = run_batch({"-j", "2", "--launcher", "/usr/bin/env", "--launcher-encrypted", "--audit-log", audit, "-"}, echo_tasks(50));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto results = parse_results(r.out);
  REQUIRE(results.size() == 50);
  std::set<int> seen;
  for (const json& res : results) {
    CHECK(res["ok"] == true);
    CHECK(res["value"]["n"] == res["id"]);
    // The launcher does not say where it runs the worker: the worker's own word (worker_info) does.
    CHECK(res["host"] == this_host());
    seen.insert(res["id"].get<int>());
  }
  CHECK(seen.size() == 50);
  auto modes = audited_modes(audit);
  CHECK(!modes.empty());
  CHECK(modes.count("encrypted") == modes.size());

  // --mode still wins when given.
  auto authenticated = run_batch({"-j", "1", "--launcher", "/usr/bin/env", "--launcher-encrypted", "--mode", "authenticated",
                                  "--audit-log", dir.path() + "/audit2.jsonl", "-"},
                                 echo_tasks(3));
  REQUIRE(authenticated.exit_code == 0);
  CHECK(audited_modes(dir.path() + "/audit2.jsonl") == std::multiset<std::string>{"authenticated"});
}

TEST_CASE("launched: a fresh key is never sent through a launcher not marked encrypted, a key file is used instead") {
  auto refused = run_batch({"--launcher", "/usr/bin/env", "-"}, echo_tasks(1));
  CHECK(refused.exit_code == 2);
  CHECK(contains(refused.err, "refusing to send a fresh key to workers through 'env'"));
  CHECK(contains(refused.err, "--key-file"));
  CHECK(refused.out.empty());

  test::TempDir dir;
  const std::string key = test::new_key_file(dir);
  auto with_file = run_batch({"-j", "2", "--launcher", "/usr/bin/env", "--key-file", key, "-"}, echo_tasks(10));
  INFO(with_file.err);
  CHECK(with_file.exit_code == 0);
  CHECK(parse_results(with_file.out).size() == 10);

  // The worker reads the key where --remote-key-file says; a different key there fails the handshake.
  const std::string other = test::new_key_file(dir, "other.key");
  auto wrong = run_batch({"-j", "1", "--launcher", "/usr/bin/env", "--key-file", key, "--remote-key-file", other, "-"},
                         echo_tasks(2));
  CHECK(wrong.exit_code == 2);
  CHECK(contains(wrong.err, "auth_failed"));
  CHECK(contains(summary_of(wrong.err), "0 workers trusted"));
  CHECK(!contains(wrong.out, "\"ok\":true"));
}

TEST_CASE("launched: something printed before the worker starts is a clean error that quotes it") {
  auto t0 = std::chrono::steady_clock::now();
  auto r = run_batch({"-j", "1", "--launcher", "sh -c 'echo Welcome to node7, last login yesterday; exec \"$@\"' sh",
                      "--launcher-encrypted", "-"},
                     echo_tasks(3));
  CHECK(std::chrono::steady_clock::now() - t0 < authrun::test::scaled(std::chrono::seconds(20)));
  CHECK(r.exit_code == 2);
  CHECK(contains(r.err, "its output starts with \"Welcome to node7, last login yesterday\\n"));
  CHECK(contains(r.err, "is the channel clean?"));
  CHECK(contains(r.err, "(via sh)"));
  CHECK(contains(summary_of(r.err), "0 workers trusted, 3 handshake failures"));
  CHECK(r.out.empty());
}

TEST_CASE("launched: a worker that prints before asking for its key gets no key and not a byte more (no hello)") {
  // The "worker" moves to a session of its own first (the runner kills the launcher's group), then prints,
  // then copies everything the runner writes to its stdin into a file until the runner closes it.
  for (const std::string banner : {"Welcome to node7, last login yesterday", "hi", "ARUNX"}) {
    CAPTURE(banner);
    test::TempDir dir;
    const std::string got = dir.path() + "/got.$$";  // one file per try
    const std::string launcher = "sh -c 'exec setsid -w sh -c \"printf %s \\\"" + banner + "\\\"; cat > " + got +
                                 ".part; mv " + got + ".part " + got + "\"' sh";
    auto r = run_batch({"-j", "1", "--launcher", launcher, "--launcher-encrypted", "-"}, echo_tasks(1));
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(contains(summary_of(r.err), "0 workers trusted, 3 handshake failures"));
    // Each of the three tries ends with the runner's end of the worker's stdin closed: the copies end.
    std::vector<std::string> copies;
    REQUIRE(test::eventually([&] {
      copies.clear();
      for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
        if (entry.path().extension() != ".part") copies.push_back(entry.path());
      }
      return copies.size() == 3;
    }));
    for (const std::string& copy : copies) CHECK(test::read_file(copy).empty());
  }
}

TEST_CASE("launched: a host whose workers keep failing is set aside and the batch goes on elsewhere") {
  test::TempDir dir;
  const std::string joblog = dir.path() + "/joblog.tsv";
  // {host} lands in $0: on "bad" the launcher fails before the worker starts.
  auto r = run_batch({"-S", "good:1,bad:1", "--launcher", "sh -c '[ \"$0\" = bad ] && exit 9; exec \"$@\"' {host}",
                      "--launcher-encrypted", "--joblog", joblog, "-"},
                     test::sleep_tasks(20, 0.05));
  INFO(r.err);
  CHECK(r.exit_code == 0);
  auto results = parse_results(r.out);
  REQUIRE(results.size() == 20);
  for (const json& res : results) CHECK(res["host"] == "good");
  CHECK(contains(r.err, "setting bad aside: 3 of its workers in a row failed"));
  CHECK(contains(summary_of(r.err), "set aside: bad"));
  auto lines = test::split_lines(test::read_file(joblog));
  REQUIRE(lines.size() == 21);
  CHECK(lines[0].rfind("Seq\tId\tWorker\tHost\tAttempt", 0) == 0);
  CHECK(contains(lines[1], "\tgood\t"));
}

TEST_CASE("launched: {host} without hosts, or hosts without {host}, are usage errors") {
  auto no_hosts = run_batch({"--launcher", "ssh -T {host}", "-"}, echo_tasks(1));
  CHECK(no_hosts.exit_code == 2);
  CHECK(contains(no_hosts.err, "no -S/--sshlogin gives hosts"));
  auto no_placeholder = run_batch({"-S", "node1", "--launcher", "/usr/bin/env", "--launcher-encrypted", "-"}, echo_tasks(1));
  CHECK(no_placeholder.exit_code == 2);
  CHECK(contains(no_placeholder.err, "must contain {host}"));
  auto missing = run_batch({"--launcher", "no-such-launcher-program", "--launcher-encrypted", "-"}, echo_tasks(1));
  CHECK(missing.exit_code == 2);
  CHECK(contains(missing.err, "launcher program 'no-such-launcher-program' not found on PATH"));
}

TEST_CASE("launched: authrun exec runs its jobs on launched workers, and its joblog says where") {
  test::TempDir dir;
  const std::string joblog = dir.path() + "/joblog.tsv";
  auto r = test::run_program({test::authrun_bin(), "exec", "-k", "-j", "2", "--launcher", "/usr/bin/env", "--launcher-encrypted",
                              "--joblog", joblog, "--", "echo", "job", "{}", ":::", "a", "b", "c"});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out == "job a\njob b\njob c\n");
  auto lines = test::split_lines(test::read_file(joblog));
  REQUIRE(lines.size() == 4);
  const std::string host_field = '\t' + this_host() + '\t';
  for (std::size_t i = 1; i < lines.size(); ++i) CHECK(contains(lines[i], host_field));
}

TEST_CASE("launched: a timeout on the good host does not count against it, nor give up the run, after a host was set aside") {
  // The first task overruns its limit on "good" while "bad" is being set aside; the rest still run there.
  std::string input = task_line(json{{"id", 0}, {"fn", "sleep"}, {"args", {{"seconds", 5}}}, {"timeout", 1}});
  for (int i = 1; i <= 6; ++i) input += task_line(json{{"id", i}, {"fn", "sleep"}, {"args", {{"seconds", 0.05}}}});
  auto r = run_batch({"-S", "good:1,bad:1", "--window", "1", "--retries", "0", "--launcher",
                      "sh -c '[ \"$0\" = bad ] && exit 9; exec \"$@\"' {host}", "--launcher-encrypted", "-"},
                     input);
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(!contains(r.err, "giving up"));
  CHECK(contains(summary_of(r.err), "7 tasks: 6 ok, 1 failed, 0 not started"));
  CHECK(contains(summary_of(r.err), "set aside: bad"));
}

TEST_CASE("launched: the key goes out only when the worker asks for it, never to whatever else answers") {
  // `cat` would echo a key sent ahead of time into the error message and the audit log.
  test::TempDir dir;
  const std::string audit = dir.path() + "/audit.jsonl";
  auto r = run_batch({"-j", "1", "--handshake-timeout", "1", "--launcher", "sh -c 'exec cat' sh", "--launcher-encrypted",
                      "--audit-log", audit, "-"},
                     echo_tasks(1));
  CHECK(r.exit_code == 2);
  CHECK(contains(r.err, "the worker did not ask for its key within 1000 ms"));
  CHECK(!contains(r.err, "its output starts with"));  // cat had nothing to echo
  CHECK(!contains(test::read_file(audit), "output starts with"));
}

TEST_CASE("launched: a launcher leads a process group of its own (Ctrl-C at the terminal is the runner's to handle)") {
  // The launcher refuses to start the worker unless it is its own process group's leader.
  auto r = run_batch({"-j", "1", "--launcher", "sh -c '[ \"$(cut -d\" \" -f5 /proc/$$/stat)\" = \"$$\" ] || exit 9; exec \"$@\"' sh",
                      "--launcher-encrypted", "-"},
                     echo_tasks(2));
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(parse_results(r.out).size() == 2);
}

TEST_CASE("launched: at most 8 workers of one host start at once (sshd refuses many simultaneous logins)") {
  test::TempDir dir;
  const std::string inside = dir.path() + "/starting";
  REQUIRE(std::system(("mkdir " + inside).c_str()) == 0);
  // Each launcher notes itself in `inside` while it "logs in", and complains if 8 others are in there too.
  const std::string script = "n=$(ls " + inside + " | wc -l); [ $n -ge 8 ] && echo $n >> " + dir.path() +
                             "/over; touch " + inside + "/$$; sleep 0.3; rm " + inside + "/$$; exec \"$@\"";
  auto r = run_batch({"-S", "node:12", "--launcher", "sh -c '" + script + "' {host}", "--launcher-encrypted", "-v", "-"},
                     test::sleep_tasks(24, 0.4));
  INFO(r.err);
  CHECK(r.exit_code == 0);
  test::check_each_ok_once(parse_results(r.out), 24);
  CHECK(test::count(r.err, "handshake ok") >= 9);  // the later ones started too
  CHECK(test::read_file(dir.path() + "/over").empty());
}
