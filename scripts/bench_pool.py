#!/usr/bin/python3
"""authrun.Pool against multiprocessing.Pool on this machine, in alternating pairs (authrun, multiprocessing,
authrun, ...), the median of each side reported with the ratio. Debian's python3; the extension module and
authrun-python of build/ (PYTHONPATH=build/python is set by this script if the package is not importable).

Usage: scripts/bench-pool [--pairs N] [--quick] [--stages]

  map       Pool(2).map(inc, range(200_000)), pool start and close included (multiprocessing: its default
            start method, fork, and its default chunksize).
  imap      Pool(2).imap_unordered(inc, range(200_000)) without chunksize (authrun: adaptive chunks) against
            multiprocessing's chunksize 1, and against its best of chunksize 10, 100, 1000, 10000 (measured
            once beforehand); the pools are started before the clock. Then the same over a list of those ints
            (authrun cuts a range into ranges, which pickle as two numbers; a list into lists).
  bytes     Pool(2).map(size, data), data 200 distinct 1 MiB bytes objects, started pools. Distinct: with the same
            object 200 times ([b] * 200), pickle's memo sends it once a chunk (multiprocessing: 8 MiB of the 200),
            which measures the memo, not 200 payloads.
  start     Pool(2) creation to the first result of apply(inc, (1,)): authrun against multiprocessing's spawn
            context (whose workers import the main script, as authrun's do).

--stages: where a worker's start goes (medians of N runs, each stage a fresh process doing what an authrun-python
worker does up to there, the last one also importing this script as a worker loads the main script), beside a
fork of this warm interpreter (multiprocessing's default) and authrun.Pool(2)'s creation to its first result.
The stages after the fork's are what exec-ing a fresh interpreter costs; a worker is never a fork of the caller:
it is authrun-python exec'd fresh (installed root-owned 0711: non-dumpable from its start, see SECURITY.md).
"""

import argparse
import multiprocessing
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
try:
    import authrun
except ImportError:
    sys.path.insert(0, os.path.join(HERE, "..", "build", "python"))
    import authrun


def inc(x):
    return x + 1


def size(data):
    return len(data)


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def pairs(n, ours, theirs):
    a, b = [], []
    for _ in range(n):
        a.append(ours())
        b.append(theirs())
    return statistics.median(a), statistics.median(b)


def bench_map(n):
    def ours():
        return timed(lambda: _map(authrun.Pool))

    def theirs():
        return timed(lambda: _map(multiprocessing.Pool))

    def _map(make):
        with make(2) as p:
            assert p.map(inc, range(200_000))[-1] == 200_000

    return pairs(n, ours, theirs)


def bench_imap(n):
    items = range(200_000)
    with authrun.Pool(2) as ap, multiprocessing.Pool(2) as mp:
        ap.map(inc, range(10))
        mp.map(inc, range(10))
        best = min((timed(lambda: sum(mp.imap_unordered(inc, items, chunksize=c))), c) for c in (10, 100, 1000, 10000))[1]
        ours = lambda: timed(lambda: sum(ap.imap_unordered(inc, items)))
        one = pairs(n, ours, lambda: timed(lambda: sum(mp.imap_unordered(inc, items, chunksize=1))))
        tuned = pairs(n, ours, lambda: timed(lambda: sum(mp.imap_unordered(inc, items, chunksize=best))))
        # The same over a list: authrun cuts a range into ranges (a chunk pickles as two numbers), a list into
        # lists, as multiprocessing cuts both.
        listed = list(items)
        as_list = pairs(n, lambda: timed(lambda: sum(ap.imap_unordered(inc, listed))),
                        lambda: timed(lambda: sum(mp.imap_unordered(inc, listed, chunksize=best))))
    return one, tuned, as_list, best


def bench_bytes(n):
    data = [os.urandom(1 << 20) for _ in range(200)]  # 200 payloads, not one object 200 times (see above)
    with authrun.Pool(2) as ap, multiprocessing.Pool(2) as mp:
        ap.map(inc, range(10))
        mp.map(inc, range(10))
        return pairs(n, lambda: timed(lambda: ap.map(size, data)), lambda: timed(lambda: mp.map(size, data)))


def bench_start(n):
    spawn = multiprocessing.get_context("spawn")

    def first(make):
        t = time.perf_counter()
        p = make(2)
        p.apply(inc, (1,))
        took = time.perf_counter() - t
        p.terminate()
        p.join()
        return took

    return pairs(n, lambda: first(authrun.Pool), lambda: first(spawn.Pool))


def stages(n):
    import re
    import subprocess
    py = ["/usr/bin/python3", "-I", "-S", "-c"]
    host = "import json, json.encoder, base64, os, sys, pickle; "
    site = "import site; site.main(); "
    main_script = "sys.path[:0] = %r; import bench_pool" % ([HERE, os.path.join(HERE, "..", "build", "python")],)
    steps = [
        ("exec of a fresh interpreter, isolated, no site", py + ["pass"]),
        ("+ the host's imports (json, base64, pickle)", py + [host]),
        ("+ site (the user's site-packages, .pth files)", py + [host + site]),
        ("+ importing the main script (this one)", py + [host + site + main_script]),
    ]

    def median_of(fn):
        return statistics.median(timed(fn) for _ in range(n))

    def fork():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)

    print("median of %d runs, %d CPUs, Python %s" % (n, os.cpu_count(), sys.version.split()[0]))
    print("%-58s %9.1f ms" % ("fork of this interpreter (and its exit)", median_of(fork) * 1e3))
    for name, argv in steps:
        print("%-58s %9.1f ms" % (name, median_of(lambda: subprocess.run(argv, check=True)) * 1e3))

    # authrun.Pool(2) in a process of its own, verbose: the engine logs each worker's spawn to handshake done
    # (exec, dynamic linking, key hand-over, handshake); the first result comes after the worker's interpreter
    # has started and loaded the program (this script as __mp_main__).
    probe = ("import re, sys, time; sys.path[:0] = %r; import bench_pool, authrun; authrun.Pool(1).terminate(); "
             "t = time.perf_counter(); p = authrun.Pool(2, verbose=True); p.apply(bench_pool.inc, (1,)); "
             "print(time.perf_counter() - t); p.terminate(); p.join()") % (
                 [HERE, os.path.join(HERE, "..", "build", "python")],)
    shakes, firsts = [], []
    for _ in range(n):
        out = subprocess.run(["/usr/bin/python3", "-c", probe], check=True, capture_output=True, text=True)
        us = [int(m) for m in re.findall(r"handshake ok \([a-z]+, (\d+) us\)", out.stderr)]
        shakes.append(max(us) / 1e3 if us else float("nan"))
        firsts.append(float(out.stdout.split()[-1]) * 1e3)
    print("%-58s %9.1f ms" % ("authrun-python spawned to handshake done (slower of 2)", statistics.median(shakes)))
    print("%-58s %9.1f ms" % ("authrun.Pool(2) creation to its first result", statistics.median(firsts)))


def row(name, ours, theirs, better="lower"):
    ratio = ours / theirs
    print("%-58s %9.3f s %9.3f s   %5.2fx" % (name, ours, theirs, ratio))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="3 pairs")
    ap.add_argument("--stages", action="store_true", help="where a worker's start goes (N = --pairs runs each)")
    args = ap.parse_args()
    n = 3 if args.quick else args.pairs
    if args.stages:
        stages(n)
        return
    print("median of %d alternating pairs, %d CPUs, Python %s" % (n, os.cpu_count(), sys.version.split()[0]))
    print("%-58s %11s %11s   %s" % ("", "authrun", "mp", "authrun/mp"))
    row("Pool(2).map(inc, range(200_000)), start included", *bench_map(n))
    one, tuned, as_list, best = bench_imap(n)
    row("imap_unordered(inc, 200_000): no chunksize vs mp chunksize 1", *one)
    row("imap_unordered(inc, 200_000): no chunksize vs mp chunksize %d" % best, *tuned)
    row("the same over a list of 200,000 ints, vs mp chunksize %d" % best, *as_list)
    row("map(size, 200 x 1 MiB bytes)", *bench_bytes(n))
    row("Pool(2) creation to first result (mp: spawn)", *bench_start(n))


if __name__ == "__main__":
    main()
