// Helpers shared by the tests: pipe pairs, temporary directories, running a real program and collecting
// its output.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "protocol/fd.hpp"

namespace authrun::test {

// Two pipes joining side A and side B: A writes a_out -> B reads b_in; B writes b_out -> A reads a_in.
struct Link {
  protocol::Fd a_in, a_out, b_in, b_out;
};
Link make_link();

// A fresh directory under $TMPDIR, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return m_path; }
  // Writes `content` to path()/name and returns the full path.
  std::string write(const std::string& name, const std::string& content) const;

 private:
  std::string m_path;
};

// What a finished program did.
struct RunOutput {
  int exit_code = -1;  // -1 if killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
};

// Runs argv[0] (a path) with `input` on stdin; collects stdout and stderr; kills it after `timeout`.
RunOutput run_program(const std::vector<std::string>& argv, const std::string& input = "",
                      std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Splits text into lines (without the newlines); a trailing newline gives no empty last line.
std::vector<std::string> split_lines(const std::string& text);

// Reads a whole file.
std::string read_file(const std::string& path);

// Paths of the built binaries.
inline const char* authrun_bin() { return AUTHRUN_BIN; }
inline const char* worker_bin() { return AUTHRUN_WORKER_BIN; }
inline const char* source_dir() { return AUTHRUN_SOURCE_DIR; }

}  // namespace authrun::test
