// authrun-python: the Python worker, CPython embedded in an SDK worker. Its own option, taken out of argv
// before the SDK sees the rest: --python-executable PATH (a venv's python: the venv is the prefix).
#include <cstring>
#include <vector>

#include "authrun/worker.hpp"
#include "worker/python/python_host.hpp"

int main(int argc, char** argv) {
  static authrun::worker::python::HostOptions options;
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (i > 0 && std::strcmp(argv[i], "--python-executable") == 0 && i + 1 < argc) {
      options.executable = argv[++i];
      continue;
    }
    rest.push_back(argv[i]);
  }
  rest.push_back(nullptr);
  authrun::worker::Registry registry;
  authrun::worker::python::exit_python(authrun::worker::main(static_cast<int>(rest.size()) - 1, rest.data(), registry,
                                                            authrun::worker::python::python_functions(options)));
}
