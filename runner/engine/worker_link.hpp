// One worker as the runner's event loop sees it: the child process, its two pipes driven asynchronously,
// and the protocol Connection (handshake, then protected tasks and results).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/connection.hpp"
#include "protocol/progress_page.hpp"
#include "protocol/run_key.hpp"
#include "runner/engine/launcher.hpp"

namespace boost::asio {
class io_context;
}

namespace authrun::runner {

class WorkerLink {
 public:
  struct Events {
    // The worker's proof verified: it may be given tasks.
    std::function<void()> on_ready;
    // The worker's worker_info arrived (a Python worker sends it once its program has loaded).
    std::function<void()> on_info;
    // A result arrived (results arrive in the order tasks were sent).
    std::function<void(protocol::TaskResult&&)> on_result;
    // A piece of a running task's streamed output arrived (before that task's result).
    std::function<void(protocol::Output&&)> on_output;
    // Frames came from the worker (any, a keepalive too), after those handed to the events above.
    std::function<void()> on_heard;
    // The channel is closed and the process reaped; called once, last. `why` is the first thing that went
    // wrong (eof for a clean exit), `wait_status` as from waitpid.
    std::function<void(const protocol::Error& why, int wait_status)> on_gone;
    // Results of task batches keep their values as JSON text (TaskResult::value_json), not parsed.
    bool values_as_text = false;
    // F_SETPIPE_SZ for the worker's pipes, if > 0 (EngineOptions::pipe_size).
    int pipe_size = 0;
    // The first tasks wait for the worker's worker_info however long it takes, not k_info_wait: a Python
    // worker sends it once its program has loaded, and runs no task before (its import deadline bounds it).
    bool await_info = false;
  };

  // Spawns `argv`, hands it a fresh key (or `shared_key` when given) as `delivery` says (inherited_fd: the
  // v2 hand-over on fd 3, which refuses a traced worker unless `allow_ptrace`), and starts the handshake,
  // which must complete within `handshake_timeout`. Errors: spawn_failed, io.
  static protocol::Result<std::shared_ptr<WorkerLink>> start(boost::asio::io_context& io, const std::vector<std::string>& argv,
                                                             const protocol::RunKey* shared_key, KeyDelivery delivery,
                                                             bool allow_ptrace,
                                                             protocol::HandshakeConfig config,
                                                             std::chrono::milliseconds handshake_timeout, Events events);
  ~WorkerLink();
  WorkerLink(const WorkerLink&) = delete;
  WorkerLink& operator=(const WorkerLink&) = delete;

  int pid() const;
  // True between a verified handshake and the first failure.
  bool ready() const;
  // Time from spawn to the worker's verified proof.
  std::chrono::microseconds handshake_time() const;
  // The channel mode agreed (only once ready).
  protocol::ChannelMode mode() const;
  // What the worker said about itself (host, pid), if it did.
  const std::optional<protocol::WorkerInfo>& peer_info() const;

  // Queues a data message (body already encoded) to go out as soon as the handshake completes, ahead of any
  // task: the program of a Python worker. Call right after start(), before the event loop runs again.
  void send_after_handshake(protocol::MessageType type, std::string body);
  // The largest payload the worker accepts, from its hello (0 until ready()).
  std::uint32_t peer_max_payload() const;
  // The payload bytes send_task(id, fn, args, format, attachment) would send.
  static std::size_t task_payload_size(std::uint64_t id, const std::string& fn, const std::string& args,
                                       protocol::BodyFormat format = protocol::BodyFormat::json,
                                       std::string_view attachment = {});
  // Queues a task whose args are already encoded in `format` (JSON text or CBOR), with raw `attachment`
  // bytes after them if not empty (such a task goes alone, as a task frame). Errors: frame_too_large (the
  // worker's limit); nothing is sent.
  protocol::Result<void> send_task(std::uint64_t id, const std::string& fn, const std::string& args,
                                   protocol::BodyFormat format = protocol::BodyFormat::json,
                                   std::string_view attachment = {});
  // Frames that carried tasks to the worker so far: one per task, or fewer once tasks go in batches.
  std::uint64_t task_frames() const;
  // Data frames received from the worker so far (see Connection::frames_received).
  std::uint64_t frames_received() const;
  // What the worker's progress page says (PROTOCOL.md section 9.1): whether it kept one (only a worker
  // spawned here, handed its key on the rendezvous, gets one) and which task it was running. Untrusted;
  // meaningful once the worker is gone (on_gone).
  protocol::ProgressSeen progress() const;
  // Asks the worker to exit once its queued tasks are done (shutdown message, then end of its stdin).
  void shutdown();
  // Ends the link now: stops the worker (SIGTERM if it was trusted, so it takes its task's child along;
  // SIGKILL otherwise or if it lingers); on_gone will report `why`.
  void kill(protocol::Error why);
  // Ends the link for a protocol violation found above the Connection (a result out of turn, output nobody
  // asked for): tells the worker why in an error message (best effort, after what is queued), then as kill().
  void refuse(protocol::Error why);
  // Arms (or with nullopt disarms) a timer that kills the worker with `why` when it fires.
  void set_deadline(std::optional<std::chrono::milliseconds> after, protocol::Error why);
  // While `busy` (a task of ours is running on it), stops a worker that announced keepalive_ms when nothing at
  // all has come from it for `limit` (at least 4 of its keep-alive intervals): stopped (SIGSTOP), hung, or no
  // longer writing. Its tasks then go back as after its death. Call whenever busy may have changed.
  void watch_silence(bool busy, std::chrono::milliseconds limit);

  struct Impl;

 private:
  explicit WorkerLink(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> m_impl;
};

}  // namespace authrun::runner
