// Per-host failure counts and the decisions on them.
#include "runner/engine/host_health.hpp"

#include <algorithm>

namespace authrun::runner {

HostHealth::HostHealth(std::size_t hosts, int give_up_after) : m_hosts(hosts), m_give_up_after(give_up_after) {}

HostHealth::Verdict HostHealth::failed(std::size_t host, bool host_has_trusted) {
  Host& h = m_hosts.at(host);
  ++h.failures_in_row;
  if (h.set_aside) return Verdict::stays_empty;
  ++m_failures_since_progress;
  const bool others = std::any_of(m_hosts.begin(), m_hosts.end(), [&](const Host& o) { return &o != &h && !o.set_aside; });
  if (h.failures_in_row >= k_set_aside_after && others && !host_has_trusted) {
    h.set_aside = true;
    m_failures_since_progress = std::max(0, m_failures_since_progress - h.failures_in_row);
    return Verdict::set_aside;
  }
  return m_failures_since_progress >= m_give_up_after ? Verdict::give_up : Verdict::replace;
}

void HostHealth::succeeded(std::size_t host) {
  m_hosts.at(host).failures_in_row = 0;
  m_failures_since_progress = 0;
}

}  // namespace authrun::runner
