// Tests of the worker's built-in functions, with real child processes for exec.
#include "worker/builtin/functions.hpp"

#include "worker/builtin/exec_bytes.hpp"
#include "worker/builtin/exec_function.hpp"
#include "worker/task_output.hpp"

#include "protocol/fd.hpp"
#include "tests/helpers/test_util.hpp"

#include <doctest/doctest.h>
#include <sodium.h>

#include <chrono>
#include <filesystem>
#include <string>

using authrun::worker::call_function;
using authrun::worker::FunctionResult;
using authrun::worker::json;

namespace {

json ok_value(FunctionResult r) {
  REQUIRE_MESSAGE(r.has_value(), (r.has_value() ? "" : r.error().type + ": " + r.error().message));
  return std::move(r).value();
}

// Asserts a bad_args error whose message names `field`.
void check_bad_args(const char* fn, json args, const std::string& field) {
  auto r = call_function(fn, std::move(args));
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().type == "bad_args");
  CHECK_MESSAGE(r.error().message.find(field) != std::string::npos, r.error().message);
}

std::string sodium_hash_hex(const std::string& bytes) {
  REQUIRE(sodium_init() >= 0);
  unsigned char digest[crypto_generichash_BYTES];
  crypto_generichash(digest, sizeof digest, reinterpret_cast<const unsigned char*>(bytes.data()),
                     bytes.size(), nullptr, 0);
  char hex[sizeof digest * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  return hex;
}

json sh(const std::string& script, json extra = json::object()) {
  extra["argv"] = {"/bin/sh", "-c", script};
  return ok_value(call_function("exec", std::move(extra)));
}

// The details of an exec that failed with error `type` (exit_status, signal, timeout, ...): the full value.
json failed_exec(FunctionResult r, const std::string& type) {
  REQUIRE_FALSE(r.has_value());
  CHECK_MESSAGE(r.error().type == type, (r.error().type + ": " + r.error().message));
  REQUIRE(r.error().details.is_object());
  return r.error().details;
}

json sh_failing(const std::string& script, const std::string& type, json extra = json::object()) {
  extra["argv"] = {"/bin/sh", "-c", script};
  return failed_exec(call_function("exec", std::move(extra)), type);
}

}  // namespace

TEST_CASE("worker functions: registry is in name order and lists every function") {
  const auto& fns = authrun::worker::builtins().entries();
  REQUIRE(fns.size() == 5);
  for (std::size_t i = 1; i < fns.size(); ++i) CHECK(fns[i - 1].name < fns[i].name);
}

TEST_CASE("worker functions: unknown function lists the known names") {
  auto r = call_function("nope", json::object());
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().type == "unknown_function");
  CHECK(r.error().message.find("nope") != std::string::npos);
  CHECK(r.error().message.find("echo, exec, fail, hash, sleep") != std::string::npos);
  CHECK(r.error().details["known"].size() == 5);
}

TEST_CASE("worker functions: echo returns nested JSON unchanged") {
  const json args = json::parse(R"({"a": [1, 2.5, "x", null, true, {"b": {"c": []}}], "u": "\u00e9"})");
  CHECK(ok_value(call_function("echo", json(args))) == args);
  CHECK(ok_value(call_function("echo", json("just a string"))) == "just a string");
}

TEST_CASE("worker functions: sleep") {
  CHECK(ok_value(call_function("sleep", json{{"seconds", 0.05}})) == json{{"slept", 0.05}});
  CHECK(ok_value(call_function("sleep", json(0))) == json{{"slept", 0}});
  check_bad_args("sleep", json{{"seconds", -1}}, "seconds");
  check_bad_args("sleep", json{{"seconds", "1"}}, "seconds");
  check_bad_args("sleep", json{{"seconds", 86401}}, "seconds");
  check_bad_args("sleep", json::object(), "seconds");
  check_bad_args("sleep", json::array({1}), "seconds");
  check_bad_args("sleep", json{{"seconds", 1}, {"extra", 1}}, "extra");
}

TEST_CASE("worker functions: hash") {
  json v = ok_value(call_function("hash", json{{"data", "abc"}}));
  CHECK(v["blake2b"] == sodium_hash_hex("abc"));
  CHECK(v["blake2b"].get<std::string>().size() == 64);
  CHECK(v["size"] == 3);

  const std::string bytes("\x00\xff\x10 binary\n", 11);
  json via_b64 = ok_value(call_function("hash", json{{"base64", "AP8QIGJpbmFyeQo="}}));
  json via_data = ok_value(call_function("hash", json{{"data", bytes}}));
  CHECK(via_b64 == via_data);
  CHECK(via_b64["size"] == 11);
  CHECK(via_b64["blake2b"] == sodium_hash_hex(bytes));
  CHECK(ok_value(call_function("hash", json{{"base64", ""}}))["blake2b"] == sodium_hash_hex(""));

  check_bad_args("hash", json{{"base64", "not base64!"}}, "base64");
  check_bad_args("hash", json{{"base64", "AP8QIGJpbmFyeQo"}}, "base64");  // missing padding
  check_bad_args("hash", json{{"data", 1}}, "data");
  check_bad_args("hash", json{{"data", "a"}, {"base64", "YQ=="}}, "data");
  check_bad_args("hash", json::object(), "data");
  check_bad_args("hash", json("abc"), "data");
}

TEST_CASE("worker functions: fail") {
  auto r = call_function("fail", json::object());
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().type == "failed");
  CHECK(r.error().message == "requested failure");
  CHECK(r.error().details.is_null());

  r = call_function("fail",
                    json{{"type", "custom"}, {"message", "boom"}, {"details", {{"k", [] {
                                                                                  return json::array({1, 2});
                                                                                }()}}}});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().type == "custom");
  CHECK(r.error().message == "boom");
  CHECK(r.error().details == json{{"k", {1, 2}}});

  check_bad_args("fail", json{{"type", 3}}, "type");
  check_bad_args("fail", json{{"message", false}}, "message");
  check_bad_args("fail", json(7), "args");
}

TEST_CASE("worker functions: exec non-zero exit is an exit_status error with the full value in details") {
  auto r = call_function("exec", json{{"argv", {"/bin/sh", "-c", "echo partial; exit 3"}}});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message == "exec: '/bin/sh' exited with status 3");
  json v = failed_exec(std::move(r), "exit_status");
  CHECK(v["stdout"] == "partial\n");
  CHECK(v["exit_code"] == 3);
  CHECK(v["signal"].is_null());
  CHECK(v["signal_name"].is_null());
  CHECK(v["timed_out"] == false);
  CHECK(v["duration_ms"].is_number());
}

TEST_CASE("worker functions: exec reports a signal death as a signal error") {
  json v = sh_failing("kill -9 $$", "signal");
  CHECK(v["exit_code"].is_null());
  CHECK(v["signal"] == 9);
  CHECK(v["signal_name"] == "SIGKILL");
}

TEST_CASE("worker functions: exec captures stdout and stderr separately") {
  json v = sh("printf out; printf err >&2; printf more");
  CHECK(v["stdout"] == "outmore");
  CHECK(v["stderr"] == "err");
  CHECK(v["exit_code"] == 0);
  CHECK(v["stdout_truncated"] == false);
  CHECK(v["stderr_truncated"] == false);
}

TEST_CASE("worker functions: exec output beyond max_output fails the task (output_too_large) and keeps draining") {
  json v = sh_failing("head -c 1000000 /dev/zero; echo done >&2", "output_too_large", json{{"max_output", 10}});
  CHECK(v["stdout"] == std::string(10, '\0'));
  CHECK(v["stdout_bytes"] == 1000000);
  CHECK(v["stdout_truncated"] == true);
  CHECK(v["stderr"] == "done\n");
  CHECK(v["stderr_truncated"] == false);
  CHECK(v["exit_code"] == 0);
  CHECK(v["timed_out"] == false);

  json zero = sh_failing("echo hi", "output_too_large", json{{"max_output", 0}});
  CHECK(zero["stdout"] == "");
  CHECK(zero["stdout_truncated"] == true);
}

TEST_CASE("worker functions: exec cwd, env and stdin") {
  authrun::test::TempDir dir;
  json v = sh("pwd -P", json{{"cwd", dir.path()}});
  char resolved[PATH_MAX];
  REQUIRE(realpath(dir.path().c_str(), resolved) != nullptr);
  CHECK(v["stdout"] == std::string(resolved) + "\n");

  v = sh("printf '%s|%s' \"$AUTHRUN_TEST_VAR\" \"$HOME\"",
         json{{"env", {{"AUTHRUN_TEST_VAR", "x y"}, {"HOME", "/nowhere"}}}});
  CHECK(v["stdout"] == "x y|/nowhere");
  v = sh("test -n \"$PATH\" && echo inherited");
  CHECK(v["stdout"] == "inherited\n");

  v = ok_value(call_function("exec", json{{"argv", {"cat"}}, {"stdin", "line 1\nline 2\n"}}));
  CHECK(v["stdout"] == "line 1\nline 2\n");
  CHECK(v["exit_code"] == 0);

  // Large stdin with large output both ways: the poll loop must not deadlock.
  const std::string big(3 * 1024 * 1024, 'z');
  v = ok_value(call_function("exec", json{{"argv", {"cat"}}, {"stdin", big}, {"max_output", 64 << 20}}));
  CHECK(v["stdout"].get_ref<const std::string&>() == big);

  // Without stdin the child reads /dev/null (no hang); a child ignoring its stdin does not hurt us.
  v = ok_value(call_function("exec", json{{"argv", {"cat"}}}));
  CHECK(v["stdout"] == "");
  v = sh("exit 0", json{{"stdin", big}});
  CHECK(v["exit_code"] == 0);
}

TEST_CASE("worker functions: exec child has default SIGPIPE even though the worker ignores it") {
  (void)sh("true");  // the first exec makes the worker ignore SIGPIPE
  json v = sh("yes | head -n 1");
  CHECK(v["stdout"] == "y\n");
  CHECK(v["stderr"] == "");  // `yes` died of SIGPIPE instead of reporting EPIPE
}

TEST_CASE("worker functions: exec timeout kills the process group") {
  // The child's first line takes a shell's start (milliseconds): a limit of two seconds (scaled) leaves it a
  // hundred times that, and the sleep after it would take ten minutes.
  const double limit = 2 * authrun::test::time_scale();
  const auto start = std::chrono::steady_clock::now();
  json v = sh_failing("echo started; sleep 600; echo never", "timeout", json{{"timeout", limit}});
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(elapsed < authrun::test::scaled(std::chrono::seconds(30)));
  CHECK(v["timed_out"] == true);
  CHECK(v["signal"] == 9);
  CHECK(v["stdout"] == "started\n");

  v = failed_exec(call_function("exec", json{{"argv", {"sleep", "10"}}, {"timeout", 0.3}}), "timeout");
  CHECK(v["timed_out"] == true);
  CHECK(v["signal_name"] == "SIGKILL");

  // The child closes its outputs but keeps running: the deadline still holds.
  const auto start2 = std::chrono::steady_clock::now();
  v = sh_failing("exec >&- 2>&-; sleep 10", "timeout", json{{"timeout", 0.3}});
  CHECK(std::chrono::steady_clock::now() - start2 < authrun::test::scaled(std::chrono::seconds(5)));
  CHECK(v["timed_out"] == true);

  v = sh("echo quick", json{{"timeout", 5}});
  CHECK(v["timed_out"] == false);
  CHECK(v["stdout"] == "quick\n");
}

TEST_CASE("worker functions: exec of a missing program is exec_failed") {
  auto r = call_function("exec", json{{"argv", {"/nonexistent/authrun-no-such-program"}}});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().type == "exec_failed");
  CHECK(r.error().message ==
        "exec: cannot run '/nonexistent/authrun-no-such-program': No such file or directory");

  r = call_function("exec", json{{"argv", {"authrun-no-such-program-on-path"}}});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().type == "exec_failed");

  r = call_function("exec", json{{"argv", {"true"}}, {"cwd", "/nonexistent-authrun-dir"}});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().type == "exec_failed");
  CHECK(r.error().message.find("cwd") != std::string::npos);
}

TEST_CASE("worker functions: exec bad args name the field") {
  check_bad_args("exec", json("ls"), "argv");
  check_bad_args("exec", json::object(), "args.argv");
  check_bad_args("exec", json{{"argv", json::array()}}, "args.argv");
  check_bad_args("exec", json{{"argv", "ls"}}, "args.argv");
  check_bad_args("exec", json{{"argv", {"ls", 1}}}, "args.argv");
  check_bad_args("exec", json{{"argv", {std::string("l\0s", 3)}}}, "args.argv");
  check_bad_args("exec", json{{"argv", {"true"}}, {"env", {"A=B"}}}, "args.env");
  check_bad_args("exec", json{{"argv", {"true"}}, {"env", {{"A", 1}}}}, "args.env.A");
  check_bad_args("exec", json{{"argv", {"true"}}, {"env", {{"A=B", "x"}}}}, "args.env");
  check_bad_args("exec", json{{"argv", {"true"}}, {"cwd", 5}}, "args.cwd");
  check_bad_args("exec", json{{"argv", {"true"}}, {"cwd", ""}}, "args.cwd");
  check_bad_args("exec", json{{"argv", {"true"}}, {"stdin", {1}}}, "args.stdin");
  check_bad_args("exec", json{{"argv", {"true"}}, {"timeout", 0}}, "args.timeout");
  check_bad_args("exec", json{{"argv", {"true"}}, {"timeout", -1}}, "args.timeout");
  check_bad_args("exec", json{{"argv", {"true"}}, {"timeout", "1"}}, "args.timeout");
  check_bad_args("exec", json{{"argv", {"true"}}, {"max_output", -1}}, "args.max_output");
  check_bad_args("exec", json{{"argv", {"true"}}, {"max_output", 1.5}}, "args.max_output");
  check_bad_args("exec", json{{"argv", {"true"}}, {"max_output", (64 << 20) + 1}}, "args.max_output");
  check_bad_args("exec", json{{"argv", {"true"}}, {"timout", 1}}, "args.timout");
  // null means absent for optional fields
  CHECK(ok_value(call_function(
            "exec", json{{"argv", {"true"}}, {"timeout", nullptr}, {"env", nullptr}}))["exit_code"] == 0);
}

namespace {

std::size_t open_fd_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

}  // namespace

TEST_CASE("worker functions: exec child gets only fds 0-2 and the worker leaks none") {
  const std::size_t before = open_fd_count();
  // An extra O_CLOEXEC fd in the worker must not reach the child.
  auto extra = authrun::protocol::make_pipe();
  REQUIRE(extra.has_value());
  json v = sh("ls /proc/$$/fd");
  CHECK(v["stdout"] == "0\n1\n2\n");
  extra = authrun::protocol::make_pipe();  // drop it again
  for (int i = 0; i < 5; ++i) {
    (void)sh("echo x", json{{"stdin", "y"}, {"timeout", 2}});
    (void)call_function("exec", json{{"argv", {"sleep", "5"}}, {"timeout", 0.05}});
    (void)call_function("exec", json{{"argv", {"/nonexistent/x"}}, {"stdin", "y"}});
  }
  extra.value().read.close();
  extra.value().write.close();
  CHECK(open_fd_count() == before);
}

namespace {

std::string random_bytes(std::size_t n) {
  REQUIRE(sodium_init() >= 0);
  std::string s(n, '\0');
  randombytes_buf(s.data(), s.size());
  return s;
}

json bytes(const std::string& s) { return json::binary(std::vector<std::uint8_t>(s.begin(), s.end())); }

}  // namespace

TEST_CASE("worker functions: exec output that is not UTF-8 comes back whole as stdout_base64") {
  json v = sh("printf 'caf\\351'");
  CHECK_FALSE(v.contains("stdout"));
  CHECK(v["stdout_base64"] == "Y2Fm6Q==");  // c a f 0xE9
  CHECK(v["stderr"] == "");
  const std::string data = random_bytes(100000);
  v = ok_value(call_function("exec", json{{"argv", {"cat"}}, {"stdin", bytes(data)}}));
  REQUIRE(v.contains("stdout_base64"));
  CHECK(authrun::worker::from_base64(v["stdout_base64"].get<std::string>()) == data);
  CHECK(v["stdout_bytes"] == 100000);
}

TEST_CASE("worker functions: exec arguments and stdin are bytes: byte strings, argv_base64, stdin_base64") {
  const std::string name = "caf\xe9 \x01\xff";
  json v = ok_value(call_function("exec", json{{"argv", {bytes("printf"), bytes("%s"), bytes(name)}}}));
  CHECK(authrun::worker::from_base64(v["stdout_base64"].get<std::string>()) == name);
  v = ok_value(call_function("exec", json{{"argv_base64", {authrun::worker::to_base64("printf"),
                                                           authrun::worker::to_base64("%s"),
                                                           authrun::worker::to_base64(name)}}}));
  CHECK(authrun::worker::from_base64(v["stdout_base64"].get<std::string>()) == name);
  const std::string with_nul("a\0b\xfe", 4);
  v = ok_value(call_function("exec", json{{"argv", {"cat"}}, {"stdin_base64", authrun::worker::to_base64(with_nul)}}));
  CHECK(authrun::worker::from_base64(v["stdout_base64"].get<std::string>()) == with_nul);
  check_bad_args("exec", json{{"argv", {"true"}}, {"argv_base64", {"dHJ1ZQ=="}}}, "args.argv_base64");
  check_bad_args("exec", json{{"argv_base64", {"not base64!"}}}, "args.argv_base64");
  check_bad_args("exec", json{{"argv", {"cat"}}, {"stdin_base64", "%%%"}}, "args.stdin_base64");
  check_bad_args("exec", json{{"argv", {bytes(std::string("a\0b", 3))}}}, "args.argv");
}

TEST_CASE("worker functions: exec stream sends the output in order through the sink, none in the value") {
  check_bad_args("exec", json{{"argv", {"true"}}, {"stream", true}}, "args.stream");
  std::string out, err;
  std::size_t pieces = 0;
  authrun::worker::TaskOutputScope scope([&](bool is_stderr, std::string_view b) {
    (is_stderr ? err : out).append(b);
    ++pieces;
    return true;
  });
  const std::string data = random_bytes(5 * 1024 * 1024);
  json v = ok_value(call_function("exec", json{{"argv", {"cat"}}, {"stdin", bytes(data)}, {"stream", true}}));
  CHECK(out == data);  // beyond max_output's default: streaming keeps nothing, so nothing is cut
  CHECK(pieces > 1);
  CHECK_FALSE(v.contains("stdout"));
  CHECK_FALSE(v.contains("stdout_base64"));
  CHECK(v["stdout_bytes"] == data.size());
  v = sh_failing("printf e >&2; exit 4", "exit_status", json{{"stream", true}});
  CHECK(err == "e");
  CHECK(v["exit_code"] == 4);
}

TEST_CASE("worker functions: exec sink failure kills the child and fails the task") {
  authrun::worker::TaskOutputScope scope([](bool, std::string_view) { return false; });
  const auto start = std::chrono::steady_clock::now();
  json v = sh_failing("echo x; sleep 600", "output_lost", json{{"stream", true}});
  CHECK(std::chrono::steady_clock::now() - start < authrun::test::scaled(std::chrono::seconds(20)));
  CHECK(v["signal"] == 9);
}

TEST_CASE("worker functions: exec quotes a huge program name cut to a readable length") {
  auto r = call_function("exec", json{{"argv", {std::string(200000, 'x')}}});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().type == "exec_failed");
  CHECK(r.error().message.size() < 300);
  CHECK(r.error().message.find("(200000 bytes)") != std::string::npos);
}
