// The settings of a running test fixture (a private sshd or Slurm started by tests/fixtures/*-fixture,
// which writes KEY=VALUE lines to <fixture dir>/env).
#pragma once

#include <map>
#include <string>

namespace authrun::test {

struct FixtureEnv {
  std::string status;  // ready, unavailable (packages could not be installed: skip), failed, or missing
  std::string reason;  // why, when not ready
  std::map<std::string, std::string> values;

  bool ready() const { return status == "ready"; }
  // The value of `key`; REQUIREs that it is there.
  const std::string& at(const std::string& key) const;
};

// Reads AUTHRUN_FIXTURE_DIR/<name>/env ("sshd", "slurm").
FixtureEnv load_fixture(const std::string& name);

}  // namespace authrun::test

// Skips the rest of a test case, loudly, when the fixture is unavailable (CTest reports the test as
// skipped: the launch tests' SKIP_REGULAR_EXPRESSION matches the message); fails it when the fixture
// failed to start or was not started at all.
#define AUTHRUN_REQUIRE_FIXTURE(env)                                                                        \
  do {                                                                                                    \
    if ((env).status == "unavailable") {                                                                  \
      std::fprintf(stderr, "AUTHRUN-SKIPPED: %s\n", (env).reason.c_str());                               \
      return;                                                                                             \
    }                                                                                                     \
    INFO("fixture: ", (env).status, ": ", (env).reason);                                                  \
    REQUIRE((env).ready());                                                                               \
  } while (0)
