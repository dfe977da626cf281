// The run key: key files (mode 0600, hex) and the key fd handoff (exactly 32 raw bytes).
#include <doctest/doctest.h>

#include <array>
#include <cctype>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "protocol/fd.hpp"
#include "protocol/run_key.hpp"
#include "tests/helpers/test_util.hpp"

using namespace authrun::protocol;
using authrun::test::TempDir;

namespace {

std::array<std::uint8_t, k_run_key_size> counting_bytes() {
  std::array<std::uint8_t, k_run_key_size> b{};
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(i);
  return b;
}

const char k_counting_hex[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

bool same_key(const RunKey& key, const std::array<std::uint8_t, k_run_key_size>& bytes) {
  return std::memcmp(key.data(), bytes.data(), k_run_key_size) == 0;
}

// Writes `content` to a new file in `dir` with `mode`.
std::string key_file(const TempDir& dir, const std::string& name, const std::string& content, mode_t mode = 0600) {
  std::string path = dir.write(name, content);
  REQUIRE(::chmod(path.c_str(), mode) == 0);
  return path;
}

void check_refused(const std::string& path, std::initializer_list<const char*> parts) {
  auto key = RunKey::load_file(path);
  REQUIRE(!key.has_value());
  CHECK(key.error().code == ErrorCode::key_invalid);
  CHECK(key.error().message.find(path) != std::string::npos);
  for (const char* part : parts) {
    INFO("message: ", key.error().message);
    CHECK(key.error().message.find(part) != std::string::npos);
  }
}

// A pipe holding `bytes`; its write end closed unless `keep_open`.
Pipe pipe_with(const std::string& bytes, bool keep_open = false) {
  auto p = make_pipe();
  REQUIRE(p.has_value());
  REQUIRE(write_all(p->write.get(), as_bytes(bytes), Clock::now() + authrun::test::scaled(std::chrono::seconds(5))));
  if (!keep_open) p->write.close();
  return std::move(*p);
}

}  // namespace

TEST_CASE("run_key: write_file then load_file round trip") {
  TempDir dir;
  std::string path = dir.path() + "/run.key";
  RunKey key = RunKey::from_bytes(counting_bytes());
  REQUIRE(key.write_file(path).has_value());
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(authrun::test::read_file(path) == std::string(k_counting_hex) + "\n");
  auto loaded = RunKey::load_file(path);
  REQUIRE(loaded.has_value());
  CHECK(same_key(*loaded, counting_bytes()));
}

TEST_CASE("run_key: generated keys differ and survive a file round trip") {
  TempDir dir;
  RunKey a = RunKey::generate();
  RunKey b = RunKey::generate();
  CHECK(std::memcmp(a.data(), b.data(), RunKey::size()) != 0);
  REQUIRE(a.write_file(dir.path() + "/a.key").has_value());
  auto loaded = RunKey::load_file(dir.path() + "/a.key");
  REQUIRE(loaded.has_value());
  CHECK(std::memcmp(loaded->data(), a.data(), RunKey::size()) == 0);
}

TEST_CASE("run_key: write_file refuses to overwrite") {
  TempDir dir;
  std::string path = dir.write("exists.key", "old");
  RunKey key = RunKey::generate();
  auto written = key.write_file(path);
  REQUIRE(!written.has_value());
  CHECK(written.error().code == ErrorCode::key_invalid);
  CHECK(authrun::test::read_file(path) == "old");
}

TEST_CASE("run_key: load_file accepts a key without the newline") {
  TempDir dir;
  auto key = RunKey::load_file(key_file(dir, "k", k_counting_hex));
  REQUIRE(key.has_value());
  CHECK(same_key(*key, counting_bytes()));
}

TEST_CASE("run_key: load_file accepts upper-case hex") {
  TempDir dir;
  std::string upper = k_counting_hex;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto key = RunKey::load_file(key_file(dir, "k", upper + "\n"));
  REQUIRE(key.has_value());
  CHECK(same_key(*key, counting_bytes()));
}

TEST_CASE("run_key: load_file refuses mode 0644") {
  TempDir dir;
  check_refused(key_file(dir, "k", std::string(k_counting_hex) + "\n", 0644), {"0644", "chmod 600"});
}

TEST_CASE("run_key: load_file refuses a group-readable file") {
  TempDir dir;
  check_refused(key_file(dir, "k", std::string(k_counting_hex) + "\n", 0640), {"0640", "chmod 600"});
}

TEST_CASE("run_key: load_file refuses a world-writable file") {
  TempDir dir;
  check_refused(key_file(dir, "k", std::string(k_counting_hex) + "\n", 0602), {"chmod 600"});
}

TEST_CASE("run_key: load_file refuses a short key") {
  TempDir dir;
  check_refused(key_file(dir, "k", std::string(k_counting_hex).substr(0, 62) + "\n"), {"64 hex digits"});
}

TEST_CASE("run_key: load_file refuses a long key") {
  TempDir dir;
  check_refused(key_file(dir, "k", std::string(k_counting_hex) + "00\n"), {"64 hex digits"});
}

TEST_CASE("run_key: load_file refuses non-hex text") {
  TempDir dir;
  std::string text = k_counting_hex;
  text[10] = 'g';
  check_refused(key_file(dir, "k", text + "\n"), {"64 hex digits"});
}

TEST_CASE("run_key: load_file refuses raw key bytes") {
  TempDir dir;
  auto b = counting_bytes();
  check_refused(key_file(dir, "k", std::string(b.begin(), b.end())), {"64 hex digits"});
}

TEST_CASE("run_key: load_file refuses an empty file") {
  TempDir dir;
  check_refused(key_file(dir, "k", ""), {"64 hex digits"});
}

TEST_CASE("run_key: load_file refuses trailing text after the newline") {
  TempDir dir;
  check_refused(key_file(dir, "k", std::string(k_counting_hex) + "\n\n"), {"64 hex digits"});
  check_refused(key_file(dir, "k2", std::string(k_counting_hex) + " \n"), {"64 hex digits"});
}

TEST_CASE("run_key: load_file refuses a missing file") {
  TempDir dir;
  check_refused(dir.path() + "/nope.key", {"No such file"});
}

TEST_CASE("run_key: load_file refuses a symlink") {
  TempDir dir;
  std::string target = key_file(dir, "real.key", std::string(k_counting_hex) + "\n");
  REQUIRE(RunKey::load_file(target).has_value());
  std::string link = dir.path() + "/link.key";
  REQUIRE(::symlink(target.c_str(), link.c_str()) == 0);
  check_refused(link, {});
}

TEST_CASE("run_key: load_file refuses a directory") {
  TempDir dir;
  std::string sub = dir.path() + "/sub";
  REQUIRE(::mkdir(sub.c_str(), 0700) == 0);
  check_refused(sub, {"not a regular file"});
}

TEST_CASE("run_key: read_fd with exactly 32 bytes") {
  auto b = counting_bytes();
  Pipe p = pipe_with(std::string(b.begin(), b.end()));
  auto key = RunKey::read_fd(p.read.release());
  REQUIRE(key.has_value());
  CHECK(same_key(*key, b));
}

TEST_CASE("run_key: read_fd with 32 bytes and the writer still open") {
  // The runner may hold its end open a while; 32 bytes and nothing more is a key, and read_fd must not hang.
  auto b = counting_bytes();
  Pipe p = pipe_with(std::string(b.begin(), b.end()), true);
  auto start = Clock::now();
  auto key = RunKey::read_fd(p.read.release());
  REQUIRE(key.has_value());
  CHECK(same_key(*key, b));
  CHECK(Clock::now() - start < authrun::test::scaled(std::chrono::seconds(4)));
}

TEST_CASE("run_key: read_fd closes the fd") {
  auto b = counting_bytes();
  Pipe p = pipe_with(std::string(b.begin(), b.end()));
  int fd = p.read.release();
  REQUIRE(RunKey::read_fd(fd).has_value());
  CHECK(::fcntl(fd, F_GETFD) == -1);
}

TEST_CASE("run_key: read_fd with fewer bytes") {
  Pipe p = pipe_with(std::string(31, 'k'));
  auto key = RunKey::read_fd(p.read.release());
  REQUIRE(!key.has_value());
  CHECK(key.error().code == ErrorCode::key_invalid);
  CHECK(key.error().message.find("31 of 32") != std::string::npos);
}

TEST_CASE("run_key: read_fd with no bytes") {
  Pipe p = pipe_with("");
  auto key = RunKey::read_fd(p.read.release());
  REQUIRE(!key.has_value());
  CHECK(key.error().code == ErrorCode::key_invalid);
  CHECK(key.error().message.find("another process") != std::string::npos);
}

TEST_CASE("run_key: read_fd with more bytes") {
  Pipe p = pipe_with(std::string(33, 'k'));
  auto key = RunKey::read_fd(p.read.release());
  REQUIRE(!key.has_value());
  CHECK(key.error().code == ErrorCode::key_invalid);
  CHECK(key.error().message.find("more than 32 bytes") != std::string::npos);
}

TEST_CASE("run_key: read_fd with more bytes and the writer still open") {
  Pipe p = pipe_with(std::string(64, 'k'), true);
  auto key = RunKey::read_fd(p.read.release());
  REQUIRE(!key.has_value());
  CHECK(key.error().code == ErrorCode::key_invalid);
}

TEST_CASE("run_key: read_fd with a bad fd") {
  auto key = RunKey::read_fd(987);
  REQUIRE(!key.has_value());
  CHECK(key.error().code == ErrorCode::key_invalid);
}

TEST_CASE("run_key: moved-from key is wiped") {
  RunKey a = RunKey::from_bytes(counting_bytes());
  RunKey b = std::move(a);
  CHECK(same_key(b, counting_bytes()));
  std::array<std::uint8_t, k_run_key_size> zeros{};
  CHECK(std::memcmp(a.data(), zeros.data(), zeros.size()) == 0);  // NOLINT(bugprone-use-after-move)
}

TEST_CASE("run_key: a key file that is a FIFO is refused at once, without blocking in open()") {
  TempDir dir;
  const std::string path = dir.path() + "/fifo.key";
  REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
  // No writer ever opens it: a blocking open() would hang here for good.
  auto key = RunKey::load_file(path);
  REQUIRE(!key.has_value());
  CHECK(key.error().code == ErrorCode::key_invalid);
  CHECK(key.error().message.find("not a regular file") != std::string::npos);
}
