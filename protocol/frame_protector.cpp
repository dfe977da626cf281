// Per-direction frame protection.
#include "protocol/frame_protector.hpp"

#include <cassert>

#include <sodium.h>

namespace authrun::protocol {

namespace {

using Nonce = std::array<std::uint8_t, crypto_aead_chacha20poly1305_IETF_NPUBBYTES>;

Nonce nonce_for(std::uint64_t seq) {
  Nonce n{};
  store_le64(n.data(), seq);
  return n;
}

Tag poly1305_tag(const Bytes32& key, const Nonce& nonce, const HeaderBytes& header, std::string_view payload,
                 std::string_view more = {}) {
  std::uint8_t otk[crypto_onetimeauth_KEYBYTES];
  ::crypto_stream_chacha20_ietf(otk, sizeof otk, nonce.data(), key.data());
  crypto_onetimeauth_state st;
  ::crypto_onetimeauth_init(&st, otk);
  ::crypto_onetimeauth_update(&st, header.data(), header.size());
  ::crypto_onetimeauth_update(&st, reinterpret_cast<const unsigned char*>(payload.data()), payload.size());
  ::crypto_onetimeauth_update(&st, reinterpret_cast<const unsigned char*>(more.data()), more.size());
  Tag tag{};
  ::crypto_onetimeauth_final(&st, tag.data());
  ::sodium_memzero(otk, sizeof otk);
  ::sodium_memzero(&st, sizeof st);
  return tag;
}

}  // namespace

FrameProtector::FrameProtector(ChannelMode mode, const Bytes32& key) : m_mode(mode), m_key(key) {}

FrameProtector::FrameProtector(FrameProtector&& other) noexcept
    : m_mode(other.m_mode), m_key(other.m_key), m_seq(other.m_seq) {
  ::sodium_memzero(other.m_key.data(), other.m_key.size());
}

FrameProtector::~FrameProtector() { ::sodium_memzero(m_key.data(), m_key.size()); }

Tag FrameProtector::seal(const HeaderBytes& header, std::string& payload) {
  Nonce nonce = nonce_for(m_seq++);
  Tag tag{};
  switch (m_mode) {
    case ChannelMode::authenticated:
      tag = poly1305_tag(m_key, nonce, header, payload);
      break;
    case ChannelMode::encrypted: {
      auto* p = reinterpret_cast<unsigned char*>(payload.data());
      ::crypto_aead_chacha20poly1305_ietf_encrypt_detached(p, tag.data(), nullptr, p, payload.size(), header.data(),
                                                          header.size(), nullptr, nonce.data(), m_key.data());
      break;
    }
    case ChannelMode::insecure_measurement:
      break;
  }
  return tag;
}

Tag FrameProtector::seal_parts(const HeaderBytes& header, std::string_view first, std::string_view second) {
  assert(m_mode != ChannelMode::encrypted);
  Nonce nonce = nonce_for(m_seq++);
  if (m_mode == ChannelMode::insecure_measurement) return Tag{};
  return poly1305_tag(m_key, nonce, header, first, second);
}

Result<void> FrameProtector::open(const HeaderBytes& header, std::string& payload, const Tag& tag) {
  std::uint64_t seq = m_seq++;
  Nonce nonce = nonce_for(seq);
  bool ok = true;
  switch (m_mode) {
    case ChannelMode::authenticated: {
      Tag expected = poly1305_tag(m_key, nonce, header, payload);
      ok = ::crypto_verify_16(expected.data(), tag.data()) == 0;
      break;
    }
    case ChannelMode::encrypted: {
      auto* p = reinterpret_cast<unsigned char*>(payload.data());
      ok = ::crypto_aead_chacha20poly1305_ietf_decrypt_detached(p, nullptr, p, payload.size(), tag.data(), header.data(),
                                                               header.size(), nonce.data(), m_key.data()) == 0;
      break;
    }
    case ChannelMode::insecure_measurement:
      break;
  }
  if (!ok) {
    return make_error(ErrorCode::bad_mac, "frame " + std::to_string(seq) +
                                              " failed authentication (altered, injected, dropped, reordered or replayed)");
  }
  return {};
}

}  // namespace authrun::protocol
