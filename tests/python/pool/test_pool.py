"""authrun.Pool and authrun.ProcessPoolExecutor on real authrun-python workers over real pipes: what
multiprocessing users rely on, and what authrun adds (timeouts, retries, WorkerDied, the pool living on).

The functions tasks run are defined here, in the main script: the workers load this file as __mp_main__ (its
`if __name__ == "__main__":` block does not run there). No assertion is about time: limits are generous."""

import ctypes
import inspect
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
from concurrent.futures import CancelledError

import authrun
from authrun import Pool, ProcessPoolExecutor, TaskTimeout, WorkerDied

WORKER = os.environ.get("AUTHRUN_PYTHON_WORKER")
OPTS = {"worker": WORKER} if WORKER else {}
INIT_VALUE = None


class Custom(Exception):
    def __init__(self, code, text):
        super().__init__(code, text)
        self.code = code


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def whoami(_=None):
    return os.getpid()


def raise_custom(code):
    raise Custom(code, "custom failure")


def raise_key(key):
    raise KeyError(key)


def segfault(_=None):
    ctypes.string_at(0)


def sleep_then(seconds, value=None):
    time.sleep(seconds)
    return value


def set_init(value):
    global INIT_VALUE
    INIT_VALUE = value


def get_init(_=None):
    return INIT_VALUE, __name__


def fail_10_to_19(x):
    if 10 <= x < 20:
        raise Custom(x, "in the second chunk of ten")
    return x


def echo_bytes(data):
    return bytes(data)[::-1]


def children(pid=None):
    """Live (not zombie) processes whose parent is `pid` (this process)."""
    pid = pid or os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(entry))
    return found


def wait_no_children(test, limit=30.0):
    """Waits (up to a generous limit) until no worker is left; fails naming those left."""
    deadline = time.monotonic() + limit
    while children() and time.monotonic() < deadline:
        time.sleep(0.05)
    test.assertEqual(children(), [], "worker processes left behind")


class PoolTest(unittest.TestCase):
    def test_map_apply_imap_results(self):
        with Pool(2, **OPTS) as p:
            self.assertEqual(p.apply(add, (2, 3)), 5)
            self.assertEqual(p.apply(add, (), {"x": 1, "y": 2}), 3)
            self.assertEqual(p.map(inc, range(1000)), list(range(1, 1001)))
            self.assertEqual(p.starmap(add, [(i, i) for i in range(100)]), [2 * i for i in range(100)])
            self.assertEqual(list(p.imap(inc, range(500))), list(range(1, 501)))
            self.assertEqual(sorted(p.imap_unordered(inc, iter(range(500)))), list(range(1, 501)))
            r = p.apply_async(inc, (41,))
            self.assertEqual(r.get(timeout=60), 42)
            self.assertTrue(r.ready() and r.successful())

    def test_main_script_functions_and_name(self):
        # get_init lives in this script: the worker imported it as __mp_main__, not running its main block.
        with Pool(1, **OPTS) as p:
            value, name = p.apply(get_init)
        self.assertIsNone(value)
        self.assertEqual(name, "__mp_main__")

    def test_exception_reraised_with_type_and_remote_traceback(self):
        with Pool(2, **OPTS) as p:
            with self.assertRaises(Custom) as ctx:
                p.apply(raise_custom, (7,))
            self.assertEqual(ctx.exception.code, 7)
            self.assertIn("raise Custom(code", str(ctx.exception.__cause__))
            with self.assertRaises(KeyError):
                p.map(raise_key, ["a", "b"])
            errors = []
            p.apply_async(raise_key, ("z",), error_callback=errors.append).wait(60)
            self.assertIsInstance(errors[0], KeyError)
            self.assertEqual(p.apply(inc, (1,)), 2)  # the pool goes on

    def test_initializer_runs_once_per_worker_before_tasks(self):
        with Pool(2, initializer=set_init, initargs=("ready",), **OPTS) as p:
            self.assertEqual({v for v, _ in p.map(get_init, range(20), chunksize=1)}, {"ready"})

    def test_maxtasksperchild_recycles_workers(self):
        with Pool(1, maxtasksperchild=2, **OPTS) as p:
            pids = [p.apply(whoami) for _ in range(6)]
        self.assertEqual(len(set(pids)), 3, pids)

    def test_terminate_with_tasks_running_leaves_no_process(self):
        p = Pool(2, **OPTS)
        p.map(inc, range(2), chunksize=1)  # the workers are up
        r = p.map_async(sleep_then, [30] * 6, chunksize=1)
        time.sleep(0.5)  # most likely running by now (the test holds either way)
        p.terminate()
        p.join()
        wait_no_children(self)
        with self.assertRaises(authrun.TaskError):
            r.get(timeout=60)

    def test_segfault_retried_then_worker_died_pool_goes_on(self):
        with Pool(2, retries=1, **OPTS) as p:
            with self.assertRaises(WorkerDied) as ctx:
                p.apply(segfault)
            self.assertIn("died", str(ctx.exception))
            self.assertEqual(p.map(inc, range(10)), list(range(1, 11)))

    def test_timeout_raises_task_timeout(self):
        with Pool(1, timeout=0.5, retries=0, **OPTS) as p:
            with self.assertRaises(TaskTimeout):
                p.apply(sleep_then, (60,))
            self.assertEqual(p.apply(inc, (1,)), 2)

    def test_lambda_and_unpicklable_argument_fail_at_call_site(self):
        with Pool(1, **OPTS) as p:
            with self.assertRaises(pickle.PicklingError) as ctx:
                p.apply_async(lambda x: x, (1,))
            self.assertIn("lambda", str(ctx.exception))

            def local(x):
                return x

            with self.assertRaises(pickle.PicklingError) as ctx:
                p.map_async(local, [1])
            self.assertIn("local", str(ctx.exception))
            with self.assertRaises(TypeError):
                p.apply_async(inc, (threading.Lock(),))
            # An unpicklable item in a later chunk (the chunks before it already sent): raised at the call site
            # all the same, and the pool goes on.
            with self.assertRaises(TypeError):
                p.map(inc, list(range(50)) + [threading.Lock()], chunksize=10)
            self.assertEqual(p.apply(inc, (1,)), 2)

    def test_bytes_travel_raw(self):
        data = os.urandom(1 << 20)
        with Pool(2, **OPTS) as p:
            self.assertEqual(p.map(echo_bytes, [data] * 4, chunksize=1), [data[::-1]] * 4)
            # Distinct payloads, several a chunk, past the pickler's frame and within it, bytes and bytearray:
            # each one byte-exact, in its place.
            items = [os.urandom(n) for n in (0, 1, 70_000, 1 << 20, 3, 200_000, 65_536)]
            items += [bytearray(x) for x in items]
            self.assertEqual(p.map(echo_bytes, items, chunksize=5), [bytes(x)[::-1] for x in items])

    def test_every_task_ends_exactly_once(self):
        calls = []
        lock = threading.Lock()

        def note(kind):
            def record(value):
                with lock:
                    calls.append((kind, value))
            return record

        with Pool(3, retries=0, **OPTS) as p:
            results = []
            for i in range(300):
                fn, arg = (raise_key, i) if i % 7 == 0 else (inc, i)
                results.append(p.apply_async(fn, (arg,), callback=note("ok"), error_callback=note("err")))
            for r in results:
                r.wait(120)
            self.assertTrue(all(r.ready() for r in results))
        self.assertEqual(len(calls), 300)
        self.assertEqual(sum(1 for kind, _ in calls if kind == "err"), len(range(0, 300, 7)))

    def test_workers_that_cannot_start_end_each_call_with_an_error(self):
        with Pool(1, worker="/bin/false") as p:
            with self.assertRaises((authrun.TaskError, ValueError)):
                p.apply(inc, (1,))
            with self.assertRaises((authrun.TaskError, ValueError)):
                p.map(inc, range(3))

    def test_fork_in_caller_does_not_break_the_pool(self):
        with Pool(2, **OPTS) as p:
            self.assertEqual(p.apply(inc, (1,)), 2)
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    p.apply(inc, (1,))
                    code = 3  # the child must not use the parent's pool
                except ValueError:
                    pass
                os._exit(code)
            _, status = os.waitpid(pid, 0)
            self.assertEqual(os.waitstatus_to_exitcode(status), 0)
            self.assertEqual(p.map(inc, range(100)), list(range(1, 101)))


    def test_map_sends_a_chunk_a_task(self):
        """Without chunksize, map cuts the input as multiprocessing does (len / (4 * processes), rounded up) and
        sends each chunk as one task: the joblog, a line per task attempt, counts them."""
        n = 10_000
        with tempfile.TemporaryDirectory() as tmp:
            joblog = os.path.join(tmp, "joblog")
            p = Pool(2, joblog=joblog, **OPTS)
            try:
                self.assertEqual(p.map(inc, range(n)), list(range(1, n + 1)))                  # 8 chunks of 1250
                self.assertEqual(p.map(inc, range(n), chunksize=2000), list(range(1, n + 1)))  # 5
                self.assertEqual(p.starmap(add, [(i, i) for i in range(n)]), [2 * i for i in range(n)])  # 8
                self.assertEqual(list(p.imap(inc, range(n), chunksize=2500)), list(range(1, n + 1)))  # 4
                self.assertEqual(sorted(p.imap_unordered(inc, range(n), chunksize=5000)), list(range(1, n + 1)))  # 2
                # An exception in a chunk fails the whole map with that exception (one task: 1 chunk of 4).
                with self.assertRaises(Custom) as caught:
                    p.map(raise_custom, [7] * 4, chunksize=4)
                self.assertEqual(caught.exception.code, 7)
            finally:
                p.close()
                p.join()
            with open(joblog) as f:
                lines = [line for line in f.read().splitlines() if line and not line.startswith("Seq")]
        self.assertEqual(len(lines), 8 + 5 + 8 + 4 + 2 + 1, lines)


    def test_ranges_of_every_shape(self):
        """A range input (which the pool cuts into ranges, not lists) gives what a list of its items gives:
        steps, negative steps, empty ones, huge numbers, alone and with a chunksize, through map, imap and
        imap_unordered. (That ranges are sent shows in scripts/bench-pool, not here.)"""
        ranges = [range(0), range(1), range(5, 105, 3), range(100, -100, -7), range(10 ** 20, 10 ** 20 + 999),
                  range(-5, 5)]
        with Pool(2, **OPTS) as p:
            for r in ranges:
                want = [x + 1 for x in r]
                for chunksize in (None, 1, 7):
                    with self.subTest(r=r, chunksize=chunksize):
                        self.assertEqual(p.map(inc, r, chunksize), want)
                        self.assertEqual(list(p.imap(inc, r, chunksize)), want)
                        self.assertEqual(sorted(p.imap_unordered(inc, r, chunksize)), sorted(want))

    def test_imap_chunks_in_order_errors_timeouts_and_two_consumers(self):
        """imap returns a chunk's values one by one: in order, a failed chunk's exception in its place, a wait
        that times out raising TimeoutError, and every value exactly once to two threads reading one iterator."""
        with Pool(2, **OPTS) as p:
            it = p.imap(fail_10_to_19, range(40), chunksize=10)
            self.assertEqual([next(it) for _ in range(10)], list(range(10)))
            with self.assertRaises(Custom):
                next(it)  # items 10..19: their chunk failed, its exception once
            self.assertEqual(list(it), list(range(20, 40)))  # the later chunks go on
            # A for loop left in the middle of a chunk loses nothing: next() and another loop go on from there.
            it = p.imap(inc, range(100), chunksize=30)
            first = []
            for v in it:
                first.append(v)
                if len(first) == 45:
                    break
            self.assertEqual(first + [next(it)] + list(it), list(range(1, 101)))
            it = p.imap_unordered(inc, range(20_000), chunksize=100)
            got = [[], []]
            threads = [threading.Thread(target=lambda out=out: out.extend(it)) for out in got]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            self.assertEqual(sorted(got[0] + got[1]), list(range(1, 20_001)))
            slow = p.imap(sleep_then, [60] * 2, chunksize=1)
            with self.assertRaises(multiprocessing.TimeoutError):
                slow.next(timeout=0.05)
            # (the pool's exit stops the sleeping workers)


class JsonSerializerTest(unittest.TestCase):
    def test_values_bytes_and_errors_as_json(self):
        with Pool(2, serializer="json", **OPTS) as p:
            self.assertEqual(p.apply(add, (), {"x": 1, "y": 2}), 3)
            self.assertEqual(p.map(inc, range(300)), list(range(1, 301)))
            self.assertEqual(p.starmap(add, [(1, 2), (3, 4)]), [3, 7])
            self.assertEqual(p.apply(echo_bytes, (b"abc",)), b"cba")  # raw attachment both ways
            self.assertEqual(p.apply(echo_bytes, (memoryview(b"abcdef")[::2],)), b"eca")  # a strided view: its bytes
            big = os.urandom(300_000)
            back = p.apply(echo_bytes, (big,))
            self.assertIs(type(back), bytes)  # a large result is bytes too
            self.assertEqual(back, big[::-1])
            self.assertEqual(sorted(p.imap_unordered(inc, range(50))), list(range(1, 51)))
            with self.assertRaises(KeyError):
                p.apply(raise_key, ("k",))
            with self.assertRaises(TypeError):
                p.apply_async(inc, ({1, 2},))  # a set is no JSON: raised at the call
        with ProcessPoolExecutor(2, serializer="json", **OPTS) as ex:
            self.assertEqual(list(ex.map(add, [1, 2, 3], [4, 5, 6], chunksize=2)), [5, 7, 9])


class ScriptTest(unittest.TestCase):
    """Whole programs in a child interpreter: Ctrl-C, and a pool left open at exit."""

    def run_script(self, body, sig_after_ready=None):
        script = textwrap.dedent("""
            import os, sys, time
            import authrun
            OPTS = {"worker": os.environ["AUTHRUN_PYTHON_WORKER"]} if os.environ.get("AUTHRUN_PYTHON_WORKER") else {}
            def inc(x):
                return x + 1
            def sleep_then(s):
                time.sleep(s)
            """) + inspect.getsource(children) + "\nif __name__ == '__main__':\n" + textwrap.indent(textwrap.dedent(body), "    ")
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "script.py")
            with open(path, "w") as f:
                f.write(script)
            proc = subprocess.Popen([sys.executable, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if sig_after_ready:
                line = proc.stdout.readline()
                self.assertEqual(line.strip(), "ready", proc.stderr.read() if not line else line)
                proc.send_signal(sig_after_ready)
            out, err = proc.communicate(timeout=120)
            return proc.returncode, out, err

    def test_keyboard_interrupt_in_caller_ends_the_workers(self):
        code, out, err = self.run_script("""
            p = authrun.Pool(2, **OPTS)
            p.apply(inc, (1,))
            try:
                print("ready", flush=True)
                p.map(sleep_then, [60] * 4, chunksize=1)
            except KeyboardInterrupt:
                print("KeyboardInterrupt")
            p.terminate()
            print("children:", children())
            """, sig_after_ready=signal.SIGINT)
        self.assertEqual(code, 0, err)
        self.assertIn("KeyboardInterrupt", out)
        self.assertIn("children: []", out)

    def test_pool_left_open_at_exit_leaves_no_orphan(self):
        code, out, err = self.run_script("""
            p = authrun.Pool(2, **OPTS)
            print(p.apply(inc, (1,)))
            print(" ".join(map(str, children())), flush=True)
            """)
        self.assertEqual(code, 0, err)
        pids = out.splitlines()[1].split()
        self.assertEqual(len(pids), 2, out)
        deadline = time.monotonic() + 30
        while any(os.path.exists("/proc/%s" % pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse([pid for pid in pids if os.path.exists("/proc/%s" % pid)], "orphaned workers")


    def test_the_caller_is_sealed_and_a_traced_caller_refused(self):
        """The workers' keys are made in the caller: once a pool starts, it is not dumpable (no process of the
        user may ptrace it or read its memory); a caller traced already is refused unless allow_ptrace."""
        libc = ctypes.CDLL(None, use_errno=True)
        with Pool(1, **OPTS) as p:
            self.assertEqual(p.apply(inc, (1,)), 2)
            self.assertEqual(libc.prctl(3, 0, 0, 0, 0), 0)  # PR_GET_DUMPABLE
        script = textwrap.dedent("""
            import ctypes, os
            import authrun
            OPTS = {"worker": os.environ["AUTHRUN_PYTHON_WORKER"]} if os.environ.get("AUTHRUN_PYTHON_WORKER") else {}
            def inc(x):
                return x + 1
            if __name__ == "__main__":
                try:
                    authrun.Pool(1, **OPTS)
                    print("started while traced")
                except PermissionError as e:
                    print("refused:", e)
                with authrun.Pool(1, allow_ptrace=True, **OPTS) as p:
                    print("allowed:", p.apply(inc, (1,)), ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))
            """)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "traced.py")
            with open(path, "w") as f:
                f.write(script)
            out_path = os.path.join(d, "out")
            with open(out_path, "w") as out:
                pid = os.fork()
                if pid == 0:  # traced by this process from its exec on (PTRACE_TRACEME)
                    try:
                        os.dup2(out.fileno(), 1)
                        os.dup2(out.fileno(), 2)
                        libc.ptrace(0, 0, None, None)
                        os.execv(sys.executable, [sys.executable, path])
                    finally:
                        os._exit(127)
            deadline = time.monotonic() + 120
            while True:
                _, status = os.waitpid(pid, 0)
                if os.WIFEXITED(status) or os.WIFSIGNALED(status) or time.monotonic() > deadline:
                    break
                sig = os.WSTOPSIG(status)  # each stop continued, its signal passed on (the exec's SIGTRAP not)
                libc.ptrace(7, pid, None, ctypes.c_void_p(0 if sig == signal.SIGTRAP else sig))  # PTRACE_CONT
            with open(out_path) as f:
                text = f.read()
        self.assertTrue(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, text)
        self.assertIn("refused: refusing to start a pool: this process is traced by pid %d" % os.getpid(), text)
        self.assertIn("allowed: 2 0", text)


class ExecutorTest(unittest.TestCase):
    def test_submit_map_shutdown(self):
        with ProcessPoolExecutor(max_workers=2, **OPTS) as ex:
            self.assertEqual(ex.submit(add, 1, y=2).result(timeout=60), 3)
            self.assertEqual(list(ex.map(add, range(50), range(50), chunksize=7)), [2 * i for i in range(50)])
            self.assertEqual(list(ex.map(inc, range(10))), list(range(1, 11)))
            f = ex.submit(raise_custom, 3)
            self.assertIsInstance(f.exception(timeout=60), Custom)
        with self.assertRaises(RuntimeError):
            ex.submit(inc, 1)

    def test_shutdown_cancel_futures(self):
        ex = ProcessPoolExecutor(max_workers=1, **OPTS)
        ex.submit(inc, 1).result(timeout=60)
        futures = [ex.submit(sleep_then, 30) for _ in range(5)]
        ex.shutdown(wait=True, cancel_futures=True)
        for f in futures:
            self.assertTrue(f.cancelled() or f.done())
            if not f.cancelled():
                self.assertRaises((authrun.TaskError, CancelledError), f.result)
        wait_no_children(self)

    def test_initializer_and_max_tasks_per_child(self):
        with ProcessPoolExecutor(1, initializer=set_init, initargs=(5,), max_tasks_per_child=1, **OPTS) as ex:
            self.assertEqual(ex.submit(get_init).result(timeout=60)[0], 5)
            pids = {ex.submit(whoami).result(timeout=60) for _ in range(3)}
        self.assertEqual(len(pids), 3)


if __name__ == "__main__":
    result = unittest.main(argv=[sys.argv[0], "-v"] + sys.argv[1:], exit=False).result
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
