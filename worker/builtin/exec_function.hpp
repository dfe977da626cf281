// The `exec` built-in function: runs a program with its output captured, optional stdin text, a timeout
// and a cap on the output kept.
#pragma once

#include <functional>
#include <string_view>

#include "worker/builtin/functions.hpp"

namespace authrun::worker {

// args: {"argv": [non-empty array of strings or CBOR byte strings] (or "argv_base64": [base64 strings]),
// "env": {name: string or byte string} added to / overriding the worker's environment, "cwd": directory,
// "stdin": string or byte string (or "stdin_base64") written to the child's stdin then closed (absent:
// /dev/null), "timeout": seconds > 0, "max_output": bytes kept per stream (default 16 MiB, at most 64 MiB),
// "stream": true to send the output as it comes through the task's output sink (worker/task_output.hpp) instead of in the value};
// all but argv optional (null means absent). Arguments are bytes: nothing requires them to be UTF-8.
// argv[0] without a slash is searched in the worker's PATH (posix_spawnp), not in env.PATH.
// The child runs in its own process group with default signal dispositions and an empty signal mask. It
// inherits none of the worker's fds beyond 0, 1 and 2: every fd of this project is O_CLOEXEC, and fds >= 3
// the worker itself inherited without the flag are closed in the child too (closefrom). 0, 1 and 2 are the
// child's own pipes (or /dev/null for stdin), never the worker's protocol pipes.
// Blocks until the child has exited and its stdout and stderr are closed (a background grandchild keeping
// them open keeps exec waiting), or until the timeout: then the whole process group gets SIGKILL.
// Output beyond max_output is read and dropped (the child never blocks on a full pipe) and fails the task.
// The value: {"exit_code": int|null, "signal": int|null, "signal_name": "SIGKILL"|null, "stdout", "stderr":
// the output when it is valid UTF-8, else "stdout_base64"/"stderr_base64" (neither when streamed),
// "stdout_bytes", "stderr_bytes": counts, "stdout_truncated", "stderr_truncated", "timed_out": bools,
// "duration_ms": number}. It is the result only for exit status 0 with all output kept; otherwise the task
// fails with that value as the error's details and type "exit_status" (non-zero exit), "signal", "timeout",
// "output_too_large" or "output_lost" (a streamed chunk could not be sent; the child is killed).
// On the first call, sets SIGPIPE to SIG_IGN in the worker if it was SIG_DFL, so a child that does not read
// its stdin cannot kill the worker.
// Errors also: bad_args (field named), exec_failed (spawn failed, e.g. "exec: cannot run 'X': No such file
// or directory", or an unusable cwd, or no pipes/fds left); an argument quoted in a message is cut.
FunctionResult exec_function(json&& args);

}  // namespace authrun::worker
