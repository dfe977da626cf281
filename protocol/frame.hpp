// The frame layout shared by reader and writer. See protocol/PROTOCOL.md, "Frames".
// Header (12 bytes, little-endian): magic "ARUN" (4), version (1), type (1), flags (2), payload length (4);
// then the payload; then, once the handshake has set up a channel mode, a 16-byte tag.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "protocol/result.hpp"

namespace authrun::protocol {

inline constexpr std::array<std::uint8_t, 4> k_frame_magic = {'A', 'R', 'U', 'N'};
inline constexpr std::uint8_t k_frame_version = 1;
inline constexpr std::size_t k_header_size = 4 + 1 + 1 + 2 + 4;
inline constexpr std::size_t k_tag_size = 16;
// Flags of frame version 1 (data frames only; handshake frames have none). See PROTOCOL.md, "Flags".
// Bits 0-1: body format (0 JSON text, 1 CBOR, 2 MessagePack; 3 is rejected).
inline constexpr std::uint16_t k_flag_format_mask = 0x3;
// Bit 2: the payload is a u32 LE body length, the body, then raw attachment bytes.
inline constexpr std::uint16_t k_flag_attachment = 0x4;
inline constexpr std::uint16_t k_known_flags = k_flag_format_mask | k_flag_attachment;

// Types below this are handshake messages and never carry a tag; data types carry one once keyed.
inline constexpr std::uint8_t k_first_data_type = 16;

using HeaderBytes = std::array<std::uint8_t, k_header_size>;

// A decoded frame header.
struct FrameHeader {
  std::uint8_t type = 0;
  std::uint16_t flags = 0;
  std::uint32_t length = 0;  // payload bytes, not counting the tag
};

// A received frame. `tag` is meaningful only when the reader was told to expect tags.
struct Frame {
  FrameHeader header;
  HeaderBytes header_bytes{};  // exactly as received (the MAC covers them)
  std::string payload;
  std::array<std::uint8_t, k_tag_size> tag{};
};

// Encodes a header.
HeaderBytes encode_header(const FrameHeader& header);

// Decodes and checks a header: magic, version, flags, and length <= max_payload, so that nothing is
// allocated for a frame that is too large. Errors: bad_magic, bad_version, bad_flags, frame_too_large.
Result<FrameHeader> decode_header(std::span<const std::uint8_t, k_header_size> bytes, std::uint32_t max_payload);

// Little-endian helpers used by the codec and the handshake transcript.
void store_le32(std::uint8_t* p, std::uint32_t v);
void store_le64(std::uint8_t* p, std::uint64_t v);
std::uint32_t load_le32(const std::uint8_t* p);

}  // namespace authrun::protocol
