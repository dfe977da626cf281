// `authrun exec` is byte-exact: random binary, NUL bytes, invalid UTF-8 and non-UTF-8 file names, compared
// byte for byte with what the program itself produces; large output streams through without a cap.
#include <doctest/doctest.h>

#include <sodium.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "tests/helpers/test_util.hpp"

using namespace authrun::test;

namespace {

RunOutput exec(std::vector<std::string> args, const std::string& input = "") {
  args.insert(args.begin(), {authrun_bin(), "exec", "--no-progress"});
  return run_program(args, input, std::chrono::seconds(300));
}

std::string random_bytes(std::size_t n) {
  REQUIRE(sodium_init() >= 0);
  std::string s(n, '\0');
  randombytes_buf(s.data(), s.size());
  return s;
}

std::string md5_of(const std::string& path) {
  auto r = run_program({"/usr/bin/md5sum", path});
  REQUIRE(r.exit_code == 0);
  return r.out.substr(0, 32);
}

}  // namespace

TEST_CASE("exec bytes: random binary output arrives byte for byte (as cat itself writes it)") {
  TempDir dir;
  const std::string data = random_bytes(100000);
  const std::string file = dir.write("rand.bin", data);
  auto r = exec({"-j1", "--", "cat", ":::", file});
  CHECK(r.exit_code == 0);
  CHECK(r.out.size() == data.size());
  CHECK(r.out == data);
  // Several jobs at once, each whole: the output of job k is the file k times over.
  auto many = exec({"-j2", "-k", "--", "cat", ":::", file, file, file});
  CHECK(many.out == data + data + data);
}

TEST_CASE("exec bytes: NUL bytes and invalid UTF-8 in output, on stdout and stderr") {
  auto r = exec({"--", "printf", "caf\\351\\000x\\377", ":::", "ignored"});
  // printf prints its format and warns about the excess argument on stderr; what counts are the bytes.
  CHECK(r.out == std::string("caf\xe9\0x\xff", 7));
  auto err = exec({"--", "sh", "-c", "printf 'caf\\351\\000' >&2", ":::", "x"});
  CHECK(err.exit_code == 0);
  CHECK(err.err == std::string("caf\xe9\0", 5));
}

TEST_CASE("exec bytes: non-UTF-8 file names as arguments from :::, stdin lines and --shell") {
  TempDir dir;
  const std::string name = dir.path() + "/caf\xe9.txt";
  { std::ofstream(name) << "content\n"; }
  auto from_list = exec({"--", "cat", ":::", name});
  CHECK(from_list.exit_code == 0);
  CHECK(from_list.out == "content\n");
  auto from_stdin = exec({"--", "ls"}, name + "\n");
  CHECK(from_stdin.exit_code == 0);
  CHECK(from_stdin.out == name + "\n");
  auto shell = exec({"--shell", "--", "cat {} | tr a-z A-Z", ":::", name});
  CHECK(shell.exit_code == 0);
  CHECK(shell.out == "CONTENT\n");
  auto tagged = exec({"--tag", "--", "echo", "x", ":::", "\xff\xfe"});
  CHECK(tagged.out == "\xff\xfe\tx \xff\xfe\n");
}

TEST_CASE("exec bytes: 100 MiB from one job streams through whole, exit 0 (no cap, no truncation)") {
  TempDir dir;
  const std::string file = dir.path() + "/big.bin";
  REQUIRE(run_program({"/bin/sh", "-c", "head -c 104857600 /dev/urandom > " + file}).exit_code == 0);
  const std::string out = dir.path() + "/out.bin";
  auto r = run_program({"/bin/sh", "-c", std::string(authrun_bin()) + " exec --no-progress -j1 cat ::: " + file + " > " + out},
                       "", std::chrono::seconds(300));
  CHECK(r.exit_code == 0);
  CHECK(r.err.empty());
  CHECK(md5_of(out) == md5_of(file));
}

TEST_CASE("exec bytes: an error message quoting a huge argument cuts it (E2BIG)") {
  // 3 MiB in one argument: execve refuses it (E2BIG; one argument may hold at most 128 KiB).
  const std::string huge(3 * 1024 * 1024, 'a');
  auto r = exec({"--", "echo"}, huge + "\n");
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("Argument list too long") != std::string::npos);
  CHECK(r.err.size() < 1000);
}
