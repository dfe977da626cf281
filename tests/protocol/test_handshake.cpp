// The mutual handshake: Channel pairs over real pipes (one side on a thread), and Connection pairs driven by
// hand where a test needs to record, replay, reflect or alter the bytes between the two sides.
#include <doctest/doctest.h>

#include <csignal>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "protocol/channel.hpp"
#include "protocol/connection.hpp"
#include "protocol/frame_reader.hpp"
#include "protocol/handshake.hpp"
#include "protocol/json_codec.hpp"
#include "protocol/limits.hpp"
#include "protocol/run_key.hpp"
#include "tests/helpers/connection_pair.hpp"
#include "tests/helpers/test_util.hpp"

using namespace authrun::protocol;
using authrun::test::drain;
using authrun::test::make_link;
using authrun::test::parent_config;
using authrun::test::Peer;
using authrun::test::pump;
using authrun::test::Tamper;
using authrun::test::worker_config;

namespace {

void ignore_sigpipe() { std::signal(SIGPIPE, SIG_IGN); }

Clock::time_point soon() { return Clock::now() + authrun::test::scaled(std::chrono::seconds(10)); }

// Two Channels joined by pipes, each side's handshake run to its end (the worker's on a thread).
struct ChannelRun {
  std::unique_ptr<Channel> parent;
  std::unique_ptr<Channel> worker;
  std::optional<Result<void>> parent_result;
  std::optional<Result<void>> worker_result;
};

std::unique_ptr<ChannelRun> run_channels(const RunKey& parent_key, const RunKey& worker_key, HandshakeConfig pc,
                                         HandshakeConfig wc) {
  ignore_sigpipe();
  auto link = make_link();
  auto run = std::make_unique<ChannelRun>();
  run->parent = std::make_unique<Channel>(std::move(link.a_in), std::move(link.a_out), parent_key, std::move(pc));
  run->worker = std::make_unique<Channel>(std::move(link.b_in), std::move(link.b_out), worker_key, std::move(wc));
  std::thread worker_thread([&] { run->worker_result = run->worker->handshake(soon()); });
  run->parent_result = run->parent->handshake(soon());
  worker_thread.join();
  return run;
}

// The outcome a side sent after its hello (and its proof, if it got that far), for checking its reason.
Outcome outcome_sent(int fd) {
  FrameReader reader(limits::pre_auth_max_payload);
  std::vector<Frame> frames;
  while (frames.empty() || frames.back().header.type != static_cast<std::uint8_t>(MessageType::outcome)) {
    auto frame = reader.next();
    REQUIRE(frame.has_value());
    if (*frame) {
      frames.push_back(std::move(**frame));
      continue;
    }
    auto space = reader.read_space();
    auto n = read_some(fd, std::as_writable_bytes(space), soon());
    REQUIRE(n.has_value());
    REQUIRE(*n > 0);
    reader.commit(*n);
  }
  REQUIRE(frames.size() >= 2);
  CHECK(frames[0].header.type == static_cast<std::uint8_t>(MessageType::hello));
  if (frames.size() == 3) CHECK(frames[1].header.type == static_cast<std::uint8_t>(MessageType::proof));
  auto msg = decode_message(frames.back().header.type, frames.back().payload);
  REQUIRE(msg.has_value());
  return std::get<Outcome>(*msg);
}

std::string frame_string(const OutFrame& f) { return std::string(f.header.begin(), f.header.end()) + f.payload; }

// A hello as a foreign peer might send it.
Hello worker_hello() {
  Ephemeral e = Ephemeral::random();
  Hello h;
  h.role = Role::worker;
  h.versions = {k_protocol_version};
  h.nonce = e.nonce;
  h.ephemeral_public_key = e.public_key;
  h.modes = {ChannelMode::authenticated};
  h.max_payload = 4096;
  return h;
}

// A parent Channel facing a scripted peer: `script` is written to it before the handshake starts.
struct ScriptedParent {
  authrun::test::Link link = make_link();
  RunKey key = RunKey::generate();
  std::optional<Channel> channel;

  explicit ScriptedParent(const std::string& script, Role role = Role::parent) {
    ignore_sigpipe();
    REQUIRE(write_all(link.b_out.get(), as_bytes(script), soon()));
    HandshakeConfig config = role == Role::parent ? parent_config() : worker_config();
    channel.emplace(std::move(link.a_in), std::move(link.a_out), key, config);
  }
};

}  // namespace

TEST_CASE("handshake: succeeds with the same key and both sides agree") {
  RunKey key = RunKey::generate();
  auto run = run_channels(key, key, parent_config(), worker_config({ChannelMode::authenticated}, 100'000));
  REQUIRE(run->parent_result->has_value());
  REQUIRE(run->worker_result->has_value());
  const Session& p = run->parent->connection().session();
  const Session& w = run->worker->connection().session();
  CHECK(p.transcript_hash == w.transcript_hash);
  CHECK(p.mode == ChannelMode::authenticated);
  CHECK(w.mode == ChannelMode::authenticated);
  CHECK(p.version == k_protocol_version);
  CHECK(w.version == k_protocol_version);
  CHECK(p.peer_max_payload == 100'000);
  CHECK(w.peer_max_payload == limits::default_max_payload);

  // Both directions carry messages afterwards.
  REQUIRE(run->parent->send(Task{1, "echo", json::array({1})}, soon()));
  auto task = run->worker->receive(soon());
  REQUIRE(task.has_value());
  CHECK(std::get<Task>(*task).fn == "echo");
  REQUIRE(run->worker->send(TaskResult{1, true, json::array({1}), {}}, soon()));
  auto result = run->parent->receive(soon());
  REQUIRE(result.has_value());
  CHECK(std::get<TaskResult>(*result).id == 1);
}

TEST_CASE("handshake: two runs give different transcripts") {
  RunKey key = RunKey::generate();
  auto a = run_channels(key, key, parent_config(), worker_config());
  auto b = run_channels(key, key, parent_config(), worker_config());
  REQUIRE(a->parent_result->has_value());
  REQUIRE(b->parent_result->has_value());
  CHECK(a->parent->connection().session().transcript_hash != b->parent->connection().session().transcript_hash);
}

TEST_CASE("handshake: the parent's mode preference wins") {
  RunKey key = RunKey::generate();
  auto run = run_channels(key, key, parent_config({ChannelMode::encrypted, ChannelMode::authenticated}),
                          worker_config({ChannelMode::authenticated, ChannelMode::encrypted}));
  REQUIRE(run->parent_result->has_value());
  REQUIRE(run->worker_result->has_value());
  CHECK(run->parent->connection().session().mode == ChannelMode::encrypted);
  CHECK(run->worker->connection().session().mode == ChannelMode::encrypted);
}

TEST_CASE("handshake: wrong key fails on both sides") {
  RunKey parent_key = RunKey::generate();
  RunKey worker_key = RunKey::generate();
  auto run = run_channels(parent_key, worker_key, parent_config(), worker_config());
  REQUIRE(!run->parent_result->has_value());
  REQUIRE(!run->worker_result->has_value());
  // Each side reads the other's proof before its outcome, so both see the bad proof themselves.
  CHECK(run->parent_result->error().code == ErrorCode::auth_failed);
  CHECK(run->worker_result->error().code == ErrorCode::auth_failed);
  // No data message can be sent or received.
  CHECK(!run->parent->connection().established());
  CHECK(!run->worker->connection().established());
  auto after = run->parent->receive(soon());
  REQUIRE(!after.has_value());
  CHECK(after.error().code == ErrorCode::unexpected);
}

TEST_CASE("handshake: wrong key is reported to the peer in an outcome") {
  RunKey key = RunKey::generate();
  RunKey other = RunKey::generate();
  Peer parent(key, parent_config());
  Peer worker(other, worker_config());
  auto [p2w, w2p] = pump(parent, worker);
  REQUIRE(parent.error);
  REQUIRE(worker.error);
  CHECK(parent.error->code == ErrorCode::auth_failed);
  CHECK(worker.error->code == ErrorCode::auth_failed);
  // Each stream is hello, proof, outcome {"ok":false,"reason":"auth_failed",...}.
  CHECK(w2p.find(R"("reason":"auth_failed")") != std::string::npos);
  CHECK(p2w.find(R"("reason":"auth_failed")") != std::string::npos);
}

TEST_CASE("handshake: reflected hello") {
  RunKey key = RunKey::generate();
  Peer parent(key, parent_config());
  std::string hello = drain(parent.conn);
  parent.feed(hello);
  REQUIRE(parent.error);
  CHECK(parent.error->code == ErrorCode::auth_failed);
  CHECK(!parent.conn.established());
}

TEST_CASE("handshake: reflected hello with the role changed") {
  // An attacker rewrites the role so the role check passes; the repeated nonce and key still give it away.
  RunKey key = RunKey::generate();
  Peer parent(key, parent_config());
  std::string hello = drain(parent.conn);
  auto decoded = decode_message(1, hello.substr(k_header_size));
  REQUIRE(decoded.has_value());
  Hello h = std::get<Hello>(*decoded);
  h.role = Role::worker;
  parent.feed(frame_string(make_frame(h)));
  REQUIRE(parent.error);
  CHECK(parent.error->code == ErrorCode::auth_failed);
}

TEST_CASE("handshake: reflected proof") {
  RunKey key = RunKey::generate();
  Peer parent(key, parent_config());
  Peer worker(key, worker_config());
  std::string parent_hello = drain(parent.conn);
  std::string worker_hello = drain(worker.conn);
  parent.feed(worker_hello);
  std::string parent_proof = drain(parent.conn);
  REQUIRE(!parent_proof.empty());
  parent.feed(parent_proof);  // its own proof back: the labels differ, so it does not verify
  REQUIRE(parent.error);
  CHECK(parent.error->code == ErrorCode::auth_failed);
}

TEST_CASE("handshake: replayed worker transcript") {
  RunKey key = RunKey::generate();
  std::string recorded;
  {
    Peer parent(key, parent_config());
    Peer worker(key, worker_config());
    recorded = pump(parent, worker).second;
    REQUIRE(parent.conn.established());
    REQUIRE(worker.conn.established());
  }
  // A new parent (fresh nonce and key) gets the worker's old hello and proof.
  ignore_sigpipe();
  auto link = make_link();
  REQUIRE(write_all(link.b_out.get(), as_bytes(recorded), soon()));
  Channel parent(std::move(link.a_in), std::move(link.a_out), key, parent_config());
  auto result = parent.handshake(soon());
  REQUIRE(!result.has_value());
  CHECK(result.error().code == ErrorCode::auth_failed);
  CHECK(!parent.connection().established());
  CHECK(outcome_sent(link.b_in.get()).reason == "auth_failed");
}

TEST_CASE("handshake: replayed parent transcript") {
  RunKey key = RunKey::generate();
  std::string recorded;
  {
    Peer parent(key, parent_config());
    Peer worker(key, worker_config());
    recorded = pump(parent, worker).first;
    REQUIRE(worker.conn.established());
  }
  Peer worker(key, worker_config());
  worker.feed(recorded);
  REQUIRE(worker.error);
  CHECK(worker.error->code == ErrorCode::auth_failed);
  CHECK(!worker.conn.established());
}

TEST_CASE("handshake: a flipped bit anywhere in the handshake fails it") {
  RunKey key = RunKey::generate();
  std::size_t hello_size[2] = {0, 0};
  std::size_t stream_size[2] = {0, 0};
  {
    Peer parent(key, parent_config());
    Peer worker(key, worker_config());
    std::string p_hello = drain(parent.conn);
    std::string w_hello = drain(worker.conn);
    hello_size[0] = p_hello.size();
    hello_size[1] = w_hello.size();
    parent.feed(w_hello);
    worker.feed(p_hello);
    stream_size[0] = hello_size[0] + drain(parent.conn).size();
    stream_size[1] = hello_size[1] + drain(worker.conn).size();
  }
  int runs = 0;
  for (bool p2w : {true, false}) {
    const int d = p2w ? 0 : 1;
    for (std::size_t pos = 0; pos < stream_size[d]; ++pos) {
      for (std::uint8_t bit : {std::uint8_t{0x01}, std::uint8_t{0x80}}) {
        const bool in_hello = pos < hello_size[d];
        const std::size_t in_frame = in_hello ? pos : pos - hello_size[d];
        const char* where = in_frame < 4    ? "header magic"
                            : in_frame < 5  ? "header version"
                            : in_frame < 6  ? "header type"
                            : in_frame < 8  ? "header flags"
                            : in_frame < 12 ? "header length"
                            : in_hello      ? "hello body"
                                            : "proof body";
        CAPTURE(p2w);
        CAPTURE(pos);
        CAPTURE(where);
        CAPTURE(int(bit));
        Peer parent(key, parent_config());
        Peer worker(key, worker_config());
        pump(parent, worker, [&](bool dir, std::size_t offset, std::string& chunk) {
          if (dir == p2w && pos >= offset && pos < offset + chunk.size()) chunk[pos - offset] ^= static_cast<char>(bit);
        });
        Peer& receiver = p2w ? worker : parent;
        Peer& sender = p2w ? parent : worker;
        CHECK(!receiver.conn.established());
        // Either it failed, or it waits for bytes that never come (a longer length): at EOF that is truncated.
        CHECK((receiver.error.has_value() || receiver.conn.end_of_input().code == ErrorCode::truncated));
        // A changed hello changes the receiver's transcript, so the sender cannot verify the reply either.
        if (in_hello) CHECK(!sender.conn.established());
        ++runs;
      }
    }
  }
  CHECK(runs > 500);
}

TEST_CASE("handshake: silent peer times out at the deadline") {
  for (Role role : {Role::parent, Role::worker}) {
    const std::string role_name = to_string(role);
    CAPTURE(role_name);
    auto link = make_link();  // the other side's ends stay open and silent
    RunKey key = RunKey::generate();
    Channel channel(std::move(link.a_in), std::move(link.a_out), key,
                    role == Role::parent ? parent_config() : worker_config());
    auto start = Clock::now();
    auto result = channel.handshake(start + std::chrono::milliseconds(300));
    auto elapsed = Clock::now() - start;
    REQUIRE(!result.has_value());
    CHECK(result.error().code == ErrorCode::timeout);
    CHECK(elapsed < authrun::test::scaled(std::chrono::seconds(5)));
  }
}

TEST_CASE("handshake: peer that stops after its hello times out") {
  RunKey key = RunKey::generate();
  Peer fake_worker(key, worker_config());
  ScriptedParent p(drain(fake_worker.conn));
  auto start = Clock::now();
  auto result = p.channel->handshake(start + std::chrono::milliseconds(300));
  REQUIRE(!result.has_value());
  CHECK(result.error().code == ErrorCode::timeout);
  CHECK(Clock::now() - start < authrun::test::scaled(std::chrono::seconds(5)));
}

TEST_CASE("handshake: peer that closes during the handshake") {
  ignore_sigpipe();
  auto link = make_link();
  RunKey key = RunKey::generate();
  link.b_out.close();
  Channel channel(std::move(link.a_in), std::move(link.a_out), key, parent_config());
  auto result = channel.handshake(soon());
  REQUIRE(!result.has_value());
  CHECK(result.error().code == ErrorCode::eof);
}

TEST_CASE("handshake: hello larger than the pre-auth limit") {
  HeaderBytes h = encode_header(FrameHeader{static_cast<std::uint8_t>(MessageType::hello), 0,
                                            limits::pre_auth_max_payload + 1});
  std::string script = std::string(h.begin(), h.end()) + std::string(limits::pre_auth_max_payload + 1, ' ');
  ScriptedParent p(script);
  auto result = p.channel->handshake(soon());
  REQUIRE(!result.has_value());
  CHECK(result.error().code == ErrorCode::frame_too_large);
  CHECK(outcome_sent(p.link.b_in.get()).reason == "frame_too_large");
}

TEST_CASE("handshake: hello announcing 4 GiB is refused from its header") {
  HeaderBytes h = encode_header(FrameHeader{static_cast<std::uint8_t>(MessageType::hello), 0, 0xFFFFFFF0u});
  ScriptedParent p(std::string(h.begin(), h.end()));  // no payload follows
  auto result = p.channel->handshake(soon());
  REQUIRE(!result.has_value());
  CHECK(result.error().code == ErrorCode::frame_too_large);
}

TEST_CASE("handshake: task frame sent before the handshake") {
  for (Role role : {Role::parent, Role::worker}) {
    const std::string role_name = to_string(role);
    CAPTURE(role_name);
    ScriptedParent p(frame_string(make_frame(Task{1, "echo", json::array()})), role);
    auto result = p.channel->handshake(soon());
    REQUIRE(!result.has_value());
    CHECK(result.error().code == ErrorCode::unexpected);
    CHECK(outcome_sent(p.link.b_in.get()).reason == "unexpected");
  }
}

TEST_CASE("handshake: task frame sent between hello and proof") {
  RunKey key = RunKey::generate();
  Peer fake_worker(key, worker_config());
  ScriptedParent p(drain(fake_worker.conn) + frame_string(make_frame(Task{1, "echo", json::array()})));
  auto result = p.channel->handshake(soon());
  REQUIRE(!result.has_value());
  CHECK(result.error().code == ErrorCode::unexpected);
}

TEST_CASE("handshake: tagged task frame with a forged tag before the handshake") {
  std::string script = frame_string(make_frame(Shutdown{})) + std::string(k_tag_size, '\0');
  ScriptedParent p(script, Role::worker);
  auto result = p.channel->handshake(soon());
  REQUIRE(!result.has_value());
  CHECK(result.error().code == ErrorCode::unexpected);
}

TEST_CASE("handshake: proof before hello") {
  ScriptedParent p(frame_string(make_frame(Proof{})));
  auto result = p.channel->handshake(soon());
  REQUIRE(!result.has_value());
  CHECK(result.error().code == ErrorCode::unexpected);
}

TEST_CASE("handshake: second hello instead of a proof") {
  Hello h = worker_hello();
  ScriptedParent p(frame_string(make_frame(h)) + frame_string(make_frame(h)));
  auto result = p.channel->handshake(soon());
  REQUIRE(!result.has_value());
  CHECK(result.error().code == ErrorCode::unexpected);
}

TEST_CASE("handshake: no common mode") {
  RunKey key = RunKey::generate();
  auto run = run_channels(key, key, parent_config({ChannelMode::encrypted}), worker_config({ChannelMode::authenticated}));
  REQUIRE(!run->parent_result->has_value());
  REQUIRE(!run->worker_result->has_value());
  CHECK(run->parent_result->error().code == ErrorCode::mode_refused);
  CHECK(run->worker_result->error().code == ErrorCode::mode_refused);
  CHECK(run->parent_result->error().message.find("encrypted") != std::string::npos);
}

TEST_CASE("handshake: insecure mode needs both sides to opt in") {
  RunKey key = RunKey::generate();
  auto run = run_channels(key, key, parent_config({ChannelMode::insecure_measurement}), worker_config());
  REQUIRE(!run->parent_result->has_value());
  CHECK(run->parent_result->error().code == ErrorCode::mode_refused);
}

TEST_CASE("handshake: unsupported version in hello") {
  Hello h = worker_hello();
  h.versions = {2, 3};
  ScriptedParent p(frame_string(make_frame(h)));
  auto result = p.channel->handshake(soon());
  REQUIRE(!result.has_value());
  CHECK(result.error().code == ErrorCode::bad_version);
  CHECK(outcome_sent(p.link.b_in.get()).reason == "bad_version");
}

TEST_CASE("handshake: a version list that includes ours is accepted") {
  RunKey key = RunKey::generate();
  Hello h = worker_hello();
  h.versions = {5, k_protocol_version, 2};
  Handshake hs(key, parent_config());
  Frame f;
  OutFrame out = make_frame(h);
  f.header = FrameHeader{static_cast<std::uint8_t>(MessageType::hello), 0, static_cast<std::uint32_t>(out.payload.size())};
  f.header_bytes = out.header;
  f.payload = out.payload;
  auto step = hs.on_frame(f);
  REQUIRE(step.has_value());
  CHECK(step->has_value());  // this side's proof
}

TEST_CASE("handshake: unsupported frame version in the hello header") {
  std::string hello = frame_string(make_frame(worker_hello()));
  hello[4] = 2;
  ScriptedParent p(hello);
  auto result = p.channel->handshake(soon());
  REQUIRE(!result.has_value());
  CHECK(result.error().code == ErrorCode::bad_version);
}

TEST_CASE("handshake: invalid ephemeral public key") {
  Hello h = worker_hello();
  h.ephemeral_public_key = Bytes32{};  // a low-order point: X25519 gives all zeros
  ScriptedParent p(frame_string(make_frame(h)));
  auto result = p.channel->handshake(soon());
  REQUIRE(!result.has_value());
  CHECK(result.error().code == ErrorCode::auth_failed);
}

TEST_CASE("handshake: hello that repeats this side's nonce") {
  RunKey key = RunKey::generate();
  Peer parent(key, parent_config());
  std::string mine = drain(parent.conn);
  Hello theirs = worker_hello();
  theirs.nonce = std::get<Hello>(*decode_message(1, mine.substr(k_header_size))).nonce;
  parent.feed(frame_string(make_frame(theirs)));
  REQUIRE(parent.error);
  CHECK(parent.error->code == ErrorCode::auth_failed);
}

TEST_CASE("handshake: malformed hello") {
  std::string body = R"({"role":"worker"})";
  HeaderBytes h = encode_header(FrameHeader{1, 0, static_cast<std::uint32_t>(body.size())});
  ScriptedParent p(std::string(h.begin(), h.end()) + body);
  auto result = p.channel->handshake(soon());
  REQUIRE(!result.has_value());
  CHECK(result.error().code == ErrorCode::malformed);
  Outcome o = outcome_sent(p.link.b_in.get());
  CHECK(o.reason == "malformed");
  CHECK(o.message.find("'versions'") != std::string::npos);
}

TEST_CASE("handshake: peer's failure outcome is reported as peer_refused") {
  RunKey key = RunKey::generate();
  Peer parent(key, parent_config());
  std::string hello = drain(parent.conn);
  parent.feed(frame_string(outcome_for(make_error(ErrorCode::key_invalid, "no usable key"))));
  REQUIRE(parent.error);
  CHECK(parent.error->code == ErrorCode::peer_refused);
  CHECK(parent.error->message.find("key_invalid") != std::string::npos);
  CHECK(parent.error->message.find("no usable key") != std::string::npos);
  // No outcome is sent back in answer to an outcome.
  CHECK(drain(parent.conn).empty());
}

TEST_CASE("handshake: outcome messages stay under the pre-auth limit") {
  OutFrame f = outcome_for(make_error(ErrorCode::malformed, std::string(5000, 'x')));
  CHECK(f.payload.size() <= limits::pre_auth_max_payload);
  // Quoted peer bytes that grow when escaped (control characters) or replaced (invalid UTF-8).
  for (char c : {'\x01', '\xff'}) {
    OutFrame g = outcome_for(make_error(ErrorCode::malformed, "unknown channel mode '" + std::string(300, c) + "'"));
    CHECK(g.payload.size() <= limits::pre_auth_max_payload);
    auto decoded = decode_message(static_cast<std::uint8_t>(MessageType::outcome), g.payload);
    REQUIRE(decoded.has_value());
    CHECK(std::get<Outcome>(*decoded).reason == "malformed");
  }
}

TEST_CASE("handshake: handshake frame after the handshake") {
  RunKey key = RunKey::generate();
  Peer parent(key, parent_config());
  Peer worker(key, worker_config());
  pump(parent, worker);
  REQUIRE(parent.conn.established());
  REQUIRE(worker.conn.established());
  worker.feed(frame_string(make_frame(Proof{})));
  REQUIRE(worker.error);
  CHECK(worker.error->code == ErrorCode::unexpected);
}

TEST_CASE("handshake: Handshake without I/O refuses frames after it ended") {
  RunKey key = RunKey::generate();
  Handshake parent(key, parent_config());
  Handshake worker(key, worker_config());
  auto as_frame = [](const OutFrame& o) {
    Frame f;
    f.header_bytes = o.header;
    f.header = *decode_header(std::span<const std::uint8_t, k_header_size>(o.header.data(), k_header_size),
                              limits::pre_auth_max_payload);
    f.payload = o.payload;
    return f;
  };
  auto p_proof = parent.on_frame(as_frame(worker.hello()));
  auto w_proof = worker.on_frame(as_frame(parent.hello()));
  REQUIRE(p_proof.has_value());
  REQUIRE(w_proof.has_value());
  REQUIRE(p_proof->has_value());
  REQUIRE(w_proof->has_value());
  CHECK(parent.on_frame(as_frame(**w_proof)).has_value());
  CHECK(worker.on_frame(as_frame(**p_proof)).has_value());
  CHECK(parent.done());
  CHECK(worker.done());
  Session ps = parent.take_session();
  Session ws = worker.take_session();
  CHECK(ps.transcript_hash == ws.transcript_hash);
  auto again = parent.on_frame(as_frame(**w_proof));
  REQUIRE(!again.has_value());
  CHECK(again.error().code == ErrorCode::unexpected);
}

TEST_CASE("handshake: a short banner is refused as soon as its first byte arrives, quoted") {
  // "hi\n" is shorter than a frame header: waiting for a whole header would wait for the handshake deadline.
  RunKey key = RunKey::generate();
  authrun::test::Peer parent(key, parent_config());
  parent.feed("hi\n");
  REQUIRE(parent.error);
  CHECK(parent.error->code == ErrorCode::bad_magic);
  CHECK(parent.error->message.find("\"hi\\n\"") != std::string::npos);
  CHECK(parent.error->message.find("is the channel clean?") != std::string::npos);
  CHECK(parent.error->message.find("~/.bashrc") != std::string::npos);
}

TEST_CASE("handshake: the start of a valid header is awaited, and an end inside it is truncated") {
  RunKey key = RunKey::generate();
  authrun::test::Peer parent(key, parent_config());
  parent.feed("AR");
  CHECK(!parent.error);
  CHECK(parent.conn.end_of_input().code == ErrorCode::truncated);
  authrun::test::Peer other(key, parent_config());
  other.feed("");
  CHECK(other.conn.end_of_input().code == ErrorCode::eof);
  CHECK(other.conn.end_of_input().message == "peer closed the channel during the handshake");
}

TEST_CASE("handshake: the worker's optional worker_info is taken in once by the parent, and refused by a worker") {
  RunKey key = RunKey::generate();
  authrun::test::Peer parent(key, parent_config());
  authrun::test::Peer worker(key, worker_config());
  authrun::test::pump(parent, worker);
  REQUIRE(parent.conn.established());
  REQUIRE(worker.conn.established());
  CHECK(!parent.conn.peer_info());

  REQUIRE(worker.conn.send(WorkerInfo{"node07", 4242}));
  REQUIRE(worker.conn.send(TaskResult{1, true, json(1)}));
  parent.feed(drain(worker.conn));
  REQUIRE(!parent.error);
  REQUIRE(parent.messages.size() == 1);  // the result only: the info is not a message for the caller
  CHECK(std::holds_alternative<TaskResult>(parent.messages[0]));
  REQUIRE(parent.conn.peer_info());
  CHECK(parent.conn.peer_info()->host == "node07");
  CHECK(parent.conn.peer_info()->pid == 4242);

  REQUIRE(worker.conn.send(WorkerInfo{"elsewhere", 1}));
  parent.feed(drain(worker.conn));
  REQUIRE(parent.error);
  CHECK(parent.error->code == ErrorCode::unexpected);
  CHECK(parent.conn.peer_info()->host == "node07");

  REQUIRE(parent.conn.established());
  authrun::test::Peer parent2(key, parent_config());
  authrun::test::Peer worker2(key, worker_config());
  authrun::test::pump(parent2, worker2);
  REQUIRE(parent2.conn.send(WorkerInfo{"parent", 1}));
  worker2.feed(drain(parent2.conn));
  REQUIRE(worker2.error);
  CHECK(worker2.error->code == ErrorCode::unexpected);
}
