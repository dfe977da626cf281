// One stream of one `authrun exec` job's output, held until it may be printed: in memory up to a budget
// shared by all jobs, beyond it in an unlinked temporary file. Bytes are never changed or cut.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "protocol/result.hpp"

namespace authrun::runner {

// Bytes of output all buffers together may hold in memory; what does not fit goes to temporary files.
struct MemoryBudget {
  std::size_t limit = 0;
  std::size_t used = 0;
};

class OutputBuffer {
 public:
  // `budget` must outlive the buffer.
  explicit OutputBuffer(MemoryBudget& budget) : m_budget(budget) {}
  ~OutputBuffer();
  OutputBuffer(const OutputBuffer&) = delete;
  OutputBuffer& operator=(const OutputBuffer&) = delete;

  // Appends `bytes`, spilling to a temporary file (in $TMPDIR, else /tmp) once the budget is used up.
  // Errors: io (the temporary file cannot be created or written), naming the file's directory.
  protocol::Result<void> append(std::string_view bytes);
  // Writes everything held to `out` (again if called again), then flushes it. Errors: io.
  protocol::Result<void> write_to(std::FILE* out);
  // Forgets everything held (the memory goes back to the budget, the temporary file is closed).
  void clear();
  std::uint64_t size() const { return m_memory.size() + m_spilled; }

 private:
  MemoryBudget& m_budget;
  std::string m_memory;
  std::FILE* m_file = nullptr;  // the spill, after m_memory
  std::uint64_t m_spilled = 0;
};

// Inserts `prefix` at the start of each line of `bytes`; `at_line_start` carries the state from one piece of
// a stream to the next (true at the start of a stream).
std::string tag_lines(std::string_view bytes, std::string_view prefix, bool& at_line_start);

}  // namespace authrun::runner
