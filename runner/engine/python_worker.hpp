// `authrun run --python MODULE`: Python interpreters as workers. Where the bootstrap they run first is (and
// that it is the one this authrun was built with), their command line, and the program message they get
// after the handshake (which modules to import, from where).
#pragma once

#include <string>
#include <vector>

#include "protocol/result.hpp"
#include "runner/engine/engine.hpp"

namespace authrun::runner {

// The ctypes bootstrap's text, for an interpreter authrun-python does not embed: read once from
// ../share/authrun/python/authrun/_bootstrap.py beside the executable (an install, or the build tree's copy;
// never a path baked in at build time), refused unless the file and every directory above it are owned by
// the user or root and writable by no one else (a sticky directory such as /tmp allowed), and unless its
// SHA-256 is the one this authrun was built with. Errors: usage (naming the path and what is wrong).
protocol::Result<std::string> find_python_bootstrap();

// read_python_bootstrap for the file at `path` (as find_python_bootstrap checks it).
protocol::Result<std::string> read_python_bootstrap(const std::string& path);

// The SHA-256 (hex) of the bootstrap this authrun was built with.
const char* python_bootstrap_sha256();

// The worker command for a bootstrap run where a launcher runs it: the interpreter in isolated mode without
// site (`-I -S`: no PYTHON* variables, no user site, no .pth file runs before the handshake), the
// bootstrap's path there, and the hash it checks itself against.
std::vector<std::string> python_worker_argv(const std::string& python_exe, const std::string& bootstrap);

// The local worker command for a bootstrap run: `-I -S -c TEXT`, the exact bytes read and checked, so that
// no file is opened by path after the check.
std::vector<std::string> python_bootstrap_argv(const std::string& python_exe, const std::string& bootstrap_text);

// authrun-python beside the running authrun.
std::string python_host_path();

// True if authrun-python serves `python_exe` ("" is its own interpreter): the interpreter it embeds, or a
// venv whose pyvenv.cfg names the same major.minor version.
bool host_serves(const std::string& python_exe);

// The venv directory of `python_exe` (its pyvenv.cfg beside it or one level up) when its version is the
// one authrun-python embeds, else "".
std::string venv_of_host_version(const std::string& python_exe);

// The body of the program message for `specs` (each --python argument: a file `dir/name.py`, or a dotted
// module name found on sys.path): the modules in order, sys.path additions (a file's directory; for dotted
// names this directory, as `python -m` would; the runner's PYTHONPATH), and this directory. Errors: usage
// (a missing or unreadable file, a name that is not a Python module name, a module given twice).
protocol::Result<std::string> python_program_body(const std::vector<std::string>& specs);

// Makes the engine's workers serve the Python modules of `specs`: authrun-python (beside authrun) when it
// serves `python_exe` ("" = its own interpreter; a venv of its version gets --python-executable), else that
// interpreter on the ctypes bootstrap, with a note on stderr that it starts readable. Launched workers run the
// interpreter and the installed bootstrap's path where the launcher runs them, unless `keep_remote_worker`
// (--remote-worker given). Errors: usage.
protocol::Result<void> use_python_workers(EngineOptions& e, const std::vector<std::string>& specs,
                                          const std::string& python_exe, bool keep_remote_worker);

}  // namespace authrun::runner
