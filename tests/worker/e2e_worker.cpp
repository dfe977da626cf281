// End-to-end tests of authrun-worker with this test as its parent: a protocol::Channel over real pipes to
// the real binary, with the right key, a wrong key, a short key fd and an unsafe key file.
#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "protocol/channel.hpp"
#include "protocol/frame.hpp"
#include "protocol/json_codec.hpp"
#include "protocol/key_handover.hpp"
#include "protocol/run_key.hpp"
#include "tests/helpers/connection_pair.hpp"
#include "tests/helpers/test_util.hpp"

namespace {

using namespace authrun;
using namespace authrun::test;
using protocol::Fd;
using protocol::json;
using Clock = std::chrono::steady_clock;

Clock::time_point in_seconds(int s) { return Clock::now() + authrun::test::scaled(std::chrono::seconds(s)); }

// Waits for `c` to exit before `deadline`; returns its wait status, or nullopt (it is then killed by ~Child).
std::optional<int> wait_for_exit(Child& c, Clock::time_point deadline) {
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(c.pid, &status, WNOHANG);
    if (r == c.pid) {
      c.pid = -1;
      return status;
    }
    if (Clock::now() >= deadline) return std::nullopt;
    ::usleep(10'000);
  }
}

int exit_code(const std::optional<int>& status) {
  REQUIRE(status.has_value());
  REQUIRE(WIFEXITED(*status));
  return WEXITSTATUS(*status);
}

std::string read_all(Fd& fd, Clock::time_point deadline) {
  std::string text;
  read_until(fd.get(), text, [](const std::string&) { return false; }, deadline);
  return text;
}

// A key file written with RunKey::write_file (mode 0600).
std::string write_key(const test::TempDir& dir, const protocol::RunKey& key, const std::string& name = "run.key") {
  const std::string path = dir.path() + "/" + name;
  REQUIRE(key.write_file(path));
  return path;
}

protocol::TaskResult receive_result(protocol::Channel& channel) {
  auto msg = channel.receive(in_seconds(20));
  REQUIRE_MESSAGE(msg.has_value(), "no result: " << msg.error().message);
  auto* result = std::get_if<protocol::TaskResult>(&*msg);
  REQUIRE(result != nullptr);
  return std::move(*result);
}

}  // namespace

TEST_CASE("worker: with the right key file it shakes hands, runs tasks and exits 0 on Shutdown") {
  test::TempDir dir;
  const auto key = protocol::RunKey::generate();
  Child c = spawn_child({test::worker_bin(), "--key-file", write_key(dir, key)});
  protocol::Channel channel(std::move(c.out), std::move(c.in), key, parent_config());
  auto hs = channel.handshake(in_seconds(20));
  REQUIRE_MESSAGE(hs.has_value(), "handshake: " << hs.error().message);
  REQUIRE(channel.send(protocol::Task{7, "echo", json{{"hello", "worker"}, {"n", 42}}}, in_seconds(20)));
  auto result = receive_result(channel);
  CHECK(result.id == 7);
  CHECK(result.ok);
  CHECK(result.value == json{{"hello", "worker"}, {"n", 42}});
  REQUIRE(channel.send(protocol::Task{8, "no_such_function", nullptr}, in_seconds(20)));
  auto unknown = receive_result(channel);
  CHECK(unknown.id == 8);
  CHECK(!unknown.ok);
  CHECK(unknown.error.type == "unknown_function");
  REQUIRE(channel.send(protocol::Shutdown{}, in_seconds(20)));
  CHECK(exit_code(wait_for_exit(c, in_seconds(20))) == 0);
}

TEST_CASE("worker: the key through the fd-3 rendezvous, the runner's way (hand-over v2), works") {
  protocol::Bytes32 bytes{};
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i * 7 + 1);
  const auto key = protocol::RunKey::from_bytes(bytes);
  Child c = test::spawn_worker_with_key({test::worker_bin()}, key);
  protocol::Channel channel(std::move(c.out), std::move(c.in), key, parent_config());
  auto hs = channel.handshake(in_seconds(20));
  REQUIRE_MESSAGE(hs.has_value(), "handshake: " << hs.error().message);
  REQUIRE(channel.send(protocol::Task{1, "echo", json("via fd 3")}, in_seconds(20)));
  CHECK(receive_result(channel).value == "via fd 3");
  REQUIRE(channel.send(protocol::Shutdown{}, in_seconds(20)));
  CHECK(exit_code(wait_for_exit(c, in_seconds(20))) == 0);
}

TEST_CASE("worker: a request answered by nobody (the runner closed the rendezvous) makes it exit 3 without speaking") {
  auto meeting = protocol::make_rendezvous();
  REQUIRE(meeting);
  Child c = spawn_child({test::worker_bin()}, meeting->worker.get());
  meeting->worker.close();
  meeting->runner.close();
  CHECK(read_all(c.out, in_seconds(20)).empty());
  CHECK(contains(read_all(c.err, in_seconds(20)), "no usable key"));
  CHECK(exit_code(wait_for_exit(c, in_seconds(20))) == 3);
}

TEST_CASE("worker: the request it sends carries its own pid and a socket it made after becoming non-dumpable") {
  // Play the runner by hand: receive the request and look at it the way answer_key_request does.
  auto meeting = protocol::make_rendezvous();
  REQUIRE(meeting);
  Child c = spawn_child({test::worker_bin()}, meeting->worker.get());
  meeting->worker.close();
  const auto key = protocol::RunKey::generate();
  // A wrong pid (ours) is refused: no key goes out, and the worker exits 3.
  pollfd p{meeting->runner.get(), POLLIN, 0};
  REQUIRE(::poll(&p, 1, 20000) == 1);
  auto refused = protocol::answer_key_request(meeting->runner.get(), ::getpid(), key, false);
  REQUIRE(!refused.has_value());
  CHECK(contains(refused.error().message, "key request from pid " + std::to_string(c.pid)));
  meeting->runner.close();
  CHECK(read_all(c.out, in_seconds(20)).empty());
  CHECK(exit_code(wait_for_exit(c, in_seconds(20))) == 3);
}

TEST_CASE("worker: a parent with the wrong key is refused and a task it sends anyway never runs") {
  test::TempDir dir;
  const auto worker_key = protocol::RunKey::generate();
  const auto rogue_key = protocol::RunKey::generate();
  const std::string marker = dir.path() + "/task-ran";
  Child c = spawn_child({test::worker_bin(), "--key-file", write_key(dir, worker_key)});
  Fd worker_err = std::move(c.err);
  protocol::Channel channel(std::move(c.out), std::move(c.in), rogue_key, parent_config());
  auto hs = channel.handshake(in_seconds(20));
  REQUIRE(!hs.has_value());
  const auto code = hs.error().code;
  CHECK_MESSAGE((code == protocol::ErrorCode::auth_failed || code == protocol::ErrorCode::peer_refused),
                "handshake failed with " << protocol::to_string(code) << ": " << hs.error().message);

  // The rogue sends a task frame anyway (it has no session key, so the tag is zeros); errors are expected.
  const std::string body =
      protocol::encode_body(protocol::Task{1, "exec", json{{"argv", {"sh", "-c", "touch '" + marker + "'"}}}});
  const auto header = protocol::encode_header(
      protocol::FrameHeader{static_cast<std::uint8_t>(protocol::MessageType::task), 0, static_cast<std::uint32_t>(body.size())});
  std::string frame(reinterpret_cast<const char*>(header.data()), header.size());
  frame += body;
  frame.append(protocol::k_tag_size, '\0');
  std::ignore = protocol::write_all(channel.out_fd(), protocol::as_bytes(frame), in_seconds(5));

  const int code_exit = exit_code(wait_for_exit(c, in_seconds(20)));
  CHECK(code_exit != 0);
  CHECK(::access(marker.c_str(), F_OK) != 0);
  std::string rest;
  read_until(channel.in_fd(), rest, [](const std::string&) { return false; }, in_seconds(5));
  CHECK(!contains(rest, "task-ran"));
  CHECK(contains(read_all(worker_err, in_seconds(5)), "handshake failed"));
}

TEST_CASE("worker: an fd 3 that is a pipe holding 10 bytes (not a rendezvous) makes it exit 3 without speaking") {
  auto key_pipe = protocol::make_pipe();
  REQUIRE(key_pipe);
  REQUIRE(protocol::write_all(key_pipe->write.get(), protocol::as_bytes("0123456789"), in_seconds(5)));
  key_pipe->write.close();
  Child c = spawn_child({test::worker_bin(), "--key-fd", "3"}, key_pipe->read.get());
  key_pipe->read.close();
  CHECK(read_all(c.out, in_seconds(20)).empty());
  CHECK(contains(read_all(c.err, in_seconds(20)), "fd 3 is not a socket"));
  CHECK(exit_code(wait_for_exit(c, in_seconds(20))) == 3);
}

TEST_CASE("worker: a key file readable by others is refused") {
  test::TempDir dir;
  const auto key = protocol::RunKey::generate();
  const std::string path = write_key(dir, key);
  REQUIRE(::chmod(path.c_str(), 0644) == 0);
  Child c = spawn_child({test::worker_bin(), "--key-file", path});
  CHECK(read_all(c.out, in_seconds(20)).empty());
  const std::string err = read_all(c.err, in_seconds(20));
  CHECK(contains(err, "chmod 600"));
  CHECK(exit_code(wait_for_exit(c, in_seconds(20))) == 3);
}

TEST_CASE("worker: what a task prints comes back only inside its result, EOF after the handshake exits 0") {
  test::TempDir dir;
  const auto key = protocol::RunKey::generate();
  Child c = spawn_child({test::worker_bin(), "--key-file", write_key(dir, key)});
  // Keep our own copy of the worker's stdout to read what follows the channel's last frame.
  Fd stdout_copy(::fcntl(c.out.get(), F_DUPFD_CLOEXEC, 3));
  REQUIRE(stdout_copy.valid());
  std::optional<protocol::Channel> channel;
  channel.emplace(std::move(c.out), std::move(c.in), key, parent_config());
  REQUIRE(channel->handshake(in_seconds(20)));
  const json args{{"argv", {"sh", "-c", "echo printed-by-task; echo to-stderr >&2"}}};
  REQUIRE(channel->send(protocol::Task{1, "exec", args}, in_seconds(20)));
  auto result = receive_result(*channel);
  REQUIRE(result.ok);
  CHECK(result.value["stdout"] == "printed-by-task\n");
  CHECK(result.value["stderr"] == "to-stderr\n");
  CHECK(result.value["exit_code"] == 0);
  // Nothing else arrives: anything that was not a frame would fail here instead of timing out.
  auto more = channel->receive(Clock::now() + std::chrono::milliseconds(300));
  REQUIRE(!more.has_value());
  CHECK(more.error().code == protocol::ErrorCode::timeout);
  channel.reset();  // closes the worker's stdin: EOF between tasks
  CHECK(exit_code(wait_for_exit(c, in_seconds(20))) == 0);
  CHECK(read_all(stdout_copy, in_seconds(5)).empty());
  CHECK(!contains(read_all(c.err, in_seconds(5)), "printed-by-task"));
}

TEST_CASE("worker and runner: a key file that is a FIFO is refused at once (no hang in open())") {
  test::TempDir dir;
  const std::string path = dir.path() + "/fifo.key";
  REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
  Child c = spawn_child({test::worker_bin(), "--key-file", path});
  CHECK(read_all(c.out, in_seconds(20)).empty());
  CHECK(contains(read_all(c.err, in_seconds(20)), "not a regular file"));
  CHECK(exit_code(wait_for_exit(c, in_seconds(20))) == 3);
  test::RunOutput r = test::run_program({test::authrun_bin(), "run", "--no-progress", "-j", "1", "--key-file", path, "-"},
                                        "{\"id\":1,\"fn\":\"echo\",\"args\":1}\n", std::chrono::seconds(60));
  CHECK(r.exit_code != 0);
  CHECK(r.signal == 0);
  CHECK(contains(r.err, "not a regular file"));
}

namespace {

// authrun-worker with a key file of a fresh key, its handshake done with this test as its parent.
struct ShakenWorker {
  test::TempDir dir;
  protocol::RunKey key = protocol::RunKey::generate();
  Child child;
  std::optional<protocol::Channel> channel;

  explicit ShakenWorker(const std::vector<std::string>& options = {}) : child(spawn(options)) {
    channel.emplace(std::move(child.out), std::move(child.in), key, parent_config());
    REQUIRE(channel->handshake(in_seconds(20)));
  }

  // Starts the worker with its key file and `options`.
  Child spawn(const std::vector<std::string>& options) {
    std::vector<std::string> argv{test::worker_bin(), "--key-file", write_key(dir, key)};
    argv.insert(argv.end(), options.begin(), options.end());
    return spawn_child(argv);
  }

  // Sends shutdown; the worker exits 0.
  void finish() {
    REQUIRE(channel->send(protocol::Shutdown{}, in_seconds(20)));
    CHECK(exit_code(wait_for_exit(child, in_seconds(20))) == 0);
  }
};

}  // namespace

TEST_CASE("worker: it says it takes batches, and answers a task_batch with result_batch frames, every result in order") {
  ShakenWorker w;
  protocol::Channel& channel = *w.channel;
  protocol::TaskBatch batch;
  for (std::uint64_t i = 0; i < 300; ++i) batch.tasks.emplace_back(i, "echo", json{{"n", i}});
  batch.tasks.emplace_back(300, "no_such_function", nullptr);
  REQUIRE(channel.send(std::move(batch), in_seconds(20)));
  std::vector<protocol::TaskResult> results;
  while (results.size() < 301) {
    auto msg = channel.receive(in_seconds(20));
    REQUIRE_MESSAGE(msg.has_value(), "no result: " << msg.error().message);
    auto* got = std::get_if<protocol::ResultBatch>(&*msg);
    REQUIRE_MESSAGE(got != nullptr, "a result_batch was expected, not a " << protocol::to_string(protocol::type_of(*msg)));
    for (auto& r : got->results) results.push_back(std::move(r));
  }
  for (std::uint64_t i = 0; i < 300; ++i) {
    CHECK(results[i].id == i);
    CHECK(results[i].value == json{{"n", i}});
  }
  CHECK(results[300].id == 300);
  CHECK(results[300].error.type == "unknown_function");
  REQUIRE(channel.connection().peer_info().has_value());
  CHECK(channel.connection().peer_info()->batches);
  w.finish();
}

TEST_CASE("worker: in a batch, a finished result does not wait for the long task behind it") {
  ShakenWorker w;
  protocol::Channel& channel = *w.channel;
  protocol::TaskBatch batch;
  batch.tasks.emplace_back(1, "echo", json("quick"));
  batch.tasks.emplace_back(2, "sleep", json(3));
  REQUIRE(channel.send(std::move(batch), in_seconds(20)));
  auto receive_batch = [&] {
    auto msg = channel.receive(in_seconds(30));
    REQUIRE_MESSAGE(msg.has_value(), "no result: " << msg.error().message);
    REQUIRE(std::holds_alternative<protocol::ResultBatch>(*msg));
    return std::get<protocol::ResultBatch>(std::move(*msg)).results;
  };
  // Held, the quick result would come with the slow one, 3 s later. It comes alone, about 1 ms after it
  // ended; the slow one's comes seconds after it (a margin of 1.5 s of the 3 s, for a loaded machine).
  auto first = receive_batch();
  const auto first_at = Clock::now();
  REQUIRE(first.size() == 1);
  CHECK(first[0].id == 1);
  CHECK(first[0].value == "quick");
  auto second = receive_batch();
  const auto gap = Clock::now() - first_at;
  REQUIRE(second.size() == 1);
  CHECK(second[0].id == 2);
  CHECK(gap > std::chrono::milliseconds(1500));
  w.finish();
}

TEST_CASE("worker: an exec child ended by a signal it did not send is answered with outside_signal, then a keepalive") {
  // The child signals itself: to the worker, a signal from outside. A SIGTERM is a stop's signal, so the result
  // says so and the worker sends a keepalive (after its wait) before anything else; a SIGSEGV is the child's own
  // fault: no outside_signal, nothing in between. Lone tasks and batches alike.
  ShakenWorker w({"--outside-signal-wait", "0.05"});
  protocol::Channel& channel = *w.channel;
  auto self_kill = [](std::uint64_t id, const char* sig) {
    return protocol::Task{id, "exec", json{{"argv", {"sh", "-c", std::string("kill -") + sig + " $$"}}}};
  };
  auto receive_results = [&] {
    auto msg = channel.receive(in_seconds(20));
    REQUIRE_MESSAGE(msg.has_value(), "no result: " << msg.error().message);
    if (auto* one = std::get_if<protocol::TaskResult>(&*msg)) return std::vector<protocol::TaskResult>{std::move(*one)};
    REQUIRE(std::holds_alternative<protocol::ResultBatch>(*msg));
    return std::get<protocol::ResultBatch>(std::move(*msg)).results;
  };
  for (const bool batched : {false, true}) {
    CAPTURE(batched);
    const std::uint64_t base = batched ? 10 : 0;
    if (batched) {
      protocol::TaskBatch batch;
      batch.tasks = {self_kill(base + 1, "TERM"), protocol::Task{base + 2, "echo", json("next")}, self_kill(base + 3, "SEGV"),
                     protocol::Task{base + 4, "echo", json("last")}};
      REQUIRE(channel.send(std::move(batch), in_seconds(20)));
    } else {
      for (auto t : {self_kill(base + 1, "TERM"), protocol::Task{base + 2, "echo", json("next")}, self_kill(base + 3, "SEGV"),
                     protocol::Task{base + 4, "echo", json("last")}}) {
        REQUIRE(channel.send(std::move(t), in_seconds(20)));
      }
    }
    // The SIGTERM failure goes out at once, alone: nothing after it shares its frame.
    auto first = receive_results();
    REQUIRE(first.size() == 1);
    CHECK(first[0].id == base + 1);
    CHECK(!first[0].ok);
    CHECK(first[0].error.type == "signal");
    CHECK(first[0].error.outside_signal == SIGTERM);
    const std::uint64_t frames = channel.connection().frames_received();
    // Then a keepalive (taken in by the channel, counted), and only then the next results.
    std::vector<protocol::TaskResult> rest;
    std::uint64_t frames_before_next = 0;
    while (rest.size() < 3) {
      auto more = receive_results();
      if (rest.empty()) frames_before_next = channel.connection().frames_received() - 1;
      for (auto& r : more) rest.push_back(std::move(r));
    }
    CHECK(frames_before_next == frames + 1);
    CHECK(rest[0].id == base + 2);
    CHECK(rest[0].value == "next");
    CHECK(rest[1].id == base + 3);
    CHECK(rest[1].error.type == "signal");
    CHECK(rest[1].error.outside_signal == 0);
    CHECK(rest[2].id == base + 4);
    CHECK(rest[2].value == "last");
  }
  w.finish();
}
