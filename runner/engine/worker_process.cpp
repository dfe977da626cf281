// Spawning and reaping worker processes. The child is started with posix_spawn (clone with CLONE_VFORK:
// nothing runs in the child but the file actions and exec). Boost.Process v2's launchers fork and then run
// Asio's fork handling in the child, which allocates; in a runner that has a second thread (the task feed)
// that is not async-signal-safe, and under AddressSanitizer it deadlocked the child — and with it the
// runner, which waits for the child's exec. Asio still drives everything after the spawn.
#include "runner/engine/worker_process.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <fcntl.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace authrun::runner {

using protocol::Result;

namespace {

// posix_spawn's file actions and attributes, released on every path.
struct SpawnSetup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnSetup() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;
};

}  // namespace

// The child is reaped through its pidfd, and a wake-up is checked with waitpid(WNOHANG) and re-armed if early
// (Boost.Process's own wait blocks in waitpid() on any wake-up, and a spurious one hung the event loop).
struct WorkerProcess::Impl {
  Impl(boost::asio::io_context& io, int pid_) : watch(io), pid(pid_) {}
  boost::asio::posix::stream_descriptor watch;  // the child's pidfd
  int pid;
  bool own_group = false;  // signals go to its process group (a launcher and what it started)
  bool reaped = false;

  void wait(std::function<void(int)> on_exit, const std::shared_ptr<Impl>& self) {
    watch.async_wait(boost::asio::posix::descriptor_base::wait_read,
                     [self, on_exit = std::move(on_exit)](const boost::system::error_code& ec) mutable {
                       int status = 0;
                       pid_t r = 0;
                       do {
                         r = ::waitpid(self->pid, &status, WNOHANG);
                       } while (r < 0 && errno == EINTR);
                       if (r == 0 && !ec) return self->wait(std::move(on_exit), self);  // not yet: wait again
                       if (r == 0) {
                         // The watch failed (cancelled, or no pidfd): reap by blocking; the child was killed.
                         ::kill(self->pid, SIGKILL);
                         while (::waitpid(self->pid, &status, 0) < 0 && errno == EINTR) {
                         }
                       }
                       self->reaped = true;
                       boost::system::error_code ignored;
                       self->watch.close(ignored);
                       on_exit(status);
                     });
  }
};

WorkerProcess::WorkerProcess(std::shared_ptr<Impl> impl) : m_impl(std::move(impl)) {}
WorkerProcess::WorkerProcess(WorkerProcess&&) noexcept = default;
WorkerProcess& WorkerProcess::operator=(WorkerProcess&&) noexcept = default;

WorkerProcess::~WorkerProcess() {
  if (m_impl) kill();
}

Result<WorkerProcess> WorkerProcess::spawn(boost::asio::io_context& io, const std::vector<std::string>& argv,
                                           protocol::Fd key_fd, Pipes& pipes, bool launcher, int pipe_size) {
  auto fail = [&](const std::string& why) {
    return protocol::make_error(protocol::ErrorCode::spawn_failed, "cannot start worker " + argv.at(0) + ": " + why);
  };
  // A launcher holds its stdin for as long as it takes to log in, and may be dumpable (ssh): a socket, which
  // no other process can open through /proc/PID/fd/0, keeps what goes in there (its key) ours.
  AUTHRUN_TRY_ASSIGN(protocol::Pipe to_worker, launcher ? protocol::make_socket_pair() : protocol::make_pipe());
  AUTHRUN_TRY_ASSIGN(protocol::Pipe from_worker, protocol::make_pipe());
  if (pipe_size > 0) {
    // Large arguments and results cross in fewer writes and wake-ups; refused (over the user's pipe quota),
    // the pipes stay at their default size.
    if (!launcher) std::ignore = ::fcntl(to_worker.write.get(), F_SETPIPE_SZ, pipe_size);
    std::ignore = ::fcntl(from_worker.write.get(), F_SETPIPE_SZ, pipe_size);
  }
  // The rendezvous must not sit at fd 3 already (dup2 onto itself would keep FD_CLOEXEC), nor at 0 or 1.
  protocol::Fd key;
  if (key_fd.valid()) {
    key = protocol::Fd(::fcntl(key_fd.get(), F_DUPFD_CLOEXEC, 10));
    if (!key.valid()) return fail(std::string("fcntl: ") + std::strerror(errno));
  }
  SpawnSetup setup;
  int rc = posix_spawn_file_actions_adddup2(&setup.actions, to_worker.read.get(), 0);
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(&setup.actions, from_worker.write.get(), 1);
  if (rc == 0 && key.valid()) rc = posix_spawn_file_actions_adddup2(&setup.actions, key.get(), k_worker_key_fd);
  // Nothing else of ours reaches the worker, whatever flags it has.
  if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&setup.actions, key.valid() ? k_worker_key_fd + 1 : 3);
  // Default dispositions and an empty mask: the runner ignores SIGPIPE and blocks nothing the worker needs.
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  if (rc == 0) rc = posix_spawnattr_setsigdefault(&setup.attr, &all);
  if (rc == 0) rc = posix_spawnattr_setsigmask(&setup.attr, &none);
  // A launcher gets a process group of its own: Ctrl-C at the terminal is the runner's to handle (a grace
  // period for running tasks), and stopping it stops whatever it started too.
  if (rc == 0 && launcher) rc = posix_spawnattr_setpgroup(&setup.attr, 0);
  if (rc == 0) {
    rc = posix_spawnattr_setflags(&setup.attr, static_cast<short>(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK |
                                                                  (launcher ? POSIX_SPAWN_SETPGROUP : 0)));
  }
  if (rc != 0) return fail(std::string("posix_spawn set-up: ") + std::strerror(rc));
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  rc = ::posix_spawn(&pid, args[0], &setup.actions, &setup.attr, args.data(), environ);
  if (rc != 0) return fail(std::strerror(rc));
  auto impl = std::make_shared<Impl>(io, pid);
  impl->own_group = launcher;
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return fail(std::string("pidfd_open: ") + std::strerror(errno));
  }
  impl->watch.assign(pidfd);
  pipes.to_worker = std::move(to_worker.write);
  pipes.from_worker = std::move(from_worker.read);
  return WorkerProcess(std::move(impl));
}

int WorkerProcess::pid() const { return m_impl->pid; }

void WorkerProcess::async_wait(std::function<void(int)> on_exit) { m_impl->wait(std::move(on_exit), m_impl); }

void WorkerProcess::kill() {
  if (m_impl && !m_impl->reaped) ::kill(m_impl->own_group ? -m_impl->pid : m_impl->pid, SIGKILL);
}

void WorkerProcess::terminate() {
  if (m_impl && !m_impl->reaped) ::kill(m_impl->own_group ? -m_impl->pid : m_impl->pid, SIGTERM);
}

protocol::Result<void> write_key_prefix(int to_worker, const protocol::RunKey& key) {
  return protocol::write_all(to_worker,
                             std::span<const std::byte>(reinterpret_cast<const std::byte*>(key.data()), protocol::k_run_key_size),
                             protocol::Clock::now() + std::chrono::seconds(1));
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* name = ::strsignal(sig);
    return "signal " + std::to_string(sig) + (name ? std::string(" (") + name + ")" : std::string());
  }
  return "wait status " + std::to_string(status);
}

}  // namespace authrun::runner
