// Result line writer.
#include "runner/run/result_sink.hpp"

#include "runner/engine/progress_line.hpp"

namespace authrun::runner {

ResultSink::ResultSink(std::FILE* out, bool keep_order)
    : m_out(out), m_keep_order(keep_order), m_clears_progress(ProgressLine::on_stderr().shares_terminal_with(::fileno(out))) {}

bool ResultSink::emit(const Line& line) {
  if (m_clears_progress) ProgressLine::on_stderr().clear();
  if (std::fwrite(line.text.data(), 1, line.text.size(), m_out) != line.text.size()) return false;
  if (std::fputc('\n', m_out) == EOF) return false;
  if (std::fflush(m_out) != 0) return false;
  ++(line.ok ? m_written_ok : m_written_failed);
  return true;
}

bool ResultSink::drain() {
  bool ok = true;
  for (auto it = m_held.begin(); it != m_held.end() && it->first == m_next; it = m_held.erase(it), ++m_next) {
    if (it->second) {
      ok = emit(*it->second) && ok;
      m_held_bytes -= it->second->text.size();
    }
  }
  return ok;
}

bool ResultSink::write(std::uint64_t seq, const std::string& line, bool ok) {
  if (!m_keep_order) return emit(Line{line, ok});
  if (m_held.emplace(seq, Line{line, ok}).second) m_held_bytes += line.size();
  return drain();
}

bool ResultSink::skip(std::uint64_t seq) {
  if (!m_keep_order) return true;
  m_held.emplace(seq, std::nullopt);
  return drain();
}

}  // namespace authrun::runner
