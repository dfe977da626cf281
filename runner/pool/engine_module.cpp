// authrun._engine: the extension module a Python pool drives the engine through (PoolEngine). The GIL is
// released while it waits; the engine's own thread never enters the interpreter.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <sys/mman.h>
#include <sys/prctl.h>

#include "runner/engine/launcher.hpp"
#include "runner/engine/worker_command.hpp"
#include "runner/pool/pool_engine.hpp"
#include "protocol/tracing.hpp"

namespace py = pybind11;
using namespace authrun;
using namespace authrun::runner;

namespace {

// Raises ValueError with a usage error's message.
template <typename T>
T or_raise(protocol::Result<T> r) {
  if (!r) throw py::value_error(r.error().message);
  return std::move(*r);
}
void or_raise(protocol::Result<void> r) {
  if (!r) throw py::value_error(r.error().message);
}

// The engine's options from the pool's keyword arguments (their meanings are the CLI's).
EngineOptions make_options(const py::kwargs& kw) {
  EngineOptions e;
  auto get = [&](const char* name) -> py::object {
    if (!kw.contains(name)) return py::none();
    return kw[name];
  };
  e.worker_argv = get("worker_argv").cast<std::vector<std::string>>();
  if (e.worker_argv.empty()) throw py::value_error("worker_argv is empty");
  e.jobs = get("jobs").cast<int>();
  if (e.jobs < 1) throw py::value_error("the number of processes must be at least 1");
  if (auto v = get("program"); !v.is_none()) e.program = v.cast<std::string>();
  if (auto v = get("retries"); !v.is_none()) e.retries = v.cast<int>();
  if (auto v = get("timeout"); !v.is_none()) e.timeout_s = v.cast<double>();
  if (auto v = get("handshake_timeout"); !v.is_none()) e.handshake_timeout_s = v.cast<double>();
  if (auto v = get("max_tasks_per_worker"); !v.is_none()) e.max_tasks_per_worker = v.cast<int>();
  if (auto v = get("key_file"); !v.is_none()) e.key_file = v.cast<std::string>();
  if (auto v = get("audit_log"); !v.is_none()) e.audit_log = v.cast<std::string>();
  if (auto v = get("joblog"); !v.is_none()) e.joblog = v.cast<std::string>();
  if (auto v = get("window"); !v.is_none()) e.window = v.cast<int>();
  if (auto v = get("verbose"); !v.is_none()) e.verbose = v.cast<bool>();
  if (auto v = get("allow_ptrace"); !v.is_none()) e.allow_ptrace = v.cast<bool>();
  if (auto v = get("mode"); !v.is_none()) {
    const auto mode = v.cast<std::string>();
    if (mode == "authenticated") e.mode = protocol::ChannelMode::authenticated;
    else if (mode == "encrypted") e.mode = protocol::ChannelMode::encrypted;
    else throw py::value_error("mode must be 'authenticated' or 'encrypted', not '" + mode + "'");
  }
  const bool slurm = get("slurm").cast<bool>();
  const auto hosts = get("hosts").is_none() ? std::vector<std::string>{} : get("hosts").cast<std::vector<std::string>>();
  e.sites = {Site{"", true, e.jobs}};
  if (slurm || !hosts.empty()) {
    // Workers through a launcher, as `authrun run --slurm` / `-S host,...` start them.
    if (slurm) {
      e.launcher = slurm_launcher();
      e.sites = {Site{"", false, e.jobs}};
    } else {
      e.launcher = default_ssh_launcher();
      e.sites = or_raise(parse_sshlogins(hosts, e.jobs));
    }
    int jobs = 0;
    for (const Site& s : e.sites) jobs += s.slots;
    e.jobs = jobs;
    if (std::any_of(e.sites.begin(), e.sites.end(), [](const Site& s) { return !s.local; })) {
      or_raise(resolve_program(e.launcher.words[0], "launcher"));
      e.key_delivery = or_raise(choose_key_delivery(e.launcher, !e.key_file.empty()));
      e.remote_key_file = e.key_file;
      auto remote = get("remote_worker_argv");
      e.remote_worker_argv = remote.is_none() ? e.worker_argv : remote.cast<std::vector<std::string>>();
    }
  }
  return e;
}

// The engine makes every worker's key in this process, the caller's: from here on it is not dumpable, as
// authrun itself is (runner/cli), so that other processes of the user can neither ptrace it nor read its
// memory or open its pipes through /proc (root still can). A process traced already is refused unless
// `allow_ptrace`: its tracer would read every key.
void seal_caller(bool allow_ptrace) {
  if (auto tracer = protocol::tracer_pid(); tracer && *tracer != 0 && !allow_ptrace) {
    PyErr_SetString(PyExc_PermissionError, ("refusing to start a pool: this process is traced by pid " + std::to_string(*tracer) +
                                            ", which could read every key the pool makes (allow_ptrace=True to permit)")
                                               .c_str());
    throw py::error_already_set();
  }
  ::prctl(PR_SET_DUMPABLE, 0);
}

// One buffer of a task's attachment, exported (C-contiguous) while it is copied; released with the GIL held.
class Piece {
 public:
  Piece(std::size_t task, py::handle object) : m_task(task) {
    if (PyObject_GetBuffer(object.ptr(), &m_view, PyBUF_C_CONTIGUOUS) != 0) {
      // Not contiguous (a strided memoryview): its bytes, in order.
      PyErr_Clear();
      m_copy = py::reinterpret_steal<py::object>(PyBytes_FromObject(object.ptr()));
      if (!m_copy || PyObject_GetBuffer(m_copy.ptr(), &m_view, PyBUF_SIMPLE) != 0) throw py::error_already_set();
    }
    m_held = true;
  }
  ~Piece() {
    if (m_held) PyBuffer_Release(&m_view);
  }
  Piece(Piece&& o) noexcept : m_task(o.m_task), m_view(o.m_view), m_held(std::exchange(o.m_held, false)), m_copy(std::move(o.m_copy)) {}
  Piece(const Piece&) = delete;
  Piece& operator=(const Piece&) = delete;
  Piece& operator=(Piece&&) = delete;

  std::size_t task() const { return m_task; }
  std::string_view bytes() const { return {static_cast<const char*>(m_view.buf), std::size_t(m_view.len)}; }

 private:
  std::size_t m_task;  // its task's index in the batch
  Py_buffer m_view{};
  bool m_held = false;
  py::object m_copy;
};

// A large attachment's buffer is fresh memory each call (a map holds all its chunks at once, and glibc returns
// them after): faulted in 4 KiB at a time, that cost several times the copy into it (about 3 us a page on a
// VM). Transparent huge pages where the system gives them on request (THP "madvise"): one fault per 2 MiB.
void advise_huge_pages(char* data, std::size_t size) {
  constexpr std::uintptr_t k_huge = 2u << 20;
  if (size < 2 * k_huge) return;
  const auto begin = (reinterpret_cast<std::uintptr_t>(data) + k_huge - 1) & ~(k_huge - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(data) + size) & ~(k_huge - 1);
  if (end > begin) std::ignore = ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

// Each task's attachment: its pieces, in order, in one allocation of the exact size. Needs no GIL.
void join_pieces(const std::vector<Piece>& pieces, std::vector<PoolTask>& batch) {
  for (std::size_t i = 0; i < pieces.size();) {
    std::size_t end = i, size = 0;
    for (; end < pieces.size() && pieces[end].task() == pieces[i].task(); ++end) size += pieces[end].bytes().size();
    std::string& out = batch[pieces[i].task()].attachment;
    out.reserve(size);
    advise_huge_pages(out.data(), size);
    for (; i < end; ++i) out.append(pieces[i].bytes());
  }
}

// A large result attachment handed to Python as it came (a read-only buffer over the engine's string), not
// copied into a bytes object first: pickle.loads reads it in place.
struct ResultBytes {
  std::string data;
};
constexpr std::size_t k_result_view_from = 64 * 1024;

py::list to_python(std::vector<PoolResult>&& results) {
  py::list out;
  for (PoolResult& r : results) {
    py::object attachment = r.attachment.empty() ? py::object(py::none())
                            : r.attachment.size() >= k_result_view_from
                                ? py::cast(ResultBytes{std::move(r.attachment)})
                                : py::object(py::bytes(r.attachment.data(), r.attachment.size()));
    out.append(py::make_tuple(r.id, r.ok, py::str(r.ok ? r.value_json : r.error_json), attachment, r.attempts, r.worker));
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_engine, m) {
  m.doc() = "authrun's engine for a Python pool (authrun.Pool, authrun.ProcessPoolExecutor): not a public API";
  m.attr("build_bin_dir") = AUTHRUN_BUILD_BIN_DIR;
  m.attr("install_bin_dir") = AUTHRUN_INSTALL_BIN_DIR;
  py::class_<ResultBytes>(m, "ResultBytes", py::buffer_protocol(),
                          "A large result's bytes, read in place (bytes(it) copies them)")
      .def_buffer([](ResultBytes& b) {
        return py::buffer_info(b.data.data(), 1, py::format_descriptor<std::uint8_t>::format(), 1,
                               {py::ssize_t(b.data.size())}, {py::ssize_t(1)}, /*readonly=*/true);
      })
      .def("__len__", [](const ResultBytes& b) { return b.data.size(); });
  py::class_<PoolEngine>(m, "Engine")
      .def(py::init([](const py::kwargs& kw) {
             EngineOptions options = make_options(kw);
             seal_caller(options.allow_ptrace);
             return std::make_unique<PoolEngine>(std::move(options));
           }),
           "Starts the engine's thread and its workers. Keywords: worker_argv, jobs, program, retries, timeout, "
           "handshake_timeout, max_tasks_per_worker, key_file, audit_log, joblog, window, verbose, mode, slurm, "
           "hosts, remote_worker_argv, allow_ptrace. Makes this process not dumpable (refused if traced, unless "
           "allow_ptrace).")
      .def(
          "submit",
          [](PoolEngine& self, const py::list& tasks) {
            // Each task: (id, fn, args_json, attachment, timeout or None); the attachment None, a buffer, or a
            // list of buffers (a pickler's pieces) that make it in order.
            std::vector<PoolTask> batch;
            batch.reserve(tasks.size());
            std::vector<Piece> pieces;  // the buffers stay exported (and their objects alive) while copied
            for (const py::handle item : tasks) {
              auto t = item.cast<py::tuple>();
              PoolTask task;
              task.id = t[0].cast<std::uint64_t>();
              task.fn = t[1].cast<std::string>();
              task.args_json = t[2].cast<std::string>();
              if (py::isinstance<py::list>(t[3])) {
                for (const py::handle piece : t[3]) pieces.emplace_back(batch.size(), piece);
              } else if (!t[3].is_none()) {
                pieces.emplace_back(batch.size(), t[3]);
              }
              if (!t[4].is_none()) task.timeout_s = t[4].cast<double>();
              batch.push_back(std::move(task));
            }
            bool taken = false;
            {
              // Copied once, into a buffer of the attachment's exact size, without the GIL (the results
              // thread goes on meanwhile); the buffers are released with it, after.
              py::gil_scoped_release release;
              join_pieces(pieces, batch);
              taken = self.submit(std::move(batch));
            }
            pieces.clear();
            return taken;
          },
          "Queues tasks [(id, fn, args_json, attachment, timeout)]; False once closed.")
      .def(
          "collect",
          [](PoolEngine& self, std::optional<double> timeout, std::size_t max) {
            std::vector<PoolResult> results;
            {
              py::gil_scoped_release release;
              results = self.collect(timeout, max);
            }
            return to_python(std::move(results));
          },
          py::arg("timeout") = py::none(), py::arg("max") = 4096,
          "Finished tasks [(id, ok, value_or_error_json, attachment, attempts, worker)], waiting up to timeout "
          "for the first; an attachment is None, bytes, or from 64 KiB a ResultBytes buffer.")
      .def("close", &PoolEngine::close, py::call_guard<py::gil_scoped_release>(), "Ends input.")
      .def("terminate", &PoolEngine::terminate, py::call_guard<py::gil_scoped_release>(), "Stops now.")
      .def("join", &PoolEngine::join, py::arg("timeout") = py::none(), py::call_guard<py::gil_scoped_release>(),
           "Waits for the engine to return; True if it has.")
      .def("ended", &PoolEngine::ended, "True once the engine returned and every result was collected.")
      .def("summary_json", &PoolEngine::summary_json, "The run's summary as JSON text.")
      .def("forget", &PoolEngine::forget, "In a forked child: leave the parent's engine alone.");
}
