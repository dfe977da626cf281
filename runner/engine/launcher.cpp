// Launcher templates, -S host lists and the key policy for launched workers.
#include "runner/engine/launcher.hpp"

#include <sys/wait.h>

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

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  out += '\'';
  return out;
}

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
  for (const std::string& word : l.words) {
    if (word != "{worker}" && word.find("{worker}") != std::string::npos) {
      return make_error(ErrorCode::usage, "launcher: {worker} must be a word of its own (it stands for several), not part of '" + word + "'");
    }
  }
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

namespace {

// A host as ssh takes it: [user@]name, where name is letters, digits, '.', '-', '_', '%' (a scope), or an
// IPv6 address in brackets. Nothing a shell, ssh's option parser or a template placeholder would act on.
bool plausible_host(const std::string& host) {
  const std::size_t at = host.find('@');
  if (at != host.rfind('@') || at == 0 || at + 1 == host.size()) return false;
  const std::string user = at == std::string::npos ? "" : host.substr(0, at);
  const std::string name = at == std::string::npos ? host : host.substr(at + 1);
  auto all_in = [](const std::string& s, const char* allowed) { return s.find_first_not_of(allowed) == std::string::npos; };
  if (!all_in(user, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")) return false;
  if (name.size() > 2 && name.front() == '[' && name.back() == ']') return all_in(name.substr(1, name.size() - 2), "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789:.%");
  return !name.empty() && name[0] != '-' && all_in(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-%");
}

}  // namespace

Result<std::vector<Site>> parse_sshlogins(const std::vector<std::string>& entries, int default_slots) {
  std::vector<Site> sites;
  for (const std::string& arg : entries) {
    std::size_t start = 0;
    for (;;) {
      std::size_t comma = arg.find(',', start);
      std::string entry = arg.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      Site site;
      site.slots = default_slots;
      // The slot count follows the last ':' outside an IPv6 address's brackets.
      const std::size_t bracket = entry.rfind(']');
      const std::size_t colon = entry.rfind(':');
      std::string host = entry;
      if (colon != std::string::npos && (bracket == std::string::npos || colon > bracket)) {
        std::string count = entry.substr(colon + 1);
        host.resize(colon);
        if (!(count.empty() && host.empty()) && (!all_digits(count) || count.size() > 4 || std::stoi(count) < 1)) {
          return make_error(ErrorCode::usage, "-S entry '" + entry + "': slots after ':' must be a number from 1 to 9999");
        }
        if (!count.empty()) site.slots = std::stoi(count);
      }
      site.local = host.empty() && colon != std::string::npos;  // ":" or ":N"
      if (!site.local) {
        if (host.empty()) return make_error(ErrorCode::usage, "-S: empty entry in '" + arg + "'");
        if (!plausible_host(host)) {
          return make_error(ErrorCode::usage, "-S entry '" + entry +
                                                  "': not a host name ([user@]host, letters, digits, '.', '-', '_'; "
                                                  "IPv6 in brackets: [::1]:2)");
        }
        // ssh takes an IPv6 address without the brackets (they only set it apart from the slot count here).
        std::erase_if(host, [](char c) { return c == '[' || c == ']'; });
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
  } else if (delivery == KeyDelivery::stdin_prefix) {
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
