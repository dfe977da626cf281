// Data frames after a real handshake: round trips in both modes over Channels, and tampering at the
// Connection level (bytes moved between two Connections by hand): every alteration gives bad_mac.
#include <doctest/doctest.h>

#include <csignal>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <sys/uio.h>

#include "protocol/channel.hpp"
#include "protocol/connection.hpp"
#include "protocol/frame_protector.hpp"
#include "protocol/json_codec.hpp"
#include "protocol/limits.hpp"
#include "protocol/run_key.hpp"
#include "tests/helpers/connection_pair.hpp"
#include "tests/helpers/test_util.hpp"

using namespace authrun::protocol;
using authrun::test::drain;
using authrun::test::make_link;
using authrun::test::Peer;
using authrun::test::pump;

namespace {

Clock::time_point soon() { return Clock::now() + authrun::test::scaled(std::chrono::seconds(10)); }

const ChannelMode k_keyed_modes[] = {ChannelMode::authenticated, ChannelMode::encrypted};

HandshakeConfig config_for(Role role, ChannelMode mode, std::uint32_t max_payload = limits::default_max_payload) {
  return HandshakeConfig{role, {mode}, max_payload};
}

// A parent and a worker with a completed handshake, bytes moved by hand.
struct Pair {
  RunKey key = RunKey::generate();
  Peer parent;
  Peer worker;

  explicit Pair(ChannelMode mode, std::uint32_t worker_max_payload = limits::default_max_payload)
      : parent(key, config_for(Role::parent, mode)), worker(key, config_for(Role::worker, mode, worker_max_payload)) {
    pump(parent, worker);
    REQUIRE(parent.conn.established());
    REQUIRE(worker.conn.established());
    REQUIRE(parent.conn.session().mode == mode);
  }

  // The bytes of one task frame sent by the parent.
  std::string task_frame(std::uint64_t id, const std::string& fn = "echo") {
    REQUIRE(parent.conn.send(Task{id, fn, json::array({1, 2, 3})}));
    return drain(parent.conn);
  }
};

Task task_of(const Message& m) { return std::get<Task>(m); }

// Checks that the worker refused what it was fed with bad_mac, and told the parent so.
void check_bad_mac(Pair& p) {
  REQUIRE(p.worker.error.has_value());
  CHECK(p.worker.error->code == ErrorCode::bad_mac);
  CHECK(!p.worker.conn.receive().has_value());  // the connection stays failed
  // The worker queued a sealed error message; the parent reads it as peer_refused naming bad_mac.
  p.parent.feed(drain(p.worker.conn));
  REQUIRE(p.parent.error.has_value());
  CHECK(p.parent.error->code == ErrorCode::peer_refused);
  CHECK(p.parent.error->message.find("bad_mac") != std::string::npos);
}

// Two Channels over pipes with the handshake done (the worker's side on a thread).
struct ChannelPair {
  RunKey key = RunKey::generate();
  authrun::test::Link link = make_link();
  Channel parent;
  Channel worker;

  explicit ChannelPair(ChannelMode mode)
      : parent(std::move(link.a_in), std::move(link.a_out), key, config_for(Role::parent, mode)),
        worker(std::move(link.b_in), std::move(link.b_out), key, config_for(Role::worker, mode)) {
    std::signal(SIGPIPE, SIG_IGN);
    std::optional<Result<void>> worker_result;
    std::thread t([&] { worker_result = worker.handshake(soon()); });
    auto parent_result = parent.handshake(soon());
    t.join();
    REQUIRE(parent_result.has_value());
    REQUIRE(worker_result->has_value());
  }
};

void check_channel_round_trip(ChannelMode mode) {
  ChannelPair pair(mode);
  CHECK(pair.parent.connection().session().mode == mode);
  const std::string big(3u << 20, 'z');
  // The worker echoes each task's args back as its result until shutdown.
  std::optional<Result<void>> served;
  std::thread worker_thread([&] {
    for (;;) {
      auto msg = pair.worker.receive(soon());
      if (!msg) {
        served = std::move(msg).error();
        return;
      }
      if (std::holds_alternative<Shutdown>(*msg)) {
        served = Result<void>();
        return;
      }
      Task t = task_of(*msg);
      auto sent = pair.worker.send(TaskResult{t.id, true, t.args, {}}, soon());
      if (!sent) {
        served = std::move(sent).error();
        return;
      }
    }
  });
  std::vector<json> args = {json::array({1, 2, 3}), json("text"), json::object({{"k", {true, nullptr}}}), json(big)};
  for (std::size_t i = 0; i < args.size(); ++i) REQUIRE(pair.parent.send(Task{i, "echo", args[i]}, soon()));
  for (std::size_t i = 0; i < args.size(); ++i) {
    auto msg = pair.parent.receive(soon());
    REQUIRE(msg.has_value());
    auto r = std::get<TaskResult>(*msg);
    CHECK(r.id == i);
    CHECK(r.value == args[i]);
  }
  REQUIRE(pair.parent.send(Shutdown{}, soon()));
  worker_thread.join();
  REQUIRE(served->has_value());
}

}  // namespace

TEST_CASE("frame_protector: messages round trip over channels in authenticated mode") {
  check_channel_round_trip(ChannelMode::authenticated);
}

TEST_CASE("frame_protector: messages round trip over channels in encrypted mode") {
  check_channel_round_trip(ChannelMode::encrypted);
}

TEST_CASE("frame_protector: messages round trip between connections") {
  for (ChannelMode mode : k_keyed_modes) {
    const std::string mode_name = to_string(mode);
    CAPTURE(mode_name);
    Pair p(mode);
    for (std::uint64_t id = 0; id < 50; ++id) p.worker.feed(p.task_frame(id));
    REQUIRE(!p.worker.error);
    REQUIRE(p.worker.messages.size() == 50);
    for (std::uint64_t id = 0; id < 50; ++id) CHECK(task_of(p.worker.messages[id]).id == id);
    REQUIRE(p.worker.conn.send(TaskResult{7, true, "done", {}}));
    p.parent.feed(drain(p.worker.conn));
    REQUIRE(p.parent.messages.size() == 1);
    CHECK(std::get<TaskResult>(p.parent.messages[0]).value == "done");
  }
}

TEST_CASE("frame_protector: a 1 MiB payload round trips") {
  for (ChannelMode mode : k_keyed_modes) {
    const std::string mode_name = to_string(mode);
    CAPTURE(mode_name);
    Pair p(mode);
    std::string payload(1u << 20, 'q');
    for (std::size_t i = 0; i < payload.size(); i += 7) payload[i] = static_cast<char>('a' + i % 26);
    REQUIRE(p.parent.conn.send(Task{1, payload, nullptr}));
    p.worker.feed(drain(p.parent.conn));
    REQUIRE(!p.worker.error);
    REQUIRE(p.worker.messages.size() == 1);
    CHECK(task_of(p.worker.messages[0]).fn == payload);
  }
}

TEST_CASE("frame_protector: encrypted mode does not show the plaintext on the wire") {
  const std::string secret = "secret-plaintext-marker-1234";
  {
    Pair p(ChannelMode::encrypted);
    std::string wire = p.task_frame(1, secret);
    CHECK(wire.find(secret) == std::string::npos);
    CHECK(wire.find("echo") == std::string::npos);
    CHECK(wire.find("\"id\"") == std::string::npos);
    CHECK(wire.substr(0, 4) == "ARUN");  // the header stays readable (it is authenticated, not encrypted)
    p.worker.feed(wire);
    REQUIRE(p.worker.messages.size() == 1);
    CHECK(task_of(p.worker.messages[0]).fn == secret);
  }
  {
    // The same check sees the text in authenticated mode, so it would notice a plaintext leak.
    Pair p(ChannelMode::authenticated);
    CHECK(p.task_frame(1, secret).find(secret) != std::string::npos);
  }
}

TEST_CASE("frame_protector: every data frame carries a tag, handshake frames none") {
  for (ChannelMode mode : k_keyed_modes) {
    Pair p(mode);
    std::string wire = p.task_frame(1);
    std::string body = encode_body(Task{1, "echo", json::array({1, 2, 3})});
    CHECK(wire.size() == k_header_size + body.size() + k_tag_size);
  }
}

TEST_CASE("frame_protector: altered payload byte") {
  for (ChannelMode mode : k_keyed_modes) {
    const std::string mode_name = to_string(mode);
    CAPTURE(mode_name);
    std::size_t size = Pair(mode).task_frame(1).size();
    for (std::size_t pos = k_header_size; pos < size - k_tag_size; ++pos) {
      CAPTURE(pos);
      Pair p(mode);
      std::string wire = p.task_frame(1);
      wire[pos] ^= 0x01;
      p.worker.feed(wire);
      CHECK(p.worker.messages.empty());
      check_bad_mac(p);
    }
  }
}

TEST_CASE("frame_protector: altered header type byte") {
  for (ChannelMode mode : k_keyed_modes) {
    const std::string mode_name = to_string(mode);
    CAPTURE(mode_name);
    for (std::uint8_t type : {17, 18, 19, 200}) {
      Pair p(mode);
      std::string wire = p.task_frame(1);
      wire[5] = static_cast<char>(type);  // still a data type, so the frame is parsed and its tag checked
      p.worker.feed(wire);
      CHECK(p.worker.messages.empty());
      check_bad_mac(p);
    }
  }
}

TEST_CASE("frame_protector: altered header byte in any position") {
  for (ChannelMode mode : k_keyed_modes) {
    const std::string mode_name = to_string(mode);
    CAPTURE(mode_name);
    for (std::size_t pos = 0; pos < k_header_size; ++pos) {
      for (std::uint8_t bit : {std::uint8_t{0x01}, std::uint8_t{0x80}}) {
        CAPTURE(pos);
        CAPTURE(int(bit));
        Pair p(mode);
        std::string wire = p.task_frame(1);
        wire[pos] ^= static_cast<char>(bit);
        p.worker.feed(wire);
        CHECK(p.worker.messages.empty());
        // Magic, version and flags are refused by name; a changed type or a shorter length fails the tag; a
        // longer length waits for bytes that never come (truncated at EOF).
        if (p.worker.error) {
          CHECK(p.worker.error->code != ErrorCode::unexpected);
        } else {
          CHECK(p.worker.conn.end_of_input().code == ErrorCode::truncated);
        }
      }
    }
  }
}

TEST_CASE("frame_protector: altered tag") {
  for (ChannelMode mode : k_keyed_modes) {
    const std::string mode_name = to_string(mode);
    CAPTURE(mode_name);
    for (std::size_t i = 0; i < k_tag_size; ++i) {
      CAPTURE(i);
      Pair p(mode);
      std::string wire = p.task_frame(1);
      wire[wire.size() - k_tag_size + i] ^= 0x40;
      p.worker.feed(wire);
      CHECK(p.worker.messages.empty());
      check_bad_mac(p);
    }
  }
}

TEST_CASE("frame_protector: missing tag") {
  // The frame without its tag, then the next frame: the next frame's header is read as the tag.
  for (ChannelMode mode : k_keyed_modes) {
    Pair p(mode);
    std::string first = p.task_frame(1);
    std::string second = p.task_frame(2);
    p.worker.feed(first.substr(0, first.size() - k_tag_size) + second);
    CHECK(p.worker.messages.empty());
    check_bad_mac(p);
  }
}

TEST_CASE("frame_protector: dropped frame") {
  for (ChannelMode mode : k_keyed_modes) {
    const std::string mode_name = to_string(mode);
    CAPTURE(mode_name);
    Pair p(mode);
    std::string first = p.task_frame(1);
    std::string second = p.task_frame(2);
    (void)first;
    p.worker.feed(second);
    CHECK(p.worker.messages.empty());
    check_bad_mac(p);
  }
}

TEST_CASE("frame_protector: reordered frames") {
  for (ChannelMode mode : k_keyed_modes) {
    const std::string mode_name = to_string(mode);
    CAPTURE(mode_name);
    Pair p(mode);
    std::string first = p.task_frame(1);
    std::string second = p.task_frame(2);
    p.worker.feed(second + first);
    CHECK(p.worker.messages.empty());
    check_bad_mac(p);
  }
}

TEST_CASE("frame_protector: replayed frame") {
  for (ChannelMode mode : k_keyed_modes) {
    const std::string mode_name = to_string(mode);
    CAPTURE(mode_name);
    Pair p(mode);
    std::string first = p.task_frame(1);
    p.worker.feed(first);
    REQUIRE(p.worker.messages.size() == 1);
    p.worker.feed(first);
    CHECK(p.worker.messages.size() == 1);
    check_bad_mac(p);
  }
}

TEST_CASE("frame_protector: frame replayed into another session with the same key") {
  for (ChannelMode mode : k_keyed_modes) {
    const std::string mode_name = to_string(mode);
    CAPTURE(mode_name);
    Pair a(mode);
    Pair b(mode);
    // Different keys (a's RunKey is not b's), and even with one run key the session keys differ per handshake.
    b.worker.feed(a.task_frame(1));
    CHECK(b.worker.messages.empty());
    check_bad_mac(b);
  }
}

TEST_CASE("frame_protector: injected frame made with a different key") {
  for (ChannelMode mode : k_keyed_modes) {
    const std::string mode_name = to_string(mode);
    CAPTURE(mode_name);
    Pair p(mode);
    Pair other(mode);
    std::string forged = other.task_frame(1, "rm -rf");  // well formed, first in its direction, other key
    std::string genuine = p.task_frame(1);
    p.worker.feed(forged + genuine);
    CHECK(p.worker.messages.empty());
    check_bad_mac(p);
  }
}

TEST_CASE("frame_protector: injected frame after genuine ones") {
  for (ChannelMode mode : k_keyed_modes) {
    const std::string mode_name = to_string(mode);
    CAPTURE(mode_name);
    Pair p(mode);
    Pair other(mode);
    std::string first = p.task_frame(1);
    p.worker.feed(first + p.task_frame(2));
    REQUIRE(p.worker.messages.size() == 2);
    other.task_frame(1);
    other.task_frame(2);
    p.worker.feed(other.task_frame(3));  // sequence number 2 in both, but the other key
    CHECK(p.worker.messages.size() == 2);
    check_bad_mac(p);
  }
}

TEST_CASE("frame_protector: frame reflected back to its sender") {
  // Each direction has its own key: the parent's task frame does not verify as a frame from the worker.
  for (ChannelMode mode : k_keyed_modes) {
    const std::string mode_name = to_string(mode);
    CAPTURE(mode_name);
    Pair p(mode);
    p.parent.feed(p.task_frame(1));
    REQUIRE(p.parent.error.has_value());
    CHECK(p.parent.error->code == ErrorCode::bad_mac);
  }
}

TEST_CASE("frame_protector: altered result from the worker") {
  for (ChannelMode mode : k_keyed_modes) {
    const std::string mode_name = to_string(mode);
    CAPTURE(mode_name);
    Pair p(mode);
    REQUIRE(p.worker.conn.send(TaskResult{1, true, 42, {}}));
    std::string wire = drain(p.worker.conn);
    wire[k_header_size + 3] ^= 0x04;
    p.parent.feed(wire);
    REQUIRE(p.parent.error.has_value());
    CHECK(p.parent.error->code == ErrorCode::bad_mac);
    CHECK(p.parent.messages.empty());
  }
}

TEST_CASE("frame_protector: message larger than the peer accepts is not sent") {
  Pair p(ChannelMode::authenticated, 100);
  CHECK(p.parent.conn.session().peer_max_payload == 100);
  auto sent = p.parent.conn.send(Task{1, std::string(200, 'x'), nullptr});
  REQUIRE(!sent.has_value());
  CHECK(sent.error().code == ErrorCode::frame_too_large);
  CHECK(drain(p.parent.conn).empty());
  // Nothing was sealed, so the next frame still verifies.
  p.worker.feed(p.task_frame(2));
  REQUIRE(p.worker.messages.size() == 1);
}

TEST_CASE("frame_protector: frame larger than this side accepts is refused from its header") {
  Pair p(ChannelMode::authenticated, 100);
  HeaderBytes h = encode_header(FrameHeader{static_cast<std::uint8_t>(MessageType::task), 0, 101});
  p.worker.feed(std::string(h.begin(), h.end()));
  REQUIRE(p.worker.error.has_value());
  CHECK(p.worker.error->code == ErrorCode::frame_too_large);
}

TEST_CASE("frame_protector: sealing and opening directly") {
  Bytes32 key{};
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(i);
  Bytes32 other = key;
  other[0] ^= 1;
  for (ChannelMode mode : k_keyed_modes) {
    const std::string mode_name = to_string(mode);
    CAPTURE(mode_name);
    FrameProtector tx(mode, key);
    FrameProtector rx(mode, key);
    FrameProtector wrong(mode, other);
    CHECK(tx.tag_size() == k_tag_size);
    for (int i = 0; i < 3; ++i) {
      std::string payload = "payload " + std::to_string(i);
      HeaderBytes h = encode_header(FrameHeader{16, 0, static_cast<std::uint32_t>(payload.size())});
      std::string sealed = payload;
      Tag tag = tx.seal(h, sealed);
      CHECK((sealed == payload) == (mode == ChannelMode::authenticated));
      std::string copy = sealed;
      CHECK(!wrong.open(h, copy, tag).has_value());
      REQUIRE(rx.open(h, sealed, tag).has_value());
      CHECK(sealed == payload);
    }
    // A frame's position is part of what the tag covers: the same bytes do not verify at another position.
    FrameProtector late(mode, key);
    std::string payload = "x";
    HeaderBytes h = encode_header(FrameHeader{16, 0, 1});
    Tag tag = FrameProtector(mode, key).seal(h, payload);
    std::string p0 = payload;
    REQUIRE(late.open(h, p0, tag).has_value());
    std::string p1 = payload;
    auto again = late.open(h, p1, tag);
    REQUIRE(!again.has_value());
    CHECK(again.error().code == ErrorCode::bad_mac);
    CHECK(again.error().message.find("frame 1") != std::string::npos);
  }
}

TEST_CASE("frame_protector: insecure measurement mode carries no tag") {
  Pair p(ChannelMode::insecure_measurement);
  std::string wire = p.task_frame(1);
  CHECK(wire.size() == k_header_size + encode_body(Task{1, "echo", json::array({1, 2, 3})}).size());
  p.worker.feed(wire);
  REQUIRE(p.worker.messages.size() == 1);
}

TEST_CASE("frame_protector: attachments round trip in every mode and format") {
  for (ChannelMode mode : {ChannelMode::authenticated, ChannelMode::encrypted, ChannelMode::insecure_measurement}) {
    for (BodyFormat format : {BodyFormat::json, BodyFormat::cbor}) {
      for (std::size_t size : {std::size_t{10}, std::size_t{200'000}}) {
        const std::string mode_name = to_string(mode);
        CAPTURE(mode_name);
        CAPTURE(int(format));
        CAPTURE(size);
        Pair p(mode);
        std::string bytes(size, '\0');
        for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>(i * 31 + 7);
        Task t{5, "sha256", json::array({1})};
        t.attachment = Attachment{bytes, 0};
        REQUIRE(p.parent.conn.send(std::move(t), format));
        std::string wire = drain(p.parent.conn);
        CHECK((wire.find(bytes.substr(0, 10)) == std::string::npos) == (mode == ChannelMode::encrypted));
        p.worker.feed(wire);
        REQUIRE(!p.worker.error);
        REQUIRE(p.worker.messages.size() == 1);
        Task got = task_of(p.worker.messages[0]);
        CHECK(got.fn == "sha256");
        CHECK(got.format == format);
        CHECK(got.attachment.view() == bytes);
        // The next frame still verifies: the attachment frame used exactly one sequence number.
        p.worker.feed(p.task_frame(6));
        CHECK(p.worker.messages.size() == 2);
      }
    }
  }
}

TEST_CASE("frame_protector: altered attachment byte") {
  for (ChannelMode mode : k_keyed_modes) {
    for (std::size_t size : {std::size_t{10}, std::size_t{200'000}}) {
      const std::string mode_name = to_string(mode);
      CAPTURE(mode_name);
      CAPTURE(size);
      Pair p(mode);
      Task t{5, "sha256", nullptr};
      t.attachment = Attachment{std::string(size, 'a'), 0};
      REQUIRE(p.parent.conn.send(std::move(t)));
      std::string wire = drain(p.parent.conn);
      wire[wire.size() - k_tag_size - 1 - size / 2] ^= 0x10;
      p.worker.feed(wire);
      CHECK(p.worker.messages.empty());
      check_bad_mac(p);
    }
  }
}

TEST_CASE("frame_protector: altered flags") {
  // Flags are in the authenticated header: turning a JSON task into a CBOR one is caught by the tag.
  for (ChannelMode mode : k_keyed_modes) {
    const std::string mode_name = to_string(mode);
    CAPTURE(mode_name);
    Pair p(mode);
    std::string wire = p.task_frame(1);
    wire[6] = 1;
    p.worker.feed(wire);
    check_bad_mac(p);
  }
}

TEST_CASE("frame_protector: a payload sealed in two parts is the payload sealed whole, at any split") {
  Bytes32 key{};
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(3 * i + 1);
  std::string payload(1000, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 37 + 11);
  const HeaderBytes h = encode_header(FrameHeader{17, k_flag_attachment, static_cast<std::uint32_t>(payload.size())});
  for (ChannelMode mode : k_keyed_modes) {
    for (std::size_t split : {std::size_t{0}, std::size_t{1}, std::size_t{63}, std::size_t{64}, std::size_t{65}, std::size_t{130},
                              std::size_t{999}, std::size_t{1000}}) {
      const std::string mode_name = to_string(mode);
      CAPTURE(mode_name);
      CAPTURE(split);
      std::string whole = payload;
      const Tag whole_tag = FrameProtector(mode, key).seal(h, whole);
      std::string first = payload.substr(0, split);
      std::string second = payload.substr(split);
      const Tag parts_tag = FrameProtector(mode, key).seal_parts(
          h, std::span(reinterpret_cast<std::uint8_t*>(first.data()), first.size()),
          std::span(reinterpret_cast<std::uint8_t*>(second.data()), second.size()));
      CHECK(parts_tag == whole_tag);
      CHECK(first + second == whole);  // the same ciphertext (or, authenticated, the same clear bytes)
    }
  }
}

TEST_CASE("frame_protector: a payload sealed in pieces as it is written is the payload sealed whole") {
  Bytes32 key{};
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(5 * i + 7);
  std::string payload(3000, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 29 + 3);
  const HeaderBytes h = encode_header(FrameHeader{16, 0, static_cast<std::uint32_t>(payload.size())});
  for (ChannelMode mode : k_keyed_modes) {
    const std::string mode_name = to_string(mode);
    CAPTURE(mode_name);
    FrameProtector whole_tx(mode, key);
    FrameProtector pieces_tx(mode, key);
    std::string w1 = payload;
    std::string w2 = payload;
    const Tag t1 = whole_tx.seal(h, w1);
    const Tag t2 = whole_tx.seal(h, w2);
    // Two frames pending at once, their pieces (of awkward sizes) interleaved; the second frame's sequence
    // number is taken when it begins, whichever finishes first.
    std::string p1 = payload;
    std::string p2 = payload;
    FrameSeal s1 = pieces_tx.begin_seal(h);
    FrameSeal s2 = pieces_tx.begin_seal(h);
    std::size_t at = 0;
    for (std::size_t piece : {1, 15, 17, 63, 64, 65, 777, 0}) {
      s1.update(std::span(reinterpret_cast<std::uint8_t*>(p1.data()) + at, piece));
      s2.update(std::span(reinterpret_cast<std::uint8_t*>(p2.data()) + at, piece));
      at += piece;
    }
    s2.update(std::span(reinterpret_cast<std::uint8_t*>(p2.data()) + at, p2.size() - at));
    CHECK(s2.finish() == t2);
    s1.update(std::span(reinterpret_cast<std::uint8_t*>(p1.data()) + at, p1.size() - at));
    CHECK(s1.length() == payload.size());
    CHECK(s1.finish() == t1);
    CHECK(p1 == w1);
    CHECK(p2 == w2);
    // The next frame sealed whole takes the number after both.
    std::string w3 = payload;
    std::string p3 = payload;
    CHECK(whole_tx.seal(h, w3) == pieces_tx.seal(h, p3));
    CHECK(p3 == w3);
  }
}

TEST_CASE("frame_protector: a frame queued unsealed goes out as the same bytes as one sealed whole, in any write sizes") {
  Bytes32 key{};
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(i * 11 + 2);
  const std::size_t size = 5 * limits::read_buffer_size * 16 + 777;  // several seal pieces
  std::string attachment(size + 10, '\0');
  for (std::size_t i = 0; i < attachment.size(); ++i) attachment[i] = static_cast<char>(i * 7 + i / 4096);
  const std::string body = "{\"id\":1}";
  std::string first(4, '\0');
  store_le32(reinterpret_cast<std::uint8_t*>(first.data()), static_cast<std::uint32_t>(body.size()));
  first += body;
  const std::string small = "{\"id\":2,\"fn\":\"echo\",\"args\":[]}";
  const HeaderBytes h1 = encode_header(FrameHeader{16, k_flag_attachment, static_cast<std::uint32_t>(first.size() + size)});
  const HeaderBytes h2 = encode_header(FrameHeader{16, 0, static_cast<std::uint32_t>(small.size())});
  const HeaderBytes h3 = encode_header(FrameHeader{16, 0, static_cast<std::uint32_t>(size)});
  for (ChannelMode mode : k_keyed_modes) {
    const std::string mode_name = to_string(mode);
    CAPTURE(mode_name);
    // Expected: each frame sealed whole, then header, payload, tag.
    std::string expected;
    {
      FrameProtector tx(mode, key);
      std::string p1 = first + attachment.substr(10);
      const Tag t1 = tx.seal(h1, p1);
      std::string p2 = small;
      const Tag t2 = tx.seal(h2, p2);
      std::string p3 = attachment.substr(0, size);
      const Tag t3 = tx.seal(h3, p3);
      for (auto [h, p, t] : {std::tuple{&h1, &p1, &t1}, std::tuple{&h2, &p2, &t2}, std::tuple{&h3, &p3, &t3}}) {
        expected.append(reinterpret_cast<const char*>(h->data()), h->size());
        expected += *p;
        expected.append(reinterpret_cast<const char*>(t->data()), t->size());
      }
    }
    for (std::size_t write_size : {std::size_t{1000}, std::size_t{65536}, std::size_t{300000}, std::size_t{1} << 30}) {
      CAPTURE(write_size);
      FrameProtector tx(mode, key);
      FrameWriter w;
      // An attachment that starts 10 bytes into its storage, a small frame queued behind it, then a large body.
      w.push_sealing(h1, first, attachment, 10, tx.begin_seal(h1), tx.tag_size());
      std::string p2 = small;
      const Tag t2 = tx.seal(h2, p2);
      w.push(h2, std::move(p2), std::span<const std::uint8_t>(t2.data(), t2.size()));
      w.push_sealing(h3, attachment.substr(0, size), std::string(), 0, tx.begin_seal(h3), tx.tag_size());
      CHECK(w.pending_bytes() == expected.size());
      std::string wire;
      std::string earlier;  // what an earlier gather showed past what was consumed: it must not change
      while (!w.empty()) {
        iovec iov[64];
        const std::size_t n = w.gather(iov);
        REQUIRE(n > 0);
        // What a write of write_size would take, and the next 64 KiB (copying all that is pending every time
        // made this test quadratic: minutes under ASan).
        const std::size_t window = write_size + 65536;
        std::string shown;
        for (std::size_t i = 0; i < n && shown.size() < window; ++i) {
          shown.append(static_cast<const char*>(iov[i].iov_base), std::min(iov[i].iov_len, window - shown.size()));
        }
        CHECK(shown.compare(0, earlier.size(), earlier) == 0);
        const std::size_t take = std::min(write_size, shown.size());
        wire += shown.substr(0, take);
        earlier = shown.substr(take);
        w.consume(take);
      }
      CHECK(wire.size() == expected.size());
      CHECK(wire == expected);
    }
  }
}

TEST_CASE("frame_protector: a payload opened piece by piece verifies like one opened whole, and fails alike") {
  Bytes32 key{};
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(i ^ 0x5a);
  std::string payload(5000, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 13 + 5);
  const HeaderBytes h = encode_header(FrameHeader{16, 0, static_cast<std::uint32_t>(payload.size())});
  for (ChannelMode mode : k_keyed_modes) {
    const std::string mode_name = to_string(mode);
    CAPTURE(mode_name);
    FrameProtector tx(mode, key);
    FrameProtector rx(mode, key);
    for (int frame = 0; frame < 2; ++frame) {
      std::string sealed = payload;
      const Tag tag = tx.seal(h, sealed);
      // Pieces of awkward sizes, crossing ChaCha20's 64-byte blocks and Poly1305's 16-byte ones anywhere.
      rx.begin_open(h);
      CHECK(rx.opening());
      std::size_t at = 0;
      for (std::size_t piece : {1, 15, 17, 63, 64, 65, 777}) {
        rx.update_open(std::span(reinterpret_cast<std::uint8_t*>(sealed.data()) + at, piece));
        at += piece;
      }
      rx.update_open(std::span(reinterpret_cast<std::uint8_t*>(sealed.data()) + at, sealed.size() - at));
      REQUIRE(rx.finish_open(tag).has_value());
      CHECK(!rx.opening());
      CHECK(sealed == payload);
    }
    // An altered byte in the middle fails, naming the frame's number.
    std::string sealed = payload;
    const Tag tag = tx.seal(h, sealed);
    sealed[2500] ^= 1;
    rx.begin_open(h);
    rx.update_open(std::span(reinterpret_cast<std::uint8_t*>(sealed.data()), 1000));
    rx.update_open(std::span(reinterpret_cast<std::uint8_t*>(sealed.data()) + 1000, sealed.size() - 1000));
    auto bad = rx.finish_open(tag);
    REQUIRE(!bad.has_value());
    CHECK(bad.error().code == ErrorCode::bad_mac);
    CHECK(bad.error().message.find("frame 2") != std::string::npos);
  }
}

TEST_CASE("frame_protector: large attachments in both directions, checked as they arrive, reuse the sent storage") {
  for (ChannelMode mode : {ChannelMode::authenticated, ChannelMode::encrypted, ChannelMode::insecure_measurement}) {
    const std::string mode_name = to_string(mode);
    CAPTURE(mode_name);
    Pair p(mode);
    const std::size_t size = 3 * limits::read_buffer_size * 16 + 4321;  // several MiB: a "large" frame, read in pieces
    std::string bytes(size, '\0');
    for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>(i * 7 + 3);
    for (int round = 0; round < 3; ++round) {
      Task t{static_cast<std::uint64_t>(round + 1), "echo", json::object(), BodyFormat::json, Attachment{bytes}};
      REQUIRE(p.parent.conn.send(std::move(t)));
      p.worker.feed(drain(p.parent.conn));
      REQUIRE(!p.worker.error.has_value());
      REQUIRE(p.worker.messages.size() == static_cast<std::size_t>(round + 1));
      Task got = task_of(p.worker.messages.back());
      CHECK(got.attachment.view() == bytes);
      // The echo back: the worker's receive storage goes out again, then serves the next large frame.
      TaskResult r;
      r.id = got.id;
      r.value = nullptr;
      r.attachment = std::move(got.attachment);
      REQUIRE(p.worker.conn.send(std::move(r)));
      p.parent.feed(drain(p.worker.conn));
      REQUIRE(!p.parent.error.has_value());
      REQUIRE(p.parent.messages.size() == static_cast<std::size_t>(round + 1));
      CHECK(std::get<TaskResult>(p.parent.messages.back()).attachment.view() == bytes);
    }
    // A byte altered in the middle of a large frame is caught once its tag arrives.
    REQUIRE(p.parent.conn.send(Task{9, "echo", json::object(), BodyFormat::json, Attachment{bytes}}));
    std::string wire = drain(p.parent.conn);
    if (mode == ChannelMode::insecure_measurement) continue;
    wire[wire.size() / 2] ^= 0x40;
    p.worker.feed(wire);
    REQUIRE(p.worker.error.has_value());
    CHECK(p.worker.error->code == ErrorCode::bad_mac);
  }
}
