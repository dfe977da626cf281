// Launcher templates, -S host lists and the key policy for launched workers.
#include "runner/launcher.hpp"

#include <sys/wait.h>

#include "runner/exec_args.hpp"

namespace authrun::runner {

using namespace protocol;

namespace {

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (std::size_t pos = 0; (pos = text.find(from, pos)) != std::string::npos; pos += to.size()) {
    text.replace(pos, from.size(), to);
  }
  return text;
}

bool all_digits(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

}  // namespace

Result<std::vector<std::string>> split_command(const std::string& command, const std::string& what) {
  std::vector<std::string> words;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (char c : command) {
    if (quote) {
      if (c == quote) quote = 0;
      else cur += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
    } else if (c == ' ' || c == '\t') {
      if (in_word) words.push_back(std::move(cur));
      cur.clear();
      in_word = false;
    } else {
      cur += c;
      in_word = true;
    }
  }
  if (quote) return make_error(ErrorCode::usage, what + " has an unclosed quote: " + command);
  if (in_word) words.push_back(std::move(cur));
  if (words.empty()) return make_error(ErrorCode::usage, what + " is empty");
  return words;
}

std::string Launcher::name() const {
  if (words.empty()) return "launcher";
  const std::string& prog = words[0];
  return prog.substr(prog.rfind('/') + 1);
}

std::string Site::label(const Launcher& launcher) const {
  if (local) return "local";
  return host.empty() ? launcher.name() : host;
}

Result<Launcher> parse_launcher(const std::string& template_text, bool encrypted) {
  Launcher l;
  AUTHRUN_TRY_ASSIGN(l.words, split_command(template_text, "launcher"));
  const bool ssh = l.name() == "ssh";
  l.encrypted = encrypted || ssh;
  l.remote_shell = ssh;
  return l;
}

Launcher slurm_launcher() {
  Launcher l;
  l.words = {"srun", "--unbuffered", "--nodes=1", "--ntasks=1", "--exact", "--quiet", "--job-name=authrun-worker"};
  return l;
}

Launcher default_ssh_launcher() {
  Launcher l;
  l.words = {"ssh", "-T", "-o", "BatchMode=yes", "{host}"};
  l.encrypted = true;
  l.remote_shell = true;
  return l;
}

Result<std::vector<Site>> parse_sshlogins(const std::vector<std::string>& entries, int default_slots) {
  std::vector<Site> sites;
  for (const std::string& arg : entries) {
    std::size_t start = 0;
    for (;;) {
      std::size_t comma = arg.find(',', start);
      std::string entry = arg.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      Site site;
      site.slots = default_slots;
      std::string host = entry;
      if (std::size_t colon = entry.rfind(':'); colon != std::string::npos) {
        std::string count = entry.substr(colon + 1);
        host.resize(colon);
        if (!count.empty()) {
          if (!all_digits(count) || count.size() > 4 || std::stoi(count) < 1) {
            return make_error(ErrorCode::usage, "-S entry '" + entry + "': slots after ':' must be a number from 1 to 9999");
          }
          site.slots = std::stoi(count);
        }
        site.local = host.empty();  // ":" or ":N"
      } else {
        site.local = false;
      }
      if (!site.local) {
        if (host.empty()) return make_error(ErrorCode::usage, "-S: empty entry in '" + arg + "'");
        if (host.find_first_of(" \t'\"\\;&|<>$`") != std::string::npos || host[0] == '-') {
          return make_error(ErrorCode::usage, "-S entry '" + entry + "': not a host name");
        }
        site.host = std::move(host);
      }
      sites.push_back(std::move(site));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  return sites;
}

Result<KeyDelivery> choose_key_delivery(const Launcher& launcher, bool have_key_file) {
  if (have_key_file) return KeyDelivery::key_file;
  if (launcher.encrypted) return KeyDelivery::stdin_prefix;
  return make_error(ErrorCode::usage,
                    "refusing to send a fresh key to workers through '" + launcher.name() +
                        "': its channel is not marked encrypted, so the key would cross the network in the clear "
                        "(srun's stdio is not encrypted). Give --key-file FILE (made by 'authrun keygen', mode 0600, "
                        "readable at the same path where the workers run), or --launcher-encrypted if this "
                        "launcher's channel is encrypted end to end");
}

std::vector<std::string> launch_argv(const Launcher& launcher, const Site& site, int slot,
                                     const std::vector<std::string>& worker_argv, KeyDelivery delivery,
                                     const std::string& key_file) {
  std::vector<std::string> worker = worker_argv;
  worker.push_back("--orphan-watch");  // its parent process is the launcher's daemon: PDEATHSIG cannot help
  if (delivery == KeyDelivery::key_file) {
    worker.push_back("--key-file");
    worker.push_back(key_file);
  } else {
    worker.push_back("--key-stdin");
  }
  if (launcher.remote_shell) {
    for (std::string& w : worker) w = shell_quote(w);
  }
  std::vector<std::string> argv;
  bool placed = false;
  for (const std::string& word : launcher.words) {
    if (word == "{worker}") {
      argv.insert(argv.end(), worker.begin(), worker.end());
      placed = true;
      continue;
    }
    argv.push_back(replace_all(replace_all(word, "{host}", site.host), "{slot}", std::to_string(slot)));
  }
  if (!placed) argv.insert(argv.end(), worker.begin(), worker.end());
  return argv;
}

std::string launch_failure_hint(const Launcher& launcher, const Site& site, int wait_status) {
  if (!WIFEXITED(wait_status)) return "";
  const int code = WEXITSTATUS(wait_status);
  const std::string where = site.host.empty() ? "where " + launcher.name() + " ran it" : "on " + site.host;
  if (code == 127) return "the worker program was not found " + where + " (give its path there with --remote-worker)";
  if (code == 126) return "the worker program is not executable " + where;
  if (code == 255 && launcher.name() == "ssh") return "ssh could not connect or log in (see its message above)";
  if (code == 3) return "the worker refused to start: no usable key " + where + " (see its message above)";
  return "";
}

}  // namespace authrun::runner
