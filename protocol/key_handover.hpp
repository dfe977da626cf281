// Key hand-over v2 on fd 3 (PROTOCOL.md section 9): the worker asks on the "rendezvous" socket once it is
// non-dumpable and untraced, passing a fresh socket of its own; the runner checks who asks before it writes
// the key into that socket. No fd of a starting worker holds anything secret before its prctl.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/fd.hpp"
#include "protocol/result.hpp"
#include "protocol/run_key.hpp"

namespace authrun::protocol {

// The 8 bytes of a key request on the rendezvous (the same words as the --key-stdin request).
inline constexpr std::string_view k_handover_request = k_key_request;

// --- The worker's side ---

// Makes this process non-dumpable and refuses a tracer (protect_self), then asks for the key on
// `rendezvous_fd` (one sendmsg: "ARUNKEY?", SCM_CREDENTIALS of this process, SCM_RIGHTS of a fresh socket),
// closes `rendezvous_fd`, and reads exactly 32 bytes and then the end from the fresh socket before
// `deadline`. An fd passed with the key (the progress page, section 9.1) goes to `*progress_page` (closed when
// `progress_page` is null; none kept when more than one came). Errors: key_invalid (traced, fd 3 is not a
// socket, no answer in time, short or long answer).
Result<RunKey> receive_key_handover(int rendezvous_fd, Clock::time_point deadline, bool allow_ptrace,
                                    Fd* progress_page = nullptr);

// --- The runner's side ---

// The runner's end (`runner`, SO_PASSCRED set, O_CLOEXEC) and the end the worker gets as fd 3 (`worker`).
struct Rendezvous {
  Fd runner;
  Fd worker;
};

// Creates the rendezvous socket pair. Errors: io.
Result<Rendezvous> make_rendezvous();

// What one look at the runner's end found.
enum class KeyRequestSeen {
  nothing_yet,  // no request is waiting (look again once readable)
  answered,     // a request passed every check and the key was written into the passed socket
  closed,       // the worker closed its end without asking (it took its key some other way, or exited)
};

// The executable a worker must be running when it asks (the file the runner started), by device and inode.
struct ExecutableId {
  std::uint64_t dev = 0, ino = 0;
  std::string name;  // its base name, as the kernel records it at execve (comm, 15 bytes at most)
};

// Reads the id of the file at `path` (following links). Errors: io.
Result<ExecutableId> executable_id(const std::string& path);

// What the runner checks beyond the fixed checks of answer_key_request.
struct KeyRequestPolicy {
  bool allow_ptrace = false;
  // When set, the asking process must run this executable: /proc/PID/exe by device and inode where the kernel
  // lets us look (we are root); otherwise (a non-dumpable process's exe is closed to its own user) its
  // command name, which is weaker: a process may name itself.
  std::optional<ExecutableId> executable;
  // Called after every other check, right before the key is written: an error refuses the request (the
  // runner's own: "was I stopped since this worker started?").
  std::function<Result<void>()> last_check;
};

// Without blocking: receives one request on `runner_fd` and checks it came from `worker_pid` (our child):
// exactly "ARUNKEY?"; SCM_CREDENTIALS with that pid and our euid; exactly one passed fd, a Unix stream
// socket whose SO_PEERCRED pid is that pid; TracerPid 0 in /proc/PID/status (unless `allow_ptrace`); and,
// unless we are root, /proc/PID/status owned by root (the process is non-dumpable). Then writes the 32 key bytes
// into the passed socket, with `progress_page` (if >= 0) as SCM_RIGHTS in the same sendmsg, and closes it.
// Errors: key_invalid, naming the failing check ("key request from pid 1234, not worker 1230", "worker 1230 is
// traced by pid 99"); no key byte has left then.
Result<KeyRequestSeen> answer_key_request(int runner_fd, int worker_pid, const RunKey& key, bool allow_ptrace,
                                          int progress_page = -1);

// answer_key_request with `policy`'s checks too; and a second request already waiting behind the first is
// refused (someone else holds a copy of the rendezvous). Errors: as answer_key_request.
Result<KeyRequestSeen> answer_key_request(int runner_fd, int worker_pid, const RunKey& key, const KeyRequestPolicy& policy,
                                          int progress_page = -1);

// After the answer, until the handshake completes: whether the rendezvous has stayed quiet. A second request
// (anything but the end) fails closed: key_invalid "a second key request ...". Without blocking.
Result<void> check_no_second_request(int runner_fd, int worker_pid);

// answer_key_request for synchronous callers (the bench, tests): waits until a request comes and answers
// it, before `deadline`. Errors: as answer_key_request; key_invalid when the worker closed its end without
// asking; timeout.
Result<void> serve_key_request(int runner_fd, int worker_pid, const RunKey& key, Clock::time_point deadline,
                               bool allow_ptrace);

}  // namespace authrun::protocol
