// Helpers shared by the tests.
#include "tests/helpers/test_util.hpp"

#include <doctest/doctest.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "protocol/json_codec.hpp"
#include "protocol/key_handover.hpp"

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

double time_scale() {
#if defined(__SANITIZE_ADDRESS__)
  double scale = 10;
#else
  double scale = 1;
#endif
  if (const char* extra = std::getenv("AUTHRUN_TEST_TIME_SCALE"); extra && std::atof(extra) > 0) scale *= std::atof(extra);
  return scale;
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
  auto deadline = std::chrono::steady_clock::now() + scaled(timeout);
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
      deadline = std::chrono::steady_clock::now() + scaled(std::chrono::seconds(5));
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

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::size_t count(const std::string& text, const std::string& part) {
  std::size_t n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

Child::Child(Child&& other) noexcept
    : pid(std::exchange(other.pid, -1)), in(std::move(other.in)), out(std::move(other.out)), err(std::move(other.err)) {}

Child::~Child() {
  if (pid > 0) {
    ::kill(pid, SIGKILL);
    wait();
  }
}

int Child::wait() {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  pid = -1;
  return status;
}

Child spawn_child(const std::vector<std::string>& argv, int fd3) {
  std::signal(SIGPIPE, SIG_IGN);
  auto in = protocol::make_pipe();
  auto out = protocol::make_pipe();
  auto err = protocol::make_pipe();
  REQUIRE((in && out && err));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in->read.get(), 0);
  posix_spawn_file_actions_adddup2(&fa, out->write.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, err->write.get(), 2);
  protocol::Fd key_copy;  // above every fd the dup2s above write to, and never fd 3 itself
  if (fd3 >= 0) {
    key_copy = protocol::Fd(::fcntl(fd3, F_DUPFD_CLOEXEC, 10));
    REQUIRE(key_copy.valid());
    posix_spawn_file_actions_adddup2(&fa, key_copy.get(), 3);
  }
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t set;
  sigemptyset(&set);
  posix_spawnattr_setsigmask(&attr, &set);
  sigaddset(&set, SIGPIPE);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  posix_spawnattr_setsigdefault(&attr, &set);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  Child c;
  int rc = posix_spawn(&c.pid, args[0], &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  REQUIRE(rc == 0);
  c.in = std::move(in->write);
  c.out = std::move(out->read);
  c.err = std::move(err->read);
  return c;
}

Child spawn_worker_with_key(const std::vector<std::string>& argv, const protocol::RunKey& key) {
  auto meeting = protocol::make_rendezvous();
  REQUIRE(meeting);
  Child c = spawn_child(argv, meeting->worker.get());
  meeting->worker.close();
  auto served = protocol::serve_key_request(meeting->runner.get(), c.pid, key,
                                            std::chrono::steady_clock::now() + std::chrono::seconds(20), false);
  REQUIRE_MESSAGE(served.has_value(), "key hand-over: " << served.error().message);
  return c;
}

bool read_until(int fd, std::string& buf, const std::function<bool(const std::string&)>& done,
                std::chrono::steady_clock::time_point deadline) {
  using Clock = std::chrono::steady_clock;
  deadline = Clock::now() + scaled(deadline - Clock::now());
  while (!done(buf)) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char tmp[65536];
    ssize_t n = ::read(fd, tmp, sizeof tmp);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return done(buf);
    buf.append(tmp, static_cast<std::size_t>(n));
  }
  return true;
}

void write_text(int fd, const std::string& text) {
  REQUIRE(protocol::write_all(fd, protocol::as_bytes(text), std::chrono::steady_clock::now() + scaled(std::chrono::seconds(20))));
}

std::vector<protocol::json> parse_results(const std::string& out) {
  std::vector<protocol::json> results;
  for (const auto& line : split_lines(out)) {
    auto j = protocol::parse_json(line);
    REQUIRE_MESSAGE(j.has_value(), "result line is not JSON: " << line);
    results.push_back(std::move(*j));
  }
  return results;
}

std::string summary_of(const std::string& err) {
  for (const auto& line : split_lines(err)) {
    static const std::regex summary("^authrun: [0-9]+ tasks?: .*");
    if (std::regex_match(line, summary)) return line;
  }
  return "";
}

std::string task_line(const protocol::json& task) { return protocol::dump_json(task) + "\n"; }

std::string sleep_tasks(int n, double seconds, bool exec) {
  std::string input;
  for (int i = 0; i < n; ++i) {
    protocol::json task = exec ? protocol::json{{"id", i}, {"fn", "exec"}, {"args", {{"argv", {"sleep", std::to_string(seconds)}}}}}
                               : protocol::json{{"id", i}, {"fn", "sleep"}, {"args", {{"seconds", seconds}}}};
    input += task_line(task);
  }
  return input;
}

bool eventually(const std::function<bool()>& done, std::chrono::seconds limit) {
  const auto until = std::chrono::steady_clock::now() + scaled(limit);
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

std::string marked_worker(const std::string& marker) { return std::string(worker_bin()) + " --handshake-timeout " + marker; }

std::vector<int> busy_workers(const std::string& marker) {
  std::vector<int> busy;
  for (int pid : processes_running("authrun-worker", marker)) {
    if (!children_of(pid).empty()) busy.push_back(pid);
  }
  return busy;
}

int check_each_ok_once(const std::vector<protocol::json>& results, int n) {
  REQUIRE(results.size() == std::size_t(n));
  std::set<int> ids;
  int retried = 0;
  for (const protocol::json& r : results) {
    CHECK(r["ok"] == true);
    ids.insert(r["id"].get<int>());
    retried += r["attempts"].get<int>() > 1;
  }
  CHECK(ids.size() == std::size_t(n));
  if (!ids.empty()) {
    CHECK(*ids.begin() == 0);
    CHECK(*ids.rbegin() == n - 1);
  }
  return retried;
}

std::string new_key_file(const TempDir& dir, const std::string& name) {
  const std::string path = dir.path() + "/" + name;
  REQUIRE(run_program({authrun_bin(), "keygen", path}).exit_code == 0);
  return path;
}

RunOutput run_batch(const std::vector<std::string>& options, const std::string& input) {
  std::vector<std::string> argv{authrun_bin(), "run", "--no-progress"};
  argv.insert(argv.end(), options.begin(), options.end());
  return run_program(argv, input, std::chrono::seconds(60));
}

int parent_of(pid_t pid) {
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const auto close_paren = stat.rfind(')');  // the command name in parentheses may hold spaces and ')'
  if (close_paren == std::string::npos) return 0;
  char state = 0;
  int ppid = 0;
  if (std::sscanf(stat.c_str() + close_paren + 1, " %c %d", &state, &ppid) != 2) return 0;
  return ppid;
}

namespace {

// Every pid in /proc for which `keep(pid)` holds.
std::vector<int> processes_where(const std::function<bool(int)>& keep) {
  std::vector<int> pids;
  DIR* d = ::opendir("/proc");
  REQUIRE(d != nullptr);
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const int pid = std::atoi(name.c_str());
    if (keep(pid)) pids.push_back(pid);
  }
  ::closedir(d);
  return pids;
}

}  // namespace

std::vector<int> children_of(pid_t parent) {
  return processes_where([parent](int pid) { return parent_of(pid) == parent; });
}

std::vector<int> processes_running(const std::string& program, const std::string& marker) {
  return processes_where([&](int pid) {
    // read(2), not a stream: a process that exits meanwhile makes the read fail (ESRCH), which
    // std::filebuf turns into an exception.
    std::string cmdline;
    protocol::Fd fd(::open(("/proc/" + std::to_string(pid) + "/cmdline").c_str(), O_RDONLY | O_CLOEXEC));
    char buf[4096];
    for (ssize_t n; fd.valid() && (n = ::read(fd.get(), buf, sizeof buf)) > 0;) cmdline.append(buf, std::size_t(n));
    const std::string argv0 = cmdline.substr(0, cmdline.find('\0'));
    const bool named = argv0.size() >= program.size() && argv0.compare(argv0.size() - program.size(), program.size(), program) == 0;
    return named && cmdline.find(marker) != std::string::npos && (argv0.size() == program.size() || argv0[argv0.size() - program.size() - 1] == '/');
  });
}

}  // namespace authrun::test
