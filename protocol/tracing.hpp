// Who may trace us: making this process non-dumpable, refusing to run while traced, the kernel's ptrace policy.
#pragma once

#include <string>

#include "protocol/result.hpp"

namespace authrun::protocol {

// What /proc/PID/status says about who may trace process PID.
struct ProcStatus {
  int tracer_pid = 0;   // TracerPid: 0 when nothing traces it
  unsigned owner = 0;   // owner of the file: root (0) while the process is non-dumpable (for a non-root process)
};

// Reads /proc/PID/status (this process's when `pid` is 0) through one fd. Errors: io (cannot be read, or
// has no TracerPid line).
Result<ProcStatus> proc_status(int pid = 0);

// The TracerPid of process `pid` (this process when 0). Errors: as proc_status.
Result<int> tracer_pid(int pid = 0);

// Makes this process non-dumpable (prctl PR_SET_DUMPABLE 0: from here on no other process of the user may
// ptrace it, pidfd_getfd its fds or read its memory), then refuses to go on while a tracer is attached (one
// that attached before the prctl stays attached): "refusing to run: traced by pid N (--allow-ptrace to
// permit)". With `allow_ptrace` a tracer is accepted. Errors: key_invalid (traced), io.
Result<void> protect_self(bool allow_ptrace);

// The kernel's ptrace policy in one phrase, for -v output and the audit log: "Yama ptrace_scope 1
// (only a parent may attach)", or "no Yama (any process of the same user may attach to a dumpable one)".
std::string ptrace_policy();

}  // namespace authrun::protocol
