// -j in GNU parallel's forms: N, 0 (as many as sensible), +N and -N (cores plus or minus N), N% (of the cores).
#pragma once

#include <optional>
#include <string>

namespace authrun::runner {

// Workers for `text` on a machine with `cores` cores, at least 1; nullopt if `text` is none of the forms.
// 0 means as many as possible for GNU parallel (one per job); here it is k_jobs_for_zero workers.
std::optional<int> parse_jobs(const std::string& text, int cores);

inline constexpr int k_jobs_for_zero = 64;

}  // namespace authrun::runner
