"""authrun's Python worker: Python functions run for an authrun runner, after a mutual handshake.

`authrun run TASKS --python MODULE.py` starts interpreters on `authrun/_bootstrap.py` (the only code that runs
before the runner has proven the key); see that file, and protocol/PROTOCOL.md in the authrun sources."""

__version__ = "0.1.0"
