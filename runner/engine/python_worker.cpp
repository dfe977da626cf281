// The Python worker's bootstrap, command line and program message.
#include "runner/engine/python_worker.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <set>

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

// SHA-256 of a whole file as hex, or "" if it cannot be read.
std::string sha256_of_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return "";
  crypto_hash_sha256_state st;
  ::crypto_hash_sha256_init(&st);
  unsigned char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return "";
    if (n == 0) break;
    ::crypto_hash_sha256_update(&st, buf, static_cast<unsigned long long>(n));
  }
  unsigned char out[crypto_hash_sha256_BYTES];
  ::crypto_hash_sha256_final(&st, out);
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

Result<std::string> find_python_bootstrap() {
  const std::vector<std::string> candidates = {
      std::string(AUTHRUN_PYTHON_SOURCE_DIR) + "/" + k_bootstrap_in_package,
      own_directory() + "/../share/authrun/python/" + k_bootstrap_in_package,
  };
  for (const std::string& path : candidates) {
    if (::access(path.c_str(), R_OK) != 0) continue;
    const std::string have = sha256_of_file(path);
    if (have != python_bootstrap_sha256()) {
      return make_error(ErrorCode::usage, "the Python bootstrap " + path + " is not the one this authrun was built with (sha256 " +
                                              (have.empty() ? "unreadable" : have) + ", expected " +
                                              python_bootstrap_sha256() + "); rebuild or reinstall authrun");
    }
    return path;
  }
  return make_error(ErrorCode::usage, "the Python bootstrap was not found (looked for " + candidates[0] + " and " +
                                          candidates[1] + ")");
}

std::vector<std::string> python_worker_argv(const std::string& python_exe, const std::string& bootstrap) {
  return {python_exe, "-I", "-S", bootstrap, "--expect-sha256", python_bootstrap_sha256()};
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
  AUTHRUN_TRY_ASSIGN(const std::string bootstrap, find_python_bootstrap());
  AUTHRUN_TRY_ASSIGN(e.program, python_program_body(specs));
  if (!e.worker_argv.empty()) {
    std::string exe = python_exe;
    AUTHRUN_TRY(resolve_program(exe, "Python interpreter (--python-exe)"));
    e.worker_argv = python_worker_argv(exe, bootstrap);
    if (e.allow_ptrace) e.worker_argv.push_back("--allow-ptrace");
  }
  if (!e.remote_worker_argv.empty() && !keep_remote_worker) e.remote_worker_argv = python_worker_argv(python_exe, bootstrap);
  return {};
}

}  // namespace authrun::runner
