// Result line writer.
#include "runner/result_sink.hpp"

namespace authrun::runner {

bool ResultSink::emit(const std::string& line) {
  if (std::fwrite(line.data(), 1, line.size(), m_out) != line.size()) return false;
  if (std::fputc('\n', m_out) == EOF) return false;
  return std::fflush(m_out) == 0;
}

bool ResultSink::drain() {
  bool ok = true;
  for (auto it = m_held.begin(); it != m_held.end() && it->first == m_next; it = m_held.erase(it), ++m_next) {
    if (it->second) {
      ok = emit(*it->second) && ok;
      m_held_bytes -= it->second->size();
    }
  }
  return ok;
}

bool ResultSink::write(std::uint64_t seq, const std::string& line) {
  if (!m_keep_order) return emit(line);
  if (m_held.emplace(seq, line).second) m_held_bytes += line.size();
  return drain();
}

bool ResultSink::skip(std::uint64_t seq) {
  if (!m_keep_order) return true;
  m_held.emplace(seq, std::nullopt);
  return drain();
}

}  // namespace authrun::runner
