// Which hosts still deserve workers, and whether the run should go on at all: workers that fail (their
// handshake, or by dying) are counted per host and in a row for the run, and results reset the counts.
#pragma once

#include <cstddef>
#include <vector>

namespace authrun::runner {

// Workers in a row that fail on one host before it is set aside (when other hosts remain).
inline constexpr int k_set_aside_after = 3;

class HostHealth {
 public:
  // What to do about the slot of a worker that failed.
  enum class Verdict {
    replace,     // start another worker in its place
    set_aside,   // its host has just been set aside: the slot stays empty, the run goes on elsewhere
    stays_empty, // its host was set aside already
    give_up,     // too many workers in a row failed across the run
  };

  // `hosts` hosts; the run gives up after `give_up_after` failures in a row that no result interrupted.
  HostHealth(std::size_t hosts, int give_up_after);

  // A worker on `host` failed its handshake or died (a task's timeout is not the worker's failure).
  // `host_has_trusted` says whether another worker on that host works: a host where some worker works is
  // not at fault as a whole (sshd refuses some of many simultaneous logins, for one), so it is not set aside.
  // A host set aside no longer counts against the run.
  Verdict failed(std::size_t host, bool host_has_trusted);
  // A worker on `host` ended through no fault of its own (its task overran its time limit): its slot is
  // replaced unless the host was set aside.
  Verdict not_its_fault(std::size_t host) const { return set_aside(host) ? Verdict::stays_empty : Verdict::replace; }
  // A worker on `host` returned a result: progress.
  void succeeded(std::size_t host);

  bool set_aside(std::size_t host) const { return m_hosts.at(host).set_aside; }
  int failures_in_row(std::size_t host) const { return m_hosts.at(host).failures_in_row; }
  int failures_since_progress() const { return m_failures_since_progress; }

 private:
  struct Host {
    int failures_in_row = 0;
    bool set_aside = false;
  };
  std::vector<Host> m_hosts;
  int m_give_up_after;
  int m_failures_since_progress = 0;
};

}  // namespace authrun::runner
