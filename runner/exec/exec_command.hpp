// `authrun exec`: a GNU parallel-style front end on the same engine and workers as `authrun run`; each job
// is an `exec` task, its output printed whole when it ends.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "runner/engine/engine.hpp"
#include "runner/exec/exec_args.hpp"
#include "runner/exec/exec_pipe.hpp"

namespace authrun::runner {

struct ExecOptions {
  EngineOptions engine;
  ExecCommand command;
  bool shell = false;        // run through /bin/sh -c (also when the command is one word with shell syntax)
  bool link = false;         // --link: pair the sources instead of crossing them
  bool keep_order = false;   // print jobs' output in input order
  bool tag = false;          // prefix each output line with the job's arguments and a tab
  bool dry_run = false;      // print the commands, run nothing
  bool resume = false;       // skip jobs the --joblog shows as done
  std::string results_dir;   // store each job's seq, stdout and stderr under DIR/1/<value>/2/<value>/ (GNU parallel's)
  std::string halt = "never";  // never | now,fail=N | soon,fail=N
  std::optional<double> timeout_s;  // per job (the child is killed; the worker stays)
  // GNU parallel's input and output options.
  char delimiter = '\n';     // -0 / -d: what ends an input value
  std::string colsep;        // --colsep: split each input line into columns ({1} {2} ...), a literal string here
  bool skip_empty = false;   // -r: no job for an empty (or blank) input line
  int max_args = 0;          // -N / -n: values per job from one source (0: one)
  enum class Multi { none, spread, context };
  Multi multi = Multi::none;  // -m / --xargs (values as separate words), -X (the word repeated per value)
  bool quote = false;        // -q: never run a one-word command through the shell
  std::string tagstring;     // --tagstring: the tag, with replacement strings
  bool line_buffer = false;  // --line-buffer: whole lines as they come, not a job's output at its end
  bool ungroup = false;      // -u: output as it comes, lines may mix
  bool resume_failed = false;  // --resume-failed: like --resume, but failed jobs run again
  std::optional<int> retries;  // --retries N: attempts per job whose command fails (0: no limit), as GNU parallel
  bool retry_failed = false;   // --retry-failed: run the joblog's failed jobs again (their commands, from the joblog)
  std::vector<std::string> env;  // --env NAME: this environment variable's value goes to every job (also remote ones)
  // --pipe: stdin is cut into chunks as GNU parallel cuts it (runner/exec/exec_pipe.hpp), one per job, given to the
  // job as its stdin; at most a few chunks are held (reading waits while every worker is busy).
  bool pipe = false;
  PipeSplit pipe_split;      // --block, --recstart, --recend, and -N as records per chunk
  double delay_s = 0;        // --delay: at least this long between job starts
};

// Runs the jobs; returns GNU parallel's exit status: 0 all succeeded, the number of failed jobs up to 100,
// 101 for more, 255 for other errors (usage, set-up), 128+signal when interrupted.
int run_exec(const ExecOptions& options);

}  // namespace authrun::runner
