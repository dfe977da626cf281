// Writes result lines: each flushed as soon as it is written (a crash loses at most what was in flight),
// either as results arrive or, with keep_order, in input order.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <string>

namespace authrun::runner {

class ResultSink {
 public:
  // Writes to `out` (not owned). With `keep_order`, a line waits until every earlier task's line is out.
  // If `out` is the terminal the progress line is drawn on, each line wipes the progress line first.
  ResultSink(std::FILE* out, bool keep_order);

  // Writes (or holds) the result line of task `seq`, which succeeded if `ok`. Returns false if writing failed
  // (errno set).
  bool write(std::uint64_t seq, const std::string& line, bool ok);
  // Records that task `seq` will have no line (it never started), so later lines are not held for it.
  bool skip(std::uint64_t seq);
  // Lines held back waiting for an earlier one.
  std::size_t held() const { return m_held.size(); }
  // Lines written out (not held, not lost to a write error), of tasks that succeeded and that failed.
  std::uint64_t written_ok() const { return m_written_ok; }
  std::uint64_t written_failed() const { return m_written_failed; }
  // Bytes of the lines held back.
  std::size_t held_bytes() const { return m_held_bytes; }

 private:
  struct Line {
    std::string text;
    bool ok;
  };
  bool emit(const Line& line);
  bool drain();

  std::FILE* m_out;
  bool m_keep_order;
  bool m_clears_progress;
  std::uint64_t m_next = 0;
  std::map<std::uint64_t, std::optional<Line>> m_held;  // seq -> line (nullopt: skipped)
  std::uint64_t m_written_ok = 0, m_written_failed = 0;
  std::size_t m_held_bytes = 0;
};

}  // namespace authrun::runner
