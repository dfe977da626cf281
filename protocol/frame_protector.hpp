// Per-direction protection of data frames after the handshake. See protocol/PROTOCOL.md, "Frame protection".
// authenticated: tag = Poly1305(otk, header || payload), otk = first 32 bytes of ChaCha20(key, nonce).
// encrypted:     ChaCha20-Poly1305-IETF AEAD, payload encrypted in place, header as additional data.
// The 12-byte nonce is the direction's frame sequence number (LE64) and four zero bytes; each direction
// has its own key, so no nonce repeats under a key. The sequence number is implicit: a dropped, replayed
// or reordered frame is verified against the wrong number and fails.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "protocol/frame.hpp"
#include "protocol/message.hpp"
#include "protocol/result.hpp"

namespace authrun::protocol {

using Tag = std::array<std::uint8_t, k_tag_size>;

// The sealing of one outgoing frame done piece by piece, so that a large payload can be sealed as it is
// written (the tag follows the payload on the wire): update() MACs (and in encrypted mode first encrypts in
// place) the next piece of the payload, finish() gives the tag that FrameProtector::seal() gives for the
// whole. Made by FrameProtector::begin_seal(), which takes the frame's sequence number; independent of the
// protector afterwards (it holds its own copy of the key, wiped on destruction), so several may be pending.
class FrameSeal {
 public:
  FrameSeal(FrameSeal&& other) noexcept;
  FrameSeal& operator=(FrameSeal&& other) noexcept;
  FrameSeal(const FrameSeal&) = delete;
  FrameSeal& operator=(const FrameSeal&) = delete;
  ~FrameSeal();

  // Seals the next `piece` of the payload in place (encrypted mode: encrypts it; it must not change after).
  void update(std::span<std::uint8_t> piece);
  // The tag, once every piece has been given to update(). Call once.
  Tag finish();
  // Payload bytes sealed so far.
  std::uint64_t length() const { return m_length; }

 private:
  friend class FrameProtector;
  FrameSeal(ChannelMode mode, const Bytes32& key, std::uint64_t seq, const HeaderBytes& header);
  void wipe();

  ChannelMode m_mode;
  Bytes32 m_key;
  std::array<std::uint8_t, 12> m_nonce{};
  std::uint64_t m_length = 0;
  alignas(16) std::array<std::uint8_t, 256> m_mac_state{};  // a crypto_onetimeauth_state (kept opaque here)
};

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
  // The same for a payload in two parts (a body and an attachment), without joining them: the wire carries
  // `first` then `second`, and the tag is the one seal() gives for their concatenation. In encrypted mode
  // both parts are encrypted in place (the keystream runs on across the boundary), so neither is copied.
  Tag seal_parts(const HeaderBytes& header, std::span<std::uint8_t> first, std::span<std::uint8_t> second);
  // Starts sealing the next outgoing frame piece by piece (see FrameSeal); takes its sequence number now,
  // so frames sealed after this one, whole or in pieces, get later numbers whenever this one finishes.
  FrameSeal begin_seal(const HeaderBytes& header);
  // Checks the next incoming frame (decrypting `payload` in place in encrypted mode).
  // Errors: bad_mac (names the sequence number).
  Result<void> open(const HeaderBytes& header, std::string& payload, const Tag& tag);

  // The same check for a payload that arrives in pieces (a large frame), done as the pieces arrive, while
  // they are still in the cache: begin_open() takes the next sequence number, update_open() MACs (and in
  // encrypted mode then decrypts in place) the next `piece` of the payload, finish_open() compares the
  // tag. The decrypted bytes must not be used unless finish_open() succeeds. open() must not be called
  // between begin_open() and finish_open(). Errors: bad_mac, as open().
  void begin_open(const HeaderBytes& header);
  void update_open(std::span<std::uint8_t> piece);
  Result<void> finish_open(const Tag& tag);
  bool opening() const { return m_opening.has_value(); }

  ChannelMode mode() const { return m_mode; }

 private:
  // The running MAC (and keystream position) of a frame being opened in pieces.
  struct Opening {
    std::array<std::uint8_t, 12> nonce{};
    std::uint64_t seq = 0;
    std::uint64_t length = 0;  // payload bytes seen so far
    alignas(16) std::array<std::uint8_t, 256> mac_state{};  // a crypto_onetimeauth_state (kept opaque here)
  };

  ChannelMode m_mode;
  Bytes32 m_key;
  std::uint64_t m_seq = 0;
  std::optional<Opening> m_opening;
};

}  // namespace authrun::protocol
