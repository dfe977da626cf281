// `authrun exec --joblog`: GNU parallel's joblog (Seq Host Starttime JobRuntime Send Receive Exitval Signal
// Command), so that scripts reading parallel's joblogs read authrun's, and --resume / --resume-failed.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "protocol/result.hpp"

namespace authrun::runner {

class ExecJobLog {
 public:
  // Creates (truncates) `path`, or with `append` appends to it, writing the header if the file is empty.
  // Errors: io; usage when appending to a file whose header is not GNU parallel's (its lines would not fit).
  static protocol::Result<ExecJobLog> open(const std::string& path, bool append);
  ExecJobLog(ExecJobLog&& other) noexcept : m_file(std::exchange(other.m_file, nullptr)) {}
  ExecJobLog& operator=(ExecJobLog&&) = delete;
  ExecJobLog(const ExecJobLog&) = delete;
  ~ExecJobLog();

  // Writes and flushes one job's line. `start` in seconds since the epoch; `command` with newlines and tabs
  // shown as spaces. Returns false if writing failed.
  bool record(std::uint64_t seq, const std::string& host, double start, double runtime_s, std::uint64_t received,
              int exitval, int signal, const std::string& command);

 private:
  explicit ExecJobLog(std::FILE* file) : m_file(file) {}
  std::FILE* m_file;
};

// The jobs a joblog records: all of them, those that succeeded (Exitval 0 and Signal 0 on any of their lines,
// as GNU parallel reads it) and their commands. A missing
// file records none. Errors: io, usage (not GNU parallel's columns), naming the file and line.
struct JobLogRecord {
  std::set<std::uint64_t> all, succeeded;
  std::map<std::uint64_t, std::string> commands;  // each job's Command, from its last line (--retry-failed)
};
protocol::Result<JobLogRecord> read_exec_joblog(const std::string& path);

}  // namespace authrun::runner
