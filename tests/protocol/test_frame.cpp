// Frame header codec, FrameReader and FrameWriter over real pipes and socketpairs, and the ends of input.
#include <doctest/doctest.h>

#include <csignal>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "protocol/connection.hpp"
#include "protocol/fd.hpp"
#include "protocol/frame.hpp"
#include "protocol/frame_reader.hpp"
#include "protocol/frame_writer.hpp"
#include "protocol/limits.hpp"
#include "protocol/run_key.hpp"
#include "tests/helpers/test_util.hpp"

using namespace authrun::protocol;

namespace {

Clock::time_point soon() { return Clock::now() + authrun::test::scaled(std::chrono::seconds(20)); }

HeaderBytes header_of(std::uint8_t type, std::uint32_t length, std::uint16_t flags = 0) {
  return encode_header(FrameHeader{type, flags, length});
}

std::span<const std::uint8_t, k_header_size> span_of(const HeaderBytes& h) {
  return std::span<const std::uint8_t, k_header_size>(h.data(), k_header_size);
}

// A frame as the bytes a peer sends.
std::string frame_bytes(std::uint8_t type, const std::string& payload, const std::string& tag = "") {
  HeaderBytes h = header_of(type, static_cast<std::uint32_t>(payload.size()));
  return std::string(h.begin(), h.end()) + payload + tag;
}

// A payload whose every byte depends on its position and the seed (catches shifted or swapped bytes).
std::string pattern(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (std::size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

// Writes everything queued in `writer` to `fd`.
Result<void> write_out(int fd, FrameWriter& writer) {
  while (!writer.empty()) {
    iovec iov[64];
    std::size_t n = writer.gather(iov);
    AUTHRUN_TRY_ASSIGN(std::size_t written, write_some(fd, std::span<const iovec>(iov, n), soon()));
    writer.consume(written);
  }
  return {};
}

// Reads frames from `fd` until `count` have arrived. At end of input: eof between frames, truncated inside one.
Result<std::vector<Frame>> read_frames(int fd, FrameReader& reader, std::size_t count) {
  std::vector<Frame> frames;
  while (frames.size() < count) {
    AUTHRUN_TRY_ASSIGN(std::optional<Frame> frame, reader.next());
    if (frame) {
      frames.push_back(std::move(*frame));
      continue;
    }
    auto space = reader.read_space();
    REQUIRE(!space.empty());
    AUTHRUN_TRY_ASSIGN(std::size_t n, read_some(fd, std::as_writable_bytes(space), soon()));
    if (n == 0) {
      return make_error(reader.mid_frame() ? ErrorCode::truncated : ErrorCode::eof, "end of input");
    }
    reader.commit(n);
  }
  return frames;
}

// Feeds `bytes` to `reader` `step` bytes per commit and returns every frame (or the first error).
Result<std::vector<Frame>> feed(FrameReader& reader, const std::string& bytes, std::size_t step) {
  std::vector<Frame> frames;
  std::size_t pos = 0;
  for (;;) {
    AUTHRUN_TRY_ASSIGN(std::optional<Frame> frame, reader.next());
    if (frame) {
      frames.push_back(std::move(*frame));
      continue;
    }
    if (pos == bytes.size()) return frames;
    auto space = reader.read_space();
    std::size_t n = std::min({step, space.size(), bytes.size() - pos});
    std::memcpy(space.data(), bytes.data() + pos, n);
    reader.commit(n);
    pos += n;
  }
}

struct SocketPair {
  Fd a, b;
};

SocketPair make_socketpair() {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  return {Fd(fds[0]), Fd(fds[1])};
}

// The frames the round-trip tests send: handshake and data types, empty to medium payloads.
struct Sent {
  std::uint8_t type;
  std::string payload;
};

std::vector<Sent> sample_frames() {
  std::vector<Sent> v;
  v.push_back({1, "{\"hello\":1}"});
  v.push_back({16, ""});
  v.push_back({17, pattern(1, 1)});
  v.push_back({18, pattern(1000, 2)});
  v.push_back({19, pattern(limits::zero_copy_threshold - 1, 3)});
  v.push_back({16, pattern(limits::zero_copy_threshold, 4)});
  v.push_back({17, pattern(100'000, 5)});
  v.push_back({3, "{}"});
  return v;
}

void check_round_trip(int read_fd, int write_fd) {
  std::vector<Sent> sent = sample_frames();
  std::optional<Result<void>> written;
  std::thread writer_thread([&] {
    FrameWriter writer;
    for (const Sent& s : sent) writer.push(header_of(s.type, static_cast<std::uint32_t>(s.payload.size())), s.payload, {});
    written = write_out(write_fd, writer);
  });
  FrameReader reader(limits::default_max_payload);
  auto frames = read_frames(read_fd, reader, sent.size());
  writer_thread.join();
  REQUIRE(written->has_value());
  REQUIRE(frames.has_value());
  REQUIRE(frames->size() == sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) {
    CAPTURE(i);
    CHECK((*frames)[i].header.type == sent[i].type);
    CHECK((*frames)[i].header.length == sent[i].payload.size());
    CHECK((*frames)[i].payload == sent[i].payload);
    CHECK((*frames)[i].header_bytes == header_of(sent[i].type, static_cast<std::uint32_t>(sent[i].payload.size())));
  }
  CHECK(!reader.mid_frame());
}

}  // namespace

TEST_CASE("frame: header encodes to the documented bytes") {
  HeaderBytes h = header_of(17, 0x01020304);
  const std::uint8_t expected[] = {'A', 'R', 'U', 'N', 1, 17, 0, 0, 0x04, 0x03, 0x02, 0x01};
  CHECK(std::memcmp(h.data(), expected, sizeof expected) == 0);
  CHECK(k_header_size == 12);
}

TEST_CASE("frame: header decodes what encode wrote") {
  for (std::uint32_t length : {0u, 1u, 255u, 256u, 65536u, 0xFFFFFFF0u}) {
    for (std::uint8_t type : {std::uint8_t{1}, std::uint8_t{2}, std::uint8_t{3}, std::uint8_t{16}, std::uint8_t{255}}) {
      HeaderBytes h = header_of(type, length);
      auto decoded = decode_header(span_of(h), limits::absolute_max_payload);
      REQUIRE(decoded.has_value());
      CHECK(decoded->type == type);
      CHECK(decoded->flags == 0);
      CHECK(decoded->length == length);
    }
  }
}

TEST_CASE("frame: header with bad magic is rejected") {
  for (std::size_t i = 0; i < 4; ++i) {
    HeaderBytes h = header_of(16, 10);
    h[i] ^= 0x20;
    auto decoded = decode_header(span_of(h), 100);
    REQUIRE(!decoded.has_value());
    CHECK(decoded.error().code == ErrorCode::bad_magic);
    CHECK(decoded.error().message.find("ARUN") != std::string::npos);
  }
}

TEST_CASE("frame: header with bad version is rejected") {
  for (std::uint8_t version : {0, 2, 255}) {
    HeaderBytes h = header_of(16, 10);
    h[4] = version;
    auto decoded = decode_header(span_of(h), 100);
    REQUIRE(!decoded.has_value());
    CHECK(decoded.error().code == ErrorCode::bad_version);
  }
}

TEST_CASE("frame: header with unknown flags is rejected") {
  for (int bit = 3; bit < 16; ++bit) {
    HeaderBytes h = header_of(16, 10, static_cast<std::uint16_t>(1u << bit));
    auto decoded = decode_header(span_of(h), 100);
    REQUIRE(!decoded.has_value());
    CHECK(decoded.error().code == ErrorCode::bad_flags);
  }
  // Body format 3 is not defined.
  HeaderBytes format3 = header_of(16, 10, k_flag_format_mask);
  CHECK(decode_header(span_of(format3), 100).error().code == ErrorCode::bad_flags);
}

TEST_CASE("frame: defined flags are accepted on data frames only") {
  for (std::uint16_t flags : {std::uint16_t(1), std::uint16_t(2), k_flag_attachment, std::uint16_t(k_flag_attachment | 1)}) {
    HeaderBytes data = header_of(16, 10, flags);
    CHECK(decode_header(span_of(data), 100).has_value());
    HeaderBytes hello = header_of(1, 10, flags);
    CHECK(decode_header(span_of(hello), 100).error().code == ErrorCode::bad_flags);
  }
}

TEST_CASE("frame: header announcing more than the limit is rejected") {
  HeaderBytes at = header_of(16, 1000);
  CHECK(decode_header(span_of(at), 1000).has_value());
  HeaderBytes over = header_of(16, 1001);
  auto decoded = decode_header(span_of(over), 1000);
  REQUIRE(!decoded.has_value());
  CHECK(decoded.error().code == ErrorCode::frame_too_large);
  CHECK(decoded.error().message.find("1001") != std::string::npos);
}

TEST_CASE("frame: reader rejects an oversize header before the payload arrives") {
  // Only the 12 header bytes are given: the error must come without waiting for (or allocating) 4 GiB.
  FrameReader reader(limits::pre_auth_max_payload);
  HeaderBytes h = header_of(1, 0xFFFFFFF0u);
  auto got = feed(reader, std::string(h.begin(), h.end()), 64);
  REQUIRE(!got.has_value());
  CHECK(got.error().code == ErrorCode::frame_too_large);

  FrameReader big(limits::absolute_max_payload);
  HeaderBytes h2 = header_of(16, 0xFFFFFFFFu);
  auto got2 = feed(big, std::string(h2.begin(), h2.end()), 64);
  REQUIRE(!got2.has_value());
  CHECK(got2.error().code == ErrorCode::frame_too_large);
}

TEST_CASE("frame: reader rejects bad magic from a stream") {
  FrameReader reader(1024);
  auto got = feed(reader, "GET / HTTP/1.1\r\n\r\n", 64);
  REQUIRE(!got.has_value());
  CHECK(got.error().code == ErrorCode::bad_magic);
}

TEST_CASE("frame: reader rejects a bad version from a stream") {
  FrameReader reader(1024);
  std::string bytes = frame_bytes(16, "{}");
  bytes[4] = 2;
  auto got = feed(reader, bytes, 64);
  REQUIRE(!got.has_value());
  CHECK(got.error().code == ErrorCode::bad_version);
}

TEST_CASE("frame: reader rejects unknown flags from a stream") {
  FrameReader reader(1024);
  std::string bytes = frame_bytes(16, "{}");
  bytes[7] = static_cast<char>(0x80);
  auto got = feed(reader, bytes, 64);
  REQUIRE(!got.has_value());
  CHECK(got.error().code == ErrorCode::bad_flags);
}

TEST_CASE("frame: a payload exactly at the reader's limit is accepted") {
  FrameReader reader(limits::pre_auth_max_payload);
  std::string payload = pattern(limits::pre_auth_max_payload, 9);
  auto got = feed(reader, frame_bytes(1, payload), 4096);
  REQUIRE(got.has_value());
  REQUIRE(got->size() == 1);
  CHECK((*got)[0].payload == payload);
}

TEST_CASE("frame: round trip over a pipe") {
  auto pipe = make_pipe();
  REQUIRE(pipe.has_value());
  check_round_trip(pipe->read.get(), pipe->write.get());
}

TEST_CASE("frame: round trip over a socketpair") {
  SocketPair sp = make_socketpair();
  check_round_trip(sp.a.get(), sp.b.get());
}

TEST_CASE("frame: many small frames are coalesced") {
  FrameWriter writer;
  std::vector<std::string> payloads;
  for (int i = 0; i < 1000; ++i) {
    payloads.push_back("{\"id\":" + std::to_string(i) + "}");
    writer.push(header_of(17, static_cast<std::uint32_t>(payloads.back().size())), payloads.back(), {});
  }
  iovec iov[64];
  std::size_t entries = writer.gather(iov);
  // About 1000 * 22 bytes: one coalescing buffer holds them all, so one write sends every frame.
  CHECK(entries == 1);
  CHECK(writer.pending_bytes() == iov[0].iov_len);

  auto pipe = make_pipe();
  REQUIRE(pipe.has_value());
  std::optional<Result<void>> written;
  std::thread writer_thread([&] { written = write_out(pipe->write.get(), writer); });
  FrameReader reader(1024);
  auto frames = read_frames(pipe->read.get(), reader, payloads.size());
  writer_thread.join();
  REQUIRE(written->has_value());
  REQUIRE(frames.has_value());
  for (std::size_t i = 0; i < payloads.size(); ++i) CHECK((*frames)[i].payload == payloads[i]);
}

TEST_CASE("frame: frames pushed while a write is pending keep the stream in order") {
  FrameWriter writer;
  std::string expected;
  auto push = [&](std::uint8_t type, const std::string& payload) {
    HeaderBytes h = header_of(type, static_cast<std::uint32_t>(payload.size()));
    writer.push(h, payload, {});
    expected += std::string(h.begin(), h.end()) + payload;
  };
  std::string stream;
  auto take = [&](std::size_t max) {
    iovec iov[64];
    std::size_t n = writer.gather(iov);
    std::size_t taken = 0;
    for (std::size_t i = 0; i < n && taken < max; ++i) {
      std::size_t k = std::min(iov[i].iov_len, max - taken);
      stream.append(static_cast<const char*>(iov[i].iov_base), k);
      taken += k;
    }
    writer.consume(taken);
  };
  push(16, "first");
  take(3);
  push(17, pattern(limits::zero_copy_threshold * 2, 1));  // a zero-copy chunk
  push(18, "third");
  take(20);
  push(19, "fourth");
  while (!writer.empty()) take(1000);
  CHECK(stream == expected);
  CHECK(writer.pending_bytes() == 0);
}

TEST_CASE("frame: a 5 MiB payload round trips") {
  const std::string payload = pattern(5u << 20, 77);
  for (bool use_socket : {false, true}) {
    CAPTURE(use_socket);
    Fd rd, wr;
    if (use_socket) {
      SocketPair sp = make_socketpair();
      rd = std::move(sp.a);
      wr = std::move(sp.b);
    } else {
      auto pipe = make_pipe();
      REQUIRE(pipe.has_value());
      rd = std::move(pipe->read);
      wr = std::move(pipe->write);
    }
    std::optional<Result<void>> written;
    std::thread writer_thread([&] {
      FrameWriter writer;
      writer.push(header_of(16, 3), "pre", {});
      writer.push(header_of(17, static_cast<std::uint32_t>(payload.size())), payload, {});
      writer.push(header_of(18, 4), "post", {});
      written = write_out(wr.get(), writer);
    });
    FrameReader reader(limits::default_max_payload);
    auto frames = read_frames(rd.get(), reader, 3);
    writer_thread.join();
    REQUIRE(written->has_value());
    REQUIRE(frames.has_value());
    CHECK((*frames)[0].payload == "pre");
    CHECK((*frames)[1].payload.size() == payload.size());
    CHECK((*frames)[1].payload == payload);
    CHECK((*frames)[2].payload == "post");
  }
}

TEST_CASE("frame: a large tagged data frame keeps its tag") {
  const std::string payload = pattern(300'000, 5);
  const std::string tag = pattern(k_tag_size, 6);
  std::string bytes = frame_bytes(16, payload, tag) + frame_bytes(2, "{}") + frame_bytes(17, "x", tag);
  for (std::size_t step : {std::size_t{1} << 20, std::size_t{4096}}) {
    FrameReader reader(limits::default_max_payload);
    reader.expect_tags(true);
    auto frames = feed(reader, bytes, step);
    REQUIRE(frames.has_value());
    REQUIRE(frames->size() == 3);
    CHECK((*frames)[0].payload == payload);
    CHECK(std::memcmp((*frames)[0].tag.data(), tag.data(), k_tag_size) == 0);
    // Handshake types never carry a tag, even once tags are expected.
    CHECK((*frames)[1].payload == "{}");
    CHECK((*frames)[2].payload == "x");
    CHECK(std::memcmp((*frames)[2].tag.data(), tag.data(), k_tag_size) == 0);
  }
}

TEST_CASE("frame: reader given one byte per commit") {
  std::string bytes;
  std::vector<Sent> sent = sample_frames();
  for (const Sent& s : sent) bytes += frame_bytes(s.type, s.payload);
  FrameReader reader(limits::default_max_payload);
  auto frames = feed(reader, bytes, 1);
  REQUIRE(frames.has_value());
  REQUIRE(frames->size() == sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) CHECK((*frames)[i].payload == sent[i].payload);
  CHECK(!reader.mid_frame());
}

TEST_CASE("frame: a writer that sends one byte at a time") {
  SocketPair sp = make_socketpair();
  std::string bytes;
  for (int i = 0; i < 20; ++i) bytes += frame_bytes(static_cast<std::uint8_t>(16 + i % 4), pattern(static_cast<std::size_t>(i * 7), i));
  bool all_written = true;
  std::thread writer_thread([&] {
    for (char c : bytes) {
      if (!write_all(sp.b.get(), as_bytes(std::string_view(&c, 1)), soon())) all_written = false;
    }
  });
  FrameReader reader(1024);
  auto frames = read_frames(sp.a.get(), reader, 20);
  writer_thread.join();
  CHECK(all_written);
  REQUIRE(frames.has_value());
  for (int i = 0; i < 20; ++i) CHECK((*frames)[static_cast<std::size_t>(i)].payload == pattern(static_cast<std::size_t>(i * 7), i));
}

TEST_CASE("frame: clean end of input between frames") {
  auto pipe = make_pipe();
  REQUIRE(pipe.has_value());
  std::string bytes = frame_bytes(16, "one") + frame_bytes(17, "two");
  REQUIRE(write_all(pipe->write.get(), as_bytes(bytes), soon()));
  pipe->write.close();
  FrameReader reader(1024);
  auto two = read_frames(pipe->read.get(), reader, 2);
  REQUIRE(two.has_value());
  CHECK(!reader.mid_frame());
  auto more = read_frames(pipe->read.get(), reader, 1);
  REQUIRE(!more.has_value());
  CHECK(more.error().code == ErrorCode::eof);
}

TEST_CASE("frame: truncated frame at end of input") {
  std::string whole = frame_bytes(16, pattern(100, 1));
  // Cut inside the header, just after it, and inside the payload.
  for (std::size_t cut : {std::size_t{1}, std::size_t{11}, std::size_t{12}, std::size_t{50}, whole.size() - 1}) {
    CAPTURE(cut);
    auto pipe = make_pipe();
    REQUIRE(pipe.has_value());
    REQUIRE(write_all(pipe->write.get(), as_bytes(std::string_view(whole).substr(0, cut)), soon()));
    pipe->write.close();
    FrameReader reader(1024);
    auto got = read_frames(pipe->read.get(), reader, 1);
    REQUIRE(!got.has_value());
    CHECK(got.error().code == ErrorCode::truncated);
    CHECK(reader.mid_frame());
  }
}

TEST_CASE("frame: truncated large frame at end of input") {
  std::string whole = frame_bytes(16, pattern(200'000, 1));
  FrameReader reader(limits::default_max_payload);
  auto got = feed(reader, whole.substr(0, 150'000), 8192);
  REQUIRE(got.has_value());
  CHECK(got->empty());
  CHECK(reader.mid_frame());
}

TEST_CASE("frame: Connection end_of_input tells a truncated frame from a clean end") {
  RunKey key = RunKey::generate();
  {
    Connection c(key, HandshakeConfig{Role::parent});
    Error e = c.end_of_input();
    CHECK(e.code == ErrorCode::eof);
    CHECK(e.message.find("handshake") != std::string::npos);
  }
  {
    Connection c(key, HandshakeConfig{Role::parent});
    std::string partial = frame_bytes(1, "{\"role\":").substr(0, 15);
    auto space = c.read_space();
    std::memcpy(space.data(), partial.data(), partial.size());
    c.commit(partial.size());
    auto got = c.receive();
    REQUIRE(got.has_value());
    CHECK(!got->has_value());
    CHECK(c.end_of_input().code == ErrorCode::truncated);
  }
  {
    Connection c(key, HandshakeConfig{Role::parent});
    auto space = c.read_space();
    space[0] = 'A';
    c.commit(1);
    auto got = c.receive();
    REQUIRE(got.has_value());
    CHECK(c.end_of_input().code == ErrorCode::truncated);
  }
}

TEST_CASE("frame reader: a frame announced at 256 MiB costs what has arrived, not what was announced") {
  const std::uint32_t announced = 256u << 20;
  FrameReader reader(announced);
  const auto h = encode_header(FrameHeader{static_cast<std::uint8_t>(MessageType::hello), 0, announced});
  std::string start(reinterpret_cast<const char*>(h.data()), h.size());
  start += std::string(10, 'x');
  auto space = reader.read_space();
  std::memcpy(space.data(), start.data(), start.size());
  reader.commit(start.size());
  auto none = reader.next();
  REQUIRE(none.has_value());
  CHECK(!none->has_value());
  CHECK(reader.mid_frame());
  // The storage offered for the rest is one read buffer at most, not 256 MiB.
  CHECK(reader.read_space().size() <= limits::read_buffer_size);
}

TEST_CASE("frame reader: a large frame fed in small pieces grows to its full size and arrives intact") {
  const std::size_t length = 3 * limits::read_buffer_size + 12345;
  std::string payload(length, '\0');
  for (std::size_t i = 0; i < length; ++i) payload[i] = static_cast<char>(i * 31 + 7);
  const auto h = encode_header(FrameHeader{static_cast<std::uint8_t>(MessageType::hello), 0, static_cast<std::uint32_t>(length)});
  std::string stream(reinterpret_cast<const char*>(h.data()), h.size());
  stream += payload;
  FrameReader reader(static_cast<std::uint32_t>(length));
  std::optional<Frame> got;
  std::size_t at = 0;
  while (at < stream.size() && !got) {
    auto space = reader.read_space();
    REQUIRE(!space.empty());
    const std::size_t n = std::min<std::size_t>({space.size(), stream.size() - at, 1000});
    std::memcpy(space.data(), stream.data() + at, n);
    reader.commit(n);
    at += n;
    auto frame = reader.next();
    REQUIRE(frame.has_value());
    if (*frame) got = std::move(**frame);
  }
  REQUIRE(got.has_value());
  CHECK(at == stream.size());
  CHECK(got->payload == payload);
}
