// libFuzzer target: FrameReader fed arbitrary bytes in arbitrary chunk sizes, checked against a one-pass
// reference decoder built on decode_header (the same frames, then the same error or end state).
// Input: [flags][limit selector][chunk seed] then the byte stream. Flags: bit 0 tags from the start, bit 1
// tags after the first frame, bit 2 raise the limit after the first frame, bits 3-4 chunk sizes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_util.hpp"
#include "protocol/frame.hpp"
#include "protocol/frame_reader.hpp"
#include "protocol/limits.hpp"

using namespace authrun::protocol;


namespace {

constexpr std::uint32_t k_limits[] = {0, 1, 16, limits::pre_auth_max_payload, limits::read_buffer_size / 2 - k_header_size,
                                      limits::read_buffer_size, 1u << 20, 4u << 20};
constexpr std::uint32_t k_raised_limit = 4u << 20;

using authrun::fuzz::Chunker;

struct Config {
  bool tags_at_start;
  bool tags_after_first;
  bool raise_after_first;
  std::uint32_t max_payload;
};

struct Expected {
  std::vector<Frame> frames;
  std::optional<ErrorCode> error;
  bool mid_frame = false;
};

// Decodes the whole stream at once: what the reader must produce however the bytes are split.
Expected reference(std::span<const std::uint8_t> s, const Config& c) {
  Expected e;
  std::size_t pos = 0;
  bool tags = c.tags_at_start;
  std::uint32_t max = c.max_payload;
  while (s.size() - pos >= k_header_size) {
    auto h = decode_header(std::span<const std::uint8_t, k_header_size>(s.data() + pos, k_header_size), max);
    if (!h) {
      e.error = h.error().code;
      return e;
    }
    const std::size_t tag = tags && h->type >= k_first_data_type ? k_tag_size : 0;
    if (s.size() - pos - k_header_size < h->length + tag) {
      e.mid_frame = true;
      return e;
    }
    Frame f;
    f.header = *h;
    std::memcpy(f.header_bytes.data(), s.data() + pos, k_header_size);
    f.payload.assign(reinterpret_cast<const char*>(s.data() + pos + k_header_size), h->length);
    if (tag != 0) std::memcpy(f.tag.data(), s.data() + pos + k_header_size + h->length, k_tag_size);
    pos += k_header_size + h->length + tag;
    e.frames.push_back(std::move(f));
    if (e.frames.size() == 1) {
      if (c.tags_after_first) tags = true;
      if (c.raise_after_first) max = k_raised_limit;
    }
  }
  // A partial header whose first bytes cannot start a frame fails at once (FrameReader does not wait for
  // the rest of the header).
  for (std::size_t i = 0; pos + i < s.size() && i < k_frame_magic.size(); ++i) {
    if (s[pos + i] != k_frame_magic[i]) {
      e.error = ErrorCode::bad_magic;
      return e;
    }
  }
  e.mid_frame = pos < s.size();
  return e;
}

void check_same(const Frame& got, const Frame& want) {
  AUTHRUN_FUZZ_CHECK(got.header.type == want.header.type);
  AUTHRUN_FUZZ_CHECK(got.header.flags == want.header.flags);
  AUTHRUN_FUZZ_CHECK(got.header.length == want.header.length);
  AUTHRUN_FUZZ_CHECK(got.header_bytes == want.header_bytes);
  AUTHRUN_FUZZ_CHECK(got.payload.size() == got.header.length);
  AUTHRUN_FUZZ_CHECK(got.payload == want.payload);
  AUTHRUN_FUZZ_CHECK(got.tag == want.tag);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const Config config{(data[0] & 1) != 0, (data[0] & 2) != 0, (data[0] & 4) != 0,
                      k_limits[data[1] % (sizeof k_limits / sizeof k_limits[0])]};
  Chunker chunker(static_cast<std::uint8_t>(data[0] >> 3), data[2]);
  const std::span<const std::uint8_t> stream(data + 3, size - 3);
  const Expected expected = reference(stream, config);

  FrameReader reader(config.max_payload);
  reader.expect_tags(config.tags_at_start);
  std::size_t fed = 0;
  std::size_t got = 0;
  std::optional<ErrorCode> error;
  while (fed < stream.size() && !error) {
    std::span<std::uint8_t> space = reader.read_space();
    AUTHRUN_FUZZ_CHECK(!space.empty());
    const std::size_t n = chunker.next(std::min(space.size(), stream.size() - fed));
    std::memcpy(space.data(), stream.data() + fed, n);
    reader.commit(n);
    fed += n;
    for (;;) {
      auto next = reader.next();
      if (!next) {
        error = next.error().code;
        break;
      }
      if (!*next) break;
      AUTHRUN_FUZZ_CHECK(got < expected.frames.size());
      check_same(**next, expected.frames[got]);
      if (++got == 1) {
        if (config.tags_after_first) reader.expect_tags(true);
        if (config.raise_after_first) reader.set_max_payload(k_raised_limit);
      }
    }
  }
  AUTHRUN_FUZZ_CHECK(got == expected.frames.size());
  AUTHRUN_FUZZ_CHECK(error == expected.error);
  if (!error) AUTHRUN_FUZZ_CHECK(reader.mid_frame() == expected.mid_frame);
  return 0;
}
