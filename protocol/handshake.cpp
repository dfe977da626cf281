// The mutual handshake state machine.
#include "protocol/handshake.hpp"

#include <algorithm>
#include <cstring>

#include <sodium.h>

#include "protocol/json_codec.hpp"
#include "protocol/peer_text.hpp"

namespace authrun::protocol {

namespace {

constexpr char k_label_parent_proof[] = "authrun v1 parent proof";
constexpr char k_label_worker_proof[] = "authrun v1 worker proof";
constexpr char k_label_p2w[] = "authrun v1 parent->worker";
constexpr char k_label_w2p[] = "authrun v1 worker->parent";

// HMAC-SHA-512-256 of the run key over label || transcript hash.
Bytes32 proof_mac(const RunKey& key, const char* label, const Bytes32& th) {
  std::string msg(label);
  msg.append(reinterpret_cast<const char*>(th.data()), th.size());
  Bytes32 mac{};
  ::crypto_auth(mac.data(), reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), key.data());
  return mac;
}

// BLAKE2b-256 keyed with the run key over label || kx session key || transcript hash.
Bytes32 derive_key(const RunKey& key, const char* label, const std::uint8_t* kx_key, const Bytes32& th) {
  crypto_generichash_state st;
  ::crypto_generichash_init(&st, key.data(), key.size(), 32);
  ::crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(label), std::strlen(label));
  ::crypto_generichash_update(&st, kx_key, crypto_kx_SESSIONKEYBYTES);
  ::crypto_generichash_update(&st, th.data(), th.size());
  Bytes32 out{};
  ::crypto_generichash_final(&st, out.data(), out.size());
  ::sodium_memzero(&st, sizeof st);
  return out;
}

void hash_frame(crypto_generichash_state& st, const HeaderBytes& header, std::string_view payload) {
  ::crypto_generichash_update(&st, header.data(), header.size());
  ::crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(payload.data()), payload.size());
}

}  // namespace

Ephemeral Ephemeral::random() {
  sodium_ready();
  Ephemeral e;
  ::randombytes_buf(e.nonce.data(), e.nonce.size());
  ::crypto_kx_keypair(e.public_key.data(), e.secret_key.data());
  return e;
}

Ephemeral Ephemeral::from_seed(const Bytes32& nonce, const Bytes32& seed) {
  sodium_ready();
  Ephemeral e;
  e.nonce = nonce;
  ::crypto_kx_seed_keypair(e.public_key.data(), e.secret_key.data(), seed.data());
  return e;
}

Ephemeral::~Ephemeral() { ::sodium_memzero(secret_key.data(), secret_key.size()); }

OutFrame make_frame(const Message& message) {
  OutFrame f;
  f.payload = encode_body(message);
  f.header = encode_header(FrameHeader{static_cast<std::uint8_t>(type_of(message)), 0,
                                       static_cast<std::uint32_t>(f.payload.size())});
  return f;
}

OutFrame outcome_for(const Error& error) {
  std::string message = error.message.substr(0, 200);
  OutFrame out = make_frame(Outcome{false, to_string(error.code), message});
  // The message may quote the peer's bytes, and escaping (\u0001) or replacing invalid UTF-8 (U+FFFD) can
  // make 200 bytes several times longer: shorten until the frame fits the peer's pre-auth limit.
  while (out.payload.size() > limits::pre_auth_max_payload) {
    message.resize(message.size() / 2);
    out = make_frame(Outcome{false, to_string(error.code), message});
  }
  return out;
}

Handshake::Handshake(const RunKey& key, HandshakeConfig config, Ephemeral ephemeral)
    : m_key(key), m_config(std::move(config)), m_ephemeral(std::move(ephemeral)) {
  sodium_ready();
  Hello h;
  h.role = m_config.role;
  h.versions = {k_protocol_version};
  h.nonce = m_ephemeral.nonce;
  h.ephemeral_public_key = m_ephemeral.public_key;
  h.modes = m_config.modes;
  h.max_payload = m_config.max_payload;
  m_hello = make_frame(h);
}

Result<std::optional<OutFrame>> Handshake::on_frame(const Frame& frame) {
  auto fail = [this](Error e) -> Result<std::optional<OutFrame>> {
    m_state = State::failed;
    return e;
  };
  if (m_state == State::done || m_state == State::failed) {
    return fail(make_error(ErrorCode::unexpected, "handshake frame after the handshake ended"));
  }
  auto decoded = decode_message(frame.header.type, frame.payload);
  if (!decoded) return fail(with_context(std::move(decoded).error(), "handshake"));
  const Message& msg = *decoded;
  if (auto* outcome = std::get_if<Outcome>(&msg)) {
    return fail(make_error(ErrorCode::peer_refused, "peer refused the handshake: " + escape_peer_text(outcome->reason) + ": " +
                                                               escape_peer_text(outcome->message)));
  }
  const bool want_hello = m_state == State::wait_hello;
  const auto expected = want_hello ? MessageType::hello : MessageType::proof;
  if (type_of(msg) != expected) {
    return fail(make_error(ErrorCode::unexpected, std::string("expected ") + to_string(expected) + ", got " +
                                                      to_string(type_of(msg)) + " (no message is accepted before the handshake)"));
  }
  if (want_hello) {
    auto step = on_hello(frame, std::get<Hello>(msg));
    if (!step) m_state = State::failed;
    return step;
  }
  if (::crypto_verify_32(std::get<Proof>(msg).mac.data(), m_expected_peer_mac.data()) != 0) {
    return fail(make_error(ErrorCode::auth_failed,
                           "peer's proof does not verify: it does not hold this run key, or the handshake was replayed, "
                           "reflected or altered"));
  }
  m_state = State::done;
  return std::optional<OutFrame>{};
}

Result<std::optional<OutFrame>> Handshake::on_hello(const Frame& frame, const Hello& peer) {
  const Role my_role = m_config.role;
  if (peer.role == my_role) {
    return make_error(ErrorCode::auth_failed, std::string("peer's hello claims role ") + to_string(peer.role) +
                                                  ", the same as this side (a reflected hello?)");
  }
  if (::sodium_memcmp(peer.nonce.data(), m_ephemeral.nonce.data(), 32) == 0 ||
      ::sodium_memcmp(peer.ephemeral_public_key.data(), m_ephemeral.public_key.data(), 32) == 0) {
    return make_error(ErrorCode::auth_failed, "peer's hello repeats this side's nonce or key (a reflected hello)");
  }
  if (std::find(peer.versions.begin(), peer.versions.end(), k_protocol_version) == peer.versions.end()) {
    return make_error(ErrorCode::bad_version, "no common protocol version: this side speaks " +
                                                  std::to_string(k_protocol_version) + ", the peer speaks " +
                                                  dump_json(json(peer.versions)));
  }
  const std::vector<ChannelMode>& parent_modes = my_role == Role::parent ? m_config.modes : peer.modes;
  const std::vector<ChannelMode>& worker_modes = my_role == Role::worker ? m_config.modes : peer.modes;
  auto agreed = std::find_first_of(parent_modes.begin(), parent_modes.end(), worker_modes.begin(), worker_modes.end());
  if (agreed == parent_modes.end()) {
    std::string asked;
    for (ChannelMode m : parent_modes) asked += std::string(asked.empty() ? "" : ", ") + to_string(m);
    return make_error(ErrorCode::mode_refused, "no channel mode both sides accept (parent asked for " + asked + ")");
  }

  // Transcript hash: BLAKE2b-256 over the parent's hello frame then the worker's, bytes as sent.
  crypto_generichash_state st;
  ::crypto_generichash_init(&st, nullptr, 0, 32);
  std::string_view peer_payload(frame.payload);
  if (my_role == Role::parent) {
    hash_frame(st, m_hello.header, m_hello.payload);
    hash_frame(st, frame.header_bytes, peer_payload);
  } else {
    hash_frame(st, frame.header_bytes, peer_payload);
    hash_frame(st, m_hello.header, m_hello.payload);
  }
  Bytes32 th{};
  ::crypto_generichash_final(&st, th.data(), th.size());

  // Ephemeral X25519 exchange: the parent is libsodium's kx "client", the worker its "server".
  std::uint8_t rx[crypto_kx_SESSIONKEYBYTES], tx[crypto_kx_SESSIONKEYBYTES];
  int kx = my_role == Role::parent
               ? ::crypto_kx_client_session_keys(rx, tx, m_ephemeral.public_key.data(), m_ephemeral.secret_key.data(),
                                                 peer.ephemeral_public_key.data())
               : ::crypto_kx_server_session_keys(rx, tx, m_ephemeral.public_key.data(), m_ephemeral.secret_key.data(),
                                                 peer.ephemeral_public_key.data());
  ::sodium_memzero(m_ephemeral.secret_key.data(), m_ephemeral.secret_key.size());
  if (kx != 0) return make_error(ErrorCode::auth_failed, "peer's ephemeral public key is invalid");
  const std::uint8_t* kx_p2w = my_role == Role::parent ? tx : rx;
  const std::uint8_t* kx_w2p = my_role == Role::parent ? rx : tx;
  Bytes32 p2w = derive_key(m_key, k_label_p2w, kx_p2w, th);
  Bytes32 w2p = derive_key(m_key, k_label_w2p, kx_w2p, th);
  ::sodium_memzero(rx, sizeof rx);
  ::sodium_memzero(tx, sizeof tx);

  const bool parent = my_role == Role::parent;
  m_session.emplace(Session{k_protocol_version, *agreed, peer.max_payload, FrameProtector(*agreed, parent ? p2w : w2p),
                            FrameProtector(*agreed, parent ? w2p : p2w), th});
  ::sodium_memzero(p2w.data(), p2w.size());
  ::sodium_memzero(w2p.data(), w2p.size());

  m_expected_peer_mac = proof_mac(m_key, parent ? k_label_worker_proof : k_label_parent_proof, th);
  m_state = State::wait_proof;
  return std::optional<OutFrame>{make_frame(Proof{proof_mac(m_key, parent ? k_label_parent_proof : k_label_worker_proof, th)})};
}

Session Handshake::take_session() {
  Session s = std::move(*m_session);
  m_session.reset();
  return s;
}

}  // namespace authrun::protocol
