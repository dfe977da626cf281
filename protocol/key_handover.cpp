// Key hand-over v2: the worker's request (sendmsg with credentials and a fresh socket) and the runner's checks.
#include "protocol/key_handover.hpp"

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "protocol/tracing.hpp"

namespace authrun::protocol {

namespace {

Error handover_error(const std::string& what) { return make_error(ErrorCode::key_invalid, what); }

Error errno_error(const std::string& what) { return handover_error(what + ": " + std::strerror(errno)); }

// Fills `c` (room for one int) as an SCM_RIGHTS message that passes `fd`.
void put_fd(cmsghdr* c, int fd) {
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
}

// Sends the request: the 8 bytes, our credentials and `theirs`, in one sendmsg.
Result<void> send_request(int rendezvous_fd, int theirs, Clock::time_point deadline) {
  ucred creds{::getpid(), ::geteuid(), ::getegid()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int))] = {};
  iovec iov{const_cast<char*>(k_handover_request.data()), k_handover_request.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_CREDENTIALS;
  c->cmsg_len = CMSG_LEN(sizeof(ucred));
  std::memcpy(CMSG_DATA(c), &creds, sizeof creds);
  put_fd(CMSG_NXTHDR(&msg, c), theirs);
  for (;;) {
    ssize_t n = ::sendmsg(rendezvous_fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(k_handover_request.size())) return {};
    if (n >= 0) return handover_error("asking for the key on fd " + std::to_string(rendezvous_fd) + ": short send");
    if (errno == EINTR) continue;
    if (errno == ENOTSOCK) {
      return handover_error("fd " + std::to_string(rendezvous_fd) +
                            " is not a socket (authrun-worker is started by authrun, which passes its key rendezvous "
                            "there; or give --key-file)");
    }
    if (errno != EAGAIN) return errno_error("asking for the key on fd " + std::to_string(rendezvous_fd));
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return handover_error("asking for the key on fd " + std::to_string(rendezvous_fd) + ": timed out");
    pollfd p{rendezvous_fd, POLLOUT, 0};
    ::poll(&p, 1, left > 1000 ? 1000 : static_cast<int>(left));
  }
}

// Reads the key (exactly 32 bytes, then the end) from `sock` before `deadline`, taking an fd passed with it
// into `*page` (exactly one fd; any other number passed, or a truncated control message, keeps none).
Result<RunKey> read_key_and_page(Fd sock, Clock::time_point deadline, Fd* page) {
  std::uint8_t bytes[k_run_key_size + 1] = {};
  std::size_t got = 0;
  bool refused = false;  // fds came that are not one page: none is kept
  auto fail = [&](const std::string& why) {
    ::sodium_memzero(bytes, sizeof bytes);
    return handover_error("key socket: " + why);
  };
  for (;;) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    iovec iov{bytes + got, sizeof bytes - got};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(sock.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return fail(got < k_run_key_size ? "timed out" : "no end after the key: timed out");
      pollfd p{sock.get(), POLLIN, 0};
      ::poll(&p, 1, left > 1000 ? 1000 : static_cast<int>(left));
      continue;
    }
    if (n < 0) return fail(std::strerror(errno));
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        Fd passed(fd);
        if (page == nullptr || page->valid() || refused || count != 1) {
          refused = true;
          if (page) page->close();
          continue;
        }
        *page = std::move(passed);
      }
    }
    if ((msg.msg_flags & MSG_CTRUNC) != 0 && page) {
      refused = true;
      page->close();
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
    if (got > k_run_key_size) return fail("more than 32 bytes");
  }
  if (got < k_run_key_size) return fail("end of input after " + std::to_string(got) + " of 32 bytes");
  RunKey key = RunKey::from_bytes(std::span<const std::uint8_t, k_run_key_size>(bytes, k_run_key_size));
  ::sodium_memzero(bytes, sizeof bytes);
  return key;
}

}  // namespace

Result<RunKey> receive_key_handover(int rendezvous_fd, Clock::time_point deadline, bool allow_ptrace, Fd* progress_page) {
  sodium_ready();
  Fd rendezvous(rendezvous_fd);
  AUTHRUN_TRY(protect_self(allow_ptrace));
  // Made only now, non-dumpable: no other process of the user can take a copy of it.
  AUTHRUN_TRY_ASSIGN(Pipe fresh, make_socket_pair());
  AUTHRUN_TRY(send_request(rendezvous.get(), fresh.write.get(), deadline));
  fresh.write.close();
  rendezvous.close();
  auto key = read_key_and_page(std::move(fresh.read), deadline, progress_page);
  if (!key) {
    return handover_error("no key from the runner (fd " + std::to_string(rendezvous_fd) + "): " + key.error().message +
                          " (a refused request gets no answer: see the runner's message)");
  }
  return key;
}

Result<Rendezvous> make_rendezvous() {
  AUTHRUN_TRY_ASSIGN(Pipe pair, make_socket_pair());
  int on = 1;
  if (::setsockopt(pair.read.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) {
    return make_error(ErrorCode::io, std::string("setsockopt(SO_PASSCRED): ") + std::strerror(errno));
  }
  return Rendezvous{std::move(pair.read), std::move(pair.write)};
}

Result<ExecutableId> executable_id(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return make_error(ErrorCode::io, path + ": " + std::strerror(errno));
  ExecutableId id{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino), path.substr(path.rfind('/') + 1)};
  id.name = id.name.substr(0, 15);  // TASK_COMM_LEN - 1
  return id;
}

namespace {

// The command name of process `pid` (/proc/PID/comm, readable even while it is non-dumpable), "" if gone.
std::string command_name(int pid) {
  Fd fd(::open(("/proc/" + std::to_string(pid) + "/comm").c_str(), O_RDONLY | O_CLOEXEC));
  char text[32] = {};
  const ssize_t n = fd.valid() ? ::read(fd.get(), text, sizeof text - 1) : -1;
  if (n <= 0) return {};
  std::string name(text, static_cast<std::size_t>(n));
  if (!name.empty() && name.back() == '\n') name.pop_back();
  return name;
}

// Whether process `pid` runs `expected`. Errors: key_invalid naming what it runs instead.
Result<void> check_executable(int pid, const ExecutableId& expected) {
  const std::string worker = "worker " + std::to_string(pid);
  struct stat st {};
  if (::stat(("/proc/" + std::to_string(pid) + "/exe").c_str(), &st) == 0) {
    if (static_cast<std::uint64_t>(st.st_dev) == expected.dev && static_cast<std::uint64_t>(st.st_ino) == expected.ino) return {};
    return handover_error("key request from " + worker + ", which no longer runs the program started (" + expected.name +
                          "): it exec'd another (device " + std::to_string(st.st_dev) + ", inode " + std::to_string(st.st_ino) + ")");
  }
  if (errno == ENOENT) return handover_error(worker + " is gone");
  // EACCES: non-dumpable and we are not root: its exe is closed to us too. Its name is what is left.
  const std::string name = command_name(pid);
  if (name == expected.name) return {};
  return handover_error("key request from " + worker + ", which no longer runs the program started (" + expected.name +
                        "): it runs \"" + name + "\"");
}

}  // namespace

Result<KeyRequestSeen> answer_key_request(int runner_fd, int worker_pid, const RunKey& key, bool allow_ptrace,
                                          int progress_page) {
  KeyRequestPolicy policy;
  policy.allow_ptrace = allow_ptrace;
  return answer_key_request(runner_fd, worker_pid, key, policy, progress_page);
}

Result<void> check_no_second_request(int runner_fd, int worker_pid) {
  char byte = 0;
  ssize_t n = 0;
  do {
    n = ::recv(runner_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return {};  // nothing, or the end: every copy of the worker's end is closed
  return handover_error("a second key request on the rendezvous of worker " + std::to_string(worker_pid) +
                        " (someone else holds a copy of its fd 3): refused, the worker is stopped");
}

Result<KeyRequestSeen> answer_key_request(int runner_fd, int worker_pid, const RunKey& key, const KeyRequestPolicy& policy,
                                          int progress_page) {
  const bool allow_ptrace = policy.allow_ptrace;
  char data[k_handover_request.size() + 1] = {};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int))] = {};
  iovec iov{data, sizeof data};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = 0;
  do {
    n = ::recvmsg(runner_fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return KeyRequestSeen::nothing_yet;
  if (n < 0) return errno_error("key rendezvous of worker " + std::to_string(worker_pid) + ": recvmsg");
  // Take ownership of every passed fd first, so that each refusal below closes them.
  std::vector<Fd> passed;
  const ucred* creds = nullptr;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET) continue;
    if (c->cmsg_type == SCM_RIGHTS) {
      const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        passed.emplace_back(fd);
      }
    } else if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(ucred))) {
      creds = reinterpret_cast<const ucred*>(CMSG_DATA(c));
    }
  }
  if (n == 0 && passed.empty()) return KeyRequestSeen::closed;
  const std::string worker = "worker " + std::to_string(worker_pid);
  if ((msg.msg_flags & MSG_CTRUNC) != 0) {
    // The room holds one ucred and two fds (alignment): a second fd is refused by the count below.
    return handover_error("key request for " + worker + " carries more control data than one ucred and one fd (several fds?)");
  }
  if (std::string_view(data, static_cast<std::size_t>(n)) != k_handover_request) {
    return handover_error("key request for " + worker + " is not \"ARUNKEY?\" (" + std::to_string(n) + " other bytes)");
  }
  if (creds == nullptr) return handover_error("key request for " + worker + " carries no credentials");
  if (creds->pid != worker_pid) {
    return handover_error("key request from pid " + std::to_string(creds->pid) + ", not " + worker +
                          " (a wrapper that forks the worker instead of exec'ing it? another process?)");
  }
  if (creds->uid != ::geteuid()) {
    return handover_error("key request for " + worker + " from uid " + std::to_string(creds->uid) + ", not ours (" +
                          std::to_string(::geteuid()) + ")");
  }
  if (passed.size() != 1) return handover_error("key request for " + worker + " passed " + std::to_string(passed.size()) + " fds, not 1");
  const int sock = passed.front().get();
  int domain = 0, type = 0;
  socklen_t len = sizeof domain;
  const bool is_unix = ::getsockopt(sock, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_UNIX;
  len = sizeof type;
  const bool is_stream = ::getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
  if (!is_unix || !is_stream) return handover_error("key request for " + worker + " passed something other than a Unix stream socket");
  ucred peer{};
  len = sizeof peer;
  if (::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) return errno_error("key request for " + worker + ": SO_PEERCRED");
  if (peer.pid != worker_pid) {
    return handover_error("key request for " + worker + " passed a socket made by pid " + std::to_string(peer.pid));
  }
  // One read of /proc/PID/status gives both: who traces it, and (its owner) whether it is non-dumpable.
  AUTHRUN_TRY_ASSIGN(ProcStatus status, proc_status(worker_pid));
  if (status.tracer_pid != 0 && !allow_ptrace) {
    return handover_error(worker + " is traced by pid " + std::to_string(status.tracer_pid) + " (--allow-ptrace to permit)");
  }
  if (::geteuid() != 0 && status.owner != 0) {
    return handover_error(worker + " is still dumpable when it asks for its key (/proc/" + std::to_string(worker_pid) +
                          "/status is owned by uid " + std::to_string(status.owner) + ", not root)");
  }
  if (policy.executable) AUTHRUN_TRY(check_executable(worker_pid, *policy.executable));
  // Two requests queued: one of them is not the worker's (its end was copied). Neither is answered.
  char more = 0;
  if (::recv(runner_fd, &more, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
    return handover_error("two key requests on the rendezvous of " + worker +
                          " (someone else holds a copy of its fd 3): neither is answered");
  }
  if (policy.last_check) AUTHRUN_TRY(policy.last_check());
  // An empty socket takes 32 bytes at once; a full one means someone else wrote to it: refuse. The progress
  // page rides on the same sendmsg: it reaches only the process that reads the key.
  iovec key_iov{const_cast<std::uint8_t*>(key.data()), key.size()};
  alignas(cmsghdr) char page_control[CMSG_SPACE(sizeof(int))] = {};
  msghdr out{};
  out.msg_iov = &key_iov;
  out.msg_iovlen = 1;
  if (progress_page >= 0) {
    out.msg_control = page_control;
    out.msg_controllen = sizeof page_control;
    put_fd(CMSG_FIRSTHDR(&out), progress_page);
  }
  ssize_t w = 0;
  do {
    w = ::sendmsg(sock, &out, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (w < 0 && errno == EINTR);
  if (w != static_cast<ssize_t>(key.size())) {
    return handover_error("writing the key for " + worker + ": " + (w < 0 ? std::strerror(errno) : "short write"));
  }
  return KeyRequestSeen::answered;
}

Result<void> serve_key_request(int runner_fd, int worker_pid, const RunKey& key, Clock::time_point deadline,
                               bool allow_ptrace) {
  for (;;) {
    AUTHRUN_TRY_ASSIGN(KeyRequestSeen seen, answer_key_request(runner_fd, worker_pid, key, allow_ptrace));
    if (seen == KeyRequestSeen::answered) return {};
    if (seen == KeyRequestSeen::closed) {
      return handover_error("worker " + std::to_string(worker_pid) + " closed its key rendezvous without asking for its key");
    }
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      return make_error(ErrorCode::timeout, "worker " + std::to_string(worker_pid) + " did not ask for its key in time");
    }
    pollfd p{runner_fd, POLLIN, 0};
    ::poll(&p, 1, left > 1000 ? 1000 : static_cast<int>(left));
  }
}

}  // namespace authrun::protocol
