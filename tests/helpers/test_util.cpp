// Helpers shared by the tests.
#include "tests/helpers/test_util.hpp"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace authrun::test {

Link make_link() {
  auto ab = protocol::make_pipe();
  auto ba = protocol::make_pipe();
  if (!ab || !ba) throw std::runtime_error("pipe2 failed");
  return Link{std::move(ba->read), std::move(ab->write), std::move(ab->read), std::move(ba->write)};
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base ? base : "/tmp") + "/authrun-test-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  m_path = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(m_path, ec);
}

std::string TempDir::write(const std::string& name, const std::string& content) const {
  std::string p = m_path + "/" + name;
  std::ofstream(p, std::ios::binary) << content;
  return p;
}

RunOutput run_program(const std::vector<std::string>& argv, const std::string& input,
                      std::chrono::milliseconds timeout) {
  auto in = protocol::make_pipe();
  auto out = protocol::make_pipe();
  auto err = protocol::make_pipe();
  if (!in || !out || !err) throw std::runtime_error("pipe2 failed");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in->read.get(), 0);
  posix_spawn_file_actions_adddup2(&fa, out->write.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, err->write.get(), 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("posix_spawn " + argv[0] + " failed");
  in->read.close();
  out->write.close();
  err->write.close();
  (void)protocol::set_nonblocking(in->write.get(), true);
  std::signal(SIGPIPE, SIG_IGN);

  RunOutput result;
  std::size_t written = 0;
  if (input.empty()) in->write.close();
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool killed = false;
  while (out->read.valid() || err->read.valid()) {
    pollfd fds[3];
    int n = 0;
    if (out->read.valid()) fds[n++] = {out->read.get(), POLLIN, 0};
    if (err->read.valid()) fds[n++] = {err->read.get(), POLLIN, 0};
    if (in->write.valid()) fds[n++] = {in->write.get(), POLLOUT, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 && !killed) {
      ::kill(pid, SIGKILL);
      killed = true;
      deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      continue;
    }
    ::poll(fds, n, static_cast<int>(std::max<long>(left.count(), 1)));
    for (int i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      if (in->write.valid() && fds[i].fd == in->write.get()) {
        ssize_t w = ::write(in->write.get(), input.data() + written, input.size() - written);
        if (w > 0) written += static_cast<std::size_t>(w);
        if (w < 0 && errno != EAGAIN) in->write.close();
        if (written == input.size()) in->write.close();
        continue;
      }
      protocol::Fd& fd = fds[i].fd == out->read.get() ? out->read : err->read;
      std::string& sink = fds[i].fd == out->read.get() ? result.out : result.err;
      char buf[65536];
      ssize_t r = ::read(fd.get(), buf, sizeof buf);
      if (r > 0) sink.append(buf, static_cast<std::size_t>(r));
      else if (r == 0 || errno != EINTR) fd.close();
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  return result;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace authrun::test
