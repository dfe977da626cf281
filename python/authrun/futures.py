"""authrun.ProcessPoolExecutor: concurrent.futures' Executor on authrun's engine and authenticated workers."""

import itertools
import os
import threading
import time
from concurrent.futures import Executor, Future

from . import _core
from .pool import _chunk_call

__all__ = ["ProcessPoolExecutor"]


class ProcessPoolExecutor(Executor):
    """ProcessPoolExecutor(max_workers=None, mp_context=None, initializer=None, initargs=(), *,
    max_tasks_per_child=None, timeout=None, retries=1, mode=None, hosts=None, slurm=False, key_file=None,
    audit_log=None, worker=None, allow_ptrace=False): the keyword-only options are authrun.Pool's, and so is what
    it does to this process (see authrun.Pool)."""

    def __init__(self, max_workers=None, mp_context=None, initializer=None, initargs=(), *, max_tasks_per_child=None,
                 **options):
        if max_workers is None:
            max_workers = os.cpu_count() or 1
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            if max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
        self._max_workers = max_workers
        self._shutdown = False
        self._lock = threading.Lock()
        self._futures = set()  # submitted and not yet done (for cancel_futures)
        self._core = _core.Core(max_workers, initializer, initargs, max_tasks_per_child, owner=self, **options)

    def submit(self, fn, /, *args, **kwargs):
        return self._submit_call((fn, args, kwargs), fn)

    def _submit_call(self, call, user_func):
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if not self._core.in_parent():
                raise RuntimeError("cannot schedule new futures in a fork of the process that made the executor")
        encoded = self._core.encode(*call, user_func=user_func)
        future = Future()
        with self._lock:
            self._futures.add(future)

        def deliver(ok, text, attachment, future=future, futures=self._futures, lock=self._lock,
                    decode=self._core.decode):
            with lock:
                futures.discard(future)
            if not future.set_running_or_notify_cancel():
                return
            success, value = decode(ok, text, attachment)
            if success:
                future.set_result(value)
            else:
                future.set_exception(value)

        self._core.submit([(encoded, deliver)])
        return future

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if chunksize == 1:
            return super().map(fn, *iterables, timeout=timeout)
        end_time = None if timeout is None else timeout + time.monotonic()
        args = zip(*iterables)
        chunks = iter(lambda: list(itertools.islice(args, chunksize)), [])
        if self._core.json:
            # One item a task: the engine batches JSON tasks itself.
            fs = [_as_list(self.submit(fn, *args)) for chunk in chunks for args in chunk]
        else:
            fs = [self._submit_call(_chunk_call(fn, chunk, True), fn) for chunk in chunks]

        def result_iterator():
            try:
                fs.reverse()
                while fs:
                    if end_time is None:
                        yield from fs.pop().result()
                    else:
                        yield from fs.pop().result(end_time - time.monotonic())
            finally:
                for future in fs:
                    future.cancel()

        return result_iterator()

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._lock:
            self._shutdown = True
            pending = list(self._futures) if cancel_futures else []
        if not self._core.in_parent():
            return
        if cancel_futures:
            # Tasks the engine has already taken cannot be told apart from running ones here: every future not
            # done is cancelled, and the engine stops now (a running task's worker is stopped with it).
            for future in pending:
                future.cancel()
            self._core.terminate()
        else:
            self._core.close()
        if wait:
            self._core.join()


def _as_list(future):
    """A future whose result is [the result of `future`] (Executor.map's chunks, one item each)."""
    out = Future()

    def done(f):
        if f.cancelled():
            out.cancel()
        elif f.exception() is not None:
            out.set_exception(f.exception())
        else:
            out.set_result([f.result()])

    future.add_done_callback(done)
    return out
