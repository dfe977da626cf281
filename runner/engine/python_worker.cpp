// The Python worker's bootstrap, command line and program message.
#include "runner/engine/python_worker.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <set>
#include <string_view>

#include <sys/stat.h>

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include "protocol/fd.hpp"
#include "protocol/json_codec.hpp"
#include "protocol/message.hpp"
#include "runner/engine/worker_command.hpp"

namespace authrun::runner {

using namespace protocol;

namespace {

constexpr const char* k_bootstrap_in_package = "authrun/_bootstrap.py";

// The bootstrap is given to the interpreter on its command line (-c), one argument of at most 128 KiB.
constexpr std::size_t k_bootstrap_max = 120 * 1024;

// SHA-256 of `bytes` as hex.
std::string sha256_hex(std::string_view bytes) {
  unsigned char out[crypto_hash_sha256_BYTES];
  ::crypto_hash_sha256(out, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  char hex[2 * crypto_hash_sha256_BYTES + 1];
  ::sodium_bin2hex(hex, sizeof hex, out, sizeof out);
  return hex;
}

bool is_identifier(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || static_cast<unsigned char>(c) >= 0x80;
  });
}

bool is_module_name(const std::string& s) {
  std::size_t start = 0;
  for (;;) {
    std::size_t dot = s.find('.', start);
    if (!is_identifier(s.substr(start, dot == std::string::npos ? std::string::npos : dot - start))) return false;
    if (dot == std::string::npos) return true;
    start = dot + 1;
  }
}

std::string current_dir() {
  char buf[PATH_MAX];
  return ::getcwd(buf, sizeof buf) ? std::string(buf) : std::string(".");
}

}  // namespace

const char* python_bootstrap_sha256() { return AUTHRUN_PYTHON_BOOTSTRAP_SHA256; }

Result<void> check_trusted_path(const std::string& path, const struct stat& st) {
  const uid_t me = ::getuid();
  auto refuse = [&](const std::string& what, const std::string& why) {
    return make_error(ErrorCode::usage, "refusing the Python bootstrap " + path + ": " + what + " " + why +
                                            " (it must be owned by you or root and writable by no one else)");
  };
  if (!S_ISREG(st.st_mode)) return refuse("it", "is not a regular file");
  if (st.st_uid != me && st.st_uid != 0) return refuse("it", "is owned by uid " + std::to_string(st.st_uid));
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) return refuse("it", "is writable by its group or others");
  // Each directory up to /, as ssh checks a key file's: none another user could swap an entry in (a sticky
  // directory such as /tmp lets no one rename what is not theirs).
  std::string dir = path.substr(0, path.rfind('/'));
  for (;;) {
    if (dir.empty()) dir.assign(1, '/');
    struct stat d {};
    if (::stat(dir.c_str(), &d) != 0) return refuse("its directory " + dir, std::string("cannot be checked: ") + std::strerror(errno));
    if (d.st_uid != me && d.st_uid != 0) return refuse("its directory " + dir, "is owned by uid " + std::to_string(d.st_uid));
    if ((d.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (d.st_mode & S_ISVTX) == 0) {
      return refuse("its directory " + dir, "is writable by its group or others");
    }
    if (dir == "/") break;
    dir = dir.substr(0, dir.rfind('/'));
  }
  return {};
}

Result<std::string> read_python_bootstrap(const std::string& path) {
  char real[PATH_MAX];
  if (::realpath(path.c_str(), real) == nullptr) {
    return make_error(ErrorCode::usage, "the Python bootstrap " + path + ": " + std::strerror(errno));
  }
  Fd fd(::open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  struct stat st {};
  if (!fd.valid() || ::fstat(fd.get(), &st) != 0) {
    return make_error(ErrorCode::usage, std::string("the Python bootstrap ") + real + ": " + std::strerror(errno));
  }
  AUTHRUN_TRY(check_trusted_path(real, st));
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error(ErrorCode::usage, std::string("the Python bootstrap ") + real + ": " + std::strerror(errno));
    if (n == 0) break;
    text.append(buf, std::size_t(n));
    if (text.size() > k_bootstrap_max) return make_error(ErrorCode::usage, std::string("the Python bootstrap ") + real + " is too large");
  }
  const std::string have = sha256_hex(text);
  if (have != python_bootstrap_sha256()) {
    return make_error(ErrorCode::usage, std::string("the Python bootstrap ") + real + " is not the one this authrun was built with (sha256 " +
                                            have + ", expected " + python_bootstrap_sha256() + "); rebuild or reinstall authrun");
  }
  return text;
}

Result<std::string> find_python_bootstrap() {
  // Beside the binaries: share/ of an install, or of the build tree (which holds a copy of python/).
  const std::string path = own_directory() + "/../share/authrun/python/" + k_bootstrap_in_package;
  if (::access(path.c_str(), F_OK) != 0) {
    return make_error(ErrorCode::usage, "the Python bootstrap was not found (looked for " + path + ")");
  }
  return read_python_bootstrap(path);
}

std::vector<std::string> python_worker_argv(const std::string& python_exe, const std::string& bootstrap) {
  return {python_exe, "-I", "-S", bootstrap, "--expect-sha256", python_bootstrap_sha256()};
}

std::vector<std::string> python_bootstrap_argv(const std::string& python_exe, const std::string& bootstrap_text) {
  return {python_exe, "-I", "-S", "-c", bootstrap_text};
}

std::string python_host_path() { return own_directory() + "/authrun-python"; }

bool host_serves(const std::string& python_exe) {
  if (python_exe.empty()) return true;
  char real[PATH_MAX], base[PATH_MAX];
  if (::realpath(python_exe.c_str(), real) != nullptr && ::realpath(AUTHRUN_PYTHON_BASE_EXECUTABLE, base) != nullptr &&
      std::string_view(real) == base) {
    return true;
  }
  return !venv_of_host_version(python_exe).empty();
}

std::string venv_of_host_version(const std::string& python_exe) {
  const std::size_t slash = python_exe.rfind('/');
  if (slash == std::string::npos) return "";
  const std::string bin = python_exe.substr(0, slash);
  for (const std::string& dir : {bin, bin.substr(0, bin.rfind('/'))}) {
    std::FILE* f = std::fopen((dir + "/pyvenv.cfg").c_str(), "re");
    if (f == nullptr) continue;
    char line[1024];
    std::string version;
    while (std::fgets(line, sizeof line, f) != nullptr) {
      std::string l = line;
      const std::size_t eq = l.find('=');
      if (eq == std::string::npos) continue;
      std::string key = l.substr(0, eq), value = l.substr(eq + 1);
      auto trim = [](std::string& t) {
        t.erase(0, t.find_first_not_of(" \t\r\n"));
        t.erase(t.find_last_not_of(" \t\r\n") + 1);
      };
      trim(key);
      trim(value);
      if (key == "version" || key == "version_info") version = value;
    }
    std::fclose(f);
    const std::string want = std::string(AUTHRUN_PYTHON_HOST_VERSION) + ".";
    if (version.compare(0, want.size(), want) == 0) return dir;
  }
  return "";
}

Result<std::string> python_program_body(const std::vector<std::string>& specs) {
  Program program;
  program.cwd = current_dir();
  std::set<std::string> names;
  auto add_path = [&](const std::string& dir) {
    if (std::find(program.sys_path.begin(), program.sys_path.end(), dir) == program.sys_path.end()) {
      program.sys_path.push_back(dir);
    }
  };
  for (const std::string& spec : specs) {
    ProgramModule module;
    const bool is_file = spec.find('/') != std::string::npos ||
                         (spec.size() > 3 && spec.compare(spec.size() - 3, 3, ".py") == 0);
    if (is_file) {
      char real[PATH_MAX];
      if (::realpath(spec.c_str(), real) == nullptr || ::access(real, R_OK) != 0) {
        return make_error(ErrorCode::usage, "--python " + spec + ": " + std::strerror(errno));
      }
      module.file = real;
      const std::size_t slash = module.file.rfind('/');
      std::string base = module.file.substr(slash + 1);
      if (base.size() > 3 && base.compare(base.size() - 3, 3, ".py") == 0) base.resize(base.size() - 3);
      module.name = base;
      if (!is_identifier(module.name)) {
        return make_error(ErrorCode::usage, "--python " + spec + ": '" + base + "' is not a Python module name");
      }
      add_path(module.file.substr(0, slash));
    } else {
      if (!is_module_name(spec)) {
        return make_error(ErrorCode::usage, "--python " + spec + ": not a file (dir/name.py) nor a module name (package.module)");
      }
      module.name = spec;
      add_path(program.cwd);
    }
    if (!names.insert(module.name).second) {
      return make_error(ErrorCode::usage, "--python: module '" + module.name + "' is given twice");
    }
    program.modules.push_back(std::move(module));
  }
  // The interpreter runs isolated (-I ignores PYTHONPATH): the runner's PYTHONPATH comes with the program.
  if (const char* env = std::getenv("PYTHONPATH")) {
    std::string dirs = env;
    for (std::size_t start = 0; start <= dirs.size();) {
      std::size_t end = std::min(dirs.find(':', start), dirs.size());
      if (end > start) add_path(dirs.substr(start, end - start));
      start = end + 1;
    }
  }
  return encode_body(program);
}

Result<void> use_python_workers(EngineOptions& e, const std::vector<std::string>& specs, const std::string& python_exe,
                                bool keep_remote_worker) {
  AUTHRUN_TRY_ASSIGN(e.program, python_program_body(specs));
  std::string exe = python_exe;
  if (!exe.empty()) AUTHRUN_TRY(resolve_program(exe, "Python interpreter (--python-exe)"));
  const bool hosted = host_serves(exe);
  std::vector<std::string> host_argv{python_host_path()};
  if (hosted && !exe.empty()) {
    // The venv's own python (not where its symlink points): the venv becomes the prefix.
    char cwd[PATH_MAX];
    std::string absolute = exe;
    if (absolute.front() != '/' && ::getcwd(cwd, sizeof cwd) != nullptr) absolute = std::string(cwd) + "/" + exe;
    host_argv.insert(host_argv.end(), {"--python-executable", absolute});
  }
  if (!e.worker_argv.empty()) {
    if (hosted) {
      if (::access(host_argv[0].c_str(), X_OK) != 0) {
        return make_error(ErrorCode::usage, "authrun-python was not found beside authrun (" + host_argv[0] + ")");
      }
      e.worker_argv = host_argv;
    } else {
      AUTHRUN_TRY_ASSIGN(const std::string text, find_python_bootstrap());
      std::fprintf(stderr,
                   "authrun: note: %s is not the Python authrun-python embeds (%s) nor a venv of it: it runs the ctypes "
                   "bootstrap, and starts readable: until it makes itself undumpable, another process of yours could "
                   "attach to it and take its key (SECURITY.md, \"Python workers\")\n",
                   exe.c_str(), AUTHRUN_PYTHON_BASE_EXECUTABLE);
      e.worker_argv = python_bootstrap_argv(exe, text);
    }
    if (e.allow_ptrace) e.worker_argv.push_back("--allow-ptrace");
  }
  if (!e.remote_worker_argv.empty() && !keep_remote_worker) {
    // Where a launcher runs it, the same layout is assumed: authrun-python beside authrun, or the installed
    // bootstrap by its path (which checks its own hash).
    e.remote_worker_argv = hosted ? host_argv
                                  : python_worker_argv(python_exe.empty() ? "python3" : python_exe,
                                                       own_directory() + "/../share/authrun/python/" + k_bootstrap_in_package);
  }
  return {};
}

}  // namespace authrun::runner
