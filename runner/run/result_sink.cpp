// Result line writer.
#include "runner/run/result_sink.hpp"

#include <cerrno>

#include <unistd.h>

#include "runner/engine/progress_line.hpp"

namespace authrun::runner {

ResultSink::ResultSink(std::FILE* out, bool keep_order)
    : m_out(out), m_keep_order(keep_order), m_clears_progress(ProgressLine::on_stderr().shares_terminal_with(::fileno(out))) {}

bool ResultSink::emit(std::string_view text, bool ok) {
  if (text.size() >= k_flush_bytes) return write_out(text, ok);  // written from where it is, not queued
  m_pending.append(text);
  m_pending += '\n';
  ++(ok ? m_pending_ok : m_pending_failed);
  return m_pending.size() < k_flush_bytes || flush();
}

bool ResultSink::flush() { return write_out({}, true); }

bool ResultSink::write_out(std::string_view line, bool line_ok) {
  if (m_pending.empty() && line.empty()) return true;
  if (m_clears_progress) ProgressLine::on_stderr().clear();
  // Whatever went through the FILE before (a resumed file's newline) first.
  const bool ok = std::fflush(m_out) == 0 && write_all(m_pending) && (line.empty() || (write_all(line) && write_all("\n")));
  if (ok) {
    m_written_ok += m_pending_ok;
    m_written_failed += m_pending_failed;
    if (!line.empty()) ++(line_ok ? m_written_ok : m_written_failed);
  }
  m_pending.clear();
  m_pending_ok = m_pending_failed = 0;
  return ok;
}

bool ResultSink::write_all(std::string_view bytes) {
  const int fd = ::fileno(m_out);
  for (std::size_t at = 0; at < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + at, bytes.size() - at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    at += std::size_t(n);
  }
  return true;
}

bool ResultSink::drain() {
  bool ok = true;
  for (auto it = m_held.begin(); it != m_held.end() && it->first == m_next; it = m_held.erase(it), ++m_next) {
    if (it->second) {
      ok = emit(it->second->text, it->second->ok) && ok;
      m_held_bytes -= it->second->text.size();
    }
  }
  return ok;
}

bool ResultSink::write(std::uint64_t seq, std::string_view line, bool ok) {
  if (!m_keep_order) return emit(line, ok);
  if (m_held.emplace(seq, Line{std::string(line), ok}).second) m_held_bytes += line.size();
  return drain();
}

bool ResultSink::skip(std::uint64_t seq) {
  if (!m_keep_order) return true;
  m_held.emplace(seq, std::nullopt);
  return drain();
}

}  // namespace authrun::runner
