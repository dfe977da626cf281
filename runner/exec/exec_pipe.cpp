// `authrun exec --pipe`: GNU parallel's way of cutting stdin into chunks (its spreadstdin, pass and pass_n).
#include "runner/exec/exec_pipe.hpp"

#include "protocol/limits.hpp"
#include "runner/exec/exec_command.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include <poll.h>
#include <unistd.h>

namespace authrun::runner {

using protocol::ErrorCode;
using protocol::make_error;

namespace {

constexpr std::uint64_t k_two_gb = (std::uint64_t{1} << 31) - 1;  // parallel's largest block

// Perl's index(STR, SUBSTR, POS): the first match at or after POS (clamped to the string), npos if none.
std::size_t perl_index(std::string_view s, std::string_view sub, std::size_t pos) {
  return s.find(sub, std::min(pos, s.size()));
}

// parallel's nindex: where the n-th match is, each search starting one past the previous match (the first
// at 1, so a match at 0 is passed over, as parallel does).
std::size_t nindex(std::string_view s, std::string_view sub, std::uint64_t n) {
  std::size_t i = 0;
  for (std::uint64_t k = 0; k < n; ++k) {
    i = perl_index(s, sub, i + 1);
    if (i == std::string_view::npos) break;
  }
  return i;
}

// A number at the front of `text` (digits, optionally a fraction); its length, 0 if none.
std::size_t number_length(const std::string& text, std::size_t at) {
  std::size_t i = at, digits = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i, ++digits;
  if (i < text.size() && text[i] == '.') {
    ++i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i, ++digits;
  }
  return digits ? i - at : 0;
}

}  // namespace

protocol::Result<std::uint64_t> parse_size(const std::string& text, const std::string& option) {
  auto bad = [&] {
    return make_error(ErrorCode::usage, option + " takes a size in bytes, with K M G T P (powers of 1024) or k m g t p "
                                                 "(powers of 1000) after it, for example 1M or 512k (got '" + text + "')");
  };
  const std::size_t n = number_length(text, 0);
  if (n == 0) return bad();
  double value = std::strtod(text.substr(0, n).c_str(), nullptr);
  std::string suffix = text.substr(n);
  static const std::string k_units = "kmgtp";
  double multiplier = 1;
  if (!suffix.empty()) {
    const char unit = suffix[0];
    const auto power = k_units.find(static_cast<char>(std::tolower(static_cast<unsigned char>(unit))));
    const bool binary_i = suffix.size() == 2 && (suffix[1] == 'i' || suffix[1] == 'I');
    if (power == std::string::npos || (suffix.size() != 1 && !binary_i)) return bad();
    const bool binary = binary_i || std::isupper(static_cast<unsigned char>(unit));
    multiplier = std::pow(binary ? 1024.0 : 1000.0, double(power + 1));
  }
  value = std::floor(value * multiplier);
  if (value > 9.0e18) return bad();
  return static_cast<std::uint64_t>(value);
}

protocol::Result<double> parse_duration(const std::string& text, const std::string& option) {
  auto bad = [&] {
    return make_error(ErrorCode::usage, option + " takes seconds, or a duration with units s m h d such as 1m30s (got '" +
                                            text + "')");
  };
  double total = 0;
  std::size_t at = 0;
  if (text.empty()) return bad();
  while (at < text.size()) {
    const std::size_t n = number_length(text, at);
    if (n == 0) return bad();
    const double value = std::strtod(text.substr(at, n).c_str(), nullptr);
    at += n;
    double unit = 1;
    if (at < text.size()) {
      switch (std::tolower(static_cast<unsigned char>(text[at]))) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        default: return bad();
      }
      ++at;
    }
    total += value * unit;
  }
  return total;
}

std::string unescape_record_separator(const std::string& text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      const char c = text[i + 1];
      const char* from = "0rnt'\"\\";
      const char* to = "\0\r\n\t'\"\\";
      if (const char* hit = std::strchr(from, c); hit && c != '\0') {
        out += to[hit - from];
        ++i;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

protocol::Result<void> apply_pipe_flags(const PipeFlags& flags, ExecOptions& o) {
  if (!flags.delay.empty()) {
    auto delay = parse_duration(flags.delay, "--delay");
    if (!delay) return delay.error();
    o.delay_s = *delay;
  }
  if (!o.pipe) {
    if (flags.block != "1M" || flags.recstart || flags.recend) {
      return make_error(ErrorCode::usage, "--block, --recstart and --recend go with --pipe");
    }
    return {};
  }
  if (flags.sources) {
    return make_error(ErrorCode::usage, "--pipe gives each job a chunk of stdin: it takes no ::: or :::: arguments, nor -a");
  }
  const char* refused = !o.colsep.empty()                         ? "--colsep"
                        : o.skip_empty                             ? "-r"
                        : o.multi != ExecOptions::Multi::none      ? "-m, -X and --xargs"
                        : o.delimiter != '\n'                      ? "-0 and -d"
                                                                   : nullptr;
  if (refused) return make_error(ErrorCode::usage, std::string(refused) + " cannot go with --pipe (they split arguments, not stdin)");
  auto block = parse_size(flags.block, "--block");
  if (!block) return block.error();
  const std::uint64_t payload = o.engine.max_payload ? o.engine.max_payload : protocol::limits::default_max_payload;
  o.pipe_split.max_chunk = payload - 64 * 1024;  // room for the command line beside the chunk
  if (*block < 1 || *block > o.pipe_split.max_chunk) {
    return make_error(ErrorCode::usage, "--block " + flags.block + " is " + std::to_string(*block) + " bytes: it must be from 1 to " +
                                            std::to_string(o.pipe_split.max_chunk) + " (the most one job's input may be)");
  }
  o.pipe_split.block = *block;
  // As parallel: neither given, records end with a newline; one given, the other is empty.
  o.pipe_split.recstart = flags.recstart ? unescape_record_separator(*flags.recstart) : "";
  o.pipe_split.recend = flags.recend ? unescape_record_separator(*flags.recend) : flags.recstart ? "" : "\n";
  o.pipe_split.records = std::uint64_t(std::max(0, o.max_args));
  return {};
}

PipeSplitter::PipeSplitter(PipeSplit split, Warn warn)
    : m_split(std::move(split)), m_warn(std::move(warn)), m_separator(m_split.recend + m_split.recstart), m_block(std::max<std::uint64_t>(m_split.block, 1)) {}

std::size_t PipeSplitter::read_size() const { return std::size_t(m_block - m_held % m_block); }

char* PipeSplitter::reserve(std::size_t n) {
  m_buf.resize(m_held + n);
  return m_buf.data() + m_held;
}

void PipeSplitter::commit(std::size_t got) {
  m_held += got;
  m_buf.resize(m_held);
}

bool PipeSplitter::give(std::size_t end, const Take& take) {
  if (end == 0) return true;  // an empty chunk is no job (parallel's write_record_to_pipe)
  m_written = true;
  std::string chunk;
  if (end == m_held) {
    chunk = std::move(m_buf);
    m_buf.clear();
  } else {
    chunk.assign(m_buf, 0, end);
    m_buf.erase(0, end);
  }
  m_held -= end;
  return take(std::move(chunk));
}

protocol::Result<bool> PipeSplitter::round(bool eof, const Take& take) {
  m_written = false;
  if (m_split.records > 0) {
    // -N: every N records, also at EOF (parallel's pass_n).
    for (;;) {
      std::size_t i = nindex(std::string_view(m_buf).substr(0, m_held), m_separator, m_split.records);
      if (i == std::string_view::npos || m_held == 0) break;
      if (!give(i + m_split.recend.size(), take)) return false;
    }
  } else if (!eof) {
    // A chunk ends after the last recend that a recstart follows (parallel's pass).
    std::size_t i = std::string_view(m_buf).substr(0, m_held).rfind(m_separator);
    if (i != std::string_view::npos && !give(i + m_split.recend.size(), take)) return false;
  }
  if (eof) return true;
  if (!m_written && m_block < k_two_gb) {
    // No record ended in the block: a bigger one (parallel's increase_blocksize_maybe).
    const std::uint64_t old = m_block;
    m_block = std::min<std::uint64_t>(static_cast<std::uint64_t>(std::ceil(double(m_block) * 1.3 + 1)), k_two_gb);
    if (m_warn) m_warn("a record was longer than " + std::to_string(old) + " bytes: increasing --block to " + std::to_string(m_block));
  }
  if (m_split.max_chunk > 0 && m_held > m_split.max_chunk + m_separator.size()) {
    return make_error(ErrorCode::usage, "a record (or -N records) of more than " + std::to_string(m_split.max_chunk) +
                                            " bytes, more than one job's input may be (is --recend/--recstart right?)");
  }
  return true;
}

protocol::Result<bool> PipeSplitter::finish(const Take& take) {
  if (m_split.max_chunk > 0 && m_held > m_split.max_chunk) {
    return make_error(ErrorCode::usage, "the last record is " + std::to_string(m_held) + " bytes, more than one job's input may be (" +
                                            std::to_string(m_split.max_chunk) + ")");
  }
  return give(m_held, take);
}

std::optional<std::string> split_stream(int fd, const std::string& name, const PipeSplit& split, int stop_fd,
                                        const PipeSplitter::Take& take, const PipeSplitter::Warn& warn) {
  PipeSplitter splitter(split, warn);
  for (;;) {
    const std::size_t want = splitter.read_size();
    char* into = splitter.reserve(want);
    std::size_t got = 0;
    bool eof = false;
    // As parallel's read_block: read until the block is full or the input ends.
    while (got < want) {
      if (stop_fd >= 0) {
        pollfd fds[2] = {{fd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
          if (errno == EINTR) continue;
          return name + ": poll: " + std::strerror(errno);
        }
        if (fds[1].revents) return std::nullopt;  // stopping: what was read is dropped
        if (!fds[0].revents) continue;
      }
      const ssize_t n = ::read(fd, into + got, want - got);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        return name + ": read: " + std::strerror(errno);
      }
      if (n == 0) {
        eof = true;
        break;
      }
      got += std::size_t(n);
    }
    splitter.commit(got);
    auto more = splitter.round(eof, take);
    if (!more) return name + ": " + more.error().message;
    if (!*more) return std::nullopt;
    if (eof) break;
  }
  auto last = splitter.finish(take);
  if (!last) return name + ": " + last.error().message;
  return std::nullopt;
}

}  // namespace authrun::runner
