// The mutual handshake, as a state machine with no I/O (the worker's blocking loop and the runner's event
// loop both drive it). See protocol/PROTOCOL.md, "Handshake". Both sides send a hello at once; on the
// peer's hello each sends a proof (MAC of the run key over its role and the transcript hash); each side
// verifies the other's proof. One round trip of wall time; the parent sends tasks only after verifying.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "protocol/frame.hpp"
#include "protocol/frame_protector.hpp"
#include "protocol/limits.hpp"
#include "protocol/message.hpp"
#include "protocol/result.hpp"
#include "protocol/run_key.hpp"

namespace authrun::protocol {

// The protocol versions this build speaks.
inline constexpr int k_protocol_version = 1;

// The fresh values one side contributes to one handshake. Wiped on destruction.
struct Ephemeral {
  Bytes32 nonce{};
  Bytes32 public_key{};
  Bytes32 secret_key{};

  // Fresh nonce (randombytes_buf) and X25519 key pair (crypto_kx_keypair).
  static Ephemeral random();
  // Deterministic values, for the test vectors in PROTOCOL.md only.
  static Ephemeral from_seed(const Bytes32& nonce, const Bytes32& seed);
  Ephemeral() = default;
  Ephemeral(const Ephemeral&) = default;
  Ephemeral& operator=(const Ephemeral&) = default;
  ~Ephemeral();
};

struct HandshakeConfig {
  Role role = Role::parent;
  // Parent: modes it asks for, in preference order. Worker: modes it accepts.
  std::vector<ChannelMode> modes = {ChannelMode::authenticated};
  // Largest data payload this side accepts; announced in its hello.
  std::uint32_t max_payload = limits::default_max_payload;
};

// What a completed handshake yields: the agreed terms and the two directions' frame protectors.
struct Session {
  int version;
  ChannelMode mode;
  std::uint32_t peer_max_payload;
  FrameProtector tx;
  FrameProtector rx;
  Bytes32 transcript_hash;
};

// A frame to send: header and payload.
struct OutFrame {
  HeaderBytes header;
  std::string payload;
};

// Builds a frame for a message (no tag).
OutFrame make_frame(const Message& message);

class Handshake {
 public:
  // `key` must outlive the Handshake.
  Handshake(const RunKey& key, HandshakeConfig config, Ephemeral ephemeral = Ephemeral::random());

  // This side's hello: send it at once.
  const OutFrame& hello() const { return m_hello; }

  // Feeds one received frame. After the peer's hello returns this side's proof to send; after the peer's
  // proof returns nullopt and done() becomes true. Errors: peer_refused (the peer sent a failure outcome),
  // unexpected (wrong message for this step), malformed, bad_version / mode_refused (no common version or
  // mode), auth_failed (reflected hello, bad ephemeral key, or a proof that does not verify). After an
  // error the caller sends outcome_for(error) unless the error is peer_refused, then closes.
  Result<std::optional<OutFrame>> on_frame(const Frame& frame);

  // True once the peer's proof has been verified.
  bool done() const { return m_state == State::done; }
  // The session, once done(); can be taken once.
  Session take_session();

 private:
  enum class State { wait_hello, wait_proof, done, failed };
  Result<std::optional<OutFrame>> on_hello(const Frame& frame, const Hello& peer);

  const RunKey& m_key;
  HandshakeConfig m_config;
  Ephemeral m_ephemeral;
  OutFrame m_hello;
  State m_state = State::wait_hello;
  Bytes32 m_expected_peer_mac{};
  std::optional<Session> m_session;
};

// The outcome frame that tells the peer why this side is closing.
OutFrame outcome_for(const Error& error);

}  // namespace authrun::protocol
