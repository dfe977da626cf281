// Where workers run: on this machine (spawned directly, key on an inherited fd) or through a launcher
// command the site already trusts (ssh, srun) that carries the protocol over its stdin and stdout.
#pragma once

#include <string>
#include <vector>

#include "protocol/result.hpp"

namespace authrun::runner {

// A command that starts a worker elsewhere, as words with placeholders: {host}, {slot}, and {worker} (the
// worker command; appended at the end when the template does not place it).
struct Launcher {
  std::vector<std::string> words;
  // Its channel is encrypted end to end (ssh): a fresh key may be sent through it.
  bool encrypted = false;
  // The far side joins the worker's words into a shell command line (ssh): they are quoted for it.
  bool remote_shell = false;

  // "ssh", "srun": the program's name, for messages.
  std::string name() const;
};

// A group of worker slots: on this machine, or on one host through the launcher.
struct Site {
  std::string host;   // for {host}; "" when the launcher does not say (srun picks the node)
  bool local = true;  // spawned directly, not through the launcher
  int slots = 1;

  // The name results and logs give it: "local", the host, or the launcher's name until the worker says.
  std::string label(const Launcher& launcher) const;
};

// How a worker gets its run key.
enum class KeyDelivery {
  inherited_fd,  // a socket on its fd 3: a worker spawned here
  stdin_prefix,  // the first 32 bytes of its stdin, once it asks (only through an encrypted launcher)
  key_file,      // it reads the key file where it runs (a shared filesystem, or copied in advance)
};

// The launcher for `template_text` (words split as a shell would, without expansions): ssh is taken to be
// encrypted and a remote shell; anything else is neither unless `encrypted` says so. Errors: usage.
protocol::Result<Launcher> parse_launcher(const std::string& template_text, bool encrypted);

// The launcher --slurm uses: each worker a step of the current allocation (srun -u: unbuffered stdio, which
// a binary protocol needs; --exact: steps run side by side), or, outside one, a one-task job of its own.
Launcher slurm_launcher();

// The default launcher for -S hosts: ssh without a terminal, failing instead of prompting.
Launcher default_ssh_launcher();

// Parses -S/--sshlogin entries: "host", "user@host", "host:slots", ":" or ":slots" (this machine), several
// per argument separated by commas. `default_slots` for entries without a count. Errors: usage, naming
// the entry.
protocol::Result<std::vector<Site>> parse_sshlogins(const std::vector<std::string>& entries, int default_slots);

// Checks that workers can be given keys as configured: through a launcher not marked encrypted, only a key
// file will do (a fresh key would cross it in the clear). Returns how launched workers get their key.
// Errors: usage, saying why and what to do.
protocol::Result<KeyDelivery> choose_key_delivery(const Launcher& launcher, bool have_key_file);

// The argv that starts a worker in `slot` on `site` through `launcher`: the template with placeholders
// substituted and the worker command (`worker_argv` plus the key option for `delivery`) in place of
// {worker} or at the end, quoted for a remote shell when the launcher has one.
std::vector<std::string> launch_argv(const Launcher& launcher, const Site& site, int slot,
                                     const std::vector<std::string>& worker_argv, KeyDelivery delivery,
                                     const std::string& key_file);

// Quotes a string for sh (always single quotes): the words of the launcher's remote command line.
std::string shell_quote(const std::string& s);

// Splits a command given as one string into words: blanks separate, '...' and "..." quote (no escapes or
// expansions). Errors: usage (unclosed quote, empty).
protocol::Result<std::vector<std::string>> split_command(const std::string& command, const std::string& what);

// A likely cause for a launched worker that exited before its handshake, from its exit status ("" if none).
std::string launch_failure_hint(const Launcher& launcher, const Site& site, int wait_status);

}  // namespace authrun::runner
