// The progress line on stderr: on a terminal it is redrawn in place and wiped before any other line is
// written to that terminal (a result line on stdout, a log line on stderr), so the two never mix.
#pragma once

#include <string>

namespace authrun::runner {

class ProgressLine {
 public:
  // The one progress line of this process (there is one stderr).
  static ProgressLine& on_stderr();

  // Draws `text` in place of the previous one: on a terminal "\r" + text + erase-to-end-of-line; elsewhere
  // (--progress into a file) one line per call.
  void draw(const std::string& text);
  // Wipes the line if one is drawn on a terminal (a no-op otherwise), so that the next output starts at
  // column 0 of an empty line. Cheap when nothing is drawn: call it before every line.
  void clear();
  // Ends the drawn line where it is (a newline on a terminal): the last text stays on screen.
  void finish();
  // Whether `fd` is the terminal the line is drawn on (a result line there must clear() first).
  bool shares_terminal_with(int fd) const;

 private:
  ProgressLine();
  bool m_terminal;    // stderr is a terminal
  bool m_drawn = false;
};

}  // namespace authrun::runner
