// Bench workers: spawned as runner/engine/worker_link.cpp spawns them (here: a fresh key on the key socket; through
// a launcher: a fresh key ahead of the protocol on stdin, or the key file's), then driven by a blocking
// Channel instead of the event loop, so that a round trip is timed without the loop in the way.
#include "runner/bench/bench_worker.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>

#include "protocol/key_handover.hpp"
#include "protocol/limits.hpp"
#include "protocol/peer_text.hpp"
#include "protocol/run_key.hpp"
#include "runner/engine/worker_link.hpp"
#include "runner/engine/worker_process.hpp"

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

std::string LaunchSpec::where() const {
  return (site.host.empty() ? "" : site.host + " ") + "via " + launcher.name();
}

std::vector<std::string> LaunchSpec::argv() const {
  return launch_argv(launcher, site, 1, worker_argv, delivery, remote_key_file);
}

struct WorkerHost::Impl {
  std::vector<std::string> argv;
  boost::asio::io_context io;
};

struct BenchWorker::Impl {
  boost::asio::io_context* io = nullptr;
  std::unique_ptr<RunKey> key;  // on the heap: the Channel keeps a reference to it
  std::optional<WorkerProcess> process;
  std::unique_ptr<Channel> channel;
  std::string name;  // "worker PID", or where a launched one runs, for messages
  StartTimes times;
  int pipe_size = 0;
  bool stopped = false;
  bool killed = false;  // reap() had to kill the process

  // Waits up to `grace` for the process to exit, then kills it and waits as long again. Returns its wait
  // status, or nullopt if it could not be reaped (or was not running). The process is gone afterwards.
  std::optional<int> reap(std::chrono::seconds grace) {
    if (!process) return std::nullopt;
    // Shared with the callback, which may outlive this call if the child is never reaped.
    auto exit = std::make_shared<std::optional<int>>();
    process->async_wait([exit](int status) { *exit = status; });
    for (int attempt = 0; attempt < 2 && !*exit; ++attempt) {
      if (attempt == 1) {
        process->kill();
        killed = true;
      }
      io->restart();
      const auto until = Clock::now() + grace;
      while (!*exit && Clock::now() < until) io->run_one_for(std::chrono::milliseconds(100));
    }
    process.reset();
    return *exit;
  }
};

namespace {

// Sends the key ahead of the protocol if `delivery` says so, raises the pipes, waits for the worker's first
// byte (its hello) and completes the handshake for `mode`, each wait within `timeout`; fills in `w`'s start
// times, pipe size and channel (which takes the pipes).
Result<void> handshake(BenchWorker::Impl& w, WorkerProcess::Pipes& pipes, KeyDelivery delivery, const Fd& rendezvous,
                       std::chrono::seconds timeout, ChannelMode mode, int pipe_size) {
  // The worker's own start-up (a launcher's login included) runs from here to its hello.
  auto t0 = Clock::now();
  if (delivery == KeyDelivery::inherited_fd) {
    // The v2 hand-over, as WorkerLink does it: the worker asks on its rendezvous, we check who asks.
    AUTHRUN_TRY(serve_key_request(rendezvous.get(), w.process->pid(), *w.key, Clock::now() + timeout, false));
  }
  if (delivery == KeyDelivery::stdin_prefix) {
    // The key goes out only once the worker asks for it (as WorkerLink does it).
    std::array<std::uint8_t, k_key_request.size()> asked{};
    if (auto got = read_exact(pipes.from_worker.get(), std::as_writable_bytes(std::span(asked)), Clock::now() + timeout); !got) {
      return make_error(got.error().code, "it did not ask for its key (" + got.error().message + ")");
    }
    if (key_request_state(asked) != KeyRequestState::complete) {
      const std::string shown = escape_peer_text(std::string_view(reinterpret_cast<const char*>(asked.data()), asked.size()));
      return make_error(ErrorCode::bad_magic, "it sent \"" + shown + "\"... instead of asking for its key (is the channel clean?)");
    }
    if (auto sent = write_key_prefix(pipes.to_worker.get(), *w.key); !sent) {
      return make_error(sent.error().code, "its key could not be written to its stdin (" + sent.error().message + ")");
    }
  }
  w.pipe_size = std::min(raise_pipe(pipes.to_worker.get(), pipe_size), raise_pipe(pipes.from_worker.get(), pipe_size));

  // The worker sends its hello as soon as it runs (has its key): waiting for it keeps its start-up out of
  // the handshake.
  pollfd p{pipes.from_worker.get(), POLLIN, 0};
  const int waited_ms = static_cast<int>(std::chrono::milliseconds(timeout).count());
  if (::poll(&p, 1, waited_ms) != 1) {
    return make_error(ErrorCode::timeout, "worker sent nothing within " + std::to_string(timeout.count()) + " s of its start");
  }
  if (!(p.revents & POLLIN)) return make_error(ErrorCode::eof, "worker closed its output without sending anything");
  w.times.first_byte_us = micros_since(t0);

  t0 = Clock::now();
  w.channel = std::make_unique<Channel>(std::move(pipes.from_worker), std::move(pipes.to_worker), *w.key,
                                        HandshakeConfig{Role::parent, {mode}, limits::default_max_payload});
  AUTHRUN_TRY(w.channel->handshake(Clock::now() + timeout));
  w.times.handshake_us = micros_since(t0);
  return {};
}

// `why` as the bench reports a worker that did not start: where it ran, and how its process ended
// (`wait_status`, when it was reaped) with, for a launcher, the likely cause.
Error failed_start(Error why, const LaunchSpec* launch, std::optional<int> wait_status) {
  const bool spawned = why.code != ErrorCode::spawn_failed;
  std::string text = launch ? "the worker " + launch->where() : std::string("the worker");
  text += spawned ? " failed its handshake: " : " did not start: ";
  text += why.message;
  if (wait_status) {
    text += std::string("; ") + (launch ? launch->launcher.name() : "it") + " ended with " + describe_wait_status(*wait_status);
    if (launch) {
      if (std::string hint = launch_failure_hint(launch->launcher, launch->site, *wait_status); !hint.empty()) {
        text += ": " + hint;
      }
    }
  }
  return Error{why.code, std::move(text)};
}

}  // namespace

BenchWorker::BenchWorker(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}

BenchWorker::~BenchWorker() {
  if (m_impl && !m_impl->stopped) std::ignore = stop();
}

Channel& BenchWorker::channel() { return *m_impl->channel; }
int BenchWorker::pid() const { return m_impl->process->pid(); }
const StartTimes& BenchWorker::start_times() const { return m_impl->times; }
double BenchWorker::start_us() const { return m_impl->times.spawn_us + m_impl->times.first_byte_us + m_impl->times.handshake_us; }
int BenchWorker::pipe_size() const { return m_impl->pipe_size; }

std::string BenchWorker::peer_host() {
  const auto& info = m_impl->channel->connection().peer_info();
  return info ? info->host : std::string();
}

Result<void> BenchWorker::stop() {
  Impl& w = *m_impl;
  w.stopped = true;
  if (w.channel) {
    std::ignore = w.channel->send(Shutdown{}, Clock::now() + std::chrono::seconds(1));
    w.channel.reset();  // closes both pipes: the worker sees the shutdown, then EOF
  }
  if (!w.process) return {};
  const std::optional<int> status = w.reap(std::chrono::seconds(5));
  if (!status) return make_error(ErrorCode::io, w.name + " could not be reaped");
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return make_error(ErrorCode::io, w.name + " ended with " + describe_wait_status(*status));
  }
  return {};
}

WorkerHost::WorkerHost(std::vector<std::string> worker_argv) : m_impl(std::make_unique<Impl>()) {
  m_impl->argv = std::move(worker_argv);
}

WorkerHost::~WorkerHost() = default;

// What to spawn and how it gets its key.
struct WorkerHost::Plan {
  std::vector<std::string> argv;
  KeyDelivery delivery = KeyDelivery::inherited_fd;
  std::unique_ptr<RunKey> key;         // on the heap: the Channel keeps a reference to it
  std::chrono::seconds timeout{10};    // for the first byte, then again for the handshake
  const LaunchSpec* launch = nullptr;  // set for a launched worker
};

Result<std::unique_ptr<BenchWorker>> WorkerHost::start(ChannelMode mode, int pipe_size) {
  Plan plan;
  plan.argv = m_impl->argv;
  if (mode == ChannelMode::insecure_measurement) plan.argv.push_back("--allow-insecure-measurement");
  // A fresh key for each worker, as the runner does.
  plan.key = std::make_unique<RunKey>(RunKey::generate());
  return spawn(std::move(plan), mode, pipe_size);
}

Result<std::unique_ptr<BenchWorker>> WorkerHost::start_launched(const LaunchSpec& launch, ChannelMode mode, int pipe_size) {
  Plan plan;
  plan.argv = launch.argv();
  plan.timeout = std::chrono::seconds(30);
  plan.launch = &launch;
  plan.delivery = launch.delivery;
  if (launch.delivery == KeyDelivery::key_file) {
    AUTHRUN_TRY_ASSIGN(RunKey key, RunKey::load_file(launch.key_file));
    plan.key = std::make_unique<RunKey>(std::move(key));
  } else {
    plan.key = std::make_unique<RunKey>(RunKey::generate());
  }
  return spawn(std::move(plan), mode, pipe_size);
}

Result<std::unique_ptr<BenchWorker>> WorkerHost::spawn(Plan plan, ChannelMode mode, int pipe_size) {
  auto w = std::make_unique<BenchWorker::Impl>();
  w->io = &m_impl->io;
  w->key = std::move(plan.key);
  Rendezvous meeting;
  if (plan.delivery == KeyDelivery::inherited_fd) {
    AUTHRUN_TRY_ASSIGN(meeting, make_rendezvous());
  }
  WorkerProcess::Pipes pipes;
  auto t0 = Clock::now();
  auto process = WorkerProcess::spawn(m_impl->io, plan.argv, std::move(meeting.worker), pipes, plan.launch != nullptr);
  if (!process) return failed_start(std::move(process).error(), plan.launch, std::nullopt);
  w->times.spawn_us = micros_since(t0);
  w->process.emplace(std::move(*process));
  w->name = plan.launch ? "the worker " + plan.launch->where() + " (launcher pid " + std::to_string(w->process->pid()) + ")"
                        : "worker " + std::to_string(w->process->pid());
  // Wrapped at once, so that an error below still reaps the child (the destructor stops it).
  auto worker = std::make_unique<BenchWorker>(std::move(w));
  BenchWorker::Impl& impl = *worker->m_impl;
  if (auto ready = handshake(impl, pipes, plan.delivery, meeting.runner, plan.timeout, mode, pipe_size); !ready) {
    // Our ends closed, so a worker still reading sees EOF; how it ended tells why (unless it had to be killed).
    impl.channel.reset();
    pipes = {};
    const std::optional<int> status = impl.reap(std::chrono::seconds(2));
    return failed_start(std::move(ready).error(), plan.launch, impl.killed ? std::nullopt : status);
  }
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
    auto link = WorkerLink::start(io, argv, nullptr, KeyDelivery::inherited_fd, false, HandshakeConfig{Role::parent, {mode}, limits::default_max_payload},
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
