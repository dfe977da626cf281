// The start-up window (SECURITY.md): whether the runner and its workers start "sealed", that is non-dumpable
// from their execve on, so that no other process of the user can ptrace them or copy their fds before they
// make themselves non-dumpable. The kernel gives that to an executable the user cannot read (root-owned, mode
// 0711) and, through Yama ptrace_scope >= 1, to every process; nothing checked later can make up for it.
// Also: the runner learns that it was stopped (SIGSTOP/SIGTSTP) through a SIGCONT handler.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace authrun::runner {

// Yama's kernel.yama.ptrace_scope, or -1 when the kernel has no Yama.
int yama_scope();

// Records whether this process is still non-dumpable as its execve left it. Call first thing in main,
// before any prctl of ours.
void note_own_start();

// Whether this process started non-dumpable (as note_own_start found it).
bool own_start_sealed();

// What the kernel guarantees one program at its start, for the user running us.
struct SealCheck {
  bool sealed = false;  // no same-user process can attach to it before its own prctl
  std::string why;      // "root-owned, mode 0711: not readable by uid 1000", "readable by uid 1000 (mode 0755, owner uid 1000)"
};

// The seal of executable `path` started by this process's real uid: sealed if Yama ptrace_scope >= 1,
// if we run as root (only root may attach), or if the file is not readable by the real uid.
SealCheck executable_seal(const std::string& path);

// True if `argv` starts a wrapper rather than the worker itself: a shell, env, or a script ("#!"). A wrapper
// runs dumpable until it execs the worker, whatever the worker's own mode.
bool is_wrapper(const std::vector<std::string>& argv);

// The start-up window of a run: the runner itself, and the local worker command (`worker_argv`, empty when
// every worker is launched elsewhere).
struct WindowReport {
  bool runner_sealed = false;
  bool workers_sealed = false;
  bool wrapper = false;       // the worker command is a wrapper (never sealed: see is_wrapper)
  std::string runner_why;     // as SealCheck::why, for the runner
  std::string workers_why;    // for the worker command
  std::string worker_program; // argv[0] of the worker command
};
WindowReport assess_start_window(const std::vector<std::string>& worker_argv);

// The warning a run prints once on stderr when the window is open (empty when all is sealed), naming what is
// open and the remedies.
std::string window_warning(const WindowReport& report);

// Why --require-sealed refuses this run (empty when it does not).
std::string sealed_refusal(const WindowReport& report);

// The lines `authrun --version` adds: the ptrace policy and, for authrun, authrun-worker and authrun-python
// found in `directory`, whether each starts sealed for the user running it.
std::string window_status_text(const std::string& directory);

// Installs a SIGCONT handler that counts continues (the runner was stopped, then continued): from then on
// continues() moves each time. Idempotent.
void watch_continues();
// The number of times this process was continued since watch_continues().
std::uint64_t continues();
// Blocks SIGCONT in this thread, or unblocks it. Threads inherit the mask: block it around the creation of
// helper threads, so that the handler runs on the main thread, before any more of its code after a stop.
void mask_continue(bool blocked);

}  // namespace authrun::runner
