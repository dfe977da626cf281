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
  ResultSink(std::FILE* out, bool keep_order) : m_out(out), m_keep_order(keep_order) {}

  // Writes (or holds) the result line of task `seq`. Returns false if writing failed (errno set).
  bool write(std::uint64_t seq, const std::string& line);
  // Records that task `seq` will have no line (it never started), so later lines are not held for it.
  bool skip(std::uint64_t seq);
  // Lines held back waiting for an earlier one.
  std::size_t held() const { return m_held.size(); }
  // Bytes of the lines held back.
  std::size_t held_bytes() const { return m_held_bytes; }

 private:
  bool emit(const std::string& line);
  bool drain();

  std::FILE* m_out;
  bool m_keep_order;
  std::uint64_t m_next = 0;
  std::map<std::uint64_t, std::optional<std::string>> m_held;  // seq -> line (nullopt: skipped)
  std::size_t m_held_bytes = 0;
};

}  // namespace authrun::runner
