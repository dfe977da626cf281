// authrun-impostor: the attacker programs of tests/runner/engine/e2e_attacks.cpp and scripts/demo-security, one mode
// per attack (the first argument; `authrun-impostor help` lists them). Each mode says on stderr what it tries
// and reports what it got on lines "authrun-impostor[PID] RESULT mode=M key=value..."; the last one counts
// (a mode playing the worker is usually killed by the runner, so it reports at once and on every change).
#include "protocol/connection.hpp"
#include "protocol/fd.hpp"
#include "protocol/frame.hpp"
#include "protocol/handshake.hpp"
#include "protocol/json_codec.hpp"
#include "protocol/key_handover.hpp"
#include "protocol/run_key.hpp"

#include <sodium.h>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

extern char** environ;

namespace authrun::attacks {
namespace {

using namespace protocol;
using namespace std::chrono_literals;

constexpr char k_usage[] = R"(usage: authrun-impostor [--marker PATH] MODE [ARGS...] [-- WORKER ARGV...]

Playing the worker (use as: authrun run --worker "authrun-impostor MODE ..."):
  wrong-key            the real handshake, with a random key instead of the one on fd 3
  echo | junk | close  no protocol: copy stdin back / print a shell banner and wait / exit at once
  replay FILE          send worker frames recorded from an earlier successful handshake, verbatim
  reflect              send the parent's hello back (and its proof, if one ever came)
  reflect-role         send the parent's hello back with its role changed to "worker"
  reflect-proof        send a fresh hello of its own, then the parent's proof back as its own proof
  escape-outcome       an outcome whose reason and message carry ESC sequences and a forged summary line
  silent | slow        never answer / a valid-looking hello, one byte per second
  oversize | garbage   a hello header claiming a 4 GiB payload / random bytes
  deep-json [DEPTH]    a hello whose body is DEPTH nested arrays (default 100000)
  deep-result [DEPTH]  a worker WITH the key (asked for on fd 3) answering its first task with DEPTH nested arrays
  big-frame [BYTES]    a worker WITH the key answering its first task with a result header announcing BYTES
                       (default 256 MiB) and sending 10 of them, then holding the channel open
  stray KIND           a worker WITH the key answering its first task (one that did not ask to stream) out of
                       turn: KIND output (a piece of stdout for it), result or result-batch (for the next id);
                       reports what the parent answered (answer=unexpected: an error message said why)
  steal-key -- W...    read whatever fd 3 holds (with hand-over v2: nothing), then exec the real worker W
  mitm ACTION -- W...  relay between the runner and the real worker W, which is exec'd in our place (keeping
                       the pid the runner started; fd 3 passed through, never read),
                       then tamper once with what passes, whatever the batching: flip-task, inject-task,
                       replay-task: the first task frame (task or task_batch); drop-task, reorder-tasks: a task
                       frame held back until a later frame to the worker comes (up to 5 s each);
                       flip-result: the first result frame (result or result_batch); or none
  record FILE [-- W...]  save the worker frames of a successful handshake to FILE: relaying to W as a
                       MITM, or, without W, from a handshake between two in-process channels
Playing the parent, against the real worker W (given a random key through the fd-3 hand-over):
  rogue-parent-nohandshake -- W...  send a task at once, without a handshake
  rogue-parent-wrongkey -- W...     do the handshake with another key, then send a task anyway
  parent-deep-json -- W...          with the right key, send a task whose body is 100000 nested arrays
Playing the parent, against a Python worker W (python3 -I -S _bootstrap.py) that waits for its program:
  rogue-parent-program-nohandshake FILE -- W...  send a program (import FILE) and a task (fn f) at once
  rogue-parent-program-wrongkey FILE -- W...     the handshake with another key, then the program and task
Key theft and impersonation by a process of the same user, through /proc:
  hijack-proc PID      steal worker PID's key from its fd 3 before it reads it, then answer the runner
  hijack-race RUNNER   the same against each new authrun-worker child of RUNNER until the race is won
Same-user pipe injection:
  inject-proc PID [in|out]  write a forged frame (made-up tag) into worker PID's protocol input (in, the
                       default: a task that would run `touch MARKER`) or output pipe (out: a result)

Every forged task is `exec touch MARKER` (MARKER: --marker, else $AUTHRUN_ATTACK_MARKER, else
$TMPDIR/authrun-attack-marker), so any task an attacker gets run leaves the file behind.
)";

std::string g_mode = "?";
std::string g_marker;

void say(const std::string& text) {
  std::fprintf(stderr, "authrun-impostor[%d] %s: %s\n", static_cast<int>(::getpid()), g_mode.c_str(), text.c_str());
}

void report(const std::string& fields) {
  std::fprintf(stderr, "authrun-impostor[%d] RESULT mode=%s %s\n", static_cast<int>(::getpid()), g_mode.c_str(),
               fields.c_str());
}

std::string random_bytes(std::size_t n) {
  std::string s(n, '\0');
  ::randombytes_buf(s.data(), n);
  return s;
}

// Writes all of `bytes`; false if the reader is gone or `limit` passed.
bool send_raw(int fd, std::string_view bytes, Clock::duration limit = 2s) {
  return static_cast<bool>(write_all(fd, as_bytes(bytes), Clock::now() + limit));
}

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// One frame's bytes: header, payload and, when given, a tag (attackers can only make one up).
std::string frame_bytes(std::uint8_t type, std::string_view payload, std::string_view tag = {}) {
  HeaderBytes h = encode_header(FrameHeader{type, 0, static_cast<std::uint32_t>(payload.size())});
  std::string out(reinterpret_cast<const char*>(h.data()), h.size());
  out += payload;
  out += tag;
  return out;
}

std::string frame_bytes(MessageType type, std::string_view payload, std::string_view tag = {}) {
  return frame_bytes(static_cast<std::uint8_t>(type), payload, tag);
}

std::string frame_bytes(const OutFrame& f) {
  return std::string(reinterpret_cast<const char*>(f.header.data()), f.header.size()) + f.payload;
}

// A task that, if a worker ever ran it, would leave the marker file behind.
std::string marker_task_body(std::uint64_t id) {
  return dump_json(json{{"id", id}, {"fn", "exec"}, {"args", {{"argv", {"touch", g_marker}}}}});
}

std::string forged_task_frame() { return frame_bytes(MessageType::task, marker_task_body(1), random_bytes(k_tag_size)); }

bool marker_exists() {
  struct stat st {};
  return ::stat(g_marker.c_str(), &st) == 0;
}

std::string nested_arrays(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

std::uint8_t frame_type(const std::string& frame) { return static_cast<std::uint8_t>(frame[5]); }
// Tasks travel alone or many to a task_batch frame, results alone or in a result_batch, as timing has it:
// either kind is a task (result) frame.
bool is_task_frame(std::uint8_t type) {
  return type == static_cast<std::uint8_t>(MessageType::task) || type == static_cast<std::uint8_t>(MessageType::task_batch);
}
bool is_result_frame(std::uint8_t type) {
  return type == static_cast<std::uint8_t>(MessageType::result) ||
         type == static_cast<std::uint8_t>(MessageType::result_batch);
}
std::uint32_t payload_size(const std::string& frame) {
  return load_le32(reinterpret_cast<const std::uint8_t*>(frame.data()) + 8);
}

// Splits a byte stream into whole frames by the header layout alone (no limits, no MACs). A data frame
// (type >= 16) is taken to carry a tag, as it always does after the handshake.
class RawFrames {
 public:
  void feed(std::string_view bytes) { m_buf += bytes; }
  // The next whole frame's bytes; nullopt if more are needed or the stream is not made of frames.
  std::optional<std::string> next() {
    if (m_lost || m_buf.size() < k_header_size) return std::nullopt;
    if (std::memcmp(m_buf.data(), k_frame_magic.data(), k_frame_magic.size()) != 0) {
      m_lost = true;
      return std::nullopt;
    }
    const std::size_t size =
        k_header_size + payload_size(m_buf) + (frame_type(m_buf) >= k_first_data_type ? k_tag_size : 0);
    if (m_buf.size() < size) return std::nullopt;
    std::string frame = m_buf.substr(0, size);
    m_buf.erase(0, size);
    return frame;
  }
  // True once the stream turned out not to be frames; take_rest() then returns what was buffered.
  bool lost() const { return m_lost; }
  std::string take_rest() { return std::exchange(m_buf, {}); }

 private:
  std::string m_buf;
  bool m_lost = false;
};

// Names the frames in `bytes` ("hello, outcome auth_failed"), for reports.
std::string describe_frames(const std::string& bytes) {
  RawFrames frames;
  frames.feed(bytes);
  std::string out;
  while (auto f = frames.next()) {
    out += out.empty() ? "" : ", ";
    out += to_string(static_cast<MessageType>(frame_type(*f)));
    if (frame_type(*f) == static_cast<std::uint8_t>(MessageType::outcome)) {
      auto body = parse_json(std::string_view(*f).substr(k_header_size, payload_size(*f)));
      if (body && body->contains("reason") && (*body)["reason"].is_string()) out += " " + (*body)["reason"].get<std::string>();
    }
  }
  if (frames.lost()) out += out.empty() ? "non-frame bytes" : ", non-frame bytes";
  return out.empty() ? "nothing" : out;
}

// Counts what reaches the attacker from the parent: data frames (tasks and the like, which a parent sends
// only after a handshake) and their payload bytes.
class Spy {
 public:
  Spy() { report_now(); }
  void feed(std::string_view bytes) {
    m_frames.feed(bytes);
    while (auto f = m_frames.next()) {
      if (frame_type(*f) < k_first_data_type) continue;
      m_bytes += payload_size(*f);
      if (is_task_frame(frame_type(*f))) ++m_tasks;  // task frames: a task_batch counts once
      report_now();
    }
  }
  void report_now() const { report("tasks_seen=" + std::to_string(m_tasks) + " bytes_seen=" + std::to_string(m_bytes)); }

 private:
  RawFrames m_frames;
  std::uint64_t m_tasks = 0, m_bytes = 0;
};

// Reads what the parent sends until it closes or `limit` passes (the runner usually kills us first).
void drain(Spy& spy, Clock::duration limit) {
  const auto deadline = Clock::now() + limit;
  std::array<char, 65536> buf;
  for (;;) {
    auto n = read_some(0, std::as_writable_bytes(std::span(buf)), deadline);
    if (!n || *n == 0) return;
    spy.feed({buf.data(), *n});
  }
}

Result<void> flush(Connection& c, int fd, Clock::time_point deadline) {
  FrameWriter& w = c.output();
  while (!w.empty()) {
    std::array<iovec, 16> iov;
    const std::size_t n = w.gather(iov);
    AUTHRUN_TRY_ASSIGN(std::size_t written, write_some(fd, std::span<const iovec>(iov.data(), n), deadline));
    w.consume(written);
  }
  return {};
}

// Drives `c` over (in, out) until a message arrives or, with `until_established`, the handshake is done.
// What is read is shown to `spy` first. Errors: those of Connection::receive, eof, truncated, timeout, io.
Result<std::optional<Message>> drive(Connection& c, int in, int out, Spy* spy, bool until_established,
                                     Clock::time_point deadline) {
  for (;;) {
    auto got = c.receive();
    if (!got) {
      std::ignore = flush(c, out, Clock::now() + 200ms);
      return std::move(got).error();
    }
    if (*got) return got;
    AUTHRUN_TRY(flush(c, out, deadline));
    if (until_established && c.established()) return std::optional<Message>{};
    auto space = c.read_space();
    AUTHRUN_TRY_ASSIGN(std::size_t n, read_some(in, std::as_writable_bytes(space), deadline));
    if (n == 0) return c.end_of_input();
    if (spy) spy->feed({reinterpret_cast<const char*>(space.data()), n});
    c.commit(n);
  }
}

std::string describe(const Error& e) { return std::string(to_string(e.code)) + ": " + e.message; }

HandshakeConfig worker_config() { return HandshakeConfig{Role::worker, {ChannelMode::encrypted, ChannelMode::authenticated}}; }

// ---- A child worker (for the modes that play the parent or sit in the middle) ----

struct Child {
  pid_t pid = -1;
  Fd to;    // its stdin
  Fd from;  // its stdout
};

// Starts `argv` with stdin and stdout on pipes to us and stderr shared. fd 3 becomes `key_fd` when given;
// otherwise the child inherits our own fd 3 untouched (a MITM passes the runner's key pipe on unread).
Result<Child> spawn(const std::vector<std::string>& argv, int key_fd) {
  AUTHRUN_TRY_ASSIGN(Pipe to, make_pipe());
  AUTHRUN_TRY_ASSIGN(Pipe from, make_pipe());
  posix_spawn_file_actions_t fa;
  ::posix_spawn_file_actions_init(&fa);
  ::posix_spawn_file_actions_adddup2(&fa, to.read.get(), 0);
  ::posix_spawn_file_actions_adddup2(&fa, from.write.get(), 1);
  if (key_fd >= 0) ::posix_spawn_file_actions_adddup2(&fa, key_fd, 3);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  ::posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return make_error(ErrorCode::spawn_failed, "cannot start " + argv[0] + ": " + std::strerror(rc));
  return Child{pid, std::move(to.write), std::move(from.read)};
}

// Starts `argv` with a key rendezvous as fd 3 and plays the runner's side of the v2 hand-over with `key`.
Result<Child> spawn_with_key(const std::vector<std::string>& argv, const RunKey& key) {
  AUTHRUN_TRY_ASSIGN(Rendezvous meeting, make_rendezvous());
  AUTHRUN_TRY_ASSIGN(Child child, spawn(argv, meeting.worker.get()));
  meeting.worker.close();
  if (auto served = serve_key_request(meeting.runner.get(), child.pid, key, Clock::now() + 10s, false); !served) {
    say("key hand-over: " + served.error().message);
  }
  return child;
}

// Puts us between our stdin/stdout (the runner's pipes) and `argv`: forks a relay child that keeps them,
// and execs `argv` here, on fresh pipes to the relay, keeping our fd 3 (the rendezvous). So the worker keeps
// the pid the runner started, and its key request is accepted. Returns (in the relay) a Child whose pid is
// the worker's; never returns in the worker.
Result<Child> spawn_in_front(const std::vector<std::string>& argv) {
  AUTHRUN_TRY_ASSIGN(Pipe to, make_pipe());
  AUTHRUN_TRY_ASSIGN(Pipe from, make_pipe());
  const pid_t worker = ::getpid();
  const pid_t relay = ::fork();
  if (relay < 0) return make_error(ErrorCode::spawn_failed, std::string("fork: ") + std::strerror(errno));
  if (relay == 0) return Child{worker, std::move(to.write), std::move(from.read)};
  if (::dup2(to.read.get(), 0) < 0 || ::dup2(from.write.get(), 1) < 0) ::_exit(127);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execvp(args[0], args.data());
  say(std::string("exec failed: ") + std::strerror(errno));
  ::_exit(127);
}

// Waits up to `limit` for the child to exit, then kills it. Returns the wait status.
int wait_child(pid_t pid, Clock::duration limit) {
  const auto deadline = Clock::now() + limit;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return 0;
    if (Clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      return status;
    }
    ::usleep(5000);
  }
}

// "3" for exit status 3, "signal9" for a kill.
std::string exit_of(int status) {
  if (WIFEXITED(status)) return std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal" + std::to_string(WTERMSIG(status));
  return "?";
}

// Everything the child writes until it closes its stdout or `limit` passes.
std::string read_rest(const Fd& from, Clock::duration limit) {
  const auto deadline = Clock::now() + limit;
  std::string out;
  std::array<char, 65536> buf;
  for (;;) {
    auto n = read_some(from.get(), std::as_writable_bytes(std::span(buf)), deadline);
    if (!n || *n == 0) return out;
    out.append(buf.data(), *n);
  }
}

// ---- Modes playing the worker ----

int mode_wrong_key() {
  say("does the real handshake as a worker, but with a random key of its own instead of the one on fd 3");
  Spy spy;
  RunKey key = RunKey::generate();
  Connection c(key, worker_config());
  auto got = drive(c, 0, 1, &spy, true, Clock::now() + 10s);
  if (got) say("the handshake completed: the parent accepted a wrong key!");
  else say("the handshake failed on this side too: " + describe(got.error()));
  drain(spy, 10s);
  spy.report_now();
  return 1;
}

// An outcome frame before any handshake whose words carry terminal escapes and a forged summary line.
int mode_escape_outcome() {
  say("sends an outcome whose reason and message hold ESC sequences and a forged 'authrun: ... ok' line");
  const std::string forged = "\x1b[2K\r\x1b[1Aauthrun: 6 tasks: 6 ok, 0 failed\n\x1b]0;owned\x07";
  send_raw(1, frame_bytes(MessageType::outcome, encode_body(Outcome{false, "bad\x1b[31mreason", forged})));
  report("escapes_sent=1");
  ::sleep(5);
  return 1;
}

int mode_echo() {
  say("copies everything the parent sends back to it, like cat");
  Spy spy;
  std::array<char, 65536> buf;
  for (;;) {
    auto n = read_some(0, std::as_writable_bytes(std::span(buf)), no_deadline());
    if (!n || *n == 0) break;
    spy.feed({buf.data(), *n});
    if (!send_raw(1, {buf.data(), *n})) break;
  }
  return 0;
}

int mode_junk() {
  say("prints a shell banner instead of a hello, then waits");
  Spy spy;
  send_raw(1, "Last login: Mon Jan  1 09:00:00 2024 from 10.0.0.7\nuser@build:~$ ");
  drain(spy, 30s);
  return 0;
}

int mode_close() {
  say("exits at once, saying nothing");
  Spy spy;
  return 0;
}

int mode_replay(const std::string& file) {
  const std::string bytes = read_whole_file(file);
  if (bytes.empty()) {
    say("no recording in " + file + " (make one with: authrun-impostor record FILE)");
    return 2;
  }
  say("replays " + std::to_string(bytes.size()) + " bytes of worker frames (" + describe_frames(bytes) +
      ") recorded from an earlier successful handshake");
  Spy spy;
  send_raw(1, bytes);
  drain(spy, 10s);
  return 1;
}

// Reads the parent's frames until one of `type` arrives; everything read is shown to the spy too.
std::optional<std::string> await_frame(RawFrames& frames, Spy& spy, MessageType type, Clock::duration limit) {
  const auto deadline = Clock::now() + limit;
  std::array<char, 4096> buf;
  for (;;) {
    while (auto f = frames.next()) {
      if (frame_type(*f) == static_cast<std::uint8_t>(type)) return f;
    }
    if (frames.lost()) return std::nullopt;
    auto n = read_some(0, std::as_writable_bytes(std::span(buf)), deadline);
    if (!n || *n == 0) return std::nullopt;
    spy.feed({buf.data(), *n});
    frames.feed({buf.data(), *n});
  }
}

int mode_reflect(const std::string& variant) {
  Spy spy;
  RawFrames frames;
  RunKey key = RunKey::generate();
  Handshake own(key, worker_config());
  if (variant == "reflect-proof") {
    say("sends a fresh hello of its own, then the parent's proof back as its own proof");
    send_raw(1, frame_bytes(own.hello()));
  } else if (variant == "reflect-role") {
    say("sends the parent's own hello back with its role changed to worker");
  } else {
    say("sends the parent's own hello back (and its proof, if one ever comes)");
  }
  auto hello = await_frame(frames, spy, MessageType::hello, 10s);
  if (!hello) {
    say("the parent sent no hello");
    return 1;
  }
  if (variant != "reflect-proof") {
    std::string f = *hello;
    const std::string role = "\"role\":\"parent\"";
    if (auto at = f.find(role); variant == "reflect-role" && at != std::string::npos) f.replace(at + 8, 6, "worker");
    send_raw(1, f);
  }
  if (auto proof = await_frame(frames, spy, MessageType::proof, 10s)) {
    say("got the parent's proof; sending it back as this side's");
    send_raw(1, *proof);
  } else {
    say("the parent sent no proof");
  }
  drain(spy, 10s);
  return 1;
}

int mode_silent() {
  say("reads everything and never answers");
  Spy spy;
  drain(spy, 60s);
  return 1;
}

int mode_slow() {
  RunKey key = RunKey::generate();
  Handshake own(key, worker_config());
  const std::string hello = frame_bytes(own.hello());
  say("sends a valid-looking hello (" + std::to_string(hello.size()) + " bytes) one byte per second");
  Spy spy;
  for (char ch : hello) {
    if (!send_raw(1, {&ch, 1})) break;
    drain(spy, 1s);
  }
  drain(spy, 10s);
  return 1;
}

int mode_oversize() {
  say("sends a hello header claiming a 4 GiB payload, then zeros");
  Spy spy;
  HeaderBytes h = encode_header(FrameHeader{static_cast<std::uint8_t>(MessageType::hello), 0, 0xFFFFFFFFu});
  send_raw(1, std::string(reinterpret_cast<const char*>(h.data()), h.size()) + std::string(4096, '\0'));
  drain(spy, 10s);
  return 1;
}

int mode_garbage() {
  say("sends 4096 random bytes");
  Spy spy;
  std::string bytes = random_bytes(4096);
  bytes[0] = static_cast<char>(bytes[0] == 'A' ? 'B' : bytes[0]);  // not our magic by a 2^-32 chance
  send_raw(1, bytes);
  drain(spy, 10s);
  return 1;
}

int mode_deep_json(std::size_t depth) {
  const std::string body = nested_arrays(depth);
  say("sends a hello whose body is " + std::to_string(depth) + " nested arrays (" + std::to_string(body.size()) +
      " bytes)");
  Spy spy;
  send_raw(1, frame_bytes(MessageType::hello, body));
  drain(spy, 10s);
  return 1;
}

// A worker holding the key: takes it from fd 3, completes the handshake on fds 0/1 (in `c`) and waits for the
// first task. The task, or nothing (said why, with `exit_code` 3 if no key came, 1 if no task came).
std::optional<Task> keyed_first_task(std::optional<Connection>& c, int& exit_code) {
  auto key = receive_key_handover(3, Clock::now() + 10s, false);
  if (!key) {
    say("no key: " + key.error().message);
    exit_code = 3;
    return std::nullopt;
  }
  c.emplace(*key, worker_config());
  auto first = drive(*c, 0, 1, nullptr, false, Clock::now() + 10s);
  const Task* task = first && *first ? std::get_if<Task>(&**first) : nullptr;
  if (!task) {
    say("no task came: " + (first ? std::string("another message") : describe(first.error())));
    exit_code = 1;
    return std::nullopt;
  }
  return *task;
}

int mode_deep_result(std::size_t depth) {
  say("holds the key (fd 3), completes the handshake, answers its first task with " + std::to_string(depth) +
      " nested arrays");
  std::optional<Connection> c;
  int exit_code = 0;
  std::optional<Task> task = keyed_first_task(c, exit_code);
  if (!task) return exit_code;
  std::string body = "{\"id\":" + std::to_string(task->id) + ",\"ok\":true,\"value\":" + nested_arrays(depth) + "}";
  report("deep_results_sent=1");  // now: the runner may kill us as soon as it reads it
  if (auto sent = c->send_body(MessageType::result, std::move(body)); !sent) say("cannot send: " + describe(sent.error()));
  std::ignore = flush(*c, 1, Clock::now() + 5s);
  auto answer = drive(*c, 0, 1, nullptr, false, Clock::now() + 5s);
  say(answer ? "the parent accepted it and went on" : "the parent ended the channel: " + describe(answer.error()));
  return 1;
}

int mode_big_frame(std::uint32_t announced) {
  say("holds the key (fd 3), completes the handshake, answers its first task with a header announcing " +
      std::to_string(announced) + " bytes, sends 10 and waits");
  std::optional<Connection> c;
  int exit_code = 0;
  if (!keyed_first_task(c, exit_code)) return exit_code;
  std::ignore = flush(*c, 1, Clock::now() + 5s);
  HeaderBytes h = encode_header(FrameHeader{static_cast<std::uint8_t>(MessageType::result), 0, announced});
  report("big_frames_announced=1");
  send_raw(1, std::string(reinterpret_cast<const char*>(h.data()), h.size()) + std::string(10, '{'));
  ::pause();  // until the runner kills us (its task timeout)
  return 1;
}

int mode_stray(const std::string& kind) {
  say("holds the key (fd 3), completes the handshake, answers its first task with a stray " + kind + " frame");
  std::optional<Connection> c;
  int exit_code = 0;
  std::optional<Task> task = keyed_first_task(c, exit_code);
  if (!task) return exit_code;
  std::ignore = flush(*c, 1, Clock::now() + 5s);
  // The runner stops this process as soon as it has answered: a child in a session of its own, holding the
  // same channel state, reads that answer and reports it (the runner waits for our stderr's end).
  const pid_t listener = ::fork();
  if (listener < 0) return 1;
  if (listener == 0) {
    ::setsid();
    ::close(1);
    auto answer = drive(*c, 0, 1, nullptr, false, Clock::now() + 60s);
    while (answer && *answer) answer = drive(*c, 0, 1, nullptr, false, Clock::now() + 60s);  // more tasks
    if (answer) {
      report("stray_sent=1 answer=none");
      say("the parent accepted it and went on");
    } else {
      const std::string refused = "peer closed the channel: ";
      const Error& e = answer.error();
      const auto at = e.message.find(refused);
      const std::string code = e.code == ErrorCode::peer_refused && at != std::string::npos
                                   ? e.message.substr(at + refused.size(), e.message.find(':', at + refused.size()) - at - refused.size())
                                   : to_string(e.code);
      report("stray_sent=1 answer=" + code);
      say("the parent ended the channel: " + describe(e));
    }
    ::_exit(0);
  }
  const std::string next = std::to_string(task->id + 1);
  Result<void> sent;
  if (kind == "output") {
    Output piece;
    piece.id = task->id;
    const std::string text = "not asked for\n";
    piece.data = Attachment{std::string(text), 0};
    sent = c->send(std::move(piece));
  } else if (kind == "result") {
    sent = c->send_body(MessageType::result, "{\"id\":" + next + ",\"ok\":true,\"value\":1}");
  } else {
    sent = c->send_body(MessageType::result_batch, "{\"results\":[{\"id\":" + next + ",\"ok\":true,\"value\":1}]}");
  }
  if (!sent) say("cannot send: " + describe(sent.error()));
  std::ignore = flush(*c, 1, Clock::now() + 5s);
  ::pause();  // until the runner stops us
  return 1;
}

int mode_steal_key(const std::vector<std::string>& worker) {
  say("reads what fd 3 holds before the worker can, then execs the worker");
  std::array<std::uint8_t, 64> buf{};
  std::size_t got = 0;
  while (got < buf.size()) {
    auto n = read_some(3, std::as_writable_bytes(std::span(buf).subspan(got)), Clock::now() + 1s);
    if (!n || *n == 0) break;
    got += *n;
  }
  ::sodium_memzero(buf.data(), buf.size());
  say("took " + std::to_string(got) + " bytes from fd 3 (not shown); exec " + worker[0]);
  report("key_bytes_stolen=" + std::to_string(got));
  std::vector<char*> args;
  for (const auto& a : worker) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execvp(args[0], args.data());
  say(std::string("exec failed: ") + std::strerror(errno));
  return 127;
}

// Makes FILE from a handshake between two in-process channels with a random key.
int mode_record_local(const std::string& file) {
  RunKey key = RunKey::generate();
  Connection parent(key, HandshakeConfig{Role::parent});
  Connection worker(key, worker_config());
  std::string tap;
  // Moves what `from` has queued into `to` and lets it process that; `copy` gets the bytes too.
  auto pass = [](Connection& from, Connection& to, std::string* copy) {
    FrameWriter& w = from.output();
    while (!w.empty()) {
      std::array<iovec, 16> iov;
      const std::size_t n = w.gather(iov);
      std::size_t moved = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const char* p = static_cast<const char*>(iov[i].iov_base);
        if (copy) copy->append(p, iov[i].iov_len);
        for (std::size_t left = iov[i].iov_len; left > 0;) {
          auto space = to.read_space();
          const std::size_t k = std::min(left, space.size());
          std::memcpy(space.data(), p, k);
          to.commit(k);
          p += k;
          left -= k;
        }
        moved += iov[i].iov_len;
      }
      w.consume(moved);
    }
    for (;;) {
      auto got = to.receive();
      if (!got || !*got) return;
    }
  };
  for (int i = 0; i < 4 && !(parent.established() && worker.established()); ++i) {
    pass(parent, worker, nullptr);
    pass(worker, parent, &tap);
  }
  if (!parent.established() || !worker.established()) {
    say("the in-process handshake did not complete");
    return 1;
  }
  std::ofstream(file, std::ios::binary) << tap;
  say("recorded the worker's " + describe_frames(tap) + " (" + std::to_string(tap.size()) + " bytes) to " + file);
  return 0;
}

// ---- Man in the middle ----

enum class Action { none, record, flip_task, drop_task, reorder_tasks, inject_task, replay_task, flip_result };

const std::map<std::string, Action> k_actions = {
    {"none", Action::none},
    {"flip-task", Action::flip_task},
    {"drop-task", Action::drop_task},
    {"reorder-tasks", Action::reorder_tasks},
    {"inject-task", Action::inject_task},
    {"replay-task", Action::replay_task},
    {"flip-result", Action::flip_result},
};

// Flips the lowest bit of the payload's last letter or digit (a task would name another file or number);
// returns its offset in the payload.
std::size_t flip_bit(std::string& frame) {
  const std::size_t begin = k_header_size, end = k_header_size + payload_size(frame);
  std::size_t at = end > begin ? end - 1 : end;
  for (std::size_t i = end; i-- > begin;) {
    if (std::isalnum(static_cast<unsigned char>(frame[i]))) {
      at = i;
      break;
    }
  }
  frame[at] = static_cast<char>(frame[at] ^ 1);
  return at - begin;
}

// What the MITM does to each frame: everything passes, except that `action` applies once, to what is on the
// wire whatever the runner's batching: flip-task, inject-task and replay-task to the first task frame (task or
// task_batch), flip-result to the first result frame (result or result_batch). drop-task and reorder-tasks
// need a later runner-to-worker frame to be noticed at all (a dropped last frame only stalls the channel):
// each task frame is held back until the next one comes (then the held one is dropped, or sent after it) or
// until k_hold passes (then it goes on untouched, and the next one is held instead).
class Tamperer {
 public:
  // How long a task frame is held back waiting for a later one.
  static constexpr std::chrono::seconds k_hold{5};

  Tamperer(Action action, std::string record_path) : m_action(action), m_record_path(std::move(record_path)) {}

  // The bytes to forward in place of `frame`.
  std::string on_frame(bool to_worker, std::string frame) {
    const std::uint8_t type = frame_type(frame);
    if (!to_worker && m_action == Action::record && type < k_first_data_type && !m_recorded) {
      m_record += frame;
      std::ofstream(m_record_path, std::ios::binary) << m_record;
      if (type == static_cast<std::uint8_t>(MessageType::proof)) {
        m_recorded = true;
        say("recorded the worker's " + describe_frames(m_record) + " (" + std::to_string(m_record.size()) +
            " bytes) to " + m_record_path);
      }
    }
    if (to_worker && is_task_frame(type)) return on_task(std::move(frame));
    if (to_worker && m_held) {
      // Any later frame to the worker (a shutdown) shows the gap as well as a task frame does.
      return act_on_held(std::move(frame), "frame");
    }
    if (!to_worker && is_result_frame(type) && m_action == Action::flip_result && m_tampered == 0) {
      const std::size_t at = flip_bit(frame);
      tampered("flipped one bit (payload byte " + std::to_string(at) + ") of the first result frame");
    }
    return frame;
  }

  // When a held frame is due to go on untouched (nullopt: none held).
  std::optional<Clock::time_point> release_due() const {
    return m_held ? std::optional<Clock::time_point>(m_held_since + k_hold) : std::nullopt;
  }

  // The held frame, if its time is up (else nothing).
  std::string release_if_due() {
    if (!m_held || Clock::now() < m_held_since + k_hold) return {};
    say("no later frame to the worker came within " + std::to_string(k_hold.count()) + " s: task frame " +
        std::to_string(m_held_number) + " goes on untouched (the next one is held instead)");
    return *std::exchange(m_held, std::nullopt);
  }

  // At the end: a task frame still held back is let go (no later one came to tamper with it).
  std::string leftover() { return m_held.has_value() ? *std::exchange(m_held, std::nullopt) : std::string(); }

  void report_now() const {
    report("tampered=" + std::to_string(m_tampered) + " tasks_relayed=" + std::to_string(m_tasks));
  }

 private:
  std::string on_task(std::string frame) {
    ++m_tasks;
    if (m_tampered > 0) return frame;
    switch (m_action) {
      case Action::flip_task: {
        const std::size_t at = flip_bit(frame);
        tampered("flipped one bit (payload byte " + std::to_string(at) + ") of the first task frame");
        return frame;
      }
      case Action::drop_task:
      case Action::reorder_tasks:
        if (m_held) return act_on_held(std::move(frame), "task frame " + std::to_string(m_tasks));
        m_held = std::move(frame);
        m_held_since = Clock::now();
        m_held_number = m_tasks;
        return {};
      case Action::inject_task:
        tampered("inserted a forged task frame (exec touch MARKER, made-up tag) before the first task frame");
        return forged_task_frame() + frame;
      case Action::replay_task:
        tampered("sent the first task frame twice");
        return frame + frame;
      default:
        return frame;
    }
  }

  // A frame to the worker came while task frame m_held_number was held: drop the held one, or send it after.
  std::string act_on_held(std::string next, const std::string& next_name) {
    std::string held = *std::exchange(m_held, std::nullopt);
    const std::string held_name = "task frame " + std::to_string(m_held_number);
    if (m_action == Action::drop_task) {
      tampered("dropped " + held_name + " (" + next_name + " went on in its place)");
      return next;
    }
    tampered("sent " + next_name + " before " + held_name);
    return next + held;
  }

  void tampered(const std::string& what) {
    ++m_tampered;
    say(what);
    report_now();
  }

  Action m_action;
  std::string m_record_path;
  std::string m_record;
  bool m_recorded = false;
  int m_tasks = 0, m_tampered = 0;
  std::optional<std::string> m_held;  // a task frame held back (drop-task, reorder-tasks)
  Clock::time_point m_held_since{};
  int m_held_number = 0;
};

// One direction of the relay.
struct Flow {
  int in;
  int out;
  bool to_worker;
  RawFrames frames;
  std::string pending;
  bool in_open = true;
  bool out_open = true;
};

int mode_mitm(Action action, const std::string& record_path, const std::vector<std::string>& worker) {
  auto child = spawn_in_front(worker);
  if (!child) {
    say(child.error().message);
    return 127;
  }
  say("relays between the runner and worker " + std::to_string(child->pid) + " (its key rendezvous passed on unread)");
  Tamperer tamperer(action, record_path);
  std::ignore = set_nonblocking(1, true);
  std::ignore = set_nonblocking(child->to.get(), true);
  std::array<Flow, 2> flows{Flow{0, child->to.get(), true, {}, {}}, Flow{child->from.get(), 1, false, {}, {}}};
  auto close_out = [&](Flow& f) {
    f.out_open = false;
    f.pending.clear();
    if (f.to_worker) child->to.close();
    else ::close(1);
  };
  for (;;) {
    std::array<pollfd, 4> pfd{};
    std::array<std::pair<Flow*, bool>, 4> what{};  // flow, is-input
    nfds_t n = 0;
    for (Flow& f : flows) {
      if (f.in_open && f.pending.size() < (1u << 20)) {
        pfd[n] = {f.in, POLLIN, 0};
        what[n++] = {&f, true};
      }
      if (f.out_open && !f.pending.empty()) {
        pfd[n] = {f.out, POLLOUT, 0};
        what[n++] = {&f, false};
      }
    }
    if (n == 0) break;
    int wait_ms = -1;
    if (auto due = tamperer.release_due()) {
      wait_ms = static_cast<int>(std::max<long long>(
          0, std::chrono::ceil<std::chrono::milliseconds>(*due - Clock::now()).count()));
    }
    if (::poll(pfd.data(), n, wait_ms) < 0 && errno != EINTR) break;
    if (std::string late = tamperer.release_if_due(); !late.empty() && flows[0].out_open) flows[0].pending += late;
    for (nfds_t i = 0; i < n; ++i) {
      if (pfd[i].revents == 0) continue;
      Flow& f = *what[i].first;
      if (what[i].second) {
        std::array<char, 65536> buf;
        const ssize_t r = ::read(f.in, buf.data(), buf.size());
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r <= 0) {
          f.in_open = false;
          if (f.to_worker) f.pending += tamperer.leftover();
          continue;
        }
        f.frames.feed({buf.data(), static_cast<std::size_t>(r)});
        while (auto frame = f.frames.next()) f.pending += tamperer.on_frame(f.to_worker, std::move(*frame));
        if (f.frames.lost()) f.pending += f.frames.take_rest();
        if (!f.out_open) f.pending.clear();
      } else {
        const ssize_t w = ::write(f.out, f.pending.data(), f.pending.size());
        if (w > 0) f.pending.erase(0, static_cast<std::size_t>(w));
        else if (w < 0 && errno != EINTR && errno != EAGAIN) close_out(f);
      }
    }
    for (Flow& f : flows) {
      if (!f.in_open && f.pending.empty() && f.out_open) close_out(f);
    }
  }
  const int status = wait_child(child->pid, 10s);
  tamperer.report_now();
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

// ---- Modes playing the parent ----

int finish_rogue_parent(Child& child, const std::string& sent_before) {
  child.to.close();
  const std::string answer = sent_before + read_rest(child.from, 5s);
  const int status = wait_child(child.pid, 5s);
  say("the worker then sent " + describe_frames(answer) + " and exited with " + exit_of(status));
  report("worker_exit=" + exit_of(status) + " tasks_run=" + (marker_exists() ? "1" : "0"));
  return 0;
}

int mode_rogue_nohandshake(const std::vector<std::string>& worker) {
  say("starts the worker with a key on fd 3 and sends it a task (exec touch MARKER) at once, without a handshake");
  RunKey key = RunKey::generate();
  auto child = spawn_with_key(worker, key);
  if (!child) {
    say(child.error().message);
    return 2;
  }
  send_raw(child->to.get(), forged_task_frame());
  return finish_rogue_parent(*child, "");
}

int mode_rogue_wrongkey(const std::vector<std::string>& worker) {
  say("does the handshake with a key of its own (the worker holds another), then sends a task (exec touch "
      "MARKER) anyway");
  RunKey worker_key = RunKey::generate();
  auto child = spawn_with_key(worker, worker_key);
  if (!child) {
    say(child.error().message);
    return 2;
  }
  RunKey wrong = RunKey::generate();
  Connection c(wrong, HandshakeConfig{Role::parent});
  auto hs = drive(c, child->from.get(), child->to.get(), nullptr, true, Clock::now() + 5s);
  say(hs ? "the handshake completed: the worker accepted a wrong key!" : "its handshake failed: " + describe(hs.error()));
  say(send_raw(child->to.get(), forged_task_frame()) ? "sent the task" : "could not even send the task (pipe closed)");
  return finish_rogue_parent(*child, "");
}

int mode_parent_deep_json(const std::vector<std::string>& worker, std::size_t depth) {
  say("holds the worker's key, completes the handshake, sends a task whose body is " + std::to_string(depth) +
      " nested arrays");
  RunKey key = RunKey::generate();
  auto child = spawn_with_key(worker, key);
  if (!child) {
    say(child.error().message);
    return 2;
  }
  Connection c(key, HandshakeConfig{Role::parent});
  if (auto hs = drive(c, child->from.get(), child->to.get(), nullptr, true, Clock::now() + 5s); !hs) {
    say("handshake failed: " + describe(hs.error()));
    return finish_rogue_parent(*child, "");
  }
  if (auto sent = c.send_body(MessageType::task, nested_arrays(depth)); !sent) say("cannot send: " + describe(sent.error()));
  std::ignore = flush(c, child->to.get(), Clock::now() + 5s);
  auto answer = drive(c, child->from.get(), child->to.get(), nullptr, false, Clock::now() + 5s);
  say(answer ? "the worker answered as if nothing happened" : "the worker ended the channel: " + describe(answer.error()));
  return finish_rogue_parent(*child, "");
}

// The program message a Python worker would import FILE from (module name: the file's base name).
std::string program_body(const std::string& file) {
  const std::size_t slash = file.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : file.substr(0, slash);
  std::string name = file.substr(slash == std::string::npos ? 0 : slash + 1);
  if (name.size() > 3 && name.compare(name.size() - 3, 3, ".py") == 0) name.resize(name.size() - 3);
  return dump_json(json{{"modules", json::array({json{{"name", name}, {"file", file}}})},
                        {"sys_path", json::array({dir})}, {"cwd", dir}});
}

int mode_rogue_program(const std::vector<std::string>& worker, const std::string& file, bool handshake) {
  say(std::string(handshake ? "does the handshake with a key of its own, then sends" : "sends at once, without a handshake,") +
      " a program (import " + file + ") and a task calling its f()");
  RunKey worker_key = RunKey::generate();
  auto child = spawn_with_key(worker, worker_key);
  if (!child) {
    say(child.error().message);
    return 2;
  }
  if (handshake) {
    RunKey wrong = RunKey::generate();
    Connection c(wrong, HandshakeConfig{Role::parent});
    auto hs = drive(c, child->from.get(), child->to.get(), nullptr, true, Clock::now() + 5s);
    say(hs ? "the handshake completed: the worker accepted a wrong key!" : "its handshake failed: " + describe(hs.error()));
  }
  const std::string frames = frame_bytes(MessageType::program, program_body(file), random_bytes(k_tag_size)) +
                             frame_bytes(MessageType::task, R"({"args":null,"fn":"f","id":1})", random_bytes(k_tag_size));
  say(send_raw(child->to.get(), frames) ? "sent the program and the task" : "could not even send them (pipe closed)");
  return finish_rogue_parent(*child, "");
}

// ---- Same-user pipe injection ----

std::string link_of(const std::string& path) {
  std::error_code ec;
  auto target = std::filesystem::read_symlink(path, ec);
  return ec ? "?" : target.string();
}

// The access mode (O_RDONLY, O_WRONLY, O_RDWR) of fd `fd` of process `pid`, from /proc/PID/fdinfo.
int access_mode(const std::string& pid, const std::string& fd) {
  std::ifstream in("/proc/" + pid + "/fdinfo/" + fd);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("flags:", 0) == 0) return static_cast<int>(std::strtol(line.c_str() + 6, nullptr, 8) & O_ACCMODE);
  }
  return -1;
}

int mode_inject_proc(const std::string& pid, const std::string& target) {
  const bool into_input = target != "out";
  const std::string dir = "/proc/" + pid + "/fd/";
  const std::string fd0 = link_of(dir + "0");
  say("fd 0 of process " + pid + " is " + fd0 +
      (fd0 == "/dev/null" ? " (the worker moved its protocol input off fd 0): looking for its pipes" : ""));
  const std::string frame = into_input ? forged_task_frame()
                                       : frame_bytes(MessageType::result, R"({"id":1,"ok":true,"value":"forged"})",
                                                     random_bytes(k_tag_size));
  struct stat log_st {};
  const bool have_log = ::stat((dir + "2").c_str(), &log_st) == 0;
  int written = 0;
  std::error_code ec;
  // The process may exit while we look: never the throwing increment.
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::filesystem::directory_entry& entry = *it;
    const std::string fd = entry.path().filename().string();
    const std::string link = link_of(entry.path().string());
    if (link.rfind("pipe:", 0) != 0) continue;
    if (access_mode(pid, fd) != (into_input ? O_RDONLY : O_WRONLY)) continue;
    struct stat st {};
    // Its stderr (and the fd 1 it points at stderr) is a log, not the channel.
    if (!into_input && have_log && ::stat(entry.path().c_str(), &st) == 0 && st.st_ino == log_st.st_ino) continue;
    Fd out(::open(entry.path().c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
    if (!out.valid()) {
      say("cannot open fd " + fd + " (" + link + ") for writing: " + std::strerror(errno));
      continue;
    }
    if (::write(out.get(), frame.data(), frame.size()) == static_cast<ssize_t>(frame.size())) {
      ++written;
      say(std::string("wrote a forged ") + (into_input ? "task frame (exec touch MARKER)" : "result frame") +
          " with a made-up tag into fd " + fd + " (" + link + ")");
    }
  }
  report("frames_written=" + std::to_string(written));
  return written > 0 ? 0 : 1;
}

// Steals the key of a worker that has not read it yet (same user, through /proc/PID/fd/3), keeping a writer
// open so that the worker waits on it, then opens the worker's pipes and answers the runner in its place.
// This worked while the key travelled in a pipe; it fails now that it travels in a socket (which /proc
// cannot open), the runner and worker are not dumpable, and a worker that exits before its handshake ends
// its channel at once.
int mode_hijack_proc(const std::string& pid) {
  const std::string dir = "/proc/" + pid + "/fd/";
  // A writer of our own keeps the worker waiting on its key pipe instead of failing at once.
  Fd key_writer(::open((dir + "3").c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  Fd key_fd(::open((dir + "3").c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  std::array<std::uint8_t, k_run_key_size> stolen{};
  std::size_t got = 0;
  while (key_fd.valid() && got < stolen.size()) {
    auto n = read_some(key_fd.get(), std::as_writable_bytes(std::span(stolen).subspan(got)), Clock::now() + 50ms);
    if (!n || *n == 0) break;
    got += *n;
  }
  if (got != stolen.size()) {
    say("could not read the key from " + dir + "3 (" + std::to_string(got) + " bytes)");
    return 1;
  }
  RunKey key = RunKey::from_bytes(stolen);
  ::sodium_memzero(stolen.data(), stolen.size());
  struct stat log_st {};
  ::stat((dir + "2").c_str(), &log_st);
  Fd in, out;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::filesystem::directory_entry& entry = *it;
    const std::string fd = entry.path().filename().string();
    if (fd == "3" || link_of(entry.path().string()).rfind("pipe:", 0) != 0) continue;
    struct stat st {};
    if (::stat(entry.path().c_str(), &st) != 0 || st.st_ino == log_st.st_ino) continue;
    const int mode = access_mode(pid, fd);
    if (mode == O_RDONLY && !in.valid()) in = Fd(::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC));
    if (mode == O_WRONLY && !out.valid()) out = Fd(::open(entry.path().c_str(), O_WRONLY | O_CLOEXEC));
  }
  if (!in.valid() || !out.valid()) {
    say("could not open the process's pipes");
    return 1;
  }
  say("stole the key from fd 3 of process " + pid + " and opened its pipes; answering the runner in its place");
  Spy spy;
  Connection c(key, worker_config());
  auto deadline = Clock::now() + 30s;
  for (;;) {
    auto msg = drive(c, in.get(), out.get(), &spy, false, deadline);
    if (!msg) {
      say("channel ended: " + describe(msg.error()));
      break;
    }
    const Task* task = std::get_if<Task>(&**msg);
    if (!task) break;
    TaskResult forged;
    forged.id = task->id;
    forged.value = "forged by the hijacker";
    std::ignore = c.send(std::move(forged));
    std::ignore = flush(c, out.get(), deadline);
  }
  spy.report_now();
  return 0;
}

// Watches runner PID's children and runs hijack-proc on each new authrun-worker until one is won (the race
// with the worker's own read of fd 3 is usually won within a few dozen spawns).
int mode_hijack_race(const std::string& runner) {
  const std::string children = "/proc/" + runner + "/task/" + runner + "/children";
  std::vector<std::string> tried;
  const auto deadline = Clock::now() + 20s;
  while (Clock::now() < deadline) {
    std::ifstream in(children);
    for (std::string pid; in >> pid;) {
      if (std::find(tried.begin(), tried.end(), pid) != tried.end()) continue;
      const std::string exe = link_of("/proc/" + pid + "/exe");
      if (exe.size() < 14 || exe.compare(exe.size() - 14, 14, "authrun-worker") != 0) continue;
      tried.push_back(pid);
      if (mode_hijack_proc(pid) == 0) return 0;
    }
  }
  return 1;
}

// ---- Command line ----

int usage_error(const std::string& why) {
  std::fprintf(stderr, "authrun-impostor: %s\n\n%s", why.c_str(), k_usage);
  return 2;
}

std::size_t depth_arg(const std::vector<std::string>& params, std::size_t fallback) {
  return params.empty() ? fallback : std::strtoul(params[0].c_str(), nullptr, 10);
}

int run(std::vector<std::string> args) {
  if (args.size() >= 2 && args[0] == "--marker") {
    g_marker = args[1];
    args.erase(args.begin(), args.begin() + 2);
  }
  if (g_marker.empty()) {
    const char* env = std::getenv("AUTHRUN_ATTACK_MARKER");
    const char* tmp = std::getenv("TMPDIR");
    g_marker = env && *env ? env : std::string(tmp ? tmp : "/tmp") + "/authrun-attack-marker";
  }
  if (args.empty() || args[0] == "help" || args[0] == "--help") {
    std::fputs(k_usage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  g_mode = args[0];
  std::vector<std::string> params, worker;
  auto dashes = std::find(args.begin() + 1, args.end(), "--");
  params.assign(args.begin() + 1, dashes);
  if (dashes != args.end()) worker.assign(dashes + 1, args.end());
  const bool needs_worker = g_mode == "steal-key" || g_mode == "mitm" || g_mode.rfind("rogue-parent-", 0) == 0 ||
                            g_mode == "parent-deep-json";
  if (needs_worker && worker.empty()) return usage_error(g_mode + " needs -- WORKER ARGV...");

  const std::map<std::string, std::function<int()>> modes = {
      {"wrong-key", mode_wrong_key},
      {"echo", mode_echo},
      {"escape-outcome", mode_escape_outcome},
      {"junk", mode_junk},
      {"close", mode_close},
      {"replay", [&] { return params.empty() ? usage_error("replay needs FILE") : mode_replay(params[0]); }},
      {"reflect", [&] { return mode_reflect(g_mode); }},
      {"reflect-role", [&] { return mode_reflect(g_mode); }},
      {"reflect-proof", [&] { return mode_reflect(g_mode); }},
      {"silent", mode_silent},
      {"slow", mode_slow},
      {"oversize", mode_oversize},
      {"garbage", mode_garbage},
      {"deep-json", [&] { return mode_deep_json(depth_arg(params, 100000)); }},
      {"deep-result", [&] { return mode_deep_result(depth_arg(params, 100000)); }},
      {"stray", [&] { return params.empty() ? usage_error("stray needs KIND") : mode_stray(params[0]); }},
      {"steal-key", [&] { return mode_steal_key(worker); }},
      {"big-frame",
       [&] { return mode_big_frame(params.empty() ? 256u << 20 : std::uint32_t(std::strtoul(params[0].c_str(), nullptr, 10))); }},
      {"record",
       [&] {
         if (params.empty()) return usage_error("record needs FILE");
         return worker.empty() ? mode_record_local(params[0]) : mode_mitm(Action::record, params[0], worker);
       }},
      {"mitm",
       [&] {
         auto action = params.empty() ? k_actions.end() : k_actions.find(params[0]);
         if (action == k_actions.end()) return usage_error("mitm needs an ACTION");
         return mode_mitm(action->second, "", worker);
       }},
      {"rogue-parent-nohandshake", [&] { return mode_rogue_nohandshake(worker); }},
      {"rogue-parent-wrongkey", [&] { return mode_rogue_wrongkey(worker); }},
      {"parent-deep-json", [&] { return mode_parent_deep_json(worker, depth_arg(params, 100000)); }},
      {"rogue-parent-program-nohandshake",
       [&] { return params.empty() ? usage_error(g_mode + " needs FILE") : mode_rogue_program(worker, params[0], false); }},
      {"rogue-parent-program-wrongkey",
       [&] { return params.empty() ? usage_error(g_mode + " needs FILE") : mode_rogue_program(worker, params[0], true); }},
      {"hijack-proc", [&] { return params.empty() ? usage_error("hijack-proc needs PID") : mode_hijack_proc(params[0]); }},
      {"hijack-race", [&] { return params.empty() ? usage_error("hijack-race needs PID") : mode_hijack_race(params[0]); }},
      {"inject-proc",
       [&] {
         if (params.empty()) return usage_error("inject-proc needs PID");
         return mode_inject_proc(params[0], params.size() > 1 ? params[1] : "in");
       }},
  };
  auto mode = modes.find(g_mode);
  if (mode == modes.end()) return usage_error("unknown mode " + g_mode);
  return mode->second();
}

}  // namespace
}  // namespace authrun::attacks

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  // Like a worker, never outlive the process that started us.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  // Keep fds 0-3 taken, so that pipes made here never land where a child expects stdio or its key.
  for (;;) {
    const int fd = ::open("/dev/null", O_RDWR);
    if (fd < 0) break;
    if (fd > 3) {
      ::close(fd);
      break;
    }
  }
  if (!authrun::protocol::sodium_ready()) return 2;
  return authrun::attacks::run(std::vector<std::string>(argv + 1, argv + argc));
}
