// `authrun exec --halt`: GNU parallel's halt conditions (never | now|soon,fail|success|done=N|P%) and when
// one is met.
#pragma once

#include <cstdint>
#include <string>

#include "protocol/result.hpp"

namespace authrun::runner {

struct HaltPolicy {
  enum class When { never, now, soon };
  enum class What { fail, success, done };
  When when = When::never;
  What what = What::fail;
  std::uint64_t count = 0;  // halt once this many jobs failed/succeeded/ended; 0 when `percent` is used
  double percent = 0;       // halt once this share (of the jobs ended, at least 3) failed/succeeded/ended
};

// Parses --halt: "never" or "0"; "now,fail=N", "soon,success=P%", "now,done=N", ...; GNU parallel's old
// numbers "1" (soon,fail=1) and "2" (now,fail=1). Errors: usage, quoting the text and saying what was expected.
protocol::Result<HaltPolicy> parse_halt(const std::string& text);

// Whether the policy halts now that a job ended (`failed` says how), given the counts so far (this job
// included). A percentage is of `total` jobs when known (as GNU parallel counts), else of those ended (at
// least 3).
bool halt_reached(const HaltPolicy& policy, bool failed, std::uint64_t ended, std::uint64_t failures,
                  std::uint64_t total);

// GNU parallel's exit status after a halt: fail=1 gives the failing job's status (`job_status`); fail=N the
// number of failures (at most 101); fail=P% the percentage failed; success and done 0.
int halt_exit_status(const HaltPolicy& policy, int job_status, std::uint64_t failures, std::uint64_t total);

}  // namespace authrun::runner
