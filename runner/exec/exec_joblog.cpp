// GNU parallel's joblog format.
#include "runner/exec/exec_joblog.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

namespace authrun::runner {

using namespace protocol;

namespace {

constexpr char k_header[] = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand";

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> fields;
  std::istringstream in(line);
  for (std::string f; std::getline(in, f, '\t');) fields.push_back(std::move(f));
  return fields;
}

}  // namespace

Result<ExecJobLog> ExecJobLog::open(const std::string& path, bool append) {
  std::FILE* f = std::fopen(path.c_str(), append ? "a+e" : "we");
  if (!f) return make_error(ErrorCode::io, "cannot write joblog " + path + ": " + std::strerror(errno));
  std::fseek(f, 0, SEEK_END);
  if (std::ftell(f) == 0) {
    std::fprintf(f, "%s\n", k_header);
  } else {
    std::fseek(f, 0, SEEK_SET);
    char first[sizeof k_header + 2] = {};
    const bool same = std::fgets(first, sizeof first, f) && std::string(first) == std::string(k_header) + "\n";
    std::fseek(f, 0, SEEK_END);
    if (!same) {
      std::fclose(f);
      return make_error(ErrorCode::usage, "joblog " + path + " does not have GNU parallel's columns (" + k_header +
                                              "): not appending to it");
    }
  }
  std::fflush(f);
  return ExecJobLog(f);
}

ExecJobLog::~ExecJobLog() {
  if (m_file) std::fclose(m_file);
}

bool ExecJobLog::record(std::uint64_t seq, const std::string& host, double start, double runtime_s, std::uint64_t received,
                        int exitval, int signal, const std::string& command) {
  std::string cmd = command;
  for (char& c : cmd) {
    if (c == '\n' || c == '\t') c = ' ';
  }
  std::fprintf(m_file, "%llu\t%s\t%.3f\t%10.3f\t0\t%llu\t%d\t%d\t%s\n", static_cast<unsigned long long>(seq), host.c_str(),
               start, runtime_s, static_cast<unsigned long long>(received), exitval, signal, cmd.c_str());
  return std::fflush(m_file) == 0;
}

Result<JobLogRecord> read_exec_joblog(const std::string& path) {
  JobLogRecord r;
  std::ifstream in(path);
  if (!in) return r;
  std::string line;
  std::getline(in, line);
  if (line != k_header) {
    return make_error(ErrorCode::usage, path + ":1: not GNU parallel's joblog columns (" + std::string(k_header) + ")");
  }
  for (std::size_t n = 2; std::getline(in, line); ++n) {
    const std::vector<std::string> f = split_tabs(line);
    try {
      if (f.size() < 9) throw std::invalid_argument("fields");
      const std::uint64_t seq = std::stoull(f[0]);
      r.all.insert(seq);
      r.commands[seq] = f[8];
      if (std::stoi(f[6]) == 0 && std::stoi(f[7]) == 0) r.succeeded.insert(seq);
    } catch (const std::exception&) {
      return make_error(ErrorCode::usage, path + ":" + std::to_string(n) + ": not a joblog line (9 tab-separated fields)");
    }
  }
  return r;
}

}  // namespace authrun::runner
