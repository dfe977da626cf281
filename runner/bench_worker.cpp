// Bench workers: spawned as runner/worker_link.cpp spawns them (fresh key on the key socket), then driven by a
// blocking Channel instead of the event loop, so that a round trip is timed without the loop in the way.
#include "runner/bench_worker.hpp"

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>

#include "protocol/run_key.hpp"
#include "runner/worker_link.hpp"
#include "runner/worker_process.hpp"

namespace authrun::runner::bench {

using namespace protocol;

namespace {

double micros_since(Clock::time_point t0) { return std::chrono::duration<double, std::micro>(Clock::now() - t0).count(); }

// Asks for a pipe of `size` bytes; keeps whatever the kernel allows. Returns the size in effect.
int raise_pipe(int fd, int size) {
  ::fcntl(fd, F_SETPIPE_SZ, size);
  return ::fcntl(fd, F_GETPIPE_SZ);
}

}  // namespace

struct WorkerHost::Impl {
  std::vector<std::string> argv;
  boost::asio::io_context io;
};

struct BenchWorker::Impl {
  boost::asio::io_context* io = nullptr;
  std::unique_ptr<RunKey> key;  // on the heap: the Channel keeps a reference to it
  std::optional<WorkerProcess> process;
  std::unique_ptr<Channel> channel;
  StartTimes times;
  int pipe_size = 0;
  bool stopped = false;
};

BenchWorker::BenchWorker(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}

BenchWorker::~BenchWorker() {
  if (m_impl && !m_impl->stopped) std::ignore = stop();
}

Channel& BenchWorker::channel() { return *m_impl->channel; }
int BenchWorker::pid() const { return m_impl->process->pid(); }
const StartTimes& BenchWorker::start_times() const { return m_impl->times; }
int BenchWorker::pipe_size() const { return m_impl->pipe_size; }

Result<void> BenchWorker::stop() {
  Impl& w = *m_impl;
  w.stopped = true;
  if (w.channel) {
    std::ignore = w.channel->send(Shutdown{}, Clock::now() + std::chrono::seconds(1));
    w.channel.reset();  // closes both pipes: the worker sees the shutdown, then EOF
  }
  if (!w.process) return {};
  // Shared with the callback, which may outlive this call if the child is never reaped.
  auto exit = std::make_shared<std::optional<int>>();
  w.process->async_wait([exit](int status) { *exit = status; });
  for (int attempt = 0; attempt < 2 && !*exit; ++attempt) {
    if (attempt == 1) w.process->kill();
    w.io->restart();
    const auto until = Clock::now() + std::chrono::seconds(5);
    while (!*exit && Clock::now() < until) w.io->run_one_for(std::chrono::milliseconds(100));
  }
  const int pid = w.process->pid();
  w.process.reset();
  if (!*exit) return make_error(ErrorCode::io, "worker " + std::to_string(pid) + " could not be reaped");
  const int status = **exit;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return make_error(ErrorCode::io, "worker " + std::to_string(pid) + " ended with " + describe_wait_status(status));
  }
  return {};
}

WorkerHost::WorkerHost(std::vector<std::string> worker_argv) : m_impl(std::make_unique<Impl>()) {
  m_impl->argv = std::move(worker_argv);
}

WorkerHost::~WorkerHost() = default;

Result<std::unique_ptr<BenchWorker>> WorkerHost::start(ChannelMode mode, int pipe_size) {
  auto w = std::make_unique<BenchWorker::Impl>();
  w->io = &m_impl->io;
  // A fresh key for each worker, as the runner does.
  w->key = std::make_unique<RunKey>(RunKey::generate());
  AUTHRUN_TRY_ASSIGN(Fd key_fd, key_socket_for(*w->key));

  std::vector<std::string> argv = m_impl->argv;
  if (mode == ChannelMode::insecure_measurement) argv.push_back("--allow-insecure-measurement");
  WorkerProcess::Pipes pipes;
  auto t0 = Clock::now();
  AUTHRUN_TRY_ASSIGN(WorkerProcess process, WorkerProcess::spawn(m_impl->io, argv, std::move(key_fd), pipes));
  w->times.spawn_us = micros_since(t0);
  w->process.emplace(std::move(process));
  // Wrapped at once, so that an error below still reaps the child (the destructor stops it).
  auto worker = std::make_unique<BenchWorker>(std::move(w));
  BenchWorker::Impl& impl = *worker->m_impl;

  impl.pipe_size = std::min(raise_pipe(pipes.to_worker.get(), pipe_size), raise_pipe(pipes.from_worker.get(), pipe_size));

  // The worker sends its hello as soon as it runs: waiting for it keeps its start-up out of the handshake.
  t0 = Clock::now();
  pollfd p{pipes.from_worker.get(), POLLIN, 0};
  if (::poll(&p, 1, 10000) != 1) return make_error(ErrorCode::timeout, "worker sent nothing within 10 s of its start");
  impl.times.first_byte_us = micros_since(t0);

  t0 = Clock::now();
  impl.channel = std::make_unique<Channel>(std::move(pipes.from_worker), std::move(pipes.to_worker), *impl.key,
                                           HandshakeConfig{Role::parent, {mode}, limits::default_max_payload});
  AUTHRUN_TRY(impl.channel->handshake(Clock::now() + std::chrono::seconds(10)));
  impl.times.handshake_us = micros_since(t0);
  return worker;
}

Result<double> WorkerHost::engine_tiny_throughput(ChannelMode mode, int jobs, int window, std::uint64_t tasks) {
  // A context of its own, as the runner has: nothing left over from the blocking workers' reaping.
  boost::asio::io_context io;
  std::vector<std::string> argv = m_impl->argv;
  if (mode == ChannelMode::insecure_measurement) argv.push_back("--allow-insecure-measurement");
  const std::string args = R"({"x":"abcd"})";
  const json expected = {{"x", "abcd"}};
  std::vector<std::shared_ptr<WorkerLink>> links(static_cast<std::size_t>(jobs));
  std::vector<std::deque<std::uint64_t>> in_flight(links.size());
  std::uint64_t next_id = 1, sent = 0, done = 0;
  int ready = 0, gone = 0;
  bool finished = false;
  std::optional<Error> failure;
  Clock::time_point t0, t1;

  auto fail = [&](Error e) {
    if (!failure) failure = std::move(e);
    for (auto& link : links) {
      if (link) link->kill(*failure);
    }
  };
  auto send_one = [&](std::size_t i) {
    const std::uint64_t id = next_id++;
    if (auto queued = links[i]->send_task(id, "echo", args); !queued) return fail(std::move(queued).error());
    in_flight[i].push_back(id);
    ++sent;
  };
  for (std::size_t i = 0; i < links.size(); ++i) {
    WorkerLink::Events events;
    events.on_ready = [&] {
      if (++ready < jobs) return;
      t0 = Clock::now();
      for (std::size_t j = 0; j < links.size(); ++j) {
        for (int k = 0; k < window && sent < tasks; ++k) send_one(j);
      }
    };
    events.on_result = [&, i](TaskResult&& r) {
      if (in_flight[i].empty() || r.id != in_flight[i].front() || !r.ok || r.value != expected) {
        return fail(make_error(ErrorCode::malformed, "tiny echo " + std::to_string(r.id) + " came back wrong"));
      }
      in_flight[i].pop_front();
      if (++done == tasks) {
        t1 = Clock::now();
        finished = true;
        for (auto& link : links) link->shutdown();
      } else if (sent < tasks) {
        send_one(i);
      }
    };
    events.on_gone = [&](const Error& why, int) {
      ++gone;
      if (!finished && !failure) failure = why;
    };
    auto link = WorkerLink::start(io, argv, nullptr, KeyHandOver::inherited_fd, HandshakeConfig{Role::parent, {mode}, limits::default_max_payload},
                                  std::chrono::seconds(10), std::move(events));
    if (!link) {
      fail(std::move(link).error());
      break;
    }
    links[i] = std::move(*link);
  }
  const auto until = Clock::now() + std::chrono::seconds(60);
  while (gone < static_cast<int>(std::count_if(links.begin(), links.end(), [](auto& l) { return l != nullptr; })) &&
         Clock::now() < until) {
    io.run_one_for(std::chrono::milliseconds(100));
  }
  if (Clock::now() >= until && !finished) fail(make_error(ErrorCode::timeout, "runner event loop: no end within 60 s"));
  // Whatever is left (a kill after a failure) is reaped before the callbacks' state goes away.
  const auto reap_until = Clock::now() + std::chrono::seconds(10);
  while (gone < static_cast<int>(std::count_if(links.begin(), links.end(), [](auto& l) { return l != nullptr; })) &&
         Clock::now() < reap_until) {
    io.run_one_for(std::chrono::milliseconds(100));
  }
  if (failure) return *failure;
  return std::chrono::duration<double>(t1 - t0).count();
}

}  // namespace authrun::runner::bench
