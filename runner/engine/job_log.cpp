// --joblog writer.
#include "runner/engine/job_log.hpp"

#include <cerrno>
#include <cstring>

namespace authrun::runner {

protocol::Result<JobLog> JobLog::open(const std::string& path, bool append) {
  static constexpr char k_header[] = "Seq\tId\tWorker\tHost\tAttempt\tStarttime\tJobRuntime\tOutcome\tMessage\n";
  std::FILE* f = std::fopen(path.c_str(), append ? "a+e" : "we");
  if (!f) return protocol::make_error(protocol::ErrorCode::io, "cannot write joblog " + path + ": " + std::strerror(errno));
  std::fseek(f, 0, SEEK_END);
  if (std::ftell(f) == 0) {
    std::fputs(k_header, f);
  } else {
    // Appending: the columns must be these, or the lines would not line up (and --resume would misread them).
    char first[sizeof k_header + 1] = {};
    std::rewind(f);
    const bool same = std::fgets(first, sizeof first, f) && std::strcmp(first, k_header) == 0;
    std::fseek(f, 0, SEEK_END);
    if (!same) {
      std::fclose(f);
      return protocol::make_error(protocol::ErrorCode::usage, "joblog " + path +
                                                                  " has other columns (written by an older authrun?): "
                                                                  "give a new --joblog file");
    }
  }
  std::fflush(f);
  return JobLog(f);
}

JobLog::~JobLog() {
  if (m_file) std::fclose(m_file);
}

void JobLog::record(std::uint64_t seq, const std::string& id, int worker, const std::string& host, int attempt,
                    std::chrono::system_clock::time_point start, double runtime_s, const std::string& outcome,
                    const std::string& message) {
  auto clean = [](std::string s) {
    for (char& c : s) {
      if (c == '\t' || c == '\n' || c == '\r') c = ' ';
    }
    return s;
  };
  double start_s = std::chrono::duration<double>(start.time_since_epoch()).count();
  std::fprintf(m_file, "%llu\t%s\t%d\t%s\t%d\t%.3f\t%.3f\t%s\t%s\n", static_cast<unsigned long long>(seq),
               clean(id).c_str(), worker, clean(host).c_str(), attempt, start_s, runtime_s, outcome.c_str(), clean(message).c_str());
  std::fflush(m_file);
}

}  // namespace authrun::runner
