// Per-direction protection of data frames after the handshake. See protocol/PROTOCOL.md, "Frame protection".
// authenticated: tag = Poly1305(otk, header || payload), otk = first 32 bytes of ChaCha20(key, nonce).
// encrypted:     ChaCha20-Poly1305-IETF AEAD, payload encrypted in place, header as additional data.
// The 12-byte nonce is the direction's frame sequence number (LE64) and four zero bytes; each direction
// has its own key, so no nonce repeats under a key. The sequence number is implicit: a dropped, replayed
// or reordered frame is verified against the wrong number and fails.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "protocol/frame.hpp"
#include "protocol/message.hpp"
#include "protocol/result.hpp"

namespace authrun::protocol {

using Tag = std::array<std::uint8_t, k_tag_size>;

class FrameProtector {
 public:
  // `key` is this direction's session key; it is copied and wiped on destruction.
  FrameProtector(ChannelMode mode, const Bytes32& key);
  FrameProtector(FrameProtector&& other) noexcept;
  FrameProtector& operator=(FrameProtector&&) = delete;
  FrameProtector(const FrameProtector&) = delete;
  FrameProtector& operator=(const FrameProtector&) = delete;
  ~FrameProtector();

  // Size of the tag that follows each data frame (0 in insecure_measurement mode).
  std::size_t tag_size() const { return m_mode == ChannelMode::insecure_measurement ? 0 : k_tag_size; }

  // Protects the next outgoing frame: returns its tag (encrypting `payload` in place in encrypted mode).
  Tag seal(const HeaderBytes& header, std::string& payload);
  // The same for a payload in two parts (a body and an attachment), without joining them. Not in encrypted
  // mode (the AEAD needs the payload in one piece).
  Tag seal_parts(const HeaderBytes& header, std::string_view first, std::string_view second);
  // Checks the next incoming frame (decrypting `payload` in place in encrypted mode).
  // Errors: bad_mac (names the sequence number).
  Result<void> open(const HeaderBytes& header, std::string& payload, const Tag& tag);

  ChannelMode mode() const { return m_mode; }

 private:
  ChannelMode m_mode;
  Bytes32 m_key;
  std::uint64_t m_seq = 0;
};

}  // namespace authrun::protocol
