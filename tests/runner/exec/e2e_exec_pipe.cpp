// `authrun exec --pipe`: a large random stdin through chunks comes out byte for byte (md5 against cat), is cut
// where GNU parallel cuts it, and streams with bounded memory; --delay spaces job starts; bad options and a
// record too long for one job are clear errors.
#include <doctest/doctest.h>

#include <sodium.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runner/exec/exec_pipe.hpp"
#include "tests/helpers/test_util.hpp"

using namespace authrun::test;

namespace {

RunOutput exec(std::vector<std::string> args, const std::string& input = "") {
  args.insert(args.begin(), {authrun_bin(), "exec", "--no-progress"});
  return run_program(args, input, std::chrono::seconds(300));
}

// A file of `n` random bytes in `dir`.
std::string random_file(const TempDir& dir, const std::string& name, std::size_t n) {
  REQUIRE(sodium_init() >= 0);
  std::string data(n, '\0');
  randombytes_buf(data.data(), data.size());
  return dir.write(name, data);
}

std::string md5_of(const std::string& path) {
  auto r = run_program({"/usr/bin/md5sum", path});
  REQUIRE(r.exit_code == 0);
  return r.out.substr(0, 32);
}

// The high-water mark of a running process's resident memory (VmHWM of /proc/PID/status), in KiB; 0 once
// it is gone. It belongs to the process's own memory since its exec (unlike wait4's ru_maxrss, which also
// counts the memory of the process that spawned it).
long peak_rss_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

// Runs argv with stdin from `in` and stdout to `out` (files), stderr to `err`; returns the wait status and,
// in `max_rss_kib`, the process's peak resident memory as last seen before it ended (looked at every 10 ms:
// a high-water mark, so only growth in the last moments could be missed).
int run_measured(const std::vector<std::string>& argv, const std::string& in, const std::string& out, const std::string& err,
                 long& max_rss_kib) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, in.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE(rc == 0);
  int status = 0;
  max_rss_kib = 0;
  for (;;) {
    // Read before reaping: a zombie has no memory to report.
    max_rss_kib = std::max(max_rss_kib, peak_rss_kib(pid));
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    REQUIRE(done >= 0);
    if (done == pid) return status;
    ::usleep(10 * 1000);
  }
}

}  // namespace

TEST_CASE("exec pipe: 50 MB of random stdin through --pipe --block 1M cat comes out whole (md5 as cat's)") {
  TempDir dir;
  const std::string in = random_file(dir, "in.bin", 50u * 1000 * 1000);
  const std::string out = dir.path() + "/out.bin";
  auto r = run_program({"/bin/bash", "-c",
                        "exec '" + std::string(authrun_bin()) + "' exec --no-progress -k -j2 --pipe --block 1M cat < '" + in +
                            "' > '" + out + "'"},
                       "", std::chrono::seconds(600));
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(md5_of(out) == md5_of(in));

  // The chunks: about one a MiB, each ending at a newline of the input (random bytes have one every 256 or
  // so), and their sizes add up.
  auto sizes = run_program({"/bin/bash", "-c",
                            "exec '" + std::string(authrun_bin()) + "' exec --no-progress -k -j2 --pipe --block 1M wc -c < '" + in + "'"},
                           "", std::chrono::seconds(600));
  REQUIRE(sizes.exit_code == 0);
  const auto lines = split_lines(sizes.out);
  std::uint64_t total = 0;
  for (const auto& line : lines) total += std::stoull(line);
  CHECK(total == 50u * 1000 * 1000);
  CHECK(lines.size() >= 48);
  CHECK(lines.size() <= 50);
  // Where GNU parallel cuts, when it is here to ask (the conformance suite compares small cases too).
  if (::access("/usr/bin/parallel", X_OK) == 0) {
    auto theirs = run_program({"/bin/bash", "-c", "exec parallel --will-cite -k -j2 --pipe --block 1M wc -c < '" + in + "'"}, "",
                              std::chrono::seconds(600));
    REQUIRE(theirs.exit_code == 0);
    CHECK(theirs.out == sizes.out);
  }
}

TEST_CASE("exec pipe: stdin streams: the runner's peak memory grows far less than the input") {
  TempDir dir;
  constexpr std::size_t k_input = 64u * 1024 * 1024;
  const std::string big = random_file(dir, "big.bin", k_input);
  const std::string small = random_file(dir, "small.bin", 512 * 1024);
  // AddressSanitizer keeps freed memory aside (256 MiB by default) before reusing it: that would be its
  // memory, not ours. A small quarantine lets the bound speak about what authrun holds.
  std::string asan = std::getenv("ASAN_OPTIONS") ? std::getenv("ASAN_OPTIONS") : "";
  ::setenv("ASAN_OPTIONS", (asan + (asan.empty() ? "" : ":") + "quarantine_size_mb=4").c_str(), 1);
  auto peak_kib = [&](const std::string& in) {
    long rss_kib = 0;
    const int status = run_measured({authrun_bin(), "exec", "--no-progress", "-k", "-j2", "--pipe", "--block", "1M", "--", "cat"}, in,
                                    dir.path() + "/out.bin", dir.path() + "/err.txt", rss_kib);
    CHECK_MESSAGE(WIFEXITED(status), read_file(dir.path() + "/err.txt"));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(md5_of(dir.path() + "/out.bin") == md5_of(in));
    return rss_kib;
  };
  const long base = peak_kib(small);
  const long peak = peak_kib(big);
  ::setenv("ASAN_OPTIONS", asan.c_str(), 1);
  if (asan.empty()) ::unsetenv("ASAN_OPTIONS");
  // Held at once: a chunk read ahead, one per worker, each in a few copies (args, frame), and the output of
  // the jobs waiting for their turn: some MiB, never the whole input.
  MESSAGE("peak RSS of the runner, authrun exec -j2 --pipe --block 1M cat: " << base / 1024 << " MiB for a 0.5 MiB stdin, " << peak / 1024
                                                                 << " MiB for a " << k_input / (1024 * 1024) << " MiB one");
  CHECK((peak - base) * 1024 < long(k_input / 2));
}

TEST_CASE("exec pipe: --delay spaces the starts of jobs that could all start at once") {
  // Four workers, four jobs: without --delay all four start together. Each job writes when it started.
  auto r = exec({"-j4", "--delay", "0.5", "--", "sh", "-c", "date +%s.%N", ":::", "1", "2", "3", "4"});
  REQUIRE(r.exit_code == 0);
  std::vector<double> starts;
  for (const auto& line : split_lines(r.out)) starts.push_back(std::stod(line));
  REQUIRE(starts.size() == 4);
  std::sort(starts.begin(), starts.end());
  // A lower bound only (a busy machine makes gaps longer, never shorter, but a job's `date` may run a
  // little later after its start than the next job's).
  for (std::size_t i = 1; i < starts.size(); ++i) CHECK(starts[i] - starts[i - 1] >= 0.35);
  CHECK(starts.back() - starts.front() >= 1.4);
}

TEST_CASE("exec pipe: a record longer than one job's input may be is a clear error, not a cut") {
  // 300 KB without a newline, with tasks of at most 200,000 bytes: no job can take it whole.
  const std::string input(300000, 'x');
  auto r = exec({"--max-payload", "200000", "--pipe", "--block", "1000", "--", "wc", "-c"}, input);
  CHECK(r.exit_code == 255);
  CHECK(contains(r.err, "stdin: a record"));
  CHECK(r.out.empty());
  // Records that fit go through with the same limits.
  std::string lines;
  for (int i = 0; i < 3000; ++i) lines += std::string(99, 'y') + "\n";
  auto ok = exec({"-k", "--max-payload", "200000", "--pipe", "--block", "100k", "--", "wc", "-c"}, lines);
  CHECK(ok.exit_code == 0);
  CHECK(ok.out == "100000\n100000\n100000\n");
}

TEST_CASE("exec pipe: bad --block, --delay and option mixes are refused with their name") {
  auto zero = exec({"--pipe", "--block", "0", "--", "cat"}, "x\n");
  CHECK(zero.exit_code == 255);
  CHECK(contains(zero.err, "--block"));
  auto junk = exec({"--pipe", "--block", "12Q", "--", "cat"}, "x\n");
  CHECK(junk.exit_code == 255);
  CHECK(contains(junk.err, "'12Q'"));
  auto delay = exec({"--delay", "soon", "--", "echo", ":::", "a"});
  CHECK(delay.exit_code == 255);
  CHECK(contains(delay.err, "--delay"));
  auto sources = exec({"--pipe", "--", "cat", ":::", "a"}, "x\n");
  CHECK(sources.exit_code == 255);
  CHECK(contains(sources.err, "--pipe"));
  auto alone = exec({"--block", "10", "--", "echo", ":::", "a"});
  CHECK(alone.exit_code == 255);
  CHECK(contains(alone.err, "go with --pipe"));
}

TEST_CASE("exec pipe: sizes, durations and separators are read as GNU parallel reads them") {
  using namespace authrun::runner;
  CHECK(parse_size("1M", "--block").value() == 1048576);
  CHECK(parse_size("1m", "--block").value() == 1000000);
  CHECK(parse_size("1k", "--block").value() == 1000);
  CHECK(parse_size("1K", "--block").value() == 1024);
  CHECK(parse_size("2Ki", "--block").value() == 2048);
  CHECK(parse_size("1.5k", "--block").value() == 1500);
  CHECK(parse_size("1G", "--block").value() == 1073741824);
  CHECK(parse_size("100", "--block").value() == 100);
  CHECK_FALSE(parse_size("", "--block"));
  CHECK_FALSE(parse_size("M", "--block"));
  CHECK_FALSE(parse_size("1MB", "--block"));
  CHECK_FALSE(parse_size("-1", "--block"));
  CHECK(parse_duration("0.5", "--delay").value() == doctest::Approx(0.5));
  CHECK(parse_duration("2s", "--delay").value() == doctest::Approx(2));
  CHECK(parse_duration("1m30s", "--delay").value() == doctest::Approx(90));
  CHECK(parse_duration("1h", "--delay").value() == doctest::Approx(3600));
  CHECK(parse_duration("1m30", "--delay").value() == doctest::Approx(90));
  CHECK_FALSE(parse_duration("soon", "--delay"));
  CHECK_FALSE(parse_duration("", "--delay"));
  CHECK(unescape_record_separator("\\n") == "\n");
  CHECK(unescape_record_separator("a\\0b") == std::string("a\0b", 3));
  CHECK(unescape_record_separator("\\t\\r\\\\") == "\t\r\\");
  CHECK(unescape_record_separator("\\x") == "\\x");
}

TEST_CASE("exec pipe: the splitter cuts after the last record end of each block, and every N records with -N") {
  using namespace authrun::runner;
  auto cut = [](PipeSplit split, const std::string& input) {
    std::vector<std::string> chunks;
    PipeSplitter s(split);
    std::size_t at = 0;
    for (;;) {
      const std::size_t n = std::min(s.read_size(), input.size() - at);
      std::copy_n(input.data() + at, n, s.reserve(s.read_size()));
      const bool eof = n < s.read_size();
      s.commit(n);
      at += n;
      REQUIRE(s.round(eof, [&](std::string c) { chunks.push_back(std::move(c)); return true; }).value());
      if (eof) break;
    }
    REQUIRE(s.finish([&](std::string c) { chunks.push_back(std::move(c)); return true; }).value());
    return chunks;
  };
  PipeSplit blocks;
  blocks.block = 10;
  // 10 bytes read, cut after the last newline; the rest waits for the next block.
  CHECK(cut(blocks, "aaaaaaa\nbbbbbbb\nccc\n") == std::vector<std::string>{"aaaaaaa\n", "bbbbbbb\n", "ccc\n"});
  // A record longer than the block: the block grows until it holds one.
  CHECK(cut(blocks, std::string(25, 'x') + "\nyy\n") == std::vector<std::string>{std::string(25, 'x') + "\n", "yy\n"});
  PipeSplit n2;
  n2.records = 2;
  CHECK(cut(n2, "a\nb\nc\nd\ne\n") == std::vector<std::string>{"a\nb\n", "c\nd\n", "e\n"});
  PipeSplit fasta;
  fasta.block = 8;
  fasta.recstart = ">";
  fasta.recend = "";
  CHECK(cut(fasta, ">1\nAC\n>2\nGT\n") == std::vector<std::string>{">1\nAC\n", ">2\nGT\n"});
}
