// `authrun exec`'s --retries, --retry-failed, --results layout, --eta/--progress and streamed large output,
// end to end with the real authrun and workers.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/helpers/test_util.hpp"

using namespace authrun::test;

namespace {

RunOutput exec(std::vector<std::string> args, const std::string& input = "") {
  args.insert(args.begin(), {authrun_bin(), "exec", "--no-progress"});
  return run_program(args, input);
}

// Runs a bash script in `dir` where A is `authrun exec --no-progress`.
RunOutput script(const TempDir& dir, const std::string& body) {
  const std::string text = "cd '" + dir.path() + "' || exit 99\nA() { '" + std::string(authrun_bin()) +
                           "' exec --no-progress \"$@\"; }\n" + body + "\n";
  return run_program({"/bin/bash", "-c", text}, "", std::chrono::seconds(120));
}

// `n` bytes that are not text: every byte value, NULs and invalid UTF-8 included.
std::string binary_bytes(std::size_t n) {
  std::string s(n, '\0');
  std::uint32_t x = 12345;
  for (auto& c : s) {
    x = x * 1103515245 + 12345;
    c = static_cast<char>(x >> 16);
  }
  return s;
}

}  // namespace

TEST_CASE("exec --retries N: a failing command runs again, up to N attempts, only the last attempt's output shows") {
  TempDir dir;
  // Fails on its first two attempts, succeeds on the third.
  auto r = script(dir, "A -k --retries 3 'echo try; echo x >> count; test $(wc -l < count) -ge 3 && echo ok {}' ::: a; "
                       "echo rc=$?; wc -l < count");
  CHECK(r.out == "try\nok a\nrc=0\n3\n");
  // Always fails: exactly N attempts, one output, the job counts once as failed.
  auto s = script(dir, "rm -f count; A -k --retries 2 --joblog jl 'echo out {}; echo x >> count; exit 4' ::: b; "
                       "echo rc=$?; wc -l < count; cut -f1,7 jl");
  CHECK(s.out == "out b\nrc=1\n2\nSeq\tExitval\n1\t4\n");
  // Without --retries a failed command is not run again.
  auto t = script(dir, "rm -f count; A 'echo x >> count; exit 1' ::: c; echo rc=$?; wc -l < count");
  CHECK(t.out == "rc=1\n1\n");
}

TEST_CASE("exec --retries: a job killed by --timeout is retried too") {
  TempDir dir;
  auto r = script(dir, "A --retries 2 --timeout 1 'echo x >> count; test $(wc -l < count) -ge 2 || sleep 60; echo done' ::: a; "
                       "echo rc=$?; wc -l < count");
  CHECK(r.out == "done a\nrc=0\n2\n");  // the value appended, as parallel does
}

TEST_CASE("exec --retry-failed reruns the joblog's failed jobs under their numbers and appends to the joblog") {
  TempDir dir;
  auto r = script(dir, "A -k --joblog jl 'echo {}; exit {}' ::: 0 3 0 4 > /dev/null; echo rc=$?; "
                       "A -k --retry-failed --joblog jl; echo rc=$?; cut -f1,7,9 jl");
  CHECK(r.out ==
        "rc=2\n3\n4\nrc=2\nSeq\tExitval\tCommand\n1\t0\techo 0; exit 0\n2\t3\techo 3; exit 3\n3\t0\techo 0; exit 0\n"
        "4\t4\techo 4; exit 4\n2\t3\techo 3; exit 3\n4\t4\techo 4; exit 4\n");
  auto none = exec({"--retry-failed"});
  CHECK(none.exit_code == 255);
  CHECK(contains(none.err, "--joblog"));
}

TEST_CASE("exec --results DIR: GNU parallel's layout, names with / \\ and tabs escaped, bytes exact") {
  TempDir dir;
  const std::string res = dir.path() + "/res";
  auto r = exec({"-k", "--results", res, "--", "sh", "-c", "printf 'out %s\\n' \"$0\"; echo err >&2; exit 3", ":::", "a", "b/c", "d\\e", "x\ty"});
  CHECK(r.exit_code == 4);
  CHECK(r.out.empty());  // the files only, as GNU parallel 20221122 does (without --membuffer)
  CHECK(read_file(res + "/1/a/stdout") == "out a\n");
  CHECK(read_file(res + "/1/a/stderr") == "err\n");
  CHECK(read_file(res + "/1/a/seq") == "1");
  CHECK(read_file(res + "/1/b\\_c/stdout") == "out b/c\n");
  CHECK(read_file(res + "/1/d\\\\e/seq") == "3");
  CHECK(read_file(res + "/1/x\\ty/stdout") == "out x\ty\n");
  // Two sources: DIR/1/<value>/2/<value>/.
  auto two = exec({"-k", "--results", dir.path() + "/two", "--", "echo", ":::", "a", "b", ":::", "1"});
  CHECK(two.exit_code == 0);
  CHECK(read_file(dir.path() + "/two/1/b/2/1/stdout") == "b 1\n");
  CHECK(read_file(dir.path() + "/two/1/b/2/1/seq") == "2");
  // Binary output, byte for byte, in the file.
  const std::string data = binary_bytes(3 * 1024 * 1024 + 17);
  const std::string file = dir.write("data.bin", data);
  auto bin = exec({"--results", dir.path() + "/bin", "--", "cat", ":::", file});
  CHECK(bin.exit_code == 0);
  CHECK(bin.out.empty());
  std::string escaped;
  for (char c : file) escaped += c == '/' ? std::string("\\_") : std::string(1, c);
  CHECK(read_file(dir.path() + "/bin/1/" + escaped + "/stdout") == data);
}

TEST_CASE("exec --results with a replacement string: that path, a directory if it ends in /") {
  TempDir dir;
  auto r = exec({"--results", dir.path() + "/out/{}/", "--", "echo", ":::", "a"});
  CHECK(r.exit_code == 0);
  CHECK(read_file(dir.path() + "/out/a/stdout") == "a\n");
  auto f = exec({"--results", dir.path() + "/file-{}", "--", "echo", ":::", "b"});
  CHECK(read_file(dir.path() + "/file-b") == "b\n");
  CHECK(read_file(dir.path() + "/file-b.seq") == "1");
}

TEST_CASE("exec --eta and --progress: GNU parallel's lines on stderr, stdout untouched") {
  for (const char* option : {"--eta", "--progress"}) {
    CAPTURE(option);
    auto r = run_program({authrun_bin(), "exec", option, "-k", "-j", "2", "--", "echo", ":::", "a", "b", "c"});
    CHECK(r.exit_code == 0);
    CHECK(r.out == "a\nb\nc\n");
    CHECK(contains(r.err, "Computers / CPU cores / Max jobs to run\n1:local / "));
    CHECK(contains(r.err, "local:0/3/100%/"));
    if (std::string(option) == "--eta") CHECK(contains(r.err, "ETA: "));
  }
}

TEST_CASE("exec: a job's large output streams out while it runs, byte-exact") {
  TempDir dir;
  // The job writes 3 MB, then waits for a file that the reader makes only after it has read those 3 MB: if
  // the output were held until the job ended, this would never finish (the run's limit would end it).
  auto r = script(dir, "A -j1 -- sh -c 'head -c 3000000 /dev/zero; while [ ! -e flag ]; do sleep 0.05; done; echo end' ::: x | "
                       "{ head -c 3000000 | wc -c; touch flag; cat; }; echo rc=${PIPESTATUS[0]}");
  CHECK(r.out == "3000000\nend\nrc=0\n");
  // Other jobs that end meanwhile wait and then print whole; nothing is lost or mixed.
  const std::string data = binary_bytes(5 * 1024 * 1024);
  const std::string file = dir.write("big.bin", data);
  auto mixed = exec({"-j", "2", "--", "sh", "-c", "if [ \"$0\" = big ]; then cat " + file + "; else echo \"small $0\"; fi", ":::",
                     "big", "1", "2", "3"});
  CHECK(mixed.exit_code == 0);
  const auto at = mixed.out.find(data);
  REQUIRE(at != std::string::npos);
  std::string rest = mixed.out.substr(0, at) + mixed.out.substr(at + data.size());
  auto lines = split_lines(rest);
  std::sort(lines.begin(), lines.end());
  CHECK(lines == std::vector<std::string>{"small 1", "small 2", "small 3"});
}

TEST_CASE("exec: the output's reader going away during a streamed job ends the run quietly (141)") {
  TempDir dir;
  auto r = script(dir, "A -j1 -- sh -c 'head -c 50000000 /dev/zero' ::: x 2> err | head -c 10 | wc -c; "
                       "echo rc=${PIPESTATUS[0]}; wc -c < err");
  CHECK(r.out == "10\nrc=141\n0\n");
}
