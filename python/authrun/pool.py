"""authrun.Pool: multiprocessing.pool.Pool's API on authrun's engine and authenticated workers."""

import collections
import itertools
import threading
import warnings
from multiprocessing import TimeoutError
from multiprocessing.pool import CLOSE, RUN, TERMINATE

from . import _core

__all__ = ["Pool", "AsyncResult", "ApplyResult", "MapResult", "IMapIterator", "IMapUnorderedIterator"]

# imap without chunksize: chunks grow from one item, doubling, up to this, and to len/(4*processes) rounded up
# (map's default chunksize, as multiprocessing's) if the input has a length. Large enough that a chunk's round
# trip (about 40 us here) costs little; small enough that a chunk's objects fit the arenas a worker's
# allocator keeps: at 25,000 ints a chunk the workers' Python mapped and unmapped arenas for each chunk (about
# 1,500 page faults per 200,000 items, a fifth more of their CPU).
_MAX_ADAPTIVE_CHUNK = 8192


def _chunk_call(func, chunk, star):
    """The call that runs a chunk in a worker, built of picklable builtins only: list(map(func, items))."""
    if not star:
        return list, (map(func, chunk),), {}
    lengths = {len(args) for args in chunk}
    if len(lengths) == 1 and 0 not in lengths:
        return list, (map(func, *zip(*chunk)),), {}
    return list, (itertools.starmap(func, chunk),), {}


class ApplyResult:
    """The result of apply_async (multiprocessing.pool.AsyncResult)."""

    def __init__(self, callback=None, error_callback=None, decode=_core.decode_result):
        self._decode = decode
        self._event = threading.Event()
        self._callback = callback
        self._error_callback = error_callback
        self._success = None
        self._value = None

    def ready(self):
        return self._event.is_set()

    def successful(self):
        if not self.ready():
            raise ValueError("{0!r} not ready".format(self))
        return self._success

    def wait(self, timeout=None):
        self._event.wait(timeout)

    def get(self, timeout=None):
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError
        if self._success:
            return self._value
        raise self._value

    def _set(self, success, value):
        self._success, self._value = success, value
        if success and self._callback:
            self._callback(value)
        if not success and self._error_callback:
            self._error_callback(value)
        self._event.set()

    def _deliver(self, ok, text, attachment):
        self._set(*self._decode(ok, text, attachment))


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """The result of map_async and starmap_async: a list once every chunk is back, or the first exception."""

    def __init__(self, chunks, length, callback, error_callback, decode=_core.decode_result, single=False):
        super().__init__(callback, error_callback, decode)
        self._single = single  # each chunk one item sent alone (serializer="json"): its value is the item's
        self._success = True
        self._value = [None] * length
        self._bounds = []
        start = 0
        for chunk in chunks:
            self._bounds.append((start, start + len(chunk)))
            start += len(chunk)
        self._left = len(self._bounds)
        if self._left == 0:
            self._set_all()

    def _set_all(self):
        if self._callback:
            self._callback(self._value)
        self._event.set()

    def _deliver_chunk(self, index, ok, text, attachment):
        success, value = self._decode(ok, text, attachment)
        if not self._success:
            return  # failed already: later chunks are dropped
        if success:
            begin, end = self._bounds[index]
            self._value[begin:end] = [value] if self._single else value
            self._left -= 1
            if self._left == 0:
                self._set_all()
        else:
            self._success = False
            self._value = value
            if self._error_callback:
                self._error_callback(value)
            self._event.set()


class IMapIterator:
    """The iterator imap returns: results in order, each as soon as it and those before it are back."""

    _ordered = True

    def __init__(self, decode=_core.decode_result, single=False):
        self._decode = decode
        self._single = single  # each chunk one item sent alone (serializer="json")
        self._cond = threading.Condition(threading.Lock())
        self._items = collections.deque()  # (success, values) of chunks ready to be returned, in order
        self._current = iter(())            # the values of the chunk being returned (taken without the lock)
        self._unsorted = {}                 # chunk index -> (success, values) back early (ordered only)
        self._next_chunk = 0
        self._chunks = None                 # how many chunks, once the input has ended
        self._done_chunks = 0

    def __iter__(self):
        # for, list(), sum() take the values through this generator, a chunk at a time delegated to the chunk's
        # own list iterator (`yield from`: no call per value; a call of next() per value, or a deque's popleft,
        # cost more than the work of the values). multiprocessing's imap with a chunksize flattens its chunks
        # in a generator too. The list iterator is shared with next() and advances before a value is yielded,
        # so a loop left early loses none of them for the next consumer.
        while True:
            yield from self._current
            try:
                value = self.next()  # the next chunk, when it is back
            except StopIteration:
                return
            yield value

    def next(self, timeout=None):
        # A chunk's values go one by one from its list iterator (whose next is atomic), the lock only taken per
        # chunk: taken per item, it cost imap several times the work of the items it returned.
        for value in self._current:
            return value
        with self._cond:
            while True:
                for value in self._current:  # refilled by another consumer meanwhile
                    return value
                if self._items:
                    success, values = self._items.popleft()
                    if not success:
                        raise values
                    self._current = iter(values)
                    continue
                if self._chunks is not None and self._done_chunks == self._chunks:
                    raise StopIteration from None
                if not self._cond.wait(timeout) and not self._items:
                    raise TimeoutError from None

    __next__ = next

    def _put_locked(self, success, values):
        self._items.append((success, values))

    def _chunk_done(self, index, success, values):
        with self._cond:
            self._done_chunks += 1
            if not self._ordered:
                self._put_locked(success, values)
            elif index != self._next_chunk:
                self._unsorted[index] = (success, values)
            else:
                self._put_locked(success, values)
                self._next_chunk += 1
                while self._next_chunk in self._unsorted:
                    self._put_locked(*self._unsorted.pop(self._next_chunk))
                    self._next_chunk += 1
            self._cond.notify_all()

    def _deliver_chunk(self, index, ok, text, attachment):
        success, value = self._decode(ok, text, attachment)
        self._chunk_done(index, success, [value] if success and self._single else value)

    def _set_length(self, chunks):
        with self._cond:
            self._chunks = chunks
            self._cond.notify_all()


class IMapUnorderedIterator(IMapIterator):
    """The iterator imap_unordered returns: results as they come back."""

    _ordered = False


class Pool:
    """A pool of authrun workers with multiprocessing.pool.Pool's API.

    Pool(processes=None, initializer=None, initargs=(), maxtasksperchild=None, *, timeout=None, retries=1,
         mode=None, hosts=None, slurm=False, key_file=None, audit_log=None, worker=None, allow_ptrace=False)

    The keyword-only options have the CLI's meanings: `timeout` is each task's limit in seconds (the task then
    fails with authrun.TaskTimeout), `retries` the extra attempts of a task whose worker died or timed out
    (then authrun.WorkerDied), `mode` "authenticated" or "encrypted", `hosts` ssh hosts ("host:slots", ":"
    for this machine) and `slurm` srun steps to start workers through, `key_file` a run key to use, `audit_log`
    a file to append each handshake's outcome to, `allow_ptrace` to start in a process that is being traced.

    The workers' keys are made in this process: a pool makes it not dumpable for the rest of its life (other
    processes of the user can no longer ptrace it or read its memory; no core dumps), and refuses to start in
    a process that is traced (PermissionError) unless allow_ptrace."""

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None, context=None, **options):
        import os
        self._state = TERMINATE  # until the engine runs (a failed constructor leaves nothing running)
        if processes is None:
            processes = os.cpu_count() or 1
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None and (not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._processes = processes
        self._core = _core.Core(processes, initializer, initargs, maxtasksperchild, owner=self, **options)
        self._pool = list(range(1, processes + 1))  # the worker slots (multiprocessing keeps its Processes here)
        self._state = RUN

    def __repr__(self):
        return "<%s.%s state=%s pool_size=%d>" % (type(self).__module__, type(self).__qualname__, self._state,
                                                  self._processes)

    def __del__(self, _warn=warnings.warn, RUN=RUN):
        if getattr(self, "_state", None) == RUN:
            _warn(f"unclosed running multiprocessing pool {self!r}", ResourceWarning, source=self)

    def _check_running(self):
        if self._state != RUN:
            raise ValueError("Pool not running")
        if not self._core.in_parent():
            raise ValueError("Pool not running: it belongs to the process that created it (this is a fork of it)")

    # --- one call

    def apply(self, func, args=(), kwds={}):
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        self._check_running()
        call = self._core.encode(func, tuple(args), dict(kwds))
        result = ApplyResult(callback, error_callback, self._core.decode)
        self._core.submit([(call, result._deliver)])
        return result

    # --- many calls

    def _chunks(self, iterable, chunksize):
        # A range is cut into ranges: a chunk pickles as two numbers, and no list of its items is made.
        items = iterable if type(iterable) is range else list(iterable)
        if chunksize is None:
            chunksize, extra = divmod(len(items), self._processes * 4)
            if extra:
                chunksize += 1
        if chunksize < 1:
            chunksize = 1
        return [items[i:i + chunksize] for i in range(0, len(items), chunksize)]

    def _map_async(self, func, iterable, star, chunksize, callback, error_callback):
        self._check_running()
        core = self._core
        if core.json:
            # JSON tasks go one item each: the engine puts them in batches itself.
            chunks = [[item] for item in (iterable if hasattr(iterable, "__len__") else list(iterable))]
            calls = [core.encode(func, tuple(c[0]) if star else (c[0],), {}) for c in chunks]
            result = MapResult(chunks, len(chunks), callback, error_callback, core.decode, True)
            core.submit([(call, _bind(result, i)) for i, call in enumerate(calls)])
            return result
        chunks = self._chunks(iterable, chunksize)
        result = MapResult(chunks, sum(len(c) for c in chunks), callback, error_callback, core.decode)
        # Each chunk goes to the engine soon after it is pickled, in batches that double from one: the workers
        # start on the first while the rest are pickled and copied (pickling them all first kept the workers
        # idle for all of it). A chunk that cannot be pickled raises here, at the call site; chunks sent
        # before it still run (as multiprocessing's do), their results unseen.
        batch, size = [], 1
        for i, chunk in enumerate(chunks):
            batch.append((core.encode(*_chunk_call(func, chunk, star), user_func=func), _bind(result, i)))
            if len(batch) >= size:
                core.submit(batch)
                batch, size = [], min(size * 2, 256)
        if batch:
            core.submit(batch)
        return result

    def map(self, func, iterable, chunksize=None):
        return self._map_async(func, iterable, False, chunksize, None, None).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._map_async(func, iterable, False, chunksize, callback, error_callback)

    def starmap(self, func, iterable, chunksize=None):
        return self._map_async(func, iterable, True, chunksize, None, None).get()

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._map_async(func, iterable, True, chunksize, callback, error_callback)

    def _imap(self, result, func, iterable, chunksize):
        self._check_running()
        if chunksize is not None and chunksize < 1:
            raise ValueError("Chunksize must be 1+, not {0:n}".format(chunksize))
        cap = _MAX_ADAPTIVE_CHUNK
        if self._core.json:
            chunksize, cap = 1, 1  # one item a task: the engine batches JSON tasks itself
        elif chunksize is None and hasattr(iterable, "__len__"):
            cap = max(1, min(cap, -(-len(iterable) // (4 * self._processes))))
        # A range is cut into ranges (a chunk pickles as two numbers, and no list of its items is made).
        source = iterable if type(iterable) is range else iter_or_error(iterable)
        thread = threading.Thread(target=_feed_imap, args=(self._core, result, func, source,
                                                           chunksize, cap),
                                  name="authrun-imap-feed", daemon=True)
        thread.start()
        return result

    def imap(self, func, iterable, chunksize=None):
        return self._imap(IMapIterator(self._core.decode, self._core.json), func, iterable, chunksize)

    def imap_unordered(self, func, iterable, chunksize=None):
        return self._imap(IMapUnorderedIterator(self._core.decode, self._core.json), func, iterable, chunksize)

    # --- the pool's life

    def close(self):
        if self._state == RUN:
            self._state = CLOSE
            if self._core.in_parent():
                self._core.close()

    def terminate(self):
        self._state = TERMINATE
        if self._core.in_parent():
            self._core.terminate()
            self._core.join()

    def join(self):
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._state not in (CLOSE, TERMINATE):
            raise ValueError("In unknown state")
        if self._core.in_parent():
            self._core.join()

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.terminate()


def _bind(result, index):
    return lambda ok, text, attachment: result._deliver_chunk(index, ok, text, attachment)


def iter_or_error(iterable):
    """iter(iterable), or an iterator that raises what iter() raised (on the feeding thread). The iterable's own
    iterator, not a wrapper: a Python __next__ per item cost more than the items' work."""
    try:
        return iter(iterable)
    except Exception as e:
        return _raising(e)


def _raising(error):
    raise error
    yield


def _feed_imap(core, result, func, it, chunksize, cap):
    """imap's feeder thread: takes the input (an iterator, or a range) a chunk at a time (growing chunks without
    a chunksize), pickles each and submits it. An exception of the input, or of pickling, takes the place of
    that chunk's results."""
    index = 0
    size = chunksize or 1
    islice = itertools.islice
    taken = 0  # of a range
    try:
        while True:
            try:
                if type(it) is range:
                    chunk = it[taken:taken + size]
                    taken += len(chunk)
                else:
                    chunk = list(islice(it, size))  # not an item at a time in Python: that cost more than the chunk's work
            except Exception as e:
                result._chunk_done(index, False, e)
                index += 1
                return
            if not chunk:
                return
            try:
                if core.json:
                    call = core.encode(func, (chunk[0],), {})
                else:
                    call = core.encode(*_chunk_call(func, chunk, False), user_func=func)
            except Exception as e:
                result._chunk_done(index, False, e)
                index += 1
                continue
            try:
                core.submit([(call, _bind(result, index))])
            except ValueError as e:
                result._chunk_done(index, False, e)
                index += 1
                return
            index += 1
            if chunksize is None:
                size = min(size * 2, cap)
    finally:
        result._set_length(index)
