// libFuzzer target: a Connection (parent or worker role, fixed key and ephemerals) fed a stream from its
// peer, after queuing its own hello. Input: [mode][chunk seed] then, by mode bit 0, either
//   0: the stream itself (raw bytes), or
//   1: edits to a real transcript of the peer's frames, 5 bytes each [kind][frame][offset hi][offset lo][value].
// Mode bit 1 picks the role under test, bits 2-3 the channel modes, bits 4-5 the chunk sizes.
// Besides no crash: output frames are well formed (handshake frames fit the peer's pre-auth limit); nothing
// is delivered before the handshake; the handshake completes only on the peer's exact hello; once keyed, in
// authenticated and encrypted modes every delivered message is the peer's next real one; an unaltered
// transcript completes and delivers everything; the real peer accepts whatever this side sends.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <sys/uio.h>

#include "tests/fuzz/fuzz_util.hpp"
#include "tests/helpers/connection_pair.hpp"
#include "protocol/connection.hpp"
#include "protocol/frame_reader.hpp"
#include "protocol/handshake.hpp"
#include "protocol/json_codec.hpp"
#include "protocol/limits.hpp"
#include "protocol/message.hpp"
#include "protocol/run_key.hpp"

using namespace authrun::protocol;


namespace {

constexpr std::uint32_t k_max_payload = 1u << 20;  // both sides' own limit: bounds what a header can allocate
constexpr std::size_t k_config_count = 4;

using authrun::fuzz::Chunker;

// Channel modes of each side: authenticated, encrypted, insecure_measurement, and no common mode.
std::vector<ChannelMode> modes_of(Role role, std::size_t config) {
  using M = ChannelMode;
  switch (config) {
    case 0: return role == Role::parent ? std::vector<M>{M::authenticated} : std::vector<M>{M::encrypted, M::authenticated};
    case 1: return {M::encrypted, M::authenticated};
    case 2: return {M::insecure_measurement};
    default: return role == Role::parent ? std::vector<M>{M::authenticated} : std::vector<M>{M::encrypted};
  }
}

bool tagged(std::size_t config) { return config != 2; }

const RunKey& run_key() {
  static const RunKey key = [] {
    sodium_ready();
    std::uint8_t bytes[k_run_key_size];
    for (std::size_t i = 0; i < sizeof bytes; ++i) bytes[i] = static_cast<std::uint8_t>(0xA0 + i);
    return RunKey::from_bytes(bytes);
  }();
  return key;
}

// Fixed per role, so that a recorded transcript replays; derived once (key generation is the slow part).
Ephemeral ephemeral_of(Role role) {
  auto make = [](std::uint8_t nonce_byte, std::uint8_t seed_byte) {
    Bytes32 nonce{};
    Bytes32 seed{};
    nonce.fill(nonce_byte);
    seed.fill(seed_byte);
    return Ephemeral::from_seed(nonce, seed);
  };
  static const Ephemeral parent = make(0x11, 0x22);
  static const Ephemeral worker = make(0x33, 0x44);
  return role == Role::parent ? parent : worker;
}

Connection make_connection(Role role, std::size_t config) {
  return Connection(run_key(), HandshakeConfig{role, modes_of(role, config), k_max_payload}, ephemeral_of(role));
}

Role other(Role role) { return role == Role::parent ? Role::worker : Role::parent; }

using authrun::test::drain;

struct Received {
  std::vector<Message> messages;
  std::optional<Error> error;
};

// Feeds `bytes` in chunks, receiving after each; stops at the first error.
void feed(Connection& c, std::string_view bytes, Chunker& chunker, Received& got) {
  std::size_t pos = 0;
  while (pos < bytes.size() && !got.error) {
    std::span<std::uint8_t> space = c.read_space();
    AUTHRUN_FUZZ_CHECK(!space.empty());
    const std::size_t n = chunker.next(std::min(space.size(), bytes.size() - pos));
    std::memcpy(space.data(), bytes.data() + pos, n);
    c.commit(n);
    pos += n;
    for (;;) {
      auto r = c.receive();
      if (!r) {
        got.error = std::move(r).error();
        break;
      }
      if (!*r) break;
      AUTHRUN_FUZZ_CHECK(c.established());
      got.messages.push_back(std::move(**r));
    }
  }
}

// A message as sent: type, body in its own format, attachment.
struct Sent {
  MessageType type;
  BodyFormat format;
  std::string body;
  std::string attachment;
};

Sent describe(const Message& m) {
  Sent s{type_of(m), BodyFormat::json, {}, {}};
  if (auto* t = std::get_if<Task>(&m)) {
    s.format = t->format;
    s.attachment = std::string(t->attachment.view());
  } else if (auto* r = std::get_if<TaskResult>(&m)) {
    s.format = r->format;
    s.attachment = std::string(r->attachment.view());
  }
  s.body = encode_body(m, s.format);
  return s;
}

// One side's output in a real run: its frames (bytes as sent) and the data messages among them.
struct Transcript {
  std::vector<std::string> frames;
  std::vector<Sent> messages;
  std::string bytes;
};

std::vector<std::string> split_frames(const std::string& bytes, bool tags) {
  FrameReader reader(limits::absolute_max_payload);
  reader.expect_tags(tags);
  std::vector<std::string> frames;
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    std::span<std::uint8_t> space = reader.read_space();
    const std::size_t n = std::min(space.size(), bytes.size() - pos);
    std::memcpy(space.data(), bytes.data() + pos, n);
    reader.commit(n);
    pos += n;
    for (;;) {
      auto f = reader.next();
      AUTHRUN_FUZZ_CHECK(f.has_value());
      if (!*f) break;
      const Frame& frame = **f;
      std::string raw(reinterpret_cast<const char*>(frame.header_bytes.data()), frame.header_bytes.size());
      raw += frame.payload;
      if (tags && frame.header.type >= k_first_data_type) {
        raw.append(reinterpret_cast<const char*>(frame.tag.data()), frame.tag.size());
      }
      frames.push_back(std::move(raw));
    }
  }
  AUTHRUN_FUZZ_CHECK(!reader.mid_frame());
  return frames;
}

// Runs a real handshake between a parent and a worker, then a few data messages each way.
struct Recording {
  Transcript parent;  // what the parent sent (the worker under test receives it)
  Transcript worker;
};

Recording record(std::size_t config) {
  Connection p = make_connection(Role::parent, config);
  Connection w = make_connection(Role::worker, config);
  Recording rec;
  Chunker whole(3, 0);
  Received p_got;
  Received w_got;
  for (int round = 0; round < 4; ++round) {
    std::string a = drain(p);
    rec.parent.bytes += a;
    feed(w, a, whole, w_got);
    std::string b = drain(w);
    rec.worker.bytes += b;
    feed(p, b, whole, p_got);
  }
  if (p.established() && w.established()) {
    std::vector<Message> to_worker{Task{7, "echo", json{{"x", json::array({1, 2.5, "three"})}}},
                                   Task{8, "sum", json::array({1, 2, 3}), BodyFormat::cbor, Attachment{"ATTACHMENT", 0}},
                                   Shutdown{}};
    std::vector<Message> to_parent{TaskResult{7, true, json{{"y", nullptr}}},
                                   TaskResult{8, false, nullptr, TaskError{"bad_args", "no", json{{"k", 1}}},
                                              BodyFormat::msgpack, Attachment{"..RESULT-ATTACHMENT", 2}}};
    for (Message& m : to_worker) {
      rec.parent.messages.push_back(describe(m));
      AUTHRUN_FUZZ_CHECK(p.send(std::move(m), rec.parent.messages.back().format).has_value());
    }
    for (Message& m : to_parent) {
      rec.worker.messages.push_back(describe(m));
      AUTHRUN_FUZZ_CHECK(w.send(std::move(m), rec.worker.messages.back().format).has_value());
    }
    rec.parent.bytes += drain(p);
    rec.worker.bytes += drain(w);
  } else {
    AUTHRUN_FUZZ_CHECK(config == 3);
  }
  rec.parent.frames = split_frames(rec.parent.bytes, tagged(config));
  rec.worker.frames = split_frames(rec.worker.bytes, tagged(config));
  return rec;
}

// The peer's transcript that the side in `role` receives.
const Transcript& transcript_for(Role role, std::size_t config) {
  static std::optional<Recording> recordings[k_config_count];
  if (!recordings[config]) recordings[config] = record(config);
  return role == Role::parent ? recordings[config]->worker : recordings[config]->parent;
}

// Applies the edits in `ops` to the peer's frames and joins them.
std::string mutate(std::vector<std::string> frames, const std::uint8_t* ops, std::size_t size) {
  std::size_t i = 0;
  while (size - i >= 5) {
    const std::uint8_t kind = ops[i] % 9;
    const std::size_t f = ops[i + 1];
    const std::size_t off = std::size_t(ops[i + 2]) << 8 | ops[i + 3];
    const std::uint8_t val = ops[i + 4];
    i += 5;
    const std::size_t n = frames.size();
    if (kind == 8) {  // insert a frame of `val` literal bytes taken from the input
      const std::size_t len = std::min<std::size_t>(val, size - i);
      frames.insert(frames.begin() + std::ptrdiff_t(f % (n + 1)), std::string(reinterpret_cast<const char*>(ops + i), len));
      i += len;
      continue;
    }
    if (n == 0) continue;
    std::string& fr = frames[f % n];
    switch (kind) {
      case 0: if (!fr.empty()) fr[off % fr.size()] = static_cast<char>(val); break;
      case 1: if (!fr.empty()) fr[off % fr.size()] ^= static_cast<char>(1 << (val % 8)); break;
      case 2: fr.insert(fr.begin() + std::ptrdiff_t(off % (fr.size() + 1)), static_cast<char>(val)); break;
      case 3: if (!fr.empty()) fr.erase(off % fr.size(), std::size_t(val % 32) + 1); break;
      case 4: fr.resize(off % (fr.size() + 1)); break;
      case 5: {
        std::string copy = fr;
        frames.insert(frames.begin() + std::ptrdiff_t(val % (n + 1)), std::move(copy));
        break;
      }
      case 6: frames.erase(frames.begin() + std::ptrdiff_t(f % n)); break;
      case 7: std::swap(fr, frames[val % n]); break;
    }
  }
  std::string out;
  for (const std::string& fr : frames) out += fr;
  return out;
}

// Checks the frames a side sent: well formed, handshake frames within the pre-auth limit and decodable,
// data frames (an error report) only once keyed.
void check_output(Connection& c, const std::string& out) {
  FrameReader reader(limits::absolute_max_payload);
  if (c.established()) reader.expect_tags(c.session().tx.tag_size() != 0);
  std::size_t pos = 0;
  std::size_t count = 0;
  while (pos < out.size()) {
    std::span<std::uint8_t> space = reader.read_space();
    const std::size_t n = std::min(space.size(), out.size() - pos);
    std::memcpy(space.data(), out.data() + pos, n);
    reader.commit(n);
    pos += n;
    for (;;) {
      auto f = reader.next();
      AUTHRUN_FUZZ_CHECK(f.has_value());
      if (!*f) break;
      const Frame& frame = **f;
      if (count++ == 0) AUTHRUN_FUZZ_CHECK(frame.header.type == static_cast<std::uint8_t>(MessageType::hello));
      if (is_handshake_type(frame.header.type)) {
        AUTHRUN_FUZZ_CHECK(frame.payload.size() <= limits::pre_auth_max_payload);
        AUTHRUN_FUZZ_CHECK(decode_message(frame.header.type, frame.payload).has_value());
      } else {
        AUTHRUN_FUZZ_CHECK(c.established());
        AUTHRUN_FUZZ_CHECK(frame.header.type == static_cast<std::uint8_t>(MessageType::error));
      }
    }
  }
  AUTHRUN_FUZZ_CHECK(count > 0);
  AUTHRUN_FUZZ_CHECK(!reader.mid_frame());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const bool from_transcript = (data[0] & 1) != 0;
  const Role role = (data[0] & 2) != 0 ? Role::worker : Role::parent;
  const std::size_t config = (data[0] >> 2) & 3;
  Chunker chunker(static_cast<std::uint8_t>(data[0] >> 4), data[1]);
  const Transcript& real = transcript_for(role, config);
  const std::string stream = from_transcript ? mutate(real.frames, data + 2, size - 2)
                                             : std::string(reinterpret_cast<const char*>(data + 2), size - 2);

  Connection c = make_connection(role, config);
  Received got;
  feed(c, stream, chunker, got);
  if (got.error) {
    auto again = c.receive();
    AUTHRUN_FUZZ_CHECK(!again && again.error().code == ErrorCode::unexpected);
  } else {
    const Error end = c.end_of_input();
    AUTHRUN_FUZZ_CHECK(end.code == ErrorCode::eof || end.code == ErrorCode::truncated);
  }

  // Which recording's peer the stream starts as. Every recording's peer holds the fixed test key, and this
  // side's seeds are the same in each configuration, so the peer of any recording is a real one: a stream
  // recorded in one configuration and fed in another may establish legitimately.
  std::optional<std::size_t> peer_config;
  for (std::size_t k : {config, std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{3}}) {
    const Transcript& t = transcript_for(role, k);
    if (!peer_config && !t.frames.empty() && stream.compare(0, t.frames[0].size(), t.frames[0]) == 0) peer_config = k;
  }
  // Only a real peer's own hello leads to a verified proof (the transcript hash covers its exact bytes).
  if (c.established()) AUTHRUN_FUZZ_CHECK(peer_config.has_value());
  const Transcript& peer_real = transcript_for(role, peer_config.value_or(config));
  if (tagged(config)) {
    // Keyed frames cannot be forged, dropped, replayed or reordered: what arrives is the peer's next message.
    AUTHRUN_FUZZ_CHECK(got.messages.size() <= peer_real.messages.size());
    for (std::size_t i = 0; i < got.messages.size(); ++i) {
      const Sent s = describe(got.messages[i]);
      const Sent& want = peer_real.messages[i];
      AUTHRUN_FUZZ_CHECK(s.type == want.type && s.format == want.format && s.body == want.body &&
                         s.attachment == want.attachment);
    }
  }
  if (stream == real.bytes && config != 3) {
    AUTHRUN_FUZZ_CHECK(c.established() && !got.error && got.messages.size() == real.messages.size());
  }

  const std::string out = drain(c);
  check_output(c, out);
  // The real peer reads what this side sent: if this side completed the handshake, so does the peer, and
  // any error report it finds verifies.
  Connection peer = make_connection(other(role), peer_config.value_or(config));
  Chunker whole(3, 0);
  Received peer_got;
  feed(peer, out, whole, peer_got);
  if (c.established()) {
    AUTHRUN_FUZZ_CHECK(peer.established());
    AUTHRUN_FUZZ_CHECK(!peer_got.error || peer_got.error->code == ErrorCode::peer_refused);
  }
  return 0;
}
