// `authrun run --python MODULE`: Python interpreters as workers. Where the bootstrap they run first is (and
// that it is the one this authrun was built with), their command line, and the program message they get
// after the handshake (which modules to import, from where).
#pragma once

#include <string>
#include <vector>

#include "protocol/result.hpp"
#include "runner/engine/engine.hpp"

namespace authrun::runner {

// The bootstrap shipped with this authrun: python/authrun/_bootstrap.py of the source tree it was built from,
// else ../share/authrun/python/authrun/_bootstrap.py next to the executable (an install). Its SHA-256 must be
// the one computed when authrun was built. Errors: usage (not found, or a different file, naming both hashes).
protocol::Result<std::string> find_python_bootstrap();

// The SHA-256 (hex) of the bootstrap this authrun was built with.
const char* python_bootstrap_sha256();

// The worker command: the interpreter in isolated mode without site (`-I -S`: no PYTHON* variables, no user
// site, no .pth file runs before the handshake), the bootstrap, and the hash it checks itself against.
// Names no user module or file: those come later, in the program message.
std::vector<std::string> python_worker_argv(const std::string& python_exe, const std::string& bootstrap);

// The body of the program message for `specs` (each --python argument: a file `dir/name.py`, or a dotted
// module name found on sys.path): the modules in order, sys.path additions (a file's directory; for dotted
// names this directory, as `python -m` would; the runner's PYTHONPATH), and this directory. Errors: usage
// (a missing or unreadable file, a name that is not a Python module name, a module given twice).
protocol::Result<std::string> python_program_body(const std::vector<std::string>& specs);

// Makes the engine's workers Python interpreters (`python_exe`, resolved on PATH for local ones) that serve the
// modules of `specs`: the bootstrap is found and checked, the program body set. Launched workers run the same
// interpreter name and bootstrap path where the launcher runs them, unless `keep_remote_worker`
// (--remote-worker given). Errors: usage.
protocol::Result<void> use_python_workers(EngineOptions& e, const std::vector<std::string>& specs,
                                          const std::string& python_exe, bool keep_remote_worker);

}  // namespace authrun::runner
