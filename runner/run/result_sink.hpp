// Writes result lines: gathered while the event loop takes in what has arrived, then written with one
// write per loop turn (flush), either as results arrive or, with keep_order, in input order.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace authrun::runner {

class ResultSink {
 public:
  // Writes to `out` (not owned; written through its fd after flushing the FILE). With `keep_order`, a line
  // waits until every earlier task's line is out. If `out` is the terminal the progress line is drawn on,
  // each flush wipes the progress line first.
  ResultSink(std::FILE* out, bool keep_order);

  // Queues (or holds) the result line of task `seq`, which succeeded if `ok`; the caller flushes before its
  // event loop waits again. Returns false if writing failed (errno set): only when more than
  // k_flush_bytes were queued and had to go out at once.
  bool write(std::uint64_t seq, std::string_view line, bool ok);
  // Records that task `seq` will have no line (it never started), so later lines are not held for it.
  bool skip(std::uint64_t seq);
  // Writes every queued line with one write (more only for a partial write). False if writing failed
  // (errno set; EPIPE: the reader went away); the lines queued are then dropped.
  bool flush();
  // Lines held back waiting for an earlier one.
  std::size_t held() const { return m_held.size(); }
  // Lines written out (not held, not queued, not lost to a write error), of tasks that succeeded and failed.
  std::uint64_t written_ok() const { return m_written_ok; }
  std::uint64_t written_failed() const { return m_written_failed; }
  // Bytes of the lines held back.
  std::size_t held_bytes() const { return m_held_bytes; }

  // Queued bytes past which write() flushes at once.
  static constexpr std::size_t k_flush_bytes = std::size_t(1) << 20;

 private:
  struct Line {
    std::string text;
    bool ok;
  };
  bool emit(std::string_view text, bool ok);
  // Writes the queued lines, then `line` (a large one, not queued) with its newline; false on an error.
  bool write_out(std::string_view line, bool line_ok);
  // Writes `bytes` to the output's fd, retrying short writes; false on an error.
  bool write_all(std::string_view bytes);
  bool drain();

  std::FILE* m_out;
  bool m_keep_order;
  bool m_clears_progress;
  std::string m_pending;  // lines queued for the next flush, each with its newline
  std::uint64_t m_pending_ok = 0, m_pending_failed = 0;
  std::uint64_t m_next = 0;
  std::map<std::uint64_t, std::optional<Line>> m_held;  // seq -> line (nullopt: skipped)
  std::uint64_t m_written_ok = 0, m_written_failed = 0;
  std::size_t m_held_bytes = 0;
};

}  // namespace authrun::runner
