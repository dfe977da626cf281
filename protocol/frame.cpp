// Frame header codec (pure, no I/O).
#include "protocol/frame.hpp"

#include <cstdio>

namespace authrun::protocol {

void store_le32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

void store_le64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

std::uint32_t load_le32(const std::uint8_t* p) {
  return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 | std::uint32_t(p[3]) << 24;
}

HeaderBytes encode_header(const FrameHeader& header) {
  HeaderBytes b{};
  for (std::size_t i = 0; i < k_frame_magic.size(); ++i) b[i] = k_frame_magic[i];
  b[4] = k_frame_version;
  b[5] = header.type;
  b[6] = static_cast<std::uint8_t>(header.flags);
  b[7] = static_cast<std::uint8_t>(header.flags >> 8);
  store_le32(&b[8], header.length);
  return b;
}

Result<FrameHeader> decode_header(std::span<const std::uint8_t, k_header_size> b, std::uint32_t max_payload) {
  for (std::size_t i = 0; i < k_frame_magic.size(); ++i) {
    if (b[i] != k_frame_magic[i]) {
      char shown[64];
      std::snprintf(shown, sizeof shown, "%02x %02x %02x %02x", b[0], b[1], b[2], b[3]);
      return make_error(ErrorCode::bad_magic,
                        std::string("not an authrun frame: header starts with bytes ") + shown + " (expected \"ARUN\")");
    }
  }
  if (b[4] != k_frame_version) {
    return make_error(ErrorCode::bad_version, "frame version " + std::to_string(b[4]) + " is not supported (this peer speaks " +
                                                  std::to_string(k_frame_version) + ")");
  }
  FrameHeader h;
  h.type = b[5];
  h.flags = static_cast<std::uint16_t>(b[6] | b[7] << 8);
  h.length = load_le32(&b[8]);
  if ((h.flags & ~k_known_flags) != 0 || (h.flags & k_flag_format_mask) == k_flag_format_mask ||
      (h.flags != 0 && h.type < k_first_data_type)) {
    char shown[8];
    std::snprintf(shown, sizeof shown, "%04x", h.flags);
    return make_error(ErrorCode::bad_flags, std::string("frame of type ") + std::to_string(h.type) +
                                                " sets flags 0x" + shown + " that this version does not define");
  }
  if (h.length > max_payload) {
    return make_error(ErrorCode::frame_too_large, "frame announces " + std::to_string(h.length) +
                                                      " payload bytes, limit is " + std::to_string(max_payload));
  }
  return h;
}

}  // namespace authrun::protocol
