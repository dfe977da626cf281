// HostHealth: when a host is set aside, when the run gives up, and what a result resets.
#include <doctest/doctest.h>

#include "runner/engine/host_health.hpp"

using authrun::runner::HostHealth;
using authrun::runner::k_set_aside_after;
using Verdict = HostHealth::Verdict;

TEST_CASE("host health: a host whose workers keep failing is set aside when others remain, and stops counting") {
  HostHealth health(2, 4);
  CHECK(health.failed(1, false) == Verdict::replace);
  CHECK(health.failed(1, false) == Verdict::replace);
  CHECK(health.failed(1, false) == Verdict::set_aside);
  CHECK(health.set_aside(1));
  CHECK(!health.set_aside(0));
  // Its run of failures no longer speaks against the run; its stragglers' failures do not either.
  CHECK(health.failures_since_progress() == 0);
  CHECK(health.failed(1, false) == Verdict::stays_empty);
  CHECK(health.failures_since_progress() == 0);
  // The good host's own failures count from zero: one timeout-free death does not give up the run.
  CHECK(health.failed(0, false) == Verdict::replace);
}

TEST_CASE("host health: the last host is never set aside, the run gives up instead") {
  HostHealth health(1, 3);
  CHECK(health.failed(0, false) == Verdict::replace);
  CHECK(health.failed(0, false) == Verdict::replace);
  CHECK(health.failed(0, false) == Verdict::give_up);
  CHECK(!health.set_aside(0));
}

TEST_CASE("host health: a host where some worker works is not set aside") {
  HostHealth health(2, 100);
  for (int i = 0; i < 2 * k_set_aside_after; ++i) CHECK(health.failed(0, true) == Verdict::replace);
  CHECK(!health.set_aside(0));
  CHECK(health.failed(0, false) == Verdict::set_aside);
}

TEST_CASE("host health: a result resets the host's run and the run's") {
  HostHealth health(2, 4);
  CHECK(health.failed(0, false) == Verdict::replace);
  CHECK(health.failed(0, false) == Verdict::replace);
  health.succeeded(0);
  CHECK(health.failures_in_row(0) == 0);
  CHECK(health.failures_since_progress() == 0);
  CHECK(health.failed(0, false) == Verdict::replace);
  CHECK(health.failed(0, false) == Verdict::replace);
  CHECK(!health.set_aside(0));
  // Failures spread over hosts still end the run once there are enough of them in a row.
  CHECK(health.failed(1, true) == Verdict::replace);
  CHECK(health.failed(1, true) == Verdict::give_up);
}
