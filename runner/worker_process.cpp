// Spawning and reaping worker processes with Boost.Process v2 (see ../shared/FACTS.md for the 1.81 bugs
// worked around here: bind_fd is broken, close-all skips fds, a failed exec calls ::exit).
#include "runner/worker_process.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/process/v2/process.hpp>
#include <boost/process/v2/stdio.hpp>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace authrun::runner {

namespace bp = boost::process::v2;
using protocol::Result;

namespace {

// Puts the key pipe at fd 3 and makes sure nothing else of ours reaches the child.
struct KeyFdAndCloseRest {
  int key_fd;

  template <class Launcher>
  bp::error_code on_setup(Launcher& launcher, const bp::filesystem::path&, const char* const*) {
    launcher.fd_whitelist.push_back(k_worker_key_fd);
    return {};
  }

  template <class Launcher>
  bp::error_code on_exec_setup(Launcher&, const bp::filesystem::path&, const char* const*) {
    if (key_fd >= 0) {
      if (key_fd == k_worker_key_fd) {
        if (::fcntl(k_worker_key_fd, F_SETFD, 0) != 0) return bp::error_code(errno, bp::system_category());
      } else if (::dup2(key_fd, k_worker_key_fd) < 0) {
        return bp::error_code(errno, bp::system_category());
      }
    }
    // Everything above fd 3 is closed at exec, whatever the library's own close-all misses.
    ::close_range(k_worker_key_fd + 1, ~0U, CLOSE_RANGE_CLOEXEC);
    return {};
  }

  // The library reports the errno to the parent, then calls ::exit, which would flush our copied stdio
  // buffers a second time: leave first.
  template <class Launcher>
  void on_exec_error(Launcher&, const bp::filesystem::path&, const char* const*, const bp::error_code&) {
    ::_exit(127);
  }
};

}  // namespace

// The child is reaped here, not by Boost.Process: its own wait ends in a blocking waitpid() whenever its
// pidfd is reported readable, and a spurious report (seen with asio's reused descriptor states) then hangs
// the event loop on a live child. Here a wake-up is checked with WNOHANG and re-armed if early.
struct WorkerProcess::Impl {
  Impl(boost::asio::io_context& io, int pid_) : watch(io), pid(pid_) {}
  boost::asio::posix::stream_descriptor watch;  // the child's pidfd
  int pid;
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
                                           protocol::Fd key_fd, Pipes& pipes) {
  auto fail = [&](const std::string& why) {
    return protocol::make_error(protocol::ErrorCode::spawn_failed, "cannot start worker " + argv.at(0) + ": " + why);
  };
  AUTHRUN_TRY_ASSIGN(protocol::Pipe to_worker, protocol::make_pipe());
  AUTHRUN_TRY_ASSIGN(protocol::Pipe from_worker, protocol::make_pipe());
  std::fflush(nullptr);  // a child that fails before exec must not repeat our buffered output
  std::vector<std::string> args(argv.begin() + 1, argv.end());
  bp::error_code ec;
  bp::process proc = bp::default_process_launcher()(io.get_executor(), ec, argv[0], args,
                                                    bp::process_stdio{to_worker.read.get(), from_worker.write.get(), {}},
                                                    KeyFdAndCloseRest{key_fd.get()});
  if (ec) return fail(ec.message());
  const int pid = proc.id();
  proc.detach();  // from here on the child is ours to wait for
  auto impl = std::make_shared<Impl>(io, pid);
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
  if (m_impl && !m_impl->reaped) ::kill(m_impl->pid, SIGKILL);
}

void WorkerProcess::terminate() {
  if (m_impl && !m_impl->reaped) ::kill(m_impl->pid, SIGTERM);
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
