// End-to-end tests of Python workers (`authrun run --python`) on the ctypes bootstrap: real interpreters (a
// copy of Debian's /usr/bin/python3, which authrun-python does not serve, so the runner uses the bootstrap)
// running python/authrun/_bootstrap.py over real pipes, with modules written into a temporary directory.
// e2e_python_host.cpp tests authrun-python, the default.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <sodium.h>
#include <sys/socket.h>
#include <sys/wait.h>
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
using Clock = std::chrono::steady_clock;

namespace {

// A copy of /usr/bin/python3 made once for this process: not the interpreter authrun-python embeds.
const std::string k_python = [] {
  static test::TempDir dir;
  const std::string copy = dir.path() + "/otherpython3";
  test::run_program({"/bin/cp", "/usr/bin/python3", copy});
  return copy;
}();

// A module with functions of each kind of call, one that prints, one that raises, one that returns what JSON
// cannot hold, one that kills its interpreter.
const char* k_tasks_module = R"(import os

def add(a, b):
    return a + b

def kw(x, y=10):
    return {"x": x, "y": y}

def single(v):
    return [v, type(v).__name__]

def same(data):
    return data

def pid():
    return os.getpid()

def talk(n):
    print("hello from task", n)
    return n

def boom(n):
    raise ValueError("bad value %d" % n)

def a_set():
    return {1, 2}

def an_object():
    return object()

def die():
    os._exit(1)
)";

std::string b64(const std::string& bytes) {
  std::string out(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  ::sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                      sodium_base64_VARIANT_ORIGINAL);
  out.pop_back();
  return out;
}

// Bytes of every value, different for each i.
std::string bytes_for(int i) {
  std::string s;
  for (int k = 0; k < 1 + i % 300; ++k) s += static_cast<char>((i * 7 + k * 13) & 0xff);
  return s;
}

std::vector<std::string> python_options(const std::string& module, std::vector<std::string> more = {}) {
  std::vector<std::string> o{"--python", module, "--python-exe", k_python};
  o.insert(o.end(), more.begin(), more.end());
  return o;
}

std::string impostor_bin() {
  const std::string runner = test::authrun_bin();
  return runner.substr(0, runner.rfind('/') + 1) + "authrun-impostor";
}

std::map<std::string, json> by_id(const std::vector<json>& results) {
  std::map<std::string, json> out;
  for (const json& r : results) {
    CHECK_MESSAGE(out.count(r["id"].dump()) == 0, "two results for " << r["id"].dump());
    out[r["id"].dump()] = r;
  }
  return out;
}

}  // namespace

TEST_CASE("python: 10,000 tasks on 2 interpreters: positional, keyword, single arguments and bytes, each once and right") {
  test::TempDir dir;
  const std::string module = dir.write("mytasks.py", k_tasks_module);
  std::string input;
  const int n = 10000;
  for (int i = 0; i < n; ++i) {
    switch (i % 4) {
      case 0: input += task_line(json{{"id", i}, {"fn", "mytasks.add"}, {"args", {i, 1}}}); break;
      case 1: input += task_line(json{{"id", i}, {"fn", "kw"}, {"args", {{"x", i}}}}); break;
      case 2: input += task_line(json{{"id", i}, {"fn", "single"}, {"args", std::string("s").append(std::to_string(i))}}); break;
      case 3: input += task_line(json{{"id", i}, {"fn", "same"}, {"args", {{{"$bytes", b64(bytes_for(i))}}}}}); break;
    }
  }
  auto r = run_batch(python_options(module, {"-j", "2", "-"}), input);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto results = by_id(parse_results(r.out));
  REQUIRE(results.size() == std::size_t(n));
  std::set<int> workers;
  for (int i = 0; i < n; ++i) {
    const json& res = results.at(std::to_string(i));
    CAPTURE(res.dump());
    REQUIRE(res["ok"] == true);
    workers.insert(res["worker"].get<int>());
    switch (i % 4) {
      case 0: CHECK(res["value"] == i + 1); break;
      case 1: CHECK(res["value"] == json{{"x", i}, {"y", 10}}); break;
      case 2: CHECK(res["value"] == json::array({std::string("s").append(std::to_string(i)), "str"})); break;
      case 3: CHECK(res["value"] == json{{"$bytes", b64(bytes_for(i))}}); break;
    }
  }
  CHECK(workers.size() == 2);
  CHECK(contains(summary_of(r.err), "10000 tasks: 10000 ok, 0 failed"));
}

TEST_CASE("python: bytes of every value come back byte-exact, also large ones (the binary path) and empty ones") {
  test::TempDir dir;
  const std::string module = dir.write("mytasks.py", k_tasks_module);
  std::string all;
  for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
  std::string big;
  for (int i = 0; i < 3 * 1024 * 1024; ++i) big += static_cast<char>((i * 31) >> 3);
  const std::vector<std::string> cases{all, big, ""};
  std::string input;
  for (std::size_t i = 0; i < cases.size(); ++i) input += task_line(json{{"id", i}, {"fn", "same"}, {"args", {{{"$bytes", b64(cases[i])}}}}});
  auto r = run_batch(python_options(module, {"-j", "1", "-k", "-"}), input);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto results = parse_results(r.out);
  REQUIRE(results.size() == cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) CHECK(results[i]["value"] == json{{"$bytes", b64(cases[i])}});
}

TEST_CASE("python: an exception is an error result with its class, message and traceback, and the interpreter goes on") {
  test::TempDir dir;
  const std::string module = dir.write("mytasks.py", k_tasks_module);
  std::string input = task_line(json{{"id", "a"}, {"fn", "pid"}}) + task_line(json{{"id", "b"}, {"fn", "boom"}, {"args", {7}}}) +
                      task_line(json{{"id", "c"}, {"fn", "pid"}}) + task_line(json{{"id", "d"}, {"fn", "nosuch"}}) +
                      task_line(json{{"id", "e"}, {"fn", "a_set"}}) + task_line(json{{"id", "f"}, {"fn", "an_object"}}) +
                      task_line(json{{"id", "g"}, {"fn", "other.add"}, {"args", {1, 2}}});
  auto r = run_batch(python_options(module, {"-j", "1", "-"}), input);
  INFO(r.err);
  CHECK(r.exit_code == 1);
  auto results = by_id(parse_results(r.out));
  REQUIRE(results.size() == 7);
  const json& b = results.at("\"b\"");
  CHECK(b["ok"] == false);
  CHECK(b["error"]["type"] == "ValueError");
  CHECK(b["error"]["message"] == "bad value 7");
  const std::string tb = b["error"]["details"]["traceback"].get<std::string>();
  CHECK(contains(tb, "mytasks.py"));
  CHECK(contains(tb, "raise ValueError"));
  CHECK(!contains(tb, "_bootstrap.py"));
  // The same interpreter answered before and after.
  CHECK(results.at("\"a\"")["value"] == results.at("\"c\"")["value"]);
  CHECK(results.at("\"a\"")["worker"] == results.at("\"c\"")["worker"]);
  CHECK(results.at("\"d\"")["error"]["type"] == "unknown_function");
  CHECK(results.at("\"g\"")["error"]["type"] == "unknown_function");
  CHECK(contains(results.at("\"g\"")["error"]["message"].get<std::string>(), "no module 'other'"));
  CHECK(results.at("\"e\"")["error"]["type"] == "bad_result");
  CHECK(contains(results.at("\"e\"")["error"]["message"].get<std::string>(), "a set"));
  CHECK(results.at("\"f\"")["error"]["type"] == "bad_result");
  CHECK(contains(results.at("\"f\"")["error"]["message"].get<std::string>(), "an object"));
  CHECK(contains(summary_of(r.err), "0 worker deaths"));
}

TEST_CASE("python: print() in a task goes to the runner's stderr and never into the channel or the results") {
  test::TempDir dir;
  const std::string module = dir.write("mytasks.py", k_tasks_module);
  std::string input;
  for (int i = 0; i < 50; ++i) input += task_line(json{{"id", i}, {"fn", "talk"}, {"args", {i}}});
  auto r = run_batch(python_options(module, {"-j", "2", "-"}), input);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto results = parse_results(r.out);  // every stdout line is a result
  CHECK(results.size() == 50);
  CHECK(test::count(r.err, "hello from task") == 50);
  CHECK(contains(r.err, "hello from task 49\n"));
}

TEST_CASE("python: a module that fails to import ends the run with exit 2, naming module, file and line, untried") {
  test::TempDir dir;
  const std::string bad_syntax = dir.write("broken.py", "def ok():\n    return 1\n\ndef oops(:\n    pass\n");
  const std::string raises = dir.write("raising.py", "import os\nx = 1\nraise RuntimeError('no config here')\n");
  std::string input;
  for (int i = 0; i < 20; ++i) input += task_line(json{{"id", i}, {"fn", "ok"}});
  struct Case {
    std::string module, expected_where, expected_what;
  };
  const std::vector<Case> cases{
      {bad_syntax, "broken.py, line 4", "SyntaxError"},
      {raises, "raising.py, line 3", "RuntimeError: no config here"},
      {"no_such_package.mod", "not found on sys.path", "ModuleNotFoundError"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.module);
    auto r = run_batch(python_options(c.module, {"-j", "2", "--audit-log", dir.path() + "/audit", "-"}), input);
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.out.empty());
    CHECK(contains(r.err, "the Python program failed to load"));
    CHECK(contains(r.err, c.expected_where));
    CHECK(contains(r.err, c.expected_what));
    CHECK(contains(r.err, "not retried"));
    CHECK(test::count(r.err, "failed to load in worker") == 1);  // said once, not once per worker
    CHECK(contains(summary_of(r.err), "0 ok, 0 failed, 20 not started"));
    CHECK(contains(summary_of(r.err), "0 handshake failures, 0 worker deaths"));
  }
}

TEST_CASE("python: a task that kills its interpreter is retried on a new one, then ends as worker_died") {
  test::TempDir dir;
  const std::string module = dir.write("mytasks.py", k_tasks_module);
  std::string input = task_line(json{{"id", "dies"}, {"fn", "die"}});
  for (int i = 0; i < 10; ++i) input += task_line(json{{"id", i}, {"fn", "add"}, {"args", {i, i}}});
  auto r = run_batch(python_options(module, {"-j", "2", "--retries", "1", "-"}), input);
  INFO(r.err);
  CHECK(r.exit_code == 1);
  auto results = by_id(parse_results(r.out));
  REQUIRE(results.size() == 11);
  const json& dies = results.at("\"dies\"");
  CHECK(dies["ok"] == false);
  CHECK(dies["error"]["type"] == "worker_died");
  CHECK(dies["attempts"] == 2);
  for (int i = 0; i < 10; ++i) CHECK(results.at(std::to_string(i))["value"] == 2 * i);
}

TEST_CASE("python: --max-tasks-per-worker recycles interpreters") {
  test::TempDir dir;
  const std::string module = dir.write("mytasks.py", k_tasks_module);
  std::string input;
  for (int i = 0; i < 12; ++i) input += task_line(json{{"id", i}, {"fn", "pid"}});
  auto r = run_batch(python_options(module, {"-j", "1", "--window", "1", "--max-tasks-per-worker", "3", "-"}), input);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  std::map<int, int> per_interpreter;
  for (const json& res : parse_results(r.out)) {
    CHECK(res["value"] == res["worker"]);  // the pid the function saw is the worker's
    ++per_interpreter[res["value"].get<int>()];
  }
  CHECK(per_interpreter.size() == 4);
  for (const auto& [pid, n] : per_interpreter) CHECK(n == 3);
}

TEST_CASE("python: through a launcher (key on stdin, key file), the same program runs") {
  test::TempDir dir;
  const std::string module = dir.write("mytasks.py", k_tasks_module);
  std::string input;
  for (int i = 0; i < 20; ++i) input += task_line(json{{"id", i}, {"fn", "add"}, {"args", {i, 2}}});
  const std::string key = test::new_key_file(dir);
  for (const std::vector<std::string>& how : {std::vector<std::string>{"--launcher-encrypted"},
                                              std::vector<std::string>{"--key-file", key}}) {
    std::vector<std::string> options{"-j", "2", "--launcher", "/usr/bin/env"};
    options.insert(options.end(), how.begin(), how.end());
    options.push_back("-");
    auto r = run_batch(python_options(module, options), input);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    auto results = by_id(parse_results(r.out));
    REQUIRE(results.size() == 20);
    for (int i = 0; i < 20; ++i) CHECK(results.at(std::to_string(i))["value"] == i + 2);
  }
}

TEST_CASE("python: with a wrong key nothing of the program is imported and no task runs") {
  test::TempDir dir;
  const std::string marker = dir.path() + "/IMPORTED";
  const std::string module = dir.write("marking.py", "open(" + json(marker).dump() + ", 'w').write('imported')\n"
                                                     "def f():\n    open(" + json(marker + ".ran").dump() + ", 'w')\n");
  const std::string key = test::new_key_file(dir, "runner.key");
  const std::string other = test::new_key_file(dir, "worker.key");
  std::string input;
  for (int i = 0; i < 3; ++i) input += task_line(json{{"id", i}, {"fn", "f"}});
  auto r = run_batch(python_options(module, {"-j", "1", "--launcher", "/usr/bin/env", "--key-file", key, "--remote-key-file",
                                             other, "--handshake-timeout", "10", "-"}),
                     input);
  INFO(r.err);
  CHECK(r.exit_code == 2);
  CHECK(contains(r.err, "auth_failed"));
  CHECK(r.out.empty());
  CHECK(::access(marker.c_str(), F_OK) != 0);
  CHECK(::access((marker + ".ran").c_str(), F_OK) != 0);
  CHECK(contains(summary_of(r.err), "0 workers trusted"));
}

TEST_CASE("python: a waiting interpreter's command line names no user module, and it imports nothing without the key") {
  test::TempDir dir;
  const std::string marker = dir.path() + "/IMPORTED";
  const std::string module = dir.write("secret_module_name.py", "open(" + json(marker).dump() + ", 'w')\ndef f():\n    return 1\n");
  // The command the runner uses, taken from a real run's interpreters while they work.
  const std::string slow = dir.write("slow_module.py", "import time\ndef nap():\n    time.sleep(1.5)\n    return 1\n");
  test::Child runner = test::spawn_child({test::authrun_bin(), "run", "--no-progress", "--python", slow, "--python",
                                          module, "--python-exe", k_python, "-j", "1", "-"});
  test::write_text(runner.in.get(), task_line(json{{"fn", "slow_module.nap"}}));
  runner.in.close();
  // Until its exec, a child just spawned shows the runner's own command line: wait for the interpreter's.
  std::string cmdline;
  REQUIRE(test::eventually([&] {
    for (int pid : test::children_of(runner.pid)) {
      cmdline = test::read_file("/proc/" + std::to_string(pid) + "/cmdline");
      if (cmdline.rfind(k_python + '\0', 0) == 0) return true;
    }
    return false;
  }));
  // The bootstrap's text itself (-c), as read and checked by the runner: no path it would open later.
  CHECK(contains(cmdline, std::string("-I") + '\0' + "-S" + '\0' + "-c" + '\0'));
  CHECK(contains(cmdline, "def load_program"));
  CHECK(!contains(cmdline, "secret_module_name"));
  CHECK(!contains(cmdline, "slow_module"));
  CHECK(!contains(cmdline, dir.path()));
  REQUIRE(WIFEXITED(runner.wait()));
  std::remove(marker.c_str());

  // The same command, started here with a key socket that never gets a key: it waits, then gives up (exit 3).
  std::vector<std::string> argv;
  for (std::size_t start = 0; start < cmdline.size();) {
    const std::size_t end = cmdline.find('\0', start);
    argv.push_back(cmdline.substr(start, end - start));
    start = end + 1;
  }
  argv.insert(argv.end(), {"--handshake-timeout", "60"});
  int pair[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
  test::Child waiting = test::spawn_child(argv, pair[1]);
  ::close(pair[1]);
  // It is alive and waiting; its command line names nothing of the user's.
  CHECK(test::parent_of(waiting.pid) == ::getpid());
  const std::string waiting_cmdline = test::read_file("/proc/" + std::to_string(waiting.pid) + "/cmdline");
  CHECK(!contains(waiting_cmdline, "secret_module_name"));
  ::close(pair[0]);  // no key comes
  const int status = waiting.wait();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 3);
  CHECK(::access(marker.c_str(), F_OK) != 0);
}

TEST_CASE("python: an impostor parent that reaches a waiting interpreter first gets nothing imported and nothing run") {
  test::TempDir dir;
  const std::string marker = dir.path() + "/IMPORTED";
  const std::string module = dir.write("marking.py", "open(" + json(marker).dump() + ", 'w')\ndef f():\n    open(" +
                                                         json(marker + ".task").dump() + ", 'w')\n");
  // The bootstrap as authrun gives it to interpreters (its core inlined), from the build tree's share/.
  const std::string runner = test::authrun_bin();
  const std::string bootstrap = runner.substr(0, runner.rfind('/')) + "/../share/authrun/python/authrun/_bootstrap.py";
  for (const char* mode : {"rogue-parent-program-nohandshake", "rogue-parent-program-wrongkey"}) {
    CAPTURE(mode);
    auto r = test::run_program({impostor_bin(), "--marker", marker + ".task", mode, module, "--", k_python,
                                "-I", "-S", bootstrap});
    INFO(r.err);
    CHECK(contains(r.err, "RESULT mode=" + std::string(mode)));
    CHECK(contains(r.err, "worker_exit=3"));
    CHECK(contains(r.err, "tasks_run=0"));
    CHECK(::access(marker.c_str(), F_OK) != 0);
    CHECK(::access((marker + ".task").c_str(), F_OK) != 0);
  }
}

TEST_CASE("python: usage errors: a missing module file, a module given twice, --python with --worker") {
  test::TempDir dir;
  const std::string module = dir.write("mytasks.py", k_tasks_module);
  auto missing = run_batch({"--python", dir.path() + "/nope.py", "-"}, "");
  CHECK(missing.exit_code == 2);
  CHECK(contains(missing.err, "nope.py"));
  auto twice = run_batch({"--python", module, "--python", module, "-"}, "");
  CHECK(twice.exit_code == 2);
  CHECK(contains(twice.err, "given twice"));
  auto both = run_batch({"--python", module, "--worker", "/bin/cat", "-"}, "");
  CHECK(both.exit_code == 2);
  auto no_exe = run_batch({"--python", module, "--python-exe", "/no/such/python", "-"}, "");
  CHECK(no_exe.exit_code == 2);
  CHECK(contains(no_exe.err, "/no/such/python"));
}

TEST_CASE("python: tasks come in batches, and a finished result goes out while the next task of its batch runs") {
  test::TempDir dir;
  const std::string module = dir.write("napping.py", "import time\ndef quick(n):\n    return {'z': n, 'a': [n]}\ndef nap(s):\n    time.sleep(s)\n    return s\n");
  const std::string summary = dir.path() + "/summary.json";
  // One interpreter, two tasks in flight: both go in one task_batch once the interpreter is ready.
  test::Child runner = test::spawn_child({test::authrun_bin(), "run", "--no-progress", "--python", module, "--python-exe",
                                          k_python, "-j", "1", "--window", "2", "--summary-json", summary, "-"});
  test::write_text(runner.in.get(), task_line(json{{"id", 1}, {"fn", "quick"}, {"args", {1}}}) +
                                        task_line(json{{"id", 2}, {"fn", "nap"}, {"args", {3}}}));
  runner.in.close();
  std::string out;
  auto lines_read = [&](std::size_t n) {
    return [&out, n](const std::string& b) { return std::size_t(std::count(b.begin(), b.end(), '\n')) >= n; };
  };
  REQUIRE(test::read_until(runner.out.get(), out, lines_read(1), Clock::now() + test::scaled(std::chrono::seconds(60))));
  const auto first_at = Clock::now();
  // Passed on as the worker wrote it, keys sorted as a parsed value prints them.
  CHECK(contains(out, "\"id\":1,\"ok\":true,\"value\":{\"a\":[1],\"z\":1}"));
  REQUIRE(test::read_until(runner.out.get(), out, lines_read(2), Clock::now() + test::scaled(std::chrono::seconds(60))));
  // Held for its batch, result 1 would come with result 2, 3 s later.
  CHECK(Clock::now() - first_at > std::chrono::milliseconds(1500));
  CHECK(contains(out, "\"id\":2,\"ok\":true,\"value\":3"));
  REQUIRE(WIFEXITED(runner.wait()));
  auto s = protocol::parse_json(test::read_file(summary));
  REQUIRE(s.has_value());
  CHECK((*s)["task_frames"] == 1);
}
