// Asynchronous driving of one worker's pipes and its protocol Connection.
#include "runner/engine/worker_link.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <utility>

#include <sys/uio.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "protocol/json_codec.hpp"
#include "protocol/key_handover.hpp"
#include "protocol/limits.hpp"
#include "runner/engine/start_window.hpp"
#include "runner/engine/worker_process.hpp"

namespace authrun::runner {

namespace asio = boost::asio;
using namespace protocol;

namespace {

// How long the first tasks for a worker wait for its worker_info (see WorkerLink::Impl::info_timer).
constexpr std::chrono::milliseconds k_info_wait{5};

}  // namespace

struct WorkerLink::Impl : std::enable_shared_from_this<WorkerLink::Impl> {
  Impl(asio::io_context& io, RunKey k, HandshakeConfig config, Events ev)
      : key(std::move(k)), connection(key, std::move(config)), events(std::move(ev)), in(io), out(io), rendezvous(io),
        handshake_timer(io), deadline_timer(io), linger_timer(io), silence_timer(io), info_timer(io) {}

  RunKey key;  // declared before connection, which refers to it
  Connection connection;
  Events events;
  std::optional<WorkerProcess> process;
  asio::posix::stream_descriptor in;   // worker's stdout
  asio::posix::stream_descriptor out;  // worker's stdin
  asio::posix::stream_descriptor rendezvous;  // our end of the key rendezvous (v2 hand-over), until the handshake
  KeyRequestPolicy key_policy;                // what the worker's key request must pass
  std::uint64_t continues_at_spawn = 0;       // the runner's continues() when the worker was spawned
  std::optional<ProgressPage> progress;  // handed over with the key (v2 hand-over only)
  asio::steady_timer handshake_timer;
  asio::steady_timer deadline_timer;
  asio::steady_timer linger_timer;  // bounds the wait for the end once the worker stopped reading or exited
  asio::steady_timer silence_timer;  // watch_silence: fires when a busy worker has said nothing for too long
  Clock::time_point last_heard{};    // when bytes last came from the worker (or it last became busy)
  std::uint64_t frames_told = 0;     // connection.frames_received() when on_heard was last called
  bool busy = false;
  bool silence_armed = false;
  std::chrono::milliseconds silence_limit{0};
  // The first tasks wait (at most k_info_wait) for the worker's worker_info, which says whether it takes
  // batches and usually comes right behind its proof; a worker that sends none gets single tasks after that.
  asio::steady_timer info_timer;
  bool info_timer_started = false;
  bool info_given_up = false;
  Clock::time_point spawned_at;
  std::chrono::microseconds handshake_time{0};
  bool awaiting_key_request = false;          // key on stdin: nothing is sent before the worker asks
  std::array<std::uint8_t, 64> early{};       // what the worker sent while we waited for its request
  std::size_t early_got = 0;
  bool writing = false;
  bool kick_posted = false;  // a kick_write is posted for the end of this loop turn
  bool closing_output = false;  // shutdown(): close the worker's stdin once output is flushed
  bool closed = false;          // channel over: no more reads or writes
  bool exited = false;
  int wait_status = 0;
  std::optional<Error> failure;  // the first thing that went wrong
  bool gone_reported = false;
  std::optional<std::pair<MessageType, std::string>> first_message;  // sent once established, before any task
  // JSON task bodies one after another, sealed by kick_write (in batches if it takes them); each ends at its
  // entry of pending_ends.
  std::string pending_text;
  std::vector<std::size_t> pending_ends;
  std::uint64_t task_frames = 0;  // task and task_batch frames queued

  // True while tasks wait for the worker's worker_info.
  bool awaiting_info() const { return !connection.peer_info() && !info_given_up; }

  // Batches or not, as the worker's worker_info says: decided when the tasks are sealed.
  bool takes_batches() const { return connection.peer_info() && connection.peer_info()->batches; }

  void wait_for_info() {
    if (info_timer_started) return;
    info_timer_started = true;
    if (events.await_info) return;
    info_timer.expires_after(k_info_wait);
    info_timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->closed) return;
      self->info_given_up = true;
      self->kick_write();
    });
  }

  // Seals the pending tasks: to a worker that takes batches, one alone as a task frame and more as task_batch
  // frames, each within the worker's payload limit and limits::max_batch_entries (each body fits alone:
  // send_task checked); to another, each as a task frame.
  Result<void> seal_pending_tasks() {
    if (pending_ends.empty()) return {};
    std::string text = std::exchange(pending_text, {});
    std::vector<std::size_t> ends = std::exchange(pending_ends, {});
    auto task = [&](std::size_t i) {
      const std::size_t begin = i == 0 ? 0 : ends[i - 1];
      return std::string_view(text).substr(begin, ends[i] - begin);
    };
    auto sealed = [&]() -> Result<void> {
      if (!takes_batches() || ends.size() == 1) {
        for (std::size_t i = 0; i < ends.size(); ++i) {
          ++task_frames;
          AUTHRUN_TRY(connection.send_body(MessageType::task, std::string(task(i))));
        }
        return {};
      }
      const std::size_t limit = connection.session().peer_max_payload;
      std::string body;
      std::size_t count = 0;
      auto seal = [&] {
        body += "]}";
        count = 0;
        ++task_frames;
        return connection.send_body(MessageType::task_batch, std::exchange(body, std::string()));
      };
      for (std::size_t i = 0; i < ends.size(); ++i) {
        const std::string_view one = task(i);
        if (count > 0 && (count == limits::max_batch_entries || body.size() + 1 + one.size() + 2 > limit)) {
          AUTHRUN_TRY(seal());
        }
        if (count == 0) {
          body.reserve(std::min(limit, text.size() + 16 + ends.size()));
          body += "{\"tasks\":[";
        } else {
          body += ',';
        }
        body += one;
        ++count;
      }
      return seal();
    }();
    text.clear();
    ends.clear();
    pending_text = std::move(text);  // their buffers serve the next tasks
    pending_ends = std::move(ends);
    return sealed;
  }

  void start_read() {
    if (closed) return;
    if (awaiting_key_request) {
      in.async_read_some(asio::buffer(early.data() + early_got, early.size() - early_got),
                         [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                           self->on_early_read(ec, n);
                         });
      return;
    }
    auto space = connection.read_space();
    in.async_read_some(asio::buffer(space.data(), space.size()),
                       [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                         self->on_read(ec, n);
                       });
  }

  // Waits for the worker's key request on the rendezvous and answers it (answer_key_request checks who asks).
  void await_key_request() {
    rendezvous.async_wait(asio::posix::descriptor_base::wait_read, [self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->closed || !self->rendezvous.is_open()) return;
      auto seen = answer_key_request(self->rendezvous.native_handle(), self->process->pid(), self->key, self->key_policy,
                                     self->progress ? self->progress->fd() : -1);
      if (!seen) return self->close(std::move(seen).error());
      if (*seen == KeyRequestSeen::nothing_yet) return self->await_key_request();
      if (*seen == KeyRequestSeen::answered && !self->connection.established()) return self->watch_rendezvous();
      // The worker closed its end without asking (its exit or its handshake will tell).
      boost::system::error_code ignored;
      self->rendezvous.close(ignored);
    });
  }

  // Once answered, until the handshake completes: a second request on the rendezvous fails closed (someone
  // else holds a copy of the worker's fd 3 and asked too). The end of it (every copy closed) ends the watch.
  void watch_rendezvous() {
    rendezvous.async_wait(asio::posix::descriptor_base::wait_read, [self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->closed || !self->rendezvous.is_open()) return;
      if (auto quiet = check_no_second_request(self->rendezvous.native_handle(), self->process->pid()); !quiet) {
        return self->close(std::move(quiet).error());
      }
      boost::system::error_code ignored;
      self->rendezvous.close(ignored);
    });
  }

  // The runner's own last check before a key leaves: it was not stopped (SIGSTOP, SIGTSTP) since it started
  // this worker. A stop lets a same-user tracer make the worker ask, then let it turn non-dumpable and detach
  // before the runner looks: a check made when a request is read says nothing about when it was sent.
  Result<void> not_stopped_since_spawn() const {
    if (continues() == continues_at_spawn) return {};
    return make_error(ErrorCode::key_invalid,
                      "the runner was stopped and continued (SIGCONT) while worker " + std::to_string(process->pid()) +
                          " was starting: its key request may have been made under a tracer meanwhile; refused (the "
                          "worker is replaced)");
  }

  // Bytes before the worker's key request: the request (then the key goes out, and the hello after it), or
  // anything else: a dirty channel, which gets no key and not a byte more from us (not our hello, not an
  // outcome); the Connection only says what came, quoted.
  void on_early_read(const boost::system::error_code& ec, std::size_t n) {
    if (closed) return;
    if (!ec) early_got += n;
    const auto state = key_request_state(std::span<const std::uint8_t>(early.data(), early_got));
    const bool ended = ec || n == 0;
    if (state == KeyRequestState::partial && !ended) return start_read();
    awaiting_key_request = false;
    if (state == KeyRequestState::complete) {
      if (auto sent = write_key_prefix(out.native_handle(), key); !sent) return close(std::move(sent).error());
      kick_write();  // our hello
      return start_read();
    }
    boost::system::error_code ignored;
    out.close(ignored);  // nothing queued (our hello) is ever written now
    auto space = connection.read_space();
    const std::size_t fed = std::min(space.size(), early_got);
    std::copy_n(early.begin(), fed, space.begin());
    connection.commit(fed);
    auto msg = connection.receive();
    if (!msg) return close(std::move(msg).error());  // a banner, an error message: quoted
    if (ended) return close(connection.end_of_input());
    // The start of a frame (a worker that did not ask for its key on its stdin) or of a quiet banner.
    close(make_error(ErrorCode::unexpected, "the worker sent " + std::to_string(early_got) +
                                                " bytes before asking for its key (ARUNKEY?); is it started with --key-stdin?"));
  }

  void on_read(const boost::system::error_code& ec, std::size_t n) {
    if (closed) return;
    if (ec == asio::error::eof || (!ec && n == 0)) return close(connection.end_of_input());
    if (ec) return close(make_error(ErrorCode::io, "reading from worker: " + ec.message()));
    last_heard = Clock::now();
    connection.commit(n);
    process_input();
  }

  // Takes in what the Connection has buffered: handshake, results; then reads on.
  void process_input() {
    for (;;) {
      const bool was_ready = connection.established();
      const bool had_info = connection.peer_info().has_value();
      auto msg = connection.receive();
      if (!msg) {
        flush_now();
        return close(std::move(msg).error());
      }
      if (!had_info && connection.peer_info() && events.on_info) {
        events.on_info();
        if (closed) return;
      }
      if (!was_ready && connection.established()) {
        handshake_timer.cancel();
        boost::system::error_code ignored;
        rendezvous.close(ignored);  // the key is in use: a later request changes nothing
        handshake_time = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - spawned_at);
        if (first_message) {
          if (auto sent = connection.send_body(first_message->first, std::move(first_message->second)); !sent) {
            return close(std::move(sent).error());
          }
          first_message.reset();
        }
        kick_write();
        if (events.on_ready) events.on_ready();
        if (closed) return;
      }
      if (!*msg) break;
      if (auto* result = std::get_if<TaskResult>(&**msg)) {
        events.on_result(std::move(*result));
        if (closed) return;
        continue;
      }
      if (auto* batch = std::get_if<ResultBatch>(&**msg)) {
        for (TaskResult& one : batch->results) {
          events.on_result(std::move(one));
          if (closed) return;
        }
        continue;
      }
      if (auto* output = std::get_if<Output>(&**msg)) {
        events.on_output(std::move(*output));
        if (closed) return;
        continue;
      }
      return refuse(make_error(ErrorCode::unexpected, std::string("worker sent a ") + to_string(type_of(**msg)) + " message"));
    }
    if (connection.frames_received() != frames_told) {
      frames_told = connection.frames_received();
      if (events.on_heard) events.on_heard();
      if (closed) return;
    }
    if (busy && !silence_armed) arm_silence();  // its worker_info (keepalive_ms) may have come just now
    kick_write();
    start_read();
  }

  void kick_write() {
    if (closed || writing || awaiting_key_request || !out.is_open()) return;
    if (connection.established() && awaiting_info() && !pending_ends.empty()) {
      wait_for_info();
    } else if (auto sealed = seal_pending_tasks(); !sealed) {
      return close(std::move(sealed).error());
    }
    FrameWriter& w = connection.output();
    if (w.empty()) {
      if (closing_output && out.is_open()) {
        boost::system::error_code ignored;
        out.close(ignored);
      }
      return;
    }
    iovec iov[64];
    std::size_t n = w.gather(iov);
    std::vector<asio::const_buffer> buffers;
    buffers.reserve(n);
    for (std::size_t i = 0; i < n; ++i) buffers.emplace_back(iov[i].iov_base, iov[i].iov_len);
    writing = true;
    out.async_write_some(buffers, [self = shared_from_this()](const boost::system::error_code& ec, std::size_t written) {
      self->writing = false;
      if (self->closed) return;
      if (ec == asio::error::broken_pipe) {
        // The worker stopped reading: what it says last (an error message, its exit) is still to be read and
        // tells why better than "broken pipe" does. The reader ends the link; the exit timer bounds the wait.
        boost::system::error_code ignored;
        self->out.close(ignored);
        self->linger(make_error(ErrorCode::io, "worker stopped reading its input and did not close its output"));
        return;
      }
      if (ec) return self->close(make_error(ErrorCode::io, "writing to worker: " + ec.message()));
      self->connection.output().consume(written);
      self->kick_write();
    });
  }

  // Ends the channel for a violation of the protocol by the worker: an error message tells it why.
  void refuse(Error why) {
    if (closed) return;
    std::ignore = connection.send(ProtocolError{to_string(why.code), why.message.substr(0, 1000)});
    flush_now();
    close(std::move(why));
  }

  // Best-effort, non-blocking write of what is queued (the frame telling the peer why we close).
  void flush_now() {
    if (writing || !out.is_open()) return;
    FrameWriter& w = connection.output();
    iovec iov[64];
    std::size_t n = w.gather(iov);
    if (n > 0) {
      ssize_t written = ::writev(out.native_handle(), iov, static_cast<int>(n));
      if (written > 0) w.consume(static_cast<std::size_t>(written));
    }
  }

  void close(Error why) {
    if (!failure) failure = std::move(why);
    if (closed) return;
    closed = true;
    boost::system::error_code ignored;
    handshake_timer.cancel();
    deadline_timer.cancel();
    linger_timer.cancel();
    silence_timer.cancel();
    info_timer.cancel();
    // A worker that ended the channel itself is expected to exit at once. A trusted worker we stop (timeout,
    // signal, halt) gets SIGTERM, so that it takes its task's child process along. Either way SIGKILL
    // follows if it has not exited: two seconds on, over five times the 350 ms of the worker's termination
    // sequence for its task's child group (TERM, 200 ms, TERM, 100 ms, TERM, 50 ms, KILL), which a SIGKILL
    // to the worker would cut short, leaving a child that ignores TERM running. One that never proved
    // itself gets SIGKILL at once. The signal goes before the pipes close: pending by then, it is what the
    // worker acts on (quietly), not the broken channel it would otherwise report on stderr.
    if (process && failure->code != ErrorCode::eof) {
      if (connection.established()) {
        process->terminate();
      } else {
        process->kill();
      }
    }
    in.close(ignored);
    out.close(ignored);
    rendezvous.close(ignored);
    deadline_timer.expires_after(std::chrono::seconds(2));
    deadline_timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec && self->process) self->process->kill();
    });
    report_if_done();
  }

  void on_exit(int status) {
    exited = true;
    wait_status = status;
    if (!closed && !connection.established()) {
      // Whoever still holds its pipes is not the process we started: never let it finish the handshake.
      return close(make_error(ErrorCode::eof, "worker exited before completing its handshake (" +
                                                  describe_wait_status(status) + ")"));
    }
    if (!closed) {
      // Its pipes may still hold a last result: let the reader reach EOF first, but not for long: if another
      // process holds the pipes open, no EOF comes.
      return linger(make_error(ErrorCode::io, "worker exited but its pipes stayed open (held by another process?)"));
    }
    deadline_timer.cancel();
    report_if_done();
  }

  // Arms the silence timer for a busy worker that announced keep-alives (see watch_silence); when it fires
  // early (something came meanwhile) it re-arms itself from the last sign of life.
  void arm_silence() {
    silence_armed = false;
    const auto& info = connection.peer_info();
    if (!busy || closed || silence_limit.count() <= 0 || !info || info->keepalive_ms == 0) return;
    const auto limit = std::max(silence_limit, std::chrono::milliseconds(4 * std::int64_t(info->keepalive_ms)));
    silence_armed = true;
    silence_timer.expires_at(last_heard + limit);
    silence_timer.async_wait([self = shared_from_this(), limit](const boost::system::error_code& ec) {
      if (ec || self->closed || !self->silence_armed) return;
      const auto quiet = Clock::now() - self->last_heard;
      if (quiet < limit) return self->arm_silence();
      char why[200];
      std::snprintf(why, sizeof why,
                    "worker silent for %.1f s while running a task (no keepalive: stopped, hung, or not writing); stopped",
                    std::chrono::duration<double>(quiet).count());
      self->close(make_error(ErrorCode::io, why));
    });
  }

  // Gives the reader two seconds to reach the end of the worker's output, then closes with `why`.
  void linger(Error why) {
    linger_timer.expires_after(std::chrono::seconds(2));
    linger_timer.async_wait([self = shared_from_this(), why = std::move(why)](const boost::system::error_code& ec) {
      if (!ec && !self->closed) self->close(why);
    });
  }

  // Reports the end once both the channel and the process are gone. Always from a fresh turn of the event
  // loop: the owner may be iterating over its workers when it closes one.
  void report_if_done() {
    if (!closed || !exited || gone_reported) return;
    gone_reported = true;
    asio::post(in.get_executor(), [self = shared_from_this()] {
      auto on_gone = std::move(self->events.on_gone);
      self->events = Events{};  // break cycles: the owner's callbacks may hold references
      if (on_gone) on_gone(*self->failure, self->wait_status);
      self->process.reset();
    });
  }
};

WorkerLink::WorkerLink(std::shared_ptr<Impl> impl) : m_impl(std::move(impl)) {}

WorkerLink::~WorkerLink() {
  if (m_impl && !m_impl->closed) m_impl->close(make_error(ErrorCode::io, "runner dropped the worker"));
}

Result<std::shared_ptr<WorkerLink>> WorkerLink::start(asio::io_context& io, const std::vector<std::string>& argv,
                                                      const RunKey* shared_key, KeyDelivery delivery, bool allow_ptrace,
                                                      HandshakeConfig config,
                                                      std::chrono::milliseconds handshake_timeout, Events events) {
  const bool launched = delivery != KeyDelivery::inherited_fd;
  // A fresh key for each worker: a key stolen from one worker opens that one channel at most.
  RunKey key = shared_key ? RunKey::from_bytes(std::span<const std::uint8_t, k_run_key_size>(shared_key->data(), k_run_key_size))
                         : RunKey::generate();
  // v2 hand-over: the worker gets one end of the rendezvous as fd 3; nothing is ever written into it.
  Rendezvous meeting;
  if (delivery == KeyDelivery::inherited_fd) {
    AUTHRUN_TRY_ASSIGN(meeting, make_rendezvous());
  }

  auto impl = std::make_shared<Impl>(io, std::move(key), std::move(config), std::move(events));
  impl->connection.set_values_as_text(impl->events.values_as_text);
  WorkerProcess::Pipes pipes;
  impl->spawned_at = Clock::now();
  impl->continues_at_spawn = continues();  // before the spawn: a stop from here on refuses its request
  AUTHRUN_TRY_ASSIGN(WorkerProcess process, WorkerProcess::spawn(io, argv, std::move(meeting.worker), pipes, launched,
                                                                       impl->events.pipe_size));
  impl->process.emplace(std::move(process));
  impl->key_policy.allow_ptrace = allow_ptrace;
  // The asker must run what we started; a wrapper execs something else by design (it is warned about).
  if (!launched && !is_wrapper(argv)) {
    if (auto id = executable_id(argv[0])) impl->key_policy.executable = std::move(*id);
  }
  impl->key_policy.last_check = [weak = std::weak_ptr<Impl>(impl)]() -> Result<void> {
    auto self = weak.lock();
    return self ? self->not_stopped_since_spawn() : Result<void>();
  };
  if (meeting.runner.valid()) {
    // Without a page (no memfd here) the worker holds no result past its next task's start instead.
    if (auto page = ProgressPage::create()) impl->progress.emplace(std::move(*page));
    impl->rendezvous.assign(meeting.runner.release());
    impl->await_key_request();
  }
  // The key goes out once the worker asks for it (on_early_read). The launcher's channel must be encrypted
  // (checked by choose_key_delivery before any worker starts).
  impl->awaiting_key_request = delivery == KeyDelivery::stdin_prefix;
  AUTHRUN_TRY(set_nonblocking(pipes.to_worker.get(), true));
  AUTHRUN_TRY(set_nonblocking(pipes.from_worker.get(), true));
  impl->in.assign(pipes.from_worker.release());
  impl->out.assign(pipes.to_worker.release());
  impl->process->async_wait([weak = std::weak_ptr<Impl>(impl), keep = impl](int status) mutable {
    keep->on_exit(status);
    keep.reset();
  });
  impl->handshake_timer.expires_after(handshake_timeout);
  impl->handshake_timer.async_wait([weak = std::weak_ptr<Impl>(impl), handshake_timeout](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (ec || !self || self->connection.established()) return;
    self->close(make_error(ErrorCode::timeout,
                           self->awaiting_key_request
                               ? "the worker did not ask for its key within " + std::to_string(handshake_timeout.count()) +
                                     " ms (is the launcher running authrun-worker --key-stdin?)"
                               : "handshake did not complete within " + std::to_string(handshake_timeout.count()) + " ms"));
  });
  impl->kick_write();  // our hello
  impl->start_read();
  return std::shared_ptr<WorkerLink>(new WorkerLink(std::move(impl)));
}

int WorkerLink::pid() const { return m_impl->process ? m_impl->process->pid() : 0; }
ProgressSeen WorkerLink::progress() const { return m_impl->progress ? m_impl->progress->read() : ProgressSeen{}; }
bool WorkerLink::ready() const { return m_impl->connection.established() && !m_impl->closed; }
std::chrono::microseconds WorkerLink::handshake_time() const { return m_impl->handshake_time; }
ChannelMode WorkerLink::mode() const { return m_impl->connection.session().mode; }
const std::optional<WorkerInfo>& WorkerLink::peer_info() const { return m_impl->connection.peer_info(); }

namespace {

// Appends a task message's body: {"id", "fn", "args"} with the args as given, in JSON text or CBOR.
void append_task_body(std::string& body, std::uint64_t id, const std::string& fn, const std::string& args,
                      BodyFormat format) {
  if (format == BodyFormat::cbor) {
    // A map of three: "id", "fn", then "args" with its CBOR as given.
    body += static_cast<char>(0xA3);
    for (const json& part : {json("id"), json(id), json("fn"), json(fn), json("args")}) {
      json::to_cbor(part, nlohmann::detail::output_adapter<char>(body));
    }
    body += args;
  } else {
    body += "{\"id\":";
    append_json_uint(body, id);
    body += ",\"fn\":";
    append_json_string(body, fn);
    body += ",\"args\":";
    body += args;
    body += '}';
  }
}

std::string task_body(std::uint64_t id, const std::string& fn, const std::string& args, BodyFormat format) {
  std::string body;
  body.reserve(args.size() + fn.size() + 48);
  append_task_body(body, id, fn, args, format);
  return body;
}

}  // namespace

std::uint32_t WorkerLink::peer_max_payload() const {
  return ready() ? m_impl->connection.session().peer_max_payload : 0;
}

std::size_t WorkerLink::task_payload_size(std::uint64_t id, const std::string& fn, const std::string& args, BodyFormat format,
                                          std::string_view attachment) {
  const std::size_t body = task_body(id, fn, args, format).size();
  return attachment.empty() ? body : 4 + body + attachment.size();
}

Result<void> WorkerLink::send_task(std::uint64_t id, const std::string& fn, const std::string& args, BodyFormat format,
                                   std::string_view attachment) {
  Impl& impl = *m_impl;
  // JSON tasks wait for kick_write, which seals those queued meanwhile (this loop turn's, and those queued
  // while a write was under way) into task_batch frames for a worker that takes batches; until its
  // worker_info says whether it does, they wait for that too. The body is written where it waits.
  const bool may_wait = (impl.takes_batches() || impl.awaiting_info()) && format == BodyFormat::json &&
                        attachment.empty() && impl.connection.established();
  bool waiting = false;
  if (may_wait) {
    const std::size_t begin = impl.pending_text.size();
    append_task_body(impl.pending_text, id, fn, args, format);
    waiting = impl.pending_text.size() - begin + 16 <= impl.connection.session().peer_max_payload;
    if (waiting) {
      impl.pending_ends.push_back(impl.pending_text.size());
    } else {
      impl.pending_text.resize(begin);  // too large to wait: it goes alone (or is refused) below
    }
  }
  if (!waiting) {
    std::string body = task_body(id, fn, args, format);
    AUTHRUN_TRY(impl.seal_pending_tasks());
    AUTHRUN_TRY(impl.connection.send_body(MessageType::task, std::move(body), format, Attachment{std::string(attachment)}));
    ++impl.task_frames;
  }
  // The tasks queued in this loop turn go out together, in one writev, once the turn's events are handled.
  if (!m_impl->kick_posted && !m_impl->writing) {
    m_impl->kick_posted = true;
    asio::post(m_impl->out.get_executor(), [self = m_impl] {
      self->kick_posted = false;
      self->kick_write();
    });
  }
  return {};
}

std::uint64_t WorkerLink::task_frames() const { return m_impl->task_frames; }
std::uint64_t WorkerLink::frames_received() const { return m_impl->connection.frames_received(); }

void WorkerLink::send_after_handshake(MessageType type, std::string body) {
  m_impl->first_message.emplace(type, std::move(body));
}

void WorkerLink::shutdown() {
  if (m_impl->closed || m_impl->closing_output) return;
  if (!m_impl->connection.established()) {
    // Not needed after all, and not trusted yet: nothing to wait for.
    m_impl->close(make_error(ErrorCode::eof, "stopped before its handshake completed"));
    if (m_impl->process) m_impl->process->kill();
    return;
  }
  m_impl->info_given_up = true;
  if (auto sealed = m_impl->seal_pending_tasks(); !sealed) return m_impl->close(std::move(sealed).error());
  std::ignore = m_impl->connection.send(Shutdown{});
  m_impl->closing_output = true;
  m_impl->kick_write();
}

void WorkerLink::kill(Error why) { m_impl->close(std::move(why)); }

void WorkerLink::refuse(Error why) { m_impl->refuse(std::move(why)); }

void WorkerLink::watch_silence(bool busy, std::chrono::milliseconds limit) {
  Impl& impl = *m_impl;
  impl.silence_limit = limit;
  if (impl.closed || (busy == impl.busy && (impl.silence_armed || !busy))) return;
  if (busy && !impl.busy) impl.last_heard = std::max(impl.last_heard, Clock::now());  // idle time is no silence
  impl.busy = busy;
  if (!busy) {
    impl.silence_armed = false;
    impl.silence_timer.cancel();
    return;
  }
  impl.arm_silence();
}

void WorkerLink::set_deadline(std::optional<std::chrono::milliseconds> after, Error why) {
  auto& timer = m_impl->deadline_timer;
  if (m_impl->closed) return;
  timer.cancel();
  if (!after) return;
  timer.expires_after(*after);
  timer.async_wait([weak = std::weak_ptr<Impl>(m_impl), why = std::move(why)](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (ec || !self || self->closed) return;
    self->close(why);
  });
}

}  // namespace authrun::runner
