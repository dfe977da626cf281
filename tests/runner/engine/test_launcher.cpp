// Launcher templates, -S host lists, the key policy and the argv of a launched worker.
#include <doctest/doctest.h>

#include <csignal>

#include <sys/wait.h>

#include "runner/engine/launcher.hpp"

using namespace authrun::runner;
using Words = std::vector<std::string>;

namespace {

int exited(int code) { return code << 8; }  // a wait status for "exited with `code`"

}  // namespace

TEST_CASE("launcher: -S takes IPv6 addresses in brackets") {
  auto sites = parse_sshlogins({"[::1]:2,alice@[fe80::1%eth0]"}, 3);
  REQUIRE(sites);
  REQUIRE(sites->size() == 2);
  CHECK((*sites)[0].host == "::1");
  CHECK((*sites)[0].slots == 2);
  CHECK((*sites)[1].host == "alice@fe80::1%eth0");
  CHECK((*sites)[1].slots == 3);
}

TEST_CASE("launcher: -S entries give hosts, slots and this machine") {
  auto sites = parse_sshlogins({"node1,alice@node2:3", ":", ":2"}, 4);
  REQUIRE(sites);
  REQUIRE(sites->size() == 4);
  CHECK((*sites)[0].host == "node1");
  CHECK(!(*sites)[0].local);
  CHECK((*sites)[0].slots == 4);
  CHECK((*sites)[1].host == "alice@node2");
  CHECK((*sites)[1].slots == 3);
  CHECK((*sites)[2].local);
  CHECK((*sites)[2].slots == 4);
  CHECK((*sites)[3].local);
  CHECK((*sites)[3].slots == 2);
  Launcher ssh = default_ssh_launcher();
  CHECK((*sites)[1].label(ssh) == "alice@node2");
  CHECK((*sites)[2].label(ssh) == "local");
}

TEST_CASE("launcher: bad -S entries are usage errors naming the entry") {
  for (const char* bad : {"node1:x", "node1:0", "node1:99999", "node1:", "a,,b", "-oProxyCommand=x", "host;rm", "::1", "h{slot}",
                          "u@", "@h", "a@b@c", "ho st", "host\nx", "h(1)"}) {
    CAPTURE(bad);
    auto sites = parse_sshlogins({bad}, 1);
    REQUIRE(!sites);
    CHECK(sites.error().code == authrun::protocol::ErrorCode::usage);
    CHECK(sites.error().message.find("-S") != std::string::npos);
  }
}

TEST_CASE("launcher: ssh is encrypted and a remote shell, srun and others are neither unless marked") {
  auto ssh = parse_launcher("/usr/bin/ssh -p 2222 -T {host}", false);
  REQUIRE(ssh);
  CHECK(ssh->encrypted);
  CHECK(ssh->remote_shell);
  CHECK(ssh->name() == "ssh");
  auto srun = parse_launcher("srun -u -N1 -n1", false);
  REQUIRE(srun);
  CHECK(!srun->encrypted);
  CHECK(!srun->remote_shell);
  auto marked = parse_launcher("my-tunnel {host}", true);
  REQUIRE(marked);
  CHECK(marked->encrypted);
  CHECK(!parse_launcher("ssh 'unclosed", false));
  CHECK(!parse_launcher("sh -c {worker}-x", false));
  CHECK(!parse_launcher("   ", false));
}

TEST_CASE("launcher: a fresh key never goes through a launcher not marked encrypted") {
  Launcher srun = slurm_launcher();
  auto refused = choose_key_delivery(srun, false);
  REQUIRE(!refused);
  CHECK(refused.error().code == authrun::protocol::ErrorCode::usage);
  CHECK(refused.error().message.find("in the clear") != std::string::npos);
  CHECK(refused.error().message.find("--key-file") != std::string::npos);
  CHECK(choose_key_delivery(srun, true).value() == KeyDelivery::key_file);
  CHECK(choose_key_delivery(default_ssh_launcher(), false).value() == KeyDelivery::stdin_prefix);
  CHECK(choose_key_delivery(default_ssh_launcher(), true).value() == KeyDelivery::key_file);
}

TEST_CASE("launcher: argv substitutes {host} and {slot}, quotes the worker for ssh's remote shell") {
  Launcher ssh = parse_launcher("ssh -p 2222 -T {host}", false).value();
  Site site{"alice@node2", false, 2};
  Words argv = launch_argv(ssh, site, 7, {"/opt/my dir/authrun-worker", "--max-payload", "2048"}, KeyDelivery::stdin_prefix, "");
  CHECK(argv == Words{"ssh", "-p", "2222", "-T", "alice@node2", "'/opt/my dir/authrun-worker'", "'--max-payload'", "'2048'",
                      "'--orphan-watch'", "'--key-stdin'"});
  Launcher srun = parse_launcher("srun -u --job-name=w{slot} {worker} --extra", false).value();
  argv = launch_argv(srun, Site{"", false, 1}, 3, {"/w", "-x"}, KeyDelivery::key_file, "/shared/it's.key");
  // argv, not a shell: nothing quoted; {worker} placed where the template says.
  CHECK(argv == Words{"srun", "-u", "--job-name=w3", "/w", "-x", "--orphan-watch", "--key-file", "/shared/it's.key", "--extra"});
}

TEST_CASE("launcher: exit statuses before the handshake name a likely cause") {
  Launcher ssh = default_ssh_launcher();
  Site site{"node1", false, 1};
  CHECK(launch_failure_hint(ssh, site, exited(127)).find("not found on node1") != std::string::npos);
  CHECK(launch_failure_hint(ssh, site, exited(126)).find("not executable") != std::string::npos);
  CHECK(launch_failure_hint(ssh, site, exited(255)).find("ssh could not connect") != std::string::npos);
  CHECK(launch_failure_hint(slurm_launcher(), Site{"", false, 1}, exited(127)).find("where srun ran it") != std::string::npos);
  CHECK(launch_failure_hint(ssh, site, exited(0)).empty());
  CHECK(launch_failure_hint(ssh, site, SIGKILL).empty());
}

TEST_CASE("launcher: shell_quote always single-quotes, a quote inside as '\\''") {
  CHECK(shell_quote("") == "''");
  CHECK(shell_quote("plain") == "'plain'");
  CHECK(shell_quote("it's") == "'it'\\''s'");
}
