// Helpers shared by the tests: pipe pairs, temporary directories, running a real program and collecting
// its output, talking to a running child, reading `authrun run` output, and looking at processes in /proc.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "protocol/fd.hpp"
#include "protocol/message.hpp"
#include "protocol/run_key.hpp"

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

// How much longer things may take in this build than in a plain one: 10 under AddressSanitizer (3-10x slower,
// more on a busy machine), else 1; times $AUTHRUN_TEST_TIME_SCALE when that is set (a slow machine). Every time
// limit of the tests goes through scaled(), and the helpers below scale theirs: a limit is there to end a hang,
// never to measure speed.
double time_scale();
template <class Rep, class Period>
std::chrono::milliseconds scaled(std::chrono::duration<Rep, Period> limit) {
  return std::chrono::milliseconds(
      static_cast<long long>(std::chrono::duration<double, std::milli>(limit).count() * time_scale()));
}

// What a finished program did.
struct RunOutput {
  int exit_code = -1;  // -1 if killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
};

// Runs argv[0] (a path) with `input` on stdin; collects stdout and stderr; kills it after scaled(`timeout`).
RunOutput run_program(const std::vector<std::string>& argv, const std::string& input = "",
                      std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Splits text into lines (without the newlines); a trailing newline gives no empty last line.
std::vector<std::string> split_lines(const std::string& text);

// Reads a whole file.
std::string read_file(const std::string& path);

// True if `part` occurs in `text`.
bool contains(const std::string& text, const std::string& part);

// How many times `part` occurs in `text`, overlapping occurrences included.
std::size_t count(const std::string& text, const std::string& part);

// A child process with pipes on its stdin, stdout and stderr, which it owns; SIGKILLed and reaped on destruction.
struct Child {
  pid_t pid = -1;
  protocol::Fd in, out, err;
  Child() = default;
  // Takes over `other`'s process and pipes; `other` is left owning nothing.
  Child(Child&& other) noexcept;
  ~Child();
  // Reaps the child (waiting as long as it takes) and returns its wait status; pid becomes -1.
  int wait();
};

// Starts argv[0] (a path) with SIGPIPE, SIGINT and SIGTERM at their defaults and an empty signal mask; `fd3`,
// if given, becomes the child's fd 3 (the caller keeps `fd3`). Ignores SIGPIPE here; REQUIREs that it worked.
Child spawn_child(const std::vector<std::string>& argv, int fd3 = -1);

// Starts a worker (argv[0] a path) with a key rendezvous as fd 3, as spawn_child does, and plays the
// runner's side of the v2 key hand-over (protocol::serve_key_request) with `key`, within 20 s; REQUIREs
// that the worker asked and was answered.
Child spawn_worker_with_key(const std::vector<std::string>& argv, const protocol::RunKey& key);

// Reads from `fd` into `buf` until `done(buf)`, EOF, a read error or `deadline` (the time left until it
// scaled); returns done(buf).
bool read_until(int fd, std::string& buf, const std::function<bool(const std::string&)>& done,
                std::chrono::steady_clock::time_point deadline);

// Writes all of `text` to `fd` within scaled(20 s); REQUIREs that it worked.
void write_text(int fd, const std::string& text);

// One JSON value per line of `out` (result lines of `authrun run`); REQUIREs every line to be JSON.
std::vector<protocol::json> parse_results(const std::string& out);

// The "authrun: N tasks: ..." summary line of `authrun run`'s stderr, or "" if there is none.
std::string summary_of(const std::string& err);

// A task as one JSONL input line, newline included.
std::string task_line(const protocol::json& task);

// `n` sleep tasks of `seconds` each, ids 0..n-1, as JSONL input: the built-in sleep, or with `exec` a
// `sleep` child process (which a busy worker then has).
std::string sleep_tasks(int n, double seconds, bool exec = false);

// Waits up to scaled(`limit`) for `done()`, checking every 50 ms; returns whether it came true.
bool eventually(const std::function<bool()>& done, std::chrono::seconds limit = std::chrono::seconds(20));

// A worker command (this build's authrun-worker) with `marker` in its argv, to find its processes by.
std::string marked_worker(const std::string& marker);

// Pids of the authrun-worker processes with `marker` in their argv that have a child (a running exec task).
std::vector<int> busy_workers(const std::string& marker);

// CHECKs that `results` are `n` ok results with ids 0..n-1, each once; returns how many took more than one attempt.
int check_each_ok_once(const std::vector<protocol::json>& results, int n);

// A new key file `name` in `dir`, made by `authrun keygen`; returns its path.
std::string new_key_file(const TempDir& dir, const std::string& name = "run.key");

// Runs `authrun run --no-progress OPTIONS` with `input` on stdin (60 s at most); see run_program.
RunOutput run_batch(const std::vector<std::string>& options, const std::string& input);

// The parent pid of process `pid` from /proc/PID/stat, or 0 if it is gone or unreadable.
int parent_of(pid_t pid);

// Pids of the processes whose parent is `parent` (from /proc/*/stat); REQUIREs /proc to be readable.
std::vector<int> children_of(pid_t parent);

// Pids of the live processes whose argv[0] is `program` (or ends in "/program") and whose command line
// contains `marker`. A zombie has no command line: it does not count.
std::vector<int> processes_running(const std::string& program, const std::string& marker);

// Paths of the built binaries.
inline const char* authrun_bin() { return AUTHRUN_BIN; }
inline const char* worker_bin() { return AUTHRUN_WORKER_BIN; }
inline const char* source_dir() { return AUTHRUN_SOURCE_DIR; }

}  // namespace authrun::test
