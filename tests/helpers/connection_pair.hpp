// Helpers shared by the protocol tests that drive two Connections by hand: handshake configurations, a side
// that records what it received, and moving the queued bytes between the two sides.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "protocol/connection.hpp"
#include "protocol/handshake.hpp"
#include "protocol/limits.hpp"
#include "protocol/run_key.hpp"

namespace authrun::test {

// A parent's configuration: `modes` (authenticated only by default) and the default maximum payload.
protocol::HandshakeConfig parent_config(std::vector<protocol::ChannelMode> modes = {protocol::ChannelMode::authenticated});

// A worker's configuration: `modes` (encrypted, then authenticated, by default) and `max_payload`.
protocol::HandshakeConfig worker_config(
    std::vector<protocol::ChannelMode> modes = {protocol::ChannelMode::encrypted, protocol::ChannelMode::authenticated},
    std::uint32_t max_payload = protocol::limits::default_max_payload);

// Everything queued in `c`'s output, consumed (the caller now owns those bytes; nothing is sent anywhere).
std::string drain(protocol::Connection& c);

// One side driven by hand: its Connection, the messages it received and the first error it met.
struct Peer {
  protocol::Connection conn;
  std::vector<protocol::Message> messages;
  std::optional<protocol::Error> error;

  // A Connection with `key`, `config` and the ephemeral key pair `e` (a random one by default).
  Peer(const protocol::RunKey& key, protocol::HandshakeConfig config,
       protocol::Ephemeral e = protocol::Ephemeral::random());

  // Gives `bytes` to the connection, processing input as it goes; stops at the first error (kept in `error`).
  void feed(const std::string& bytes);
};

// Alters a chunk in flight: `p2w` says the direction, `offset` where the chunk starts in that direction's stream.
using Tamper = std::function<void(bool p2w, std::size_t offset, std::string& chunk)>;

// Moves bytes both ways (through `tamper`, if given) until neither side has anything to send, 100 rounds at
// most. Returns the two streams as delivered: parent to worker, worker to parent.
std::pair<std::string, std::string> pump(Peer& parent, Peer& worker, const Tamper& tamper = {});

}  // namespace authrun::test
