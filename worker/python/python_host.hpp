// authrun-python's host: CPython 3 embedded behind the worker SDK. The interpreter starts only once the
// handshake is done and the program message has come (nothing of the user's is imported before the parent
// has proven the run key); the Python code it runs first (host.py) is compiled in.
#pragma once

#include <string>

#include "authrun/worker.hpp"

namespace authrun::worker::python {

// Where the interpreter's prefix comes from: the Python this host was built with, or a venv of it.
struct HostOptions {
  std::string executable;  // sys.executable: a venv's bin/python makes the venv the prefix ("" = the base's)
};

// The SDK's DynamicFunctions for a Python program: load() starts the interpreter (isolated: no PYTHON*
// variables, no user site, no site before the program) and imports the program; call() runs a task's
// function. `options` must outlive the worker. Also sets this process's malloc thresholds for large payloads
// (python_host.cpp, keep_large_buffers).
DynamicFunctions python_functions(const HostOptions& options);

// Ends the process with `status`: the interpreter, if it was started, is finalized first (the program's
// atexit handlers run, its non-daemon threads are waited for, as when a script ends), then _exit, not exit:
// what the interpreter keeps until the end on purpose is no leak for a sanitizer build's checker to report.
[[noreturn]] void exit_python(int status);

}  // namespace authrun::worker::python
