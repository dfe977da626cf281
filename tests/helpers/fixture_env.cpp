// Reading a fixture's env file.
#include "tests/helpers/fixture_env.hpp"

#include <fstream>

#include <doctest/doctest.h>

namespace authrun::test {

const std::string& FixtureEnv::at(const std::string& key) const {
  auto it = values.find(key);
  INFO("fixture env has no ", key);
  REQUIRE(it != values.end());
  return it->second;
}

FixtureEnv load_fixture(const std::string& name) {
  FixtureEnv env;
  const std::string path = std::string(AUTHRUN_FIXTURE_DIR) + "/" + name + "/env";
  std::ifstream in(path);
  if (!in) {
    env.status = "missing";
    env.reason = path + " does not exist: the fixture was not started (run the test through ctest)";
    return env;
  }
  for (std::string line; std::getline(in, line);) {
    auto eq = line.find('=');
    if (eq != std::string::npos) env.values[line.substr(0, eq)] = line.substr(eq + 1);
  }
  env.status = env.values.count("STATUS") ? env.values["STATUS"] : "missing";
  env.reason = env.values.count("REASON") ? env.values["REASON"] : "";
  return env;
}

}  // namespace authrun::test
