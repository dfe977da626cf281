// The progress line on stderr.
#include "runner/engine/progress_line.hpp"

#include <cstdio>

#include <sys/stat.h>
#include <unistd.h>

namespace authrun::runner {

ProgressLine& ProgressLine::on_stderr() {
  static ProgressLine line;
  return line;
}

ProgressLine::ProgressLine() : m_terminal(::isatty(2) == 1) {}

void ProgressLine::draw(const std::string& text) {
  if (m_terminal) {
    std::fprintf(stderr, "\r%s\033[K", text.c_str());
    m_drawn = true;
  } else {
    std::fprintf(stderr, "%s\n", text.c_str());
  }
  std::fflush(stderr);
}

void ProgressLine::clear() {
  if (!m_drawn) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
  m_drawn = false;
}

void ProgressLine::finish() {
  if (!m_drawn) return;
  std::fputc('\n', stderr);
  std::fflush(stderr);
  m_drawn = false;
}

bool ProgressLine::shares_terminal_with(int fd) const {
  if (!m_terminal || ::isatty(fd) != 1) return false;
  struct stat a {}, b {};
  return ::fstat(fd, &a) == 0 && ::fstat(2, &b) == 0 && a.st_rdev == b.st_rdev;
}

}  // namespace authrun::runner
