// The `exec` built-in function: runs a program with its output captured, optional stdin text, a timeout
// and a cap on the output kept.
#pragma once

#include "worker/functions.hpp"

namespace authrun::worker {

// args: {"argv": [non-empty array of strings], "env": {name: value} added to / overriding the worker's
// environment, "cwd": directory, "stdin": text written to the child's stdin then closed (absent: /dev/null),
// "timeout": seconds > 0, "max_output": bytes kept per stream (default 1 MiB, at most 64 MiB)}; all but
// argv optional (null means absent). argv[0] without a slash is searched in the worker's PATH (posix_spawnp),
// not in env.PATH.
// The child runs in its own process group with default signal dispositions and an empty signal mask. It
// inherits none of the worker's fds beyond 0, 1 and 2: every fd of this project is O_CLOEXEC, and fds >= 3
// the worker itself inherited without the flag are closed in the child too (closefrom). 0, 1 and 2 are the
// child's own pipes (or /dev/null for stdin), never the worker's protocol pipes.
// Blocks until the child has exited and its stdout and stderr are closed (a background grandchild keeping
// them open keeps exec waiting), or until the timeout: then the whole process group gets SIGKILL.
// Output beyond max_output is read and dropped, so the child never blocks on a full pipe.
// Success (whatever the exit status): {"exit_code": int|null, "signal": int|null, "signal_name":
// "SIGKILL"|null, "stdout", "stderr": strings (raw bytes), "stdout_truncated", "stderr_truncated",
// "timed_out": bools, "duration_ms": number}. On the first call, sets SIGPIPE to SIG_IGN in the worker if it
// was SIG_DFL, so a child that does not read its stdin cannot kill the worker.
// Errors: bad_args (field named), exec_failed (spawn failed, e.g. "exec: cannot run 'X': No such file or
// directory", or an unusable cwd, or no pipes/fds left).
FunctionResult exec_function(json&& args);

// Kills the process group of the exec child running now, if any. Async-signal-safe: the worker's SIGTERM
// handler calls it so that no task child outlives a worker whose runner has gone.
void kill_running_exec_child();

}  // namespace authrun::worker
