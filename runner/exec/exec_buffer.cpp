// Output held per job: memory, then a temporary file.
#include "runner/exec/exec_buffer.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace authrun::runner {

using namespace protocol;

namespace {

std::string temp_dir() {
  const char* dir = std::getenv("TMPDIR");
  return dir && *dir ? dir : "/tmp";
}

}  // namespace

OutputBuffer::~OutputBuffer() {
  m_budget.used -= std::min(m_budget.used, m_memory.size());
  if (m_file) std::fclose(m_file);
}

void OutputBuffer::clear() {
  m_budget.used -= std::min(m_budget.used, m_memory.size());
  std::string().swap(m_memory);
  if (m_file) std::fclose(m_file);
  m_file = nullptr;
  m_spilled = 0;
}

Result<void> OutputBuffer::append(std::string_view bytes) {
  if (!m_file && m_budget.used + bytes.size() <= m_budget.limit) {
    m_memory.append(bytes);
    m_budget.used += bytes.size();
    return {};
  }
  if (!m_file) {
    // O_TMPFILE: never visible by name, gone when closed.
    const std::string dir = temp_dir();
    int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 || !(m_file = ::fdopen(fd, "w+"))) {
      if (fd >= 0) ::close(fd);
      return make_error(ErrorCode::io, "cannot create a temporary file in " + dir + " for a job's output: " + std::strerror(errno));
    }
  }
  if (std::fwrite(bytes.data(), 1, bytes.size(), m_file) != bytes.size()) {
    return make_error(ErrorCode::io, "cannot write a job's output to a temporary file in " + temp_dir() + ": " + std::strerror(errno));
  }
  m_spilled += bytes.size();
  return {};
}

Result<void> OutputBuffer::write_to(std::FILE* out) {
  auto failed = [] { return make_error(ErrorCode::io, std::string("cannot write output: ") + std::strerror(errno)); };
  if (!m_memory.empty() && std::fwrite(m_memory.data(), 1, m_memory.size(), out) != m_memory.size()) return failed();
  if (m_file) {
    if (std::fflush(m_file) != 0 || std::fseek(m_file, 0, SEEK_SET) != 0) {
      return make_error(ErrorCode::io, std::string("cannot read back a job's output from its temporary file: ") + std::strerror(errno));
    }
    std::vector<char> chunk(1 << 20);
    std::uint64_t left = m_spilled;
    while (left > 0) {
      const std::size_t n = std::fread(chunk.data(), 1, std::min<std::uint64_t>(chunk.size(), left), m_file);
      if (n == 0) return make_error(ErrorCode::io, "a job's temporary output file ended early");
      if (std::fwrite(chunk.data(), 1, n, out) != n) return failed();
      left -= n;
    }
    std::fseek(m_file, 0, SEEK_END);
  }
  if (std::fflush(out) != 0) return failed();
  return {};
}

std::string tag_lines(std::string_view bytes, std::string_view prefix, bool& at_line_start) {
  std::string out;
  out.reserve(bytes.size() + prefix.size());
  for (char c : bytes) {
    if (at_line_start) out.append(prefix);
    out += c;
    at_line_start = c == '\n';
  }
  return out;
}

}  // namespace authrun::runner
