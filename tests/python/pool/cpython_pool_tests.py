"""CPython's own Pool tests (the _TestPool class of Lib/test/_test_multiprocessing.py, from the interpreter this
runs on) against authrun.Pool. The harness is adapted, not the tests: the class is combined with the module's
ProcessesMixin as its create_test_cases does, with Pool = authrun.Pool. A test listed in DIFFERENCES is a
deliberate difference, named with its reason in README (and skipped here, saying so).

Run with PYTHONPATH holding the authrun package with its extension module (build/python), and
AUTHRUN_PYTHON_WORKER set to the authrun-python worker to use (else the package finds it)."""

import os
import sys
import unittest

import authrun
from test import _test_multiprocessing as cpython_tests

# Deliberate differences from multiprocessing.Pool (README, "Python: authrun.Pool").
DIFFERENCES = {}


def _pool(*args, **kwargs):
    worker = os.environ.get("AUTHRUN_PYTHON_WORKER")
    if worker:
        kwargs.setdefault("worker", worker)
    return authrun.Pool(*args, **kwargs)


class WithAuthrunTestPool(cpython_tests._TestPool, cpython_tests.ProcessesMixin, unittest.TestCase):
    Pool = staticmethod(_pool)


for name, reason in DIFFERENCES.items():
    setattr(WithAuthrunTestPool, name, unittest.skip("deliberate difference: " + reason)(getattr(WithAuthrunTestPool, name)))


if __name__ == "__main__":
    result = unittest.main(argv=[sys.argv[0], "-v"] + sys.argv[1:], exit=False).result
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
