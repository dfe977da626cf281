"""What authrun.Pool and authrun.ProcessPoolExecutor share: one engine (the C++ engine of `authrun run`, on a
thread of its own inside this process, through the _engine extension), the thread that hands its results to
Python, how calls and results are (un)pickled, and the exceptions a task can end with.

A call travels as a task whose fn is `authrun.pickled`, null args, and the attachment
pickle.dumps((func, args, kwargs), protocol=5): raw bytes over the authenticated channel, never base64. The
worker (authrun-python) answers {"raised": false} with pickle.dumps(value), or {"raised": true} with
pickle.dumps((exception, traceback_text))."""

import base64
import builtins
import itertools
import json
import os
import pickle
import shutil
import sys
import threading
import traceback
import weakref

from multiprocessing.pool import RemoteTraceback

from . import _native

PICKLED_FN = "authrun.pickled"
_RAISED_FALSE = ('{"raised":false}', '{"raised": false}')


class TaskError(Exception):
    """A task that ended without a value or an exception of its own: `type` says why (the engine's word)."""

    def __init__(self, message, type="error"):
        super().__init__(message)
        self.type = type


class TaskTimeout(TaskError):
    """The task ran longer than its time limit (timeout=): its worker was stopped, and it was not retried
    further (retries= counts a timeout as a failed attempt)."""


class WorkerDied(TaskError):
    """The task's worker died running it on every attempt (retries= + 1): a segfault, os._exit, a kill."""


def _engine_error(err):
    kind = err.get("type", "error")
    message = err.get("message", "")
    if kind == "timeout":
        exc = TaskTimeout(message, kind)
    elif kind == "worker_died":
        exc = WorkerDied(message, kind)
    elif isinstance(getattr(builtins, kind, None), type) and issubclass(getattr(builtins, kind), Exception):
        try:
            exc = getattr(builtins, kind)(message)  # serializer="json": a builtin exception by its name
        except Exception:
            exc = TaskError("%s: %s" % (kind, message), kind)
    else:
        exc = TaskError("%s: %s" % (kind, message), kind)
    tb = (err.get("details") or {}).get("traceback") if isinstance(err.get("details"), dict) else None
    if tb:
        exc.__cause__ = RemoteTraceback(tb)
    return exc


def decode_result(ok, text, attachment):
    """(success, value or exception) for one finished task."""
    if not ok:
        try:
            return False, _engine_error(json.loads(text))
        except ValueError:
            return False, TaskError(text)
    try:
        if text in _RAISED_FALSE:
            return True, pickle.loads(attachment)
        meta = json.loads(text)
        if not isinstance(meta, dict) or "raised" not in meta:
            return True, meta  # a worker that answers in JSON (serializer="json")
        payload = pickle.loads(attachment)
        if not meta["raised"]:
            return True, payload
        exc, tb = payload
        if isinstance(exc, BaseException):
            exc.__cause__ = RemoteTraceback(tb)
            return False, exc
        return False, TaskError(str(exc))
    except Exception as e:  # an unpicklable answer: the caller lacks a class the worker had
        return False, e


def _unescape(value):
    """The worker's JSON value: {"$bytes": base64} is bytes, {"$dict": {...}} that dict as it is."""
    if isinstance(value, dict):
        if len(value) == 1:
            if isinstance(value.get("$bytes"), str):
                return base64.b64decode(value["$bytes"])
            if isinstance(value.get("$dict"), dict):
                return {k: _unescape(v) for k, v in value["$dict"].items()}
        return {k: _unescape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unescape(v) for v in value]
    return value


def decode_json_result(ok, text, attachment):
    """(success, value or exception) for a task sent with serializer="json"."""
    if not ok:
        return decode_result(ok, text, attachment)
    if attachment is not None and text == "null":
        return True, attachment if type(attachment) is bytes else bytes(attachment)  # a large one comes as a view
    value = json.loads(text)
    return True, _unescape(value) if '"$' in text else value


def _json_default(obj):
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(obj)).decode("ascii")}
    raise TypeError("%s cannot go as JSON (serializer='json'): %r" % (type(obj).__name__, obj))


_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_json_default)


def json_call(func, args, kwargs):
    """(fn, args JSON, attachment) of a call with serializer="json": the function by its module (the main
    script's as __mp_main__) and name, positional args as an array or keyword args as an object, with the CLI's
    value rules (bytes as {"$bytes": base64}; non-empty bytes last among positional args as the raw
    attachment)."""
    module = getattr(func, "__module__", None)
    name = getattr(func, "__qualname__", None)
    if not module or not name or "<" in name:
        raise pickle.PicklingError("cannot send %r to a worker: with serializer='json' a function goes by its module "
                                   "and name; define it at the top level of the main script or of a module "
                                   "given in modules=" % (func,))
    if module == "__main__":
        module = "__mp_main__"
    if args and kwargs:
        raise TypeError("serializer='json' passes positional or keyword arguments to %s, not both" % name)
    attachment = None
    if args and isinstance(args[-1], (bytes, bytearray, memoryview)) and len(args[-1]):
        attachment, args = args[-1], args[:-1]
    body = kwargs if kwargs else list(args)
    return "%s.%s" % (module, name), _JSON.encode(body), attachment


def dumps_call(func, args, kwargs, user_func=None):
    """The attachment of one call. A function that cannot go by reference (a lambda, a closure, a function of
    an interactive session) raises here, at the call site, naming it. `user_func`: the user's function when
    `func` is a chunk's wrapper around it.

    The attachment is the list of what the pickler wrote, in order: its frames, and each large bytes or
    bytearray as the object itself (pickle writes those past its buffer). The engine's submit copies them once,
    into the task's own buffer of the exact size: no growing BytesIO between (a second copy, and fresh pages
    each call: for MiBs of bytes that cost more than the copy)."""
    pieces = []
    try:
        pickle.Pickler(_Pieces(pieces.append), protocol=5).dump((func, args, kwargs))
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        func = user_func if user_func is not None else func
        try:
            pickle.dumps(func, protocol=5)
        except Exception:
            raise pickle.PicklingError(
                "cannot send %r to a worker: functions go by reference (module and qualified name), so a lambda, "
                "a closure or a local function cannot; define it at the top level of a module or of the main "
                "script (%s)" % (func, e)) from e
        raise
    return pieces


class _Pieces:
    """A pickler's file that keeps what is written as it is (see dumps_call)."""

    __slots__ = ("write",)

    def __init__(self, write):
        self.write = write


def _find_worker():
    """The authrun-python worker: in the package (a wheel), in the build this extension came from, in the
    prefix it was installed to (PREFIX/lib/python3*/dist-packages/authrun -> PREFIX/bin), the configured
    bindir, or on PATH."""
    engine = _native.load()
    here = os.path.dirname(os.path.abspath(engine.__file__))
    candidates = [os.path.join(here, "authrun-python")]
    if here.startswith(os.path.dirname(engine.build_bin_dir) + os.sep):
        candidates.append(os.path.join(engine.build_bin_dir, "authrun-python"))
    candidates.append(os.path.normpath(os.path.join(here, "..", "..", "..", "..", "bin", "authrun-python")))
    candidates.append(os.path.join(engine.install_bin_dir, "authrun-python"))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    found = shutil.which("authrun-python")
    if found:
        return os.path.abspath(found)
    raise FileNotFoundError("authrun-python (the Python worker) was not found (looked in %s and on PATH): install "
                            "authrun, or pass worker=PATH" % ", ".join(candidates))


def program_body(initializer, initargs, modules=()):
    """The program message each worker gets after its handshake: the main script as __mp_main__ (so that
    functions defined in it resolve, and its `if __name__ == "__main__":` block does not run), this sys.path
    and working directory, and the initializer."""
    extra_modules = list(modules)
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    modules = []
    if path and path.endswith(".py") and os.path.exists(path) and not hasattr(sys, "ps1"):
        modules.append({"name": "__mp_main__", "file": os.path.abspath(path)})
        sys.modules.setdefault("__mp_main__", main)  # what the worker pickles as __mp_main__.X resolves here
    else:
        modules.append({"name": "pickle"})  # no script (python -c, a session): nothing of the caller's to load
    for name in extra_modules:
        modules.append({"name": name})
    cwd = os.getcwd()
    sys_path = []
    for p in sys.path:
        if isinstance(p, str):
            p = os.path.abspath(p) if p else cwd
            if p not in sys_path:
                sys_path.append(p)
    body = {"modules": modules, "sys_path": sys_path, "cwd": cwd}
    if initializer is not None:
        if not callable(initializer):
            raise TypeError("initializer must be a callable")
        try:
            init = pickle.dumps((initializer, tuple(initargs)), protocol=5)
        except (pickle.PicklingError, AttributeError, TypeError) as e:
            raise pickle.PicklingError("cannot send the initializer %r to the workers: %s" % (initializer, e)) from e
        body["initializer"] = base64.b64encode(init).decode("ascii")
    return json.dumps(body)


# Engines of this process, so that a fork()ed child leaves them alone (their threads are not in the child).
_engines = {}
_engines_lock = threading.Lock()


def _after_fork_in_child():
    for engine in list(_engines.values()):
        engine.forget()
    _engines.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _collect(engine, pending, lock):
    """The results thread: hands each finished task to its result object until the engine has ended."""
    while True:
        batch = engine.collect(None)
        if not batch:
            if engine.ended():
                break
            continue
        for task_id, ok, text, attachment, _attempts, _worker in batch:
            with lock:
                deliver = pending.pop(task_id, None)
            if deliver is not None:
                try:
                    deliver(ok, text, attachment)
                except Exception:
                    traceback.print_exc()
            deliver = attachment = None
        batch = None
    # Anything still waiting (nothing should): it will never run.
    with lock:
        left = list(pending.values())
        pending.clear()
    for deliver in left:
        deliver(False, '{"type":"not_started","message":"the pool stopped before the task started"}', None)


def _shut(engine, pid, now, results_thread=None):
    """Closes (or with `now` terminates) an engine and waits for it and its results thread: a pool's
    finalizer, also at exit."""
    if os.getpid() != pid:
        return  # a fork()ed child: the parent's engine is not ours
    with _engines_lock:
        _engines.pop(id(engine), None)
    if now:
        engine.terminate()
    else:
        engine.close()
    engine.join(None)
    # The results thread ends once the engine has: wait for it here, while the interpreter still runs. Left
    # to the interpreter's end, a daemon thread waiting in the engine (GIL released) would be ended by
    # pthread_exit when it takes the GIL back, unwinding through C++ frames that may not be unwound
    # (std::terminate: "terminate called without an active exception").
    if results_thread is not None and results_thread is not threading.current_thread():
        results_thread.join()


class Core:
    """One engine and its results thread. Options have the CLI's meanings (see README)."""

    def __init__(self, processes, initializer=None, initargs=(), max_tasks=None, owner=None, *, worker=None,
                 timeout=None, retries=1, mode=None, hosts=None, slurm=False, key_file=None, audit_log=None,
                 joblog=None, handshake_timeout=None, serializer="pickle", modules=(), verbose=False,
                 allow_ptrace=False):
        engine_mod = _native.load()
        if serializer not in ("pickle", "json"):
            raise ValueError("serializer must be 'pickle' or 'json', not %r" % (serializer,))
        if max_tasks is not None and (not isinstance(max_tasks, int) or max_tasks < 1):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if isinstance(hosts, str):
            hosts = [hosts]
        self.processes = processes
        self.serializer = serializer
        self.json = serializer == "json"
        self.decode = decode_json_result if self.json else decode_result
        self.timeout = timeout
        self.pid = os.getpid()
        argv = [worker] if isinstance(worker, str) else list(worker) if worker else [_find_worker()]
        self.engine = engine_mod.Engine(
            worker_argv=argv, jobs=processes, program=program_body(initializer, initargs, modules), retries=retries,
            timeout=timeout, max_tasks_per_worker=max_tasks or 0, mode=mode, hosts=hosts, slurm=bool(slurm),
            key_file=key_file, audit_log=audit_log, joblog=joblog, handshake_timeout=handshake_timeout,
            verbose=verbose, allow_ptrace=bool(allow_ptrace))
        with _engines_lock:
            _engines[id(self.engine)] = self.engine
        self.pending = {}
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.thread = threading.Thread(target=_collect, args=(self.engine, self.pending, self.lock),
                                       name="authrun-results", daemon=True)
        self.thread.start()
        # Closed with no orphan when the owner goes away or at interpreter exit (terminated: as multiprocessing).
        self.finalizer = weakref.finalize(owner if owner is not None else self, _shut, self.engine, self.pid, True,
                                          self.thread)

    def in_parent(self):
        return os.getpid() == self.pid

    def encode(self, func, args, kwargs, user_func=None):
        """A call as (fn, args JSON, attachment), pickled or in JSON as the serializer says; raises here, at the
        call site, what cannot go."""
        if self.json:
            return json_call(func, args, kwargs)
        return PICKLED_FN, "null", dumps_call(func, args, kwargs, user_func)

    def submit(self, calls):
        """Queues [((fn, args JSON, attachment), deliver)]; deliver(ok, text, attachment) runs on the results
        thread."""
        tasks = []
        with self.lock:
            for (fn, args_json, attachment), deliver in calls:
                task_id = next(self.ids)
                self.pending[task_id] = deliver
                tasks.append((task_id, fn, args_json, attachment, None))
        if not self.engine.submit(tasks):
            with self.lock:
                for t in tasks:
                    self.pending.pop(t[0], None)
            raise ValueError("Pool not running")

    def close(self):
        self.engine.close()

    def terminate(self):
        self.engine.terminate()

    def join(self, timeout=None):
        """Waits for the engine (in short waits, so that Ctrl-C gets through) and the results thread."""
        import time
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.engine.join(0.05):
            if deadline is not None and time.monotonic() >= deadline:
                return False
        self.thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        with _engines_lock:
            _engines.pop(id(self.engine), None)
        self.finalizer.detach()
        return not self.thread.is_alive()
