"""authrun from Python.

`authrun.Pool` and `authrun.ProcessPoolExecutor` are drop-ins for multiprocessing's Pool and
concurrent.futures' ProcessPoolExecutor that run on authrun's engine (in this process, through the _engine
extension module) and its authenticated workers; `authrun.TaskTimeout`, `authrun.WorkerDied` and
`authrun.TaskError` are how a task can end besides its own value or exception.

`authrun run TASKS --python MODULE.py` starts interpreters on `authrun/_bootstrap.py` (the only code that runs
before the runner has proven the key); see that file, and protocol/PROTOCOL.md in the authrun sources."""

__version__ = "0.1.0"

__all__ = ["Pool", "ProcessPoolExecutor", "TaskError", "TaskTimeout", "WorkerDied"]

# Loaded on first use: the worker's bootstrap imports nothing of this, and an interpreter without the
# extension module can still import the package (and is told what to do when it asks for a pool).
_LAZY = {
    "Pool": "pool",
    "ProcessPoolExecutor": "futures",
    "TaskError": "_core",
    "TaskTimeout": "_core",
    "WorkerDied": "_core",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module 'authrun' has no attribute %r" % (name,))
    import importlib
    if name in ("Pool", "ProcessPoolExecutor"):
        from . import _native
        _native.load()  # one line saying what to do, on an interpreter the extension was not built for
    value = getattr(importlib.import_module("." + module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
