// The runner's side of the key hand-over on fd 3 (PROTOCOL.md section 9, step 3), fed requests by hand from
// this process: the end of file before any request, a request without explicit credentials, and the fd count.
#include <doctest/doctest.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "protocol/fd.hpp"
#include "protocol/key_handover.hpp"
#include "protocol/run_key.hpp"

using namespace authrun::protocol;

namespace {

// Sends "ARUNKEY?" on `fd` with `fds` passed (SCM_RIGHTS) and, only if `with_creds`, this process's
// credentials (SCM_CREDENTIALS).
void send_request(int fd, const std::vector<int>& fds, bool with_creds) {
  char data[] = "ARUNKEY?";
  iovec iov{data, 8};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(8 * sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;  // room to build in; set to what is used below
  std::size_t used = 0;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (with_creds) {
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_CREDENTIALS;
    c->cmsg_len = CMSG_LEN(sizeof(ucred));
    const ucred me{::getpid(), ::geteuid(), ::getegid()};
    std::memcpy(CMSG_DATA(c), &me, sizeof me);
    used += CMSG_SPACE(sizeof(ucred));
    c = CMSG_NXTHDR(&msg, c);
  }
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
  std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
  used += CMSG_SPACE(fds.size() * sizeof(int));
  msg.msg_controllen = used;
  REQUIRE(::sendmsg(fd, &msg, MSG_NOSIGNAL) == 8);
}

// A fresh socket pair made by this process: [0] is passed, [1] kept to read the key from.
std::array<Fd, 2> fresh_pair() {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  return {Fd(sv[0]), Fd(sv[1])};
}

// Makes this process non-dumpable (as a worker is when it asks) for the scope.
struct NonDumpable {
  NonDumpable() { REQUIRE(::prctl(PR_SET_DUMPABLE, 0) == 0); }
  ~NonDumpable() { ::prctl(PR_SET_DUMPABLE, 1); }
};

}  // namespace

TEST_CASE("key_handover: the end of file before a request is told apart from a request (credentials 0,0,0)") {
  auto meeting = make_rendezvous();
  REQUIRE(meeting.has_value());
  RunKey key = RunKey::generate();
  auto nothing = answer_key_request(meeting->runner.get(), ::getpid(), key, false);
  REQUIRE(nothing.has_value());
  CHECK(*nothing == KeyRequestSeen::nothing_yet);
  meeting->worker.close();
  auto seen = answer_key_request(meeting->runner.get(), ::getpid(), key, false);
  REQUIRE(seen.has_value());
  CHECK(*seen == KeyRequestSeen::closed);
}

TEST_CASE("key_handover: a request without explicit SCM_CREDENTIALS is answered (the kernel attaches them)") {
  auto meeting = make_rendezvous();
  REQUIRE(meeting.has_value());
  RunKey key = RunKey::generate();
  auto pair = fresh_pair();
  NonDumpable undumpable;
  send_request(meeting->worker.get(), {pair[0].get()}, false);
  pair[0].close();
  auto seen = answer_key_request(meeting->runner.get(), ::getpid(), key, false);
  REQUIRE_MESSAGE(seen.has_value(), seen.error().message);
  CHECK(*seen == KeyRequestSeen::answered);
  std::array<std::uint8_t, 33> got{};
  CHECK(::recv(pair[1].get(), got.data(), got.size(), MSG_DONTWAIT) == 32);
  CHECK(std::memcmp(got.data(), key.data(), 32) == 0);
}

TEST_CASE("key_handover: two passed fds fit the control room and are refused by count, three truncate") {
  for (std::size_t n : {2u, 3u}) {
    CAPTURE(n);
    auto meeting = make_rendezvous();
    REQUIRE(meeting.has_value());
    RunKey key = RunKey::generate();
    std::vector<std::array<Fd, 2>> pairs;
    std::vector<int> fds;
    for (std::size_t i = 0; i < n; ++i) {
      pairs.push_back(fresh_pair());
      fds.push_back(pairs.back()[0].get());
    }
    NonDumpable undumpable;
    send_request(meeting->worker.get(), fds, true);
    auto seen = answer_key_request(meeting->runner.get(), ::getpid(), key, false);
    REQUIRE_FALSE(seen.has_value());
    CHECK(seen.error().code == ErrorCode::key_invalid);
    CHECK(seen.error().message.find(n == 2 ? "passed 2 fds, not 1" : "more control data than one ucred and one fd") !=
          std::string::npos);
    // No key byte went anywhere.
    std::array<std::uint8_t, 1> byte{};
    for (auto& pair : pairs) CHECK(::recv(pair[1].get(), byte.data(), 1, MSG_DONTWAIT) < 0);
  }
}
