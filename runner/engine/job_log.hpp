// --joblog: one tab-separated line per task attempt, in the manner of GNU parallel's joblog.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "protocol/result.hpp"

namespace authrun::runner {

class JobLog {
 public:
  // Creates (truncates) `path`, or with `append` appends to it, and writes the header line if the file is
  // empty: Seq Id Worker Host Attempt Starttime JobRuntime Outcome Message. Errors: io.
  static protocol::Result<JobLog> open(const std::string& path, bool append);
  JobLog(JobLog&& other) noexcept : m_file(std::exchange(other.m_file, nullptr)) {}
  JobLog& operator=(JobLog&&) = delete;
  JobLog(const JobLog&) = delete;
  ~JobLog();

  // Writes and flushes one attempt. `seq` is the task's 1-based number; `id` its id as JSON text; `worker`
  // 0 when none, `host` where it ran ("-" when none); `outcome` one word (ok, or the error type); tabs and
  // newlines in `host` and `message` are replaced by spaces.
  void record(std::uint64_t seq, const std::string& id, int worker, const std::string& host, int attempt,
              std::chrono::system_clock::time_point start, double runtime_s, const std::string& outcome,
              const std::string& message);

 private:
  explicit JobLog(std::FILE* file) : m_file(file) {}
  std::FILE* m_file;
};

}  // namespace authrun::runner
