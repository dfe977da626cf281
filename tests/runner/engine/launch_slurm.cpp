// Workers as Slurm job steps through a real one-node Slurm on 127.0.0.1 (tests/fixtures/slurm-fixture,
// started by CTest): a batch over --slurm, a cancelled step, the refusal to send a key through srun, and
// steps inside an allocation.
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>
#include <thread>

#include "protocol/json_codec.hpp"
#include "tests/helpers/fixture_env.hpp"
#include "tests/helpers/test_util.hpp"

using namespace authrun;
using authrun::protocol::json;
using test::contains;
using test::parse_results;
using test::run_batch;
using test::summary_of;
using test::sleep_tasks;

namespace {

// The fixture's Slurm for srun, squeue and scancel (and for the runner, which inherits the environment).
void use_slurm(const test::FixtureEnv& env) { ::setenv("SLURM_CONF", env.at("SLURM_CONF").c_str(), 1); }

// Job ids of this fixture's running jobs named authrun-worker.
std::vector<std::string> worker_jobs() {
  auto q = test::run_program({"/usr/bin/squeue", "-h", "-t", "R", "-n", "authrun-worker", "-o", "%i"});
  REQUIRE(q.exit_code == 0);
  return test::split_lines(q.out);
}

}  // namespace

TEST_CASE("slurm: a batch over --slurm completes with every result exactly once, on the node Slurm chose") {
  auto env = test::load_fixture("slurm");
  AUTHRUN_REQUIRE_FIXTURE(env);
  use_slurm(env);
  test::TempDir dir;
  const std::string key = test::new_key_file(dir);
  const std::string audit = dir.path() + "/audit.jsonl";
  auto r = run_batch({"-j", "3", "--slurm", "--key-file", key, "--audit-log", audit, "-"}, sleep_tasks(15, 0.1));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto results = parse_results(r.out);
  test::check_each_ok_once(results, 15);
  // srun picks the node; the worker says which.
  for (const json& res : results) CHECK(res["host"] == env.at("NODE"));
  // srun's stdio is not encrypted: the channel is.
  CHECK(contains(test::read_file(audit), R"("mode":"encrypted")"));
  CHECK(!contains(test::read_file(audit), R"("mode":"authenticated")"));
}

TEST_CASE("slurm: a fresh key is refused through srun, whose stdio is not encrypted") {
  auto r = run_batch({"--slurm", "-"}, sleep_tasks(1, 0));
  CHECK(r.exit_code == 2);
  CHECK(contains(r.err, "refusing to send a fresh key to workers through 'srun'"));
  CHECK(contains(r.err, "in the clear"));
}

TEST_CASE("slurm: scancel of a worker's job mid-task retries the task on another worker") {
  auto env = test::load_fixture("slurm");
  AUTHRUN_REQUIRE_FIXTURE(env);
  use_slurm(env);
  test::TempDir dir;
  const std::string key = test::new_key_file(dir);
  const std::string marker = "9.3303";
  test::RunOutput r;
  std::thread run([&] {
    r = run_batch({"-j", "2", "--window", "1", "--slurm", "--key-file", key, "--remote-worker", test::marked_worker(marker), "-"},
                  sleep_tasks(4, 3, true));
  });
  // Both workers are running a task (their sleep children run); then one's job is cancelled.
  CHECK(test::eventually([&] { return test::busy_workers(marker).size() == 2; }));
  const std::vector<std::string> jobs = worker_jobs();
  REQUIRE(!jobs.empty());
  CHECK(test::run_program({"/usr/bin/scancel", jobs[0]}).exit_code == 0);
  run.join();
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(test::check_each_ok_once(parse_results(r.out), 4) == 1);
  CHECK(contains(r.err, "(via srun) lost: "));
  CHECK(contains(summary_of(r.err), "1 worker death;"));
}

TEST_CASE("slurm: inside an allocation the workers are its steps, as many as it has tasks") {
  auto env = test::load_fixture("slurm");
  AUTHRUN_REQUIRE_FIXTURE(env);
  use_slurm(env);
  test::TempDir dir;
  const std::string key = test::new_key_file(dir);
  auto r = test::run_program({"/usr/bin/salloc", "--quiet", "-n", "2", "--job-name=authrun-alloc", test::authrun_bin(), "run",
                              "--no-progress", "--slurm", "--key-file", key, "-v", "-"},
                             sleep_tasks(6, 0.2));
  INFO(r.err);
  CHECK(r.exit_code == 0);
  test::check_each_ok_once(parse_results(r.out), 6);
  // -j defaults to the allocation's task count (SLURM_NTASKS).
  CHECK(test::count(r.err, "handshake ok (encrypted") == 2);
}
