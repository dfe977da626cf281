// End-to-end tests of authrun-python (the default for `authrun run --python`): CPython embedded in an SDK
// worker, over real pipes. Values exact alone and batched, errors as Python states them, the import timed
// apart from the tasks, the ctypes bootstrap's file refused unless safe, and the pickled call of the Pool.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include <csignal>

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "protocol/channel.hpp"
#include "protocol/json_codec.hpp"
#include "protocol/limits.hpp"
#include "protocol/run_key.hpp"
#include "tests/helpers/test_util.hpp"

using namespace authrun;
using authrun::protocol::json;
using test::contains;
using test::parse_results;
using test::run_batch;
using test::task_line;

namespace {

const char* k_values_module = R"(import sys

class Custom(Exception):
    def __init__(self, text, code):
        super().__init__(text)
        self.code = code
        self.where = {"line": 3}
        self._private = object()

def big(n):
    return 2 ** n + 1

def twice(x):
    return x * 2

def surrogate():
    return "caf\udce9.txt"

def bytes_dict():
    return {"$bytes": "not bytes"}

def dict_dict():
    return {"$dict": [1]}

def real_bytes():
    return [b"\x00\xff"]

def shapes():
    return {"t": (1, 2), 1: "one"}

def echo(v):
    return v

def fail_text(text):
    raise ValueError(text)

def fail_custom():
    raise Custom("custom\nfailure \\ here", 7)

def exits(code):
    sys.exit(code)

def interrupted():
    raise KeyboardInterrupt("stop")

def pid():
    import os
    return os.getpid()

class Shape:
    @staticmethod
    def area(w, h):
        return w * h

LIMIT = 3
)";

std::map<std::uint64_t, json> by_id(const std::vector<json>& results) {
  std::map<std::uint64_t, json> out;
  for (const json& r : results) out[r["id"].get<std::uint64_t>()] = r;
  return out;
}

// The digits of 2**n + 1.
std::string big_digits(int n) {
  std::vector<int> digits{1};  // little-endian decimal
  for (int i = 0; i < n; ++i) {
    int carry = 0;
    for (int& d : digits) {
      d = d * 2 + carry;
      carry = d / 10;
      d %= 10;
    }
    if (carry) digits.push_back(carry);
  }
  digits[0] += 1;  // 2**n ends in 2, 4, 6 or 8: no carry
  std::string out;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) out += static_cast<char>('0' + *it);
  return out;
}

// The raw text of the "value" of each result line, by id (the line's bytes, not a parse that could round).
std::map<std::uint64_t, std::string> value_texts(const std::string& out) {
  std::map<std::uint64_t, std::string> texts;
  for (const std::string& line : test::split_lines(out)) {
    const json r = json::parse(line);
    const std::size_t at = line.find("\"value\":");
    if (at == std::string::npos) continue;
    std::size_t end = line.find(",\"worker\"", at);
    texts[r["id"].get<std::uint64_t>()] = line.substr(at + 8, end - at - 8);
  }
  return texts;
}

// The interpreters each value and error case runs on: authrun-python ("", the default) and the ctypes
// bootstrap (a copy of the interpreter in `dir`, which authrun-python does not serve).
std::vector<std::string> interpreters(const test::TempDir& dir) {
  const std::string other = dir.path() + "/otherpython3";
  REQUIRE(test::run_program({"/bin/cp", "/usr/bin/python3", other}).exit_code == 0);
  return {"", other};
}

// `options` with --python-exe `exe` in front when it is not "".
std::vector<std::string> with_exe(const std::string& exe, std::vector<std::string> options) {
  if (!exe.empty()) options.insert(options.begin(), {"--python-exe", exe});
  return options;
}

}  // namespace

TEST_CASE("python host: integers beyond 64 bits come back exact, alone (window 1) and in batches, also on the bootstrap") {
  test::TempDir dir;
  const std::string module = dir.write("vals.py", k_values_module);
  std::string input;
  for (int i = 0; i < 40; ++i) input += task_line(json{{"id", i}, {"fn", "big"}, {"args", {64 + i}}});
  const std::string huge = big_digits(200);
  REQUIRE(huge.size() > 60);
  input += "{\"id\":40,\"fn\":\"twice\",\"args\":[" + huge + "]}\n";
  for (const std::string& exe : interpreters(dir))
  for (const char* window : {"1", "16"}) {
    CAPTURE(exe);
    CAPTURE(window);
    auto r = run_batch(with_exe(exe, {"--python", module, "-j", "1", "--window", window, "-k", "-"}), input);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    auto texts = value_texts(r.out);
    REQUIRE(texts.size() == 41);
    for (int i = 0; i < 40; ++i) CHECK(texts[std::uint64_t(i)] == big_digits(64 + i));
    std::string doubled = big_digits(201);  // 2 * (2**200 + 1) = 2**201 + 2: the last digit of 2**201 is 2
    doubled.back() = static_cast<char>(doubled.back() + 1);
    CHECK(texts[40] == doubled);
  }
}

TEST_CASE("python host: text that is not Unicode is a bad_result naming the character, $bytes and $dict are told apart") {
  test::TempDir dir;
  const std::string module = dir.write("vals.py", k_values_module);
  std::string input;
  input += task_line(json{{"id", 0}, {"fn", "surrogate"}});
  input += task_line(json{{"id", 1}, {"fn", "bytes_dict"}});
  input += task_line(json{{"id", 2}, {"fn", "dict_dict"}});
  input += task_line(json{{"id", 3}, {"fn", "real_bytes"}});
  input += task_line(json{{"id", 4}, {"fn", "shapes"}});
  // What it returned goes back in as the same value.
  input += task_line(json{{"id", 5}, {"fn", "echo"}, {"args", {json{{"$dict", {{"$bytes", "x"}}}}}}});
  input += task_line(json{{"id", 6}, {"fn", "Shape.area"}, {"args", {3, 4}}});
  input += task_line(json{{"id", 7}, {"fn", "LIMIT"}});
  input += task_line(json{{"id", 8}, {"fn", "nothing_here"}});
  for (const std::string& exe : interpreters(dir)) {
  CAPTURE(exe);
  auto r = run_batch(with_exe(exe, {"--python", module, "-j", "1", "-k", "-"}), input);
  INFO(r.err);
  auto res = by_id(parse_results(r.out));
  REQUIRE(res.size() == 9);
  CHECK(res[0]["ok"] == false);
  CHECK(res[0]["error"]["type"] == "bad_result");
  CHECK(contains(res[0]["error"]["message"].get<std::string>(), "\\udce9"));
  CHECK(contains(res[0]["error"]["message"].get<std::string>(), "surrogate"));
  CHECK(res[1]["value"] == json{{"$dict", {{"$bytes", "not bytes"}}}});
  CHECK(res[2]["value"] == json{{"$dict", {{"$dict", {1}}}}});
  CHECK(res[3]["value"] == json::array({json{{"$bytes", "AP8="}}}));
  CHECK(res[4]["value"] == json{{"1", "one"}, {"t", {1, 2}}});
  CHECK(res[5]["value"] == json{{"$dict", {{"$bytes", "x"}}}});
  CHECK(res[6]["value"] == 12);
  CHECK(res[7]["error"]["type"] == "not_callable");
  CHECK(contains(res[7]["error"]["message"].get<std::string>(), "not callable"));
  CHECK(res[8]["error"]["type"] == "unknown_function");
  }
}

TEST_CASE("python host: an error is str(e) exactly, its type module-qualified, long messages kept, attributes kept") {
  test::TempDir dir;
  const std::string module = dir.write("vals.py", k_values_module);
  ::mkdir((dir.path() + "/mypkg").c_str(), 0700);
  dir.write("mypkg/__init__.py", "");
  dir.write("mypkg/errors.py", "class Custom(Exception):\n    pass\n");
  const std::string user = dir.write("user.py", "from mypkg.errors import Custom\ndef f():\n    raise Custom('deep')\n");
  std::string long_text;
  for (int i = 0; long_text.size() < 70 * 1024; ++i) long_text += "line " + std::to_string(i) + "\n\t\\ é\n";
  std::string input;
  input += task_line(json{{"id", 0}, {"fn", "vals.fail_text"}, {"args", {"two\nlines \\ and b'\\x00'"}}});
  input += task_line(json{{"id", 1}, {"fn", "vals.fail_custom"}});
  input += task_line(json{{"id", 2}, {"fn", "vals.fail_text"}, {"args", {long_text}}});
  input += task_line(json{{"id", 3}, {"fn", "user.f"}});
  for (const std::string& exe : interpreters(dir)) {
  CAPTURE(exe);
  auto r = run_batch(with_exe(exe, {"--python", module, "--python", user, "-j", "1", "-k", "-"}), input);
  INFO(r.err);
  auto res = by_id(parse_results(r.out));
  REQUIRE(res.size() == 4);
  CHECK(res[0]["error"]["type"] == "ValueError");
  CHECK(res[0]["error"]["message"] == "two\nlines \\ and b'\\x00'");
  CHECK(res[1]["error"]["type"] == "vals.Custom");
  CHECK(res[1]["error"]["message"] == "custom\nfailure \\ here");
  CHECK(res[1]["error"]["details"]["attributes"] == json{{"code", 7}, {"where", {{"line", 3}}}});
  CHECK(contains(res[1]["error"]["details"]["traceback"].get<std::string>(), "fail_custom"));
  CHECK(res[2]["error"]["message"] == long_text);
  CHECK(res[3]["error"]["type"] == "mypkg.errors.Custom");
  CHECK(res[3]["error"]["message"] == "deep");
  }
}

TEST_CASE("python host: sys.exit and KeyboardInterrupt in a task end that task only: same interpreter, no retry") {
  test::TempDir dir;
  const std::string module = dir.write("vals.py", k_values_module);
  std::string input;
  input += task_line(json{{"id", 0}, {"fn", "pid"}});
  input += task_line(json{{"id", 1}, {"fn", "exits"}, {"args", {3}}});
  input += task_line(json{{"id", 2}, {"fn", "interrupted"}});
  input += task_line(json{{"id", 3}, {"fn", "exits"}, {"args", {"bye"}}});
  input += task_line(json{{"id", 4}, {"fn", "pid"}});
  for (const std::string& exe : interpreters(dir)) {
  CAPTURE(exe);
  auto r = run_batch(with_exe(exe, {"--python", module, "-j", "1", "--retries", "3", "-k", "-"}), input);
  INFO(r.err);
  auto res = by_id(parse_results(r.out));
  REQUIRE(res.size() == 5);
  CHECK(res[1]["error"]["type"] == "SystemExit");
  CHECK(res[1]["error"]["message"] == "3");
  CHECK(res[1]["error"]["details"]["attributes"]["code"] == 3);
  CHECK(res[2]["error"]["type"] == "KeyboardInterrupt");
  CHECK(res[2]["error"]["message"] == "stop");
  CHECK(res[3]["error"]["message"] == "bye");
  for (int i = 0; i < 5; ++i) CHECK(res[std::uint64_t(i)]["attempts"] == 1);
  CHECK(res[0]["value"] == res[4]["value"]);
  CHECK(res[0]["value"] == res[0]["worker"]);
  CHECK(contains(test::summary_of(r.err), "0 worker deaths"));
  }
}

TEST_CASE("python host: --timeout counts from the end of the import, --import-timeout fails the program once") {
  test::TempDir dir;
  // The import takes longer than a task may: the tasks still run (their time starts after it).
  const std::string slow = dir.write("slowimport.py", "import time\ntime.sleep(3)\ndef f(x):\n    return x\n");
  std::string input;
  for (int i = 0; i < 4; ++i) input += task_line(json{{"id", i}, {"fn", "f"}, {"args", {i}}});
  auto r = run_batch({"--python", slow, "-j", "2", "--timeout", "1", "-k", "-"}, input);
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(parse_results(r.out).size() == 4);
  // An import that never ends fails the run once, clearly, under its own limit.
  const std::string stuck = dir.write("stuck.py", "import time\ntime.sleep(100000)\ndef f(x):\n    return x\n");
  auto s = run_batch({"--python", stuck, "-j", "2", "--timeout", "1", "--import-timeout", "1", "-"}, input);
  INFO(s.err);
  CHECK(s.exit_code == 2);
  CHECK(contains(s.err, "did not finish importing within 1 s (--import-timeout)"));
  CHECK(s.out.empty());
}

TEST_CASE("python host: a venv's python runs in authrun-python, with the venv as its prefix") {
  test::TempDir dir;
  auto venv = test::run_program({"/usr/bin/python3", "-m", "venv", "--without-pip", dir.path() + "/venv"});
  if (venv.exit_code != 0) {
    MESSAGE("no venv module here: " << venv.err);
    return;
  }
  const std::string prefix_mod = dir.write("where.py", "import sys\ndef prefix():\n    return sys.prefix\n");
  auto r = run_batch({"--python", prefix_mod, "--python-exe", dir.path() + "/venv/bin/python", "-j", "1", "-"},
                     task_line(json{{"id", 0}, {"fn", "prefix"}}));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(!contains(r.err, "starts readable"));
  auto res = parse_results(r.out);
  REQUIRE(res.size() == 1);
  CHECK(res[0]["value"] == dir.path() + "/venv");
}

namespace {

// A tree laid out as an install (bin/authrun, share/authrun/python/authrun/_bootstrap.py) in `root`.
void make_tree(const std::string& root) {
  const std::string runner = test::authrun_bin();
  const std::string bin_dir = runner.substr(0, runner.rfind('/'));
  for (const char* d : {"/bin", "/share", "/share/authrun", "/share/authrun/python", "/share/authrun/python/authrun"}) {
    REQUIRE(::mkdir((root + d).c_str(), 0755) == 0);
  }
  REQUIRE(test::run_program({"/bin/cp", runner, root + "/bin/authrun"}).exit_code == 0);
  REQUIRE(test::run_program({"/bin/cp", bin_dir + "/authrun-worker", root + "/bin/authrun-worker"}).exit_code == 0);
  REQUIRE(test::run_program({"/bin/cp", bin_dir + "/../share/authrun/python/authrun/_bootstrap.py",
                             root + "/share/authrun/python/authrun/_bootstrap.py"})
              .exit_code == 0);
  // A copy of the interpreter: not the one authrun-python embeds, so it runs the ctypes bootstrap.
  REQUIRE(test::run_program({"/bin/cp", "/usr/bin/python3", root + "/bin/otherpython"}).exit_code == 0);
}

}  // namespace

TEST_CASE("python host: the ctypes bootstrap is refused from a file or directory another user owns or others may write") {
  test::TempDir dir;
  const std::string root = dir.path() + "/tree";
  REQUIRE(::mkdir(root.c_str(), 0755) == 0);
  make_tree(root);
  const std::string module = dir.write("vals.py", k_values_module);
  const std::string bootstrap = root + "/share/authrun/python/authrun/_bootstrap.py";
  const std::string input = task_line(json{{"id", 0}, {"fn", "twice"}, {"args", {21}}});
  auto run = [&] {
    return test::run_program({root + "/bin/authrun", "run", "--no-progress", "--python", module, "--python-exe",
                              root + "/bin/otherpython", "-j", "1", "-"},
                             input);
  };
  // As laid out: it runs, and says once that such an interpreter starts readable.
  auto good = run();
  INFO(good.err);
  REQUIRE(good.exit_code == 0);
  CHECK(parse_results(good.out).at(0)["value"] == 42);
  CHECK(contains(good.err, "starts readable"));
  // Writable by others.
  REQUIRE(::chmod(bootstrap.c_str(), 0666) == 0);
  auto writable = run();
  CHECK(writable.exit_code == 2);
  CHECK(contains(writable.err, "writable by its group or others"));
  REQUIRE(::chmod(bootstrap.c_str(), 0644) == 0);
  // A directory above it writable by others (not sticky).
  REQUIRE(::chmod((root + "/share/authrun").c_str(), 0777) == 0);
  auto open_dir = run();
  CHECK(open_dir.exit_code == 2);
  CHECK(contains(open_dir.err, "its directory " + root + "/share/authrun is writable"));
  REQUIRE(::chmod((root + "/share/authrun").c_str(), 0755) == 0);
  // Owned by another user (nobody): meaningful for root too, which owns nothing of nobody's.
  const uid_t other = ::getuid() == 65534 ? 0 : 65534;
  if (::chown(bootstrap.c_str(), other, static_cast<gid_t>(-1)) == 0) {
    auto foreign = run();
    CHECK(foreign.exit_code == 2);
    CHECK(contains(foreign.err, "is owned by uid " + std::to_string(other)));
  } else {
    MESSAGE("cannot chown here (not root): the foreign owner case is not run");
  }
  CHECK(good.out.size() > 0);
}

namespace {

protocol::HandshakeConfig parent_config() {
  return protocol::HandshakeConfig{protocol::Role::parent, {protocol::ChannelMode::authenticated},
                                   protocol::limits::default_max_payload};
}

std::chrono::steady_clock::time_point in_seconds(int s) {
  return std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(test::scaled(std::chrono::seconds(s)));
}

std::string python_host_bin() {
  const std::string runner = test::authrun_bin();
  return runner.substr(0, runner.rfind('/') + 1) + "authrun-python";
}

// Runs python3 with `code` (argv after it) and returns its stdout, REQUIRE'ing success.
std::string python_out(const std::vector<std::string>& argv) {
  auto r = test::run_program(argv);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return r.out;
}

// The next result from `channel` (alone or the first of a batch).
protocol::TaskResult next_result(protocol::Channel& channel) {
  for (;;) {
    auto msg = channel.receive(in_seconds(60));
    REQUIRE_MESSAGE(msg.has_value(), msg.error().message);
    if (auto* r = std::get_if<protocol::TaskResult>(&*msg)) return std::move(*r);
    if (auto* b = std::get_if<protocol::ResultBatch>(&*msg)) {
      REQUIRE(b->results.size() == 1);
      return std::move(b->results[0]);
    }
  }
}

}  // namespace

TEST_CASE("python host: the pickled call (authrun.pickled), __mp_main__ as __main__, and the initializer") {
  test::TempDir dir;
  const std::string script = dir.write("pool_main.py", R"(import base64, os, pickle, sys
state = {}
def square(x):
    return x * x
def raises(x):
    raise LookupError("no %d" % x)
def unpicklable():
    return lambda: 1
def setup(v):
    state["v"] = v
def seen():
    return state.get("v")
if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "marker":
        open(sys.argv[2], "w").write("main ran")
    else:
        calls = [(square, (7,), {}), (raises, (3,), {}), (unpicklable, (), {}), (seen, (), {}), (sys.exit, (4,), {})]
        for c in calls:
            print(base64.b64encode(pickle.dumps(c, protocol=5)).decode())
        print(base64.b64encode(pickle.dumps((setup, (42,)))).decode())
)");
  const std::string marker = dir.path() + "/MAIN_RAN";
  const auto lines = test::split_lines(python_out({"/usr/bin/python3", script}));
  REQUIRE(lines.size() == 6);
  const auto key = protocol::RunKey::generate();
  test::Child c = test::spawn_worker_with_key({python_host_bin()}, key);
  protocol::Channel channel(std::move(c.out), std::move(c.in), key, parent_config());
  auto hs = channel.handshake(in_seconds(20));
  REQUIRE_MESSAGE(hs.has_value(), "handshake: " << hs.error().message);
  protocol::Program program;
  program.modules.push_back({"__mp_main__", script});
  program.sys_path = {dir.path()};
  program.cwd = dir.path();
  program.initializer = lines[5];
  REQUIRE(channel.send(program, in_seconds(20)));
  auto unbase = [](const std::string& b64) {
    std::string out(b64.size(), '\0');
    std::size_t n = 0;
    REQUIRE(::sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), b64.data(), b64.size(), nullptr,
                                &n, nullptr, sodium_base64_VARIANT_ORIGINAL) == 0);
    out.resize(n);
    return out;
  };
  std::vector<protocol::TaskResult> results;
  for (std::size_t i = 0; i < 5; ++i) {
    REQUIRE(channel.send(protocol::Task{i, "authrun.pickled", nullptr, protocol::BodyFormat::json,
                                        protocol::Attachment{unbase(lines[i])}},
                         in_seconds(20)));
    results.push_back(next_result(channel));
  }
  REQUIRE(channel.send(protocol::Shutdown{}, in_seconds(20)));
  // What came back, unpickled by a Python of its own.
  std::string shown;
  for (const auto& r : results) {
    REQUIRE(r.ok);
    const json value = r.value_json.empty() ? r.value : json::parse(r.value_json);
    std::string text(r.attachment.view());
    dir.write("result.pickle", text);
    shown += value.dump() + " " +
             python_out({"/usr/bin/python3", "-c",
                         "import pickle, sys; sys.path.insert(0, sys.argv[2]); import pool_main; "
                         "sys.modules['__mp_main__'] = pool_main\n"
                         "v = pickle.load(open(sys.argv[1], 'rb'))\n"
                         "print(repr(v[0]) if isinstance(v, tuple) else repr(v))",
                         dir.path() + "/result.pickle", dir.path()});
  }
  INFO(shown);
  CHECK(contains(shown, "{\"raised\":false} 49\n"));
  CHECK(contains(shown, "{\"raised\":true} LookupError('no 3')\n"));
  CHECK(contains(shown, "{\"raised\":true} TypeError("));
  CHECK(contains(shown, "cannot be pickled"));
  CHECK(contains(shown, "{\"raised\":false} 42\n"));  // the initializer ran, once, before the tasks
  CHECK(contains(shown, "{\"raised\":true} SystemExit(4)\n"));
  CHECK(::access(marker.c_str(), F_OK) != 0);
  CHECK(WIFEXITED(c.wait()));
}

TEST_CASE("python host: after Ctrl-C (SIGINT to the runner and its workers) tasks queued in a worker's window do not start") {
  test::TempDir dir;
  const std::string go = dir.path() + "/GO";
  const std::string module = dir.write("gated.py", "import os, time\n"
                                                   "def task(n):\n"
                                                   "    open(" + json(dir.path() + "/started-").dump() + " + str(n), 'w')\n"
                                                   "    while n == 0 and not os.path.exists(" + json(go).dump() + "):\n"
                                                   "        time.sleep(0.01)\n"
                                                   "    return n\n");
  const std::string other = dir.path() + "/otherpython3";
  REQUIRE(test::run_program({"/bin/cp", "/usr/bin/python3", other}).exit_code == 0);
  for (const std::string& exe : {std::string(), other}) {
    CAPTURE(exe);
    for (int i = 0; i < 4; ++i) std::remove((dir.path() + "/started-" + std::to_string(i)).c_str());
    std::remove(go.c_str());
    std::vector<std::string> argv{test::authrun_bin(), "run", "--no-progress", "--python", module, "-j", "1", "--window", "4", "-"};
    if (!exe.empty()) argv.insert(argv.end() - 1, {"--python-exe", exe});
    test::Child runner = test::spawn_child(argv);
    std::string input;
    for (int i = 0; i < 4; ++i) input += task_line(json{{"id", i}, {"fn", "task"}, {"args", {i}}});
    test::write_text(runner.in.get(), input);
    runner.in.close();
    REQUIRE(test::eventually([&] { return ::access((dir.path() + "/started-0").c_str(), F_OK) == 0; }));
    // The terminal's Ctrl-C: the whole foreground group, runner and workers.
    for (int pid : test::children_of(runner.pid)) ::kill(pid, SIGINT);
    ::kill(runner.pid, SIGINT);
    // Let the runner take it in (its log line) before the running task ends.
    std::string err;
    REQUIRE(test::read_until(runner.err.get(), err, [](const std::string& e) { return contains(e, "got SIGINT"); },
                             std::chrono::steady_clock::now() + test::scaled(std::chrono::seconds(20))));
    ::close(::open(go.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    const int status = runner.wait();
    CHECK(WIFEXITED(status));
    for (int i = 1; i < 4; ++i) CHECK(::access((dir.path() + "/started-" + std::to_string(i)).c_str(), F_OK) != 0);
  }
}
