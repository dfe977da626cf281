// `authrun bench` through real launchers: ssh to a private OpenSSH server on 127.0.0.1 and srun on a one-node
// Slurm (tests/fixtures/, started by CTest). The launcher section must be there with every echo verified;
// the timings are never checked.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "protocol/json_codec.hpp"
#include "tests/helpers/fixture_env.hpp"
#include "tests/helpers/test_util.hpp"

using namespace authrun;
using authrun::protocol::json;

namespace {

// Runs `authrun bench --quick` (one small row, then the launcher section) with `options`, behind `prefix`
// (e.g. /usr/bin/env VAR=value), and returns the JSON report's launcher section. REQUIREs success.
json launcher_section(const std::vector<std::string>& prefix, const std::vector<std::string>& options) {
  test::TempDir dir;
  const std::string json_path = dir.path() + "/bench.json";
  std::vector<std::string> argv = prefix;
  for (const char* word : {test::authrun_bin(), "bench", "--quick", "--sizes", "8", "--codecs", "raw", "--modes", "authenticated"}) {
    argv.push_back(word);
  }
  argv.insert(argv.end(), options.begin(), options.end());
  argv.insert(argv.end(), {"--json", json_path});
  auto r = test::run_program(argv, "", std::chrono::seconds(240));
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(test::contains(r.out, "Launcher: "));
  auto parsed = protocol::parse_json(test::read_file(json_path));
  REQUIRE(parsed.has_value());
  REQUIRE(parsed->contains("launcher"));
  return (*parsed)["launcher"];
}

// Two local paths, then the launched worker through `via`; every path measured, every echo verified.
void check_paths(const json& section, const std::string& via) {
  INFO(section.dump(1));
  REQUIRE(section["paths"].size() == 3);
  CHECK(section["paths"][0]["via"] == "local");
  CHECK(section["paths"][1]["via"] == "local");
  CHECK(section["paths"][2]["via"] == via);
  CHECK(section["paths"][2]["mode"] == "encrypted");
  for (const json& path : section["paths"]) {
    CHECK(path["start"]["p50_us"].get<double>() > 0);
    CHECK(path["tiny_rtt"]["p50_us"].get<double>() > 0);
    CHECK(path["tiny_tasks"]["tasks_per_s"].get<double>() > 0);
    REQUIRE(path["echo"].size() == 2);
    for (const json& echo : path["echo"]) {
      CHECK(echo["ok"] == true);
      CHECK(echo["mb_s"].get<double>() > 0);
    }
  }
  CHECK(section["launched_vs_local"].size() == 2);
}

}  // namespace

TEST_CASE("bench: through ssh (-S HOST --launcher 'ssh ... {host}'), next to the local pipe, every echo verified") {
  auto env = test::load_fixture("sshd");
  AUTHRUN_REQUIRE_FIXTURE(env);
  const json section =
      launcher_section({}, {"-S", env.at("HOST"), "--launcher", "ssh " + env.at("SSH_OPTS") + " -T {host}"});
  check_paths(section, "ssh");
  CHECK(section["key_delivery"] == "stdin");
  CHECK(section["paths"][2]["host"] == env.at("HOST"));
}

TEST_CASE("bench: through srun (--slurm --key-file K), next to the local pipe, every echo verified") {
  auto env = test::load_fixture("slurm");
  AUTHRUN_REQUIRE_FIXTURE(env);
  test::TempDir dir;
  const std::string key = test::new_key_file(dir);
  // srun finds the private cluster through SLURM_CONF in its environment.
  const json section = launcher_section({"/usr/bin/env", "SLURM_CONF=" + env.at("SLURM_CONF")}, {"--slurm", "--key-file", key});
  check_paths(section, "srun");
  CHECK(section["key_delivery"] == "key file");
  // srun picks the node: the worker names it.
  CHECK(section["paths"][2]["host"] == env.at("NODE"));
}
