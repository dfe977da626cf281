// authrun-python's host: the interpreter's start after the program message, and each task's call into host.py.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "worker/python/python_host.hpp"

#include <algorithm>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <malloc.h>
#include <unistd.h>

#include "protocol/json_codec.hpp"
#include "protocol/json_text.hpp"
#include "protocol/limits.hpp"
#include "worker/python/host_source.hpp"

namespace authrun::worker::python {

using namespace protocol;

namespace {

// The fn of a pickled call (host.py's _PICKLED): its attachment is a pickle of (function, args, kwargs).
constexpr std::string_view k_pickled_fn = "authrun.pickled";

// The host module's two entry points, set once the interpreter runs (the GIL is held only inside a call).
PyObject* g_load = nullptr;
PyObject* g_call = nullptr;
PyThreadState* g_main_thread = nullptr;  // saved while no call runs (the GIL released)

// The text of the Python exception being raised (cleared), for a message: "Type: message".
std::string take_python_error() {
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  std::string text = "unknown Python error";
  if (value != nullptr) {
    if (PyObject* s = PyObject_Str(value)) {
      Py_ssize_t n = 0;
      if (const char* u = PyUnicode_AsUTF8AndSize(s, &n)) text = std::string(type ? reinterpret_cast<PyTypeObject*>(type)->tp_name : "?") + ": " + std::string(u, std::size_t(n));
      Py_DECREF(s);
    }
  }
  PyErr_Clear();
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(tb);
  return text;
}

// A Python str as UTF-8, or nullopt (error cleared into `why`) for one holding a lone surrogate.
bool utf8_of(PyObject* str, std::string& out, std::string* why = nullptr) {
  Py_ssize_t n = 0;
  const char* u = PyUnicode_Check(str) ? PyUnicode_AsUTF8AndSize(str, &n) : nullptr;
  if (u == nullptr) {
    std::string e = PyErr_Occurred() ? take_python_error() : std::string("not a str");
    if (why) *why = std::move(e);
    return false;
  }
  out.assign(u, std::size_t(n));
  return true;
}

// A Python str written as a JSON string (as json.dumps with ensure_ascii=False writes it), straight from its
// UTF-8; false (the error in `why`) for one holding a lone surrogate.
bool json_string_of(PyObject* str, std::string& out, std::string& why) {
  Py_ssize_t n = 0;
  const char* u = PyUnicode_AsUTF8AndSize(str, &n);
  if (u == nullptr) {
    why = take_python_error();
    return false;
  }
  append_json_string(out, std::string_view(u, std::size_t(n)));
  return true;
}

// Starts the interpreter: isolated (no PYTHON* variables, no user site, no script directory on sys.path), no
// site yet (host.py runs it once the program is here), no signal handlers of its own (the SDK's stay: SIGINT
// ignored, SIGTERM ends the worker), then runs host.py as module _authrun_host.
Result<void> start_interpreter(const HostOptions& options) {
  PyConfig config;
  PyConfig_InitIsolatedConfig(&config);
  config.site_import = 0;
  config.user_site_directory = 0;
  config.install_signal_handlers = 0;
  config.parse_argv = 0;
  config.buffered_stdio = 0;
  const std::string exe = options.executable.empty() ? std::string(AUTHRUN_PYTHON_BASE_EXECUTABLE) : options.executable;
  PyStatus status = PyConfig_SetBytesString(&config, &config.executable, exe.c_str());
  if (!PyStatus_Exception(status)) status = PyConfig_SetBytesString(&config, &config.program_name, exe.c_str());
  if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(status)) {
    return make_error(ErrorCode::program_failed, std::string("the Python interpreter did not start (") + exe + "): " +
                                                     (status.err_msg ? status.err_msg : "unknown error"));
  }
  PyObject* code = Py_CompileString(k_host_source, "<authrun-python host>", Py_file_input);
  PyObject* module = code ? PyImport_ExecCodeModule("_authrun_host", code) : nullptr;
  Py_XDECREF(code);
  if (module != nullptr) {
    g_load = PyObject_GetAttrString(module, "load");
    g_call = PyObject_GetAttrString(module, "call");
    Py_DECREF(module);
  }
  if (g_load == nullptr || g_call == nullptr) {
    return make_error(ErrorCode::program_failed, "authrun-python's host code did not load: " + take_python_error());
  }
  return {};
}

Result<void> load(const HostOptions& options, const std::string& program_json) {
  AUTHRUN_TRY(start_interpreter(options));
  PyObject* failed = PyObject_CallFunction(g_load, "s#", program_json.data(), Py_ssize_t(program_json.size()));
  Result<void> out;
  if (failed == nullptr) {
    out = make_error(ErrorCode::program_failed, take_python_error());
  } else if (failed != Py_None) {
    std::string why;
    if (!utf8_of(failed, why)) why = "the program failed to load";
    out = make_error(ErrorCode::program_failed, why);
  }
  Py_XDECREF(failed);
  // From here on the GIL is taken for each call only: threads a task started run between tasks too.
  g_main_thread = PyEval_SaveThread();
  return out;
}

// Whether a JSON value's text nests deeper than `depth`: scanned only when it has that many brackets.
bool too_deep(std::string_view text, int depth) {
  if (text.empty() || (text.front() != '[' && text.front() != '{')) return false;  // a scalar
  const auto opens = std::count_if(text.begin(), text.end(), [](char c) { return c == '[' || c == '{'; });
  if (opens <= depth) return false;
  std::vector<JsonMember> members;
  return !scan_json(text, members, depth).has_value();
}

Result<std::string, TaskError> call(std::string_view fn, std::string_view args_json, Attachment& attachment) {
  PyGILState_STATE gil = PyGILState_Ensure();
  // A pickled call's attachment is only unpickled (host.py's _call_pickled: pickle.loads makes objects of
  // their own): it goes as a read-only view of the received frame, not as a bytes copy of it. A task of the
  // JSON path gets bytes, its function's argument.
  Attachment input = std::move(attachment);
  attachment = Attachment{};
  const bool view = !input.empty() && fn == k_pickled_fn;
  PyObject* in = input.empty() ? (Py_INCREF(Py_None), Py_None)
                 : view ? PyMemoryView_FromMemory(const_cast<char*>(input.view().data()), Py_ssize_t(input.size()), PyBUF_READ)
                        : PyBytes_FromStringAndSize(input.view().data(), Py_ssize_t(input.size()));
  if (view && in != nullptr) Py_INCREF(in);  // ours too: released below, before `input` goes
  PyObject* out = PyObject_CallFunction(g_call, "s#s#N", fn.data(), Py_ssize_t(fn.size()), args_json.data(),
                                        Py_ssize_t(args_json.size()), in);
  if (view && in != nullptr) {
    // No view of `input` outlives it: released (any further use raises ValueError), or, were it still
    // exported, `input` kept for good.
    PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
    PyErr_Fetch(&type, &value, &tb);  // the call's own error, if any, is read below
    PyObject* released = PyObject_CallMethod(in, "release", nullptr);
    if (released == nullptr) {
      PyErr_Clear();
      static std::vector<Attachment> kept;
      kept.push_back(std::move(input));
    }
    Py_XDECREF(released);
    Py_DECREF(in);
    PyErr_Restore(type, value, tb);
  }
  Result<std::string, TaskError> result = TaskError{"internal", "authrun-python: no result", nullptr};
  if (out == nullptr || !PyTuple_Check(out) || PyTuple_GET_SIZE(out) < 3) {
    result = TaskError{"internal", std::string(fn) + ": authrun-python's host failed: " +
                                       (PyErr_Occurred() ? take_python_error() : std::string("bad answer")), nullptr};
  } else if (PyTuple_GET_ITEM(out, 0) == Py_True) {
    std::string text, why;
    PyObject* bytes = PyTuple_GET_ITEM(out, 2);
    const bool str_value = PyTuple_GET_SIZE(out) >= 4 && PyTuple_GET_ITEM(out, 3) == Py_True;
    if (str_value ? !json_string_of(PyTuple_GET_ITEM(out, 1), text, why) : !utf8_of(PyTuple_GET_ITEM(out, 1), text, &why)) {
      result = TaskError{"bad_result",
                         std::string(fn) + " returned text that is not valid Unicode (" + why +
                             "); return bytes for such data, or decode it with errors='replace'",
                         nullptr};
    } else if (too_deep(text, limits::json_max_depth - 1)) {
      result = TaskError{"bad_result", std::string(fn) + " returned a value nested deeper than " +
                                           std::to_string(limits::json_max_depth - 1) + " levels", nullptr};
    } else {
      if (PyBytes_Check(bytes)) {
        attachment = Attachment{std::string(PyBytes_AS_STRING(bytes), std::size_t(PyBytes_GET_SIZE(bytes)))};
      }
      result = std::move(text);
    }
  } else if (PyTuple_GET_SIZE(out) >= 4) {
    TaskError e;
    std::string why;
    if (!utf8_of(PyTuple_GET_ITEM(out, 1), e.type, &why)) e.type = "Exception";
    if (!utf8_of(PyTuple_GET_ITEM(out, 2), e.message, &why)) {
      // A message holding a lone surrogate: kept, with each such code point written as \udcXX.
      PyObject* escaped = PyUnicode_AsEncodedString(PyTuple_GET_ITEM(out, 2), "utf-8", "backslashreplace");
      if (escaped != nullptr) e.message.assign(PyBytes_AS_STRING(escaped), std::size_t(PyBytes_GET_SIZE(escaped)));
      else PyErr_Clear();
      Py_XDECREF(escaped);
    }
    std::string details;
    if (PyTuple_GET_ITEM(out, 3) != Py_None && utf8_of(PyTuple_GET_ITEM(out, 3), details)) {
      if (auto parsed = parse_json(details)) e.details = std::move(*parsed);
    }
    result = std::move(e);
  }
  Py_XDECREF(out);
  PyGILState_Release(gil);
  return result;
}

// Large payloads (a pickled chunk of MiBs) come into a fresh buffer each task: the frame's, grown as it
// arrives (a 25 MiB frame ends in a string of 32 MiB capacity). glibc gives a buffer of 32 MiB or more its
// own mapping, returned at free: each task then faulted its MiBs in anew, page by page (a 4 KiB page fault
// costs about 3 us here: 200 MiB of chunks took 0.6 s of the workers' time in faults alone). Buffers up to
// k_mmap_from are taken from the heap instead, and up to k_keep_free of its free top is kept, as a
// long-lived worker can afford; larger ones still come from (and go back to) the system.
void keep_large_buffers() {
  constexpr int k_mmap_from = 64 << 20;
  constexpr int k_keep_free = 128 << 20;
  mallopt(M_MMAP_THRESHOLD, k_mmap_from);
  mallopt(M_TRIM_THRESHOLD, k_keep_free);
}

}  // namespace

void exit_python(int status) {
  if (g_main_thread != nullptr) {
    PyEval_RestoreThread(g_main_thread);
    g_main_thread = nullptr;
    if (Py_FinalizeEx() < 0 && status == 0) status = 120;  // as python3 does when flushing fails
  }
  std::fflush(nullptr);
  ::_exit(status);
}

DynamicFunctions python_functions(const HostOptions& options) {
  keep_large_buffers();
  DynamicFunctions f;
  f.load = [&options](const std::string& program_json) { return load(options, program_json); };
  f.call = call;
  return f;
}

}  // namespace authrun::worker::python
