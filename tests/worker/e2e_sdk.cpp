// End-to-end test of the C++ worker SDK as a user meets it: `cmake --install` this build into a fresh prefix,
// copy examples/cpp-worker/ out of the source tree, configure and build it against the prefix alone, then
// run a batch on it with `authrun run --worker`, send it a raw attachment over a real channel, and start it
// with the wrong key.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "protocol/channel.hpp"
#include "protocol/run_key.hpp"
#include "tests/helpers/connection_pair.hpp"
#include "tests/helpers/test_util.hpp"

namespace {

using namespace authrun;
using namespace authrun::test;
using protocol::json;
using Clock = std::chrono::steady_clock;

// A build under a loaded machine (or with sanitizers) may take minutes; CTest gives this test 25.
constexpr auto k_build_limit = std::chrono::minutes(20);

// Runs a build step; REQUIREs that it worked, showing its output if not.
void run_step(const std::vector<std::string>& argv) {
  RunOutput r = run_program(argv, "", k_build_limit);
  std::string shown;
  for (const auto& a : argv) shown += a + " ";
  REQUIRE_MESSAGE(r.exit_code == 0, shown << "failed (exit " << r.exit_code << ", signal " << r.signal
                                          << "):\n" << r.out << r.err);
}

// Installs the SDK from this build into `prefix`, builds the example as an outside project in `dir` against
// that prefix only, and returns the path of its worker.
std::string build_example(const TempDir& dir) {
  namespace fs = std::filesystem;
  const std::string prefix = dir.path() + "/prefix";
  run_step({AUTHRUN_CMAKE_COMMAND, "--install", AUTHRUN_BUILD_DIR, "--prefix", prefix, "--component", "sdk"});
  CHECK(fs::exists(prefix + "/include/authrun/worker.hpp"));

  // Out of the source tree, so that nothing but the prefix can supply authrun's headers and libraries.
  const std::string src = dir.path() + "/src", build = dir.path() + "/build";
  fs::create_directories(src);
  for (const char* name : {"CMakeLists.txt", "main.cpp"})
    fs::copy_file(std::string(source_dir()) + "/examples/cpp-worker/" + name, src + "/" + name);
  std::vector<std::string> configure{AUTHRUN_CMAKE_COMMAND, "-S", src, "-B", build,
                                     "-DCMAKE_PREFIX_PATH=" + prefix,
                                     "-DCMAKE_CXX_COMPILER=" AUTHRUN_CXX_COMPILER,
                                     "-DCMAKE_BUILD_TYPE=" AUTHRUN_BUILD_TYPE,
                                     "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"};
  if (std::string(AUTHRUN_CXX_LAUNCHER).size() > 0)
    configure.push_back("-DCMAKE_CXX_COMPILER_LAUNCHER=" AUTHRUN_CXX_LAUNCHER);
  run_step(configure);
  run_step({AUTHRUN_CMAKE_COMMAND, "--build", build, "--parallel", "1"});

  const std::string commands = read_file(build + "/compile_commands.json");
  CHECK(contains(commands, prefix + "/include"));
  CHECK_MESSAGE(!contains(commands, source_dir()), "the example's build saw the source tree:\n" << commands);
  const std::string worker = build + "/my-worker";
  REQUIRE(::access(worker.c_str(), X_OK) == 0);
  return worker;
}

// The id of the i-th plain echo task ("e<i>"; appended, not added: "e" + to_string trips g++ 12's -Wrestrict).
std::string echo_id(int i) {
  std::string id = "e";
  id += std::to_string(i);
  return id;
}

// The results of `out` by id.
std::map<std::string, json> results_by_id(const std::string& out) {
  std::map<std::string, json> by_id;
  for (json& r : parse_results(out)) {
    const std::string id = r["id"].get<std::string>();
    CHECK_MESSAGE(by_id.count(id) == 0, "two results for " << id);
    by_id[id] = std::move(r);
  }
  return by_id;
}

}  // namespace

TEST_CASE("sdk: the example worker built from an install prefix runs a batch, takes an attachment, and refuses a wrong key") {
  TempDir dir;
  const std::string worker = build_example(dir);

  // --list comes from the library, the entries from the example's registry.
  RunOutput listed = run_program({worker, "--list"});
  CHECK(listed.exit_code == 0);
  for (const char* fn : {"echo", "grep", "primes", "stats"}) CHECK_MESSAGE(contains(listed.out, fn), listed.out);

  // A batch under authrun run --worker (no SUBCASEs: each would build the example again).
  {
    std::string input;
    input += task_line({{"id", "echo"}, {"fn", "echo"}, {"args", {{"nested", {1, "two", nullptr}}}}});
    input += task_line({{"id", "stats"}, {"fn", "stats"}, {"args", {2, 4, 4, 4, 5, 5, 7, 9}}});
    input += task_line({{"id", "primes"}, {"fn", "primes"}, {"args", {{"below", 100}}}});
    input += task_line({{"id", "grep"}, {"fn", "grep"}, {"args", {{"pattern", "ab"}, {"text", "xab\nno\nabab\n"}}}});
    input += task_line({{"id", "bad"}, {"fn", "stats"}, {"args", {1, "x"}}});
    input += task_line({{"id", "unknown"}, {"fn", "hash"}, {"args", {{"data", "abc"}}}});
    for (int i = 0; i < 50; ++i) input += task_line({{"id", echo_id(i)}, {"fn", "echo"}, {"args", i}});

    RunOutput r = run_batch({"-j", "2", "--worker", worker}, input);
    CHECK_MESSAGE(r.exit_code == 1, r.err);  // two tasks fail on purpose
    CHECK_MESSAGE(contains(summary_of(r.err), "56 tasks: 54 ok, 2 failed"), r.err);
    auto by_id = results_by_id(r.out);
    REQUIRE(by_id.size() == 56);
    CHECK(by_id["echo"]["value"] == json{{"nested", {1, "two", nullptr}}});
    CHECK(by_id["stats"]["value"] == json{{"count", 8}, {"mean", 5.0}, {"min", 2.0}, {"max", 9.0}, {"stdev", 2.0}});
    CHECK(by_id["primes"]["value"] == json{{"count", 25}, {"largest", 97}});
    CHECK(by_id["grep"]["value"] == json{{"lines", 3}, {"matching", 2}, {"first_match", 1}});
    CHECK(by_id["bad"]["ok"] == false);
    CHECK(by_id["bad"]["error"]["type"] == "bad_args");
    CHECK(by_id["bad"]["error"]["message"] == "stats: args[1] is not a number");
    CHECK(by_id["unknown"]["error"]["type"] == "unknown_function");
    CHECK(by_id["unknown"]["error"]["message"] == "unknown function 'hash' (known: echo, grep, primes, stats)");
    for (int i = 0; i < 50; ++i) {
      const json& e = by_id[echo_id(i)];
      CHECK(e["ok"] == true);
      CHECK(e["value"] == i);
    }
  }

  // A raw attachment over a channel with this test as the parent.
  {
    const auto key = protocol::RunKey::generate();
    const std::string key_path = dir.path() + "/direct.key";
    REQUIRE(key.write_file(key_path));
    Child c = spawn_child({worker, "--key-file", key_path});
    protocol::Channel channel(std::move(c.out), std::move(c.in), key, parent_config());
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    auto hs = channel.handshake(deadline);
    REQUIRE_MESSAGE(hs.has_value(), "handshake: " << hs.error().message);
    std::string text = "alpha\nbeta\n";
    text += std::string("\0\xff binary beta\n", 15);
    text += "gamma";
    REQUIRE(channel.send(protocol::Task{1, "grep", json{{"pattern", "beta"}}, protocol::BodyFormat::json,
                                        protocol::Attachment{text}},
                         deadline));
    protocol::TaskResult result;
    while (true) {  // the worker says where it runs first
      auto msg = channel.receive(deadline);
      REQUIRE_MESSAGE(msg.has_value(), "no result: " << msg.error().message);
      if (auto* r = std::get_if<protocol::TaskResult>(&*msg)) {
        result = std::move(*r);
        break;
      }
    }
    CHECK(result.id == 1);
    REQUIRE(result.ok);
    CHECK(result.value == json{{"lines", 4}, {"matching", 2}, {"first_match", 2}});
    CHECK(result.attachment.empty());
    REQUIRE(channel.send(protocol::Shutdown{}, deadline));
    CHECK(c.wait() == 0);
  }

  // A worker holding another key than the runner's fails its handshake and gets no task.
  {
    const std::string runner_key = new_key_file(dir, "runner.key");
    const std::string other_key = new_key_file(dir, "other.key");
    std::string input;
    for (int i = 0; i < 3; ++i) input += task_line({{"id", i}, {"fn", "echo"}, {"args", i}});
    RunOutput r = run_batch({"-j", "1", "--key-file", runner_key, "--worker", worker + " --key-file " + other_key},
                            input);
    CHECK_MESSAGE(r.exit_code == 2, r.err);
    CHECK(r.out.empty());  // no result line: nothing ran
    CHECK_MESSAGE(contains(r.err, "handshake failed"), r.err);
    CHECK_MESSAGE(contains(r.err, "auth_failed"), r.err);
    CHECK_MESSAGE(contains(summary_of(r.err), "0 ok, 0 failed, 3 not started; 0 workers trusted"), r.err);
  }
}
