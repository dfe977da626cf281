// Helpers shared by the protocol tests that drive two Connections by hand.
#include "tests/helpers/connection_pair.hpp"

#include <algorithm>
#include <cstring>

#include <sys/uio.h>

namespace authrun::test {

using namespace protocol;

HandshakeConfig parent_config(std::vector<ChannelMode> modes) {
  return HandshakeConfig{Role::parent, std::move(modes), limits::default_max_payload};
}

HandshakeConfig worker_config(std::vector<ChannelMode> modes, std::uint32_t max_payload) {
  return HandshakeConfig{Role::worker, std::move(modes), max_payload};
}

std::string drain(Connection& c) {
  std::string out;
  FrameWriter& w = c.output();
  while (!w.empty()) {
    iovec iov[64];
    std::size_t n = w.gather(iov);
    std::size_t total = 0;
    for (std::size_t i = 0; i < n; ++i) {
      out.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
      total += iov[i].iov_len;
    }
    w.consume(total);
  }
  return out;
}

Peer::Peer(const RunKey& key, HandshakeConfig config, Ephemeral e) : conn(key, std::move(config), std::move(e)) {}

void Peer::feed(const std::string& bytes) {
  std::size_t pos = 0;
  while (!error) {
    auto got = conn.receive();
    if (!got) {
      error = got.error();
      return;
    }
    if (*got) {
      messages.push_back(std::move(**got));
      continue;
    }
    if (pos == bytes.size()) return;
    auto space = conn.read_space();
    std::size_t n = std::min(space.size(), bytes.size() - pos);
    std::memcpy(space.data(), bytes.data() + pos, n);
    conn.commit(n);
    pos += n;
  }
}

std::pair<std::string, std::string> pump(Peer& parent, Peer& worker, const Tamper& tamper) {
  std::string p2w, w2p;
  for (int round = 0; round < 100; ++round) {
    std::string a = drain(parent.conn);
    std::string b = drain(worker.conn);
    if (a.empty() && b.empty()) break;
    if (tamper) {
      tamper(true, p2w.size(), a);
      tamper(false, w2p.size(), b);
    }
    p2w += a;
    w2p += b;
    worker.feed(a);
    parent.feed(b);
  }
  return {p2w, w2p};
}

}  // namespace authrun::test
