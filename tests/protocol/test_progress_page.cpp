// The progress page: what the runner reads back is what the worker marked; an fd that is not a sealed page
// is refused by the worker; a page nobody mapped says nothing.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "protocol/progress_page.hpp"

using namespace authrun::protocol;

namespace {

Fd dup_of(int fd) { return Fd(::fcntl(fd, F_DUPFD_CLOEXEC, 0)); }

}  // namespace

TEST_CASE("progress page: the runner reads the task the worker marked as running, and nothing once it ended") {
  auto page = ProgressPage::create();
  REQUIRE(page.has_value());
  CHECK_FALSE(page->read().kept);  // nobody mapped it
  auto marker = ProgressMarker::map(dup_of(page->fd()));
  REQUIRE_MESSAGE(marker.has_value(), marker.error().message);
  ProgressSeen seen = page->read();
  CHECK(seen.kept);
  CHECK_FALSE(seen.running.has_value());
  marker->begin(0);
  CHECK(page->read().running == std::optional<std::uint64_t>(0));
  marker->end();
  marker->begin(0xFFFF'FFFF'FFFF'FFFFull);
  CHECK(page->read().running == std::optional<std::uint64_t>(0xFFFF'FFFF'FFFF'FFFFull));
  marker->end();
  CHECK_FALSE(page->read().running.has_value());
  // The page cannot shrink: a worker cannot make the runner's read fault or come up short.
  CHECK(::ftruncate(page->fd(), 0) != 0);
}

TEST_CASE("progress page: the worker maps only a sealed memfd of the page's size") {
  SUBCASE("a pipe") {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    ::close(p[1]);
    CHECK_FALSE(ProgressMarker::map(Fd(p[0])).has_value());
  }
  SUBCASE("an unsealed memfd") {
    Fd fd(::memfd_create("not-a-page", MFD_CLOEXEC));
    REQUIRE(fd.valid());
    REQUIRE(::ftruncate(fd.get(), k_progress_page_size) == 0);
    CHECK_FALSE(ProgressMarker::map(std::move(fd)).has_value());
  }
  SUBCASE("a sealed memfd too small") {
    Fd fd(::memfd_create("small", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    REQUIRE(fd.valid());
    REQUIRE(::ftruncate(fd.get(), 8) == 0);
    REQUIRE(::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK) == 0);
    CHECK_FALSE(ProgressMarker::map(std::move(fd)).has_value());
  }
}
