// Per-direction frame protection.
#include "protocol/frame_protector.hpp"

#include <algorithm>
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

static_assert(sizeof(crypto_onetimeauth_state) <= 256 && alignof(crypto_onetimeauth_state) <= 16);

crypto_onetimeauth_state* state_of(std::array<std::uint8_t, 256>& bytes) {
  return reinterpret_cast<crypto_onetimeauth_state*>(bytes.data());
}

// Starts the one-time Poly1305 of RFC 8439: its key is the first 32 bytes of ChaCha20 block 0, in both modes.
void mac_init(crypto_onetimeauth_state* st, const Bytes32& key, const Nonce& nonce) {
  std::uint8_t otk[crypto_onetimeauth_KEYBYTES];
  ::crypto_stream_chacha20_ietf(otk, sizeof otk, nonce.data(), key.data());
  ::crypto_onetimeauth_init(st, otk);
  ::sodium_memzero(otk, sizeof otk);
}

void mac_update(crypto_onetimeauth_state* st, const void* p, std::size_t n) {
  ::crypto_onetimeauth_update(st, static_cast<const unsigned char*>(p), n);
}

// The AEAD's MAC input starts with the additional data (the header) padded to 16 bytes.
void aead_mac_start(crypto_onetimeauth_state* st, const HeaderBytes& header) {
  static constexpr std::uint8_t zeros[16] = {};
  mac_update(st, header.data(), header.size());
  mac_update(st, zeros, (16 - header.size() % 16) % 16);
}

// ... and ends with the ciphertext padded to 16 bytes and both lengths (RFC 8439 section 2.8).
Tag aead_mac_finish(crypto_onetimeauth_state* st, std::uint64_t ciphertext_length) {
  static constexpr std::uint8_t zeros[16] = {};
  mac_update(st, zeros, (16 - ciphertext_length % 16) % 16);
  std::uint8_t lengths[16];
  store_le64(lengths, k_header_size);
  store_le64(lengths + 8, ciphertext_length);
  mac_update(st, lengths, sizeof lengths);
  Tag tag{};
  ::crypto_onetimeauth_final(st, tag.data());
  return tag;
}

// XORs `n` bytes at `p` with the AEAD's keystream from byte `pos` of the payload on (ChaCha20 from block
// counter 1): a piece may start anywhere, so a piece that starts inside a block takes that block's rest first.
void xor_keystream(std::uint8_t* p, std::size_t n, std::uint64_t pos, const Nonce& nonce, const Bytes32& key) {
  if (n == 0) return;
  if (const std::size_t inside = pos % 64; inside != 0) {
    std::uint8_t block[64] = {};
    ::crypto_stream_chacha20_ietf_xor_ic(block, block, sizeof block, nonce.data(), static_cast<std::uint32_t>(1 + pos / 64),
                                         key.data());
    const std::size_t k = std::min<std::size_t>(n, 64 - inside);
    for (std::size_t i = 0; i < k; ++i) p[i] ^= block[inside + i];
    ::sodium_memzero(block, sizeof block);
    p += k;
    n -= k;
    pos += k;
  }
  if (n > 0) {
    ::crypto_stream_chacha20_ietf_xor_ic(p, p, n, nonce.data(), static_cast<std::uint32_t>(1 + pos / 64), key.data());
  }
}

Tag poly1305_tag(const Bytes32& key, const Nonce& nonce, const HeaderBytes& header, std::span<const std::uint8_t> payload,
                 std::span<const std::uint8_t> more = {}) {
  crypto_onetimeauth_state st;
  mac_init(&st, key, nonce);
  mac_update(&st, header.data(), header.size());
  mac_update(&st, payload.data(), payload.size());
  mac_update(&st, more.data(), more.size());
  Tag tag{};
  ::crypto_onetimeauth_final(&st, tag.data());
  ::sodium_memzero(&st, sizeof st);
  return tag;
}

std::span<std::uint8_t> bytes_of(std::string& s) { return {reinterpret_cast<std::uint8_t*>(s.data()), s.size()}; }

}  // namespace

FrameProtector::FrameProtector(ChannelMode mode, const Bytes32& key) : m_mode(mode), m_key(key) {}

FrameProtector::FrameProtector(FrameProtector&& other) noexcept
    : m_mode(other.m_mode), m_key(other.m_key), m_seq(other.m_seq), m_opening(other.m_opening) {
  ::sodium_memzero(other.m_key.data(), other.m_key.size());
  if (other.m_opening) ::sodium_memzero(other.m_opening->mac_state.data(), other.m_opening->mac_state.size());
}

FrameProtector::~FrameProtector() {
  ::sodium_memzero(m_key.data(), m_key.size());
  if (m_opening) ::sodium_memzero(m_opening->mac_state.data(), m_opening->mac_state.size());
}

Tag FrameProtector::seal(const HeaderBytes& header, std::string& payload) {
  Nonce nonce = nonce_for(m_seq++);
  Tag tag{};
  switch (m_mode) {
    case ChannelMode::authenticated:
      tag = poly1305_tag(m_key, nonce, header, bytes_of(payload));
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

Tag FrameProtector::seal_parts(const HeaderBytes& header, std::span<std::uint8_t> first, std::span<std::uint8_t> second) {
  FrameSeal seal = begin_seal(header);
  seal.update(first);
  seal.update(second);
  return seal.finish();
}

FrameSeal FrameProtector::begin_seal(const HeaderBytes& header) { return FrameSeal(m_mode, m_key, m_seq++, header); }

FrameSeal::FrameSeal(ChannelMode mode, const Bytes32& key, std::uint64_t seq, const HeaderBytes& header)
    : m_mode(mode), m_key(key) {
  const Nonce nonce = nonce_for(seq);
  std::copy(nonce.begin(), nonce.end(), m_nonce.begin());
  if (m_mode == ChannelMode::insecure_measurement) return;
  crypto_onetimeauth_state* st = state_of(m_mac_state);
  mac_init(st, m_key, nonce);
  if (m_mode == ChannelMode::encrypted) {
    aead_mac_start(st, header);
  } else {
    mac_update(st, header.data(), header.size());
  }
}

FrameSeal::FrameSeal(FrameSeal&& other) noexcept
    : m_mode(other.m_mode), m_key(other.m_key), m_nonce(other.m_nonce), m_length(other.m_length), m_mac_state(other.m_mac_state) {
  other.wipe();
}

FrameSeal& FrameSeal::operator=(FrameSeal&& other) noexcept {
  if (this != &other) {
    m_mode = other.m_mode;
    m_key = other.m_key;
    m_nonce = other.m_nonce;
    m_length = other.m_length;
    m_mac_state = other.m_mac_state;
    other.wipe();
  }
  return *this;
}

FrameSeal::~FrameSeal() { wipe(); }

void FrameSeal::wipe() {
  ::sodium_memzero(m_key.data(), m_key.size());
  ::sodium_memzero(m_mac_state.data(), m_mac_state.size());
}

void FrameSeal::update(std::span<std::uint8_t> piece) {
  if (m_mode == ChannelMode::encrypted) {
    // The AEAD of seal(), composed from its parts: the keystream runs on across pieces, the MAC covers
    // the ciphertext.
    xor_keystream(piece.data(), piece.size(), m_length, m_nonce, m_key);
  }
  if (m_mode != ChannelMode::insecure_measurement) mac_update(state_of(m_mac_state), piece.data(), piece.size());
  m_length += piece.size();
}

Tag FrameSeal::finish() {
  Tag tag{};
  crypto_onetimeauth_state* st = state_of(m_mac_state);
  if (m_mode == ChannelMode::encrypted) {
    tag = aead_mac_finish(st, m_length);
  } else if (m_mode == ChannelMode::authenticated) {
    ::crypto_onetimeauth_final(st, tag.data());
  }
  wipe();
  return tag;
}

void FrameProtector::begin_open(const HeaderBytes& header) {
  assert(!m_opening);
  Opening& o = m_opening.emplace(Opening{});  // (not emplace(): clang cannot default-construct a nested class with member initializers there)
  o.seq = m_seq++;
  o.nonce = nonce_for(o.seq);
  if (m_mode == ChannelMode::insecure_measurement) return;
  crypto_onetimeauth_state* st = state_of(o.mac_state);
  mac_init(st, m_key, o.nonce);
  if (m_mode == ChannelMode::encrypted) {
    aead_mac_start(st, header);
  } else {
    mac_update(st, header.data(), header.size());
  }
}

void FrameProtector::update_open(std::span<std::uint8_t> piece) {
  assert(m_opening);
  Opening& o = *m_opening;
  if (m_mode != ChannelMode::insecure_measurement) {
    mac_update(state_of(o.mac_state), piece.data(), piece.size());
    if (m_mode == ChannelMode::encrypted) xor_keystream(piece.data(), piece.size(), o.length, o.nonce, m_key);
  }
  o.length += piece.size();
}

Result<void> FrameProtector::finish_open(const Tag& tag) {
  assert(m_opening);
  Opening o = *std::exchange(m_opening, std::nullopt);
  bool ok = true;
  crypto_onetimeauth_state* st = state_of(o.mac_state);
  if (m_mode == ChannelMode::encrypted) {
    Tag expected = aead_mac_finish(st, o.length);
    ok = ::crypto_verify_16(expected.data(), tag.data()) == 0;
  } else if (m_mode == ChannelMode::authenticated) {
    Tag expected{};
    ::crypto_onetimeauth_final(st, expected.data());
    ok = ::crypto_verify_16(expected.data(), tag.data()) == 0;
  }
  ::sodium_memzero(o.mac_state.data(), o.mac_state.size());
  if (!ok) {
    return make_error(ErrorCode::bad_mac, "frame " + std::to_string(o.seq) +
                                              " failed authentication (altered, injected, dropped, reordered or replayed)");
  }
  return {};
}

Result<void> FrameProtector::open(const HeaderBytes& header, std::string& payload, const Tag& tag) {
  std::uint64_t seq = m_seq++;
  Nonce nonce = nonce_for(seq);
  bool ok = true;
  switch (m_mode) {
    case ChannelMode::authenticated: {
      Tag expected = poly1305_tag(m_key, nonce, header, bytes_of(payload));
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
