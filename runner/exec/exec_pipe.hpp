// `authrun exec --pipe`: stdin cut into chunks at record boundaries, exactly where GNU parallel 20221122
// cuts it (its spreadstdin: read up to the next multiple of --block, cut after the last --recend followed by
// --recstart, or after every -N records), and the size and duration syntax of --block and --delay.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "protocol/result.hpp"

namespace authrun::runner {

// How stdin is cut.
struct PipeSplit {
  std::uint64_t block = 1024 * 1024;  // --block: bytes read at a time (grows by 1.3x when no record ends in it)
  std::string recstart;               // --recstart: a record starts with this (escapes applied)
  std::string recend = "\n";          // --recend: a record ends with this (escapes applied)
  std::uint64_t records = 0;          // -N with --pipe: records per chunk (0: as many whole records as a block holds)
  std::uint64_t max_chunk = 0;        // most bytes one chunk may have (a task's payload); 0: no limit
};

// A size with GNU parallel's suffixes: a number (decimals allowed: 1.5M) and at most one of K M G T P or
// Ki Mi Gi Ti Pi (powers of 1024, either case with the i) or k m g t p (powers of 1000). Errors: usage,
// naming `option` and the text.
protocol::Result<std::uint64_t> parse_size(const std::string& text, const std::string& option);

// A duration as GNU parallel reads --delay: seconds ("0.5"), or numbers with units s m h d ("1m30s").
// Errors: usage, naming `option` and the text.
protocol::Result<double> parse_duration(const std::string& text, const std::string& option);

// --recstart/--recend text with GNU parallel's escapes replaced: \0 \r \n \t \' \" \\.
std::string unescape_record_separator(const std::string& text);

// The cutting itself, fed by the caller's reads: read read_size() bytes (fewer only at EOF), append them,
// call round(); at EOF call finish(). Holds at most the unfinished records and one block.
class PipeSplitter {
 public:
  // Receives each chunk in order; returns false to stop.
  using Take = std::function<bool(std::string chunk)>;
  // Told when the block grows ("a record was longer than N ...").
  using Warn = std::function<void(const std::string& text)>;

  explicit PipeSplitter(PipeSplit split, Warn warn = {});

  // Bytes to read now: up to the next multiple of the block size.
  std::size_t read_size() const;
  // Where the next read goes: room for `n` more bytes after the input held; commit() then says how many
  // arrived (the rest of the room is dropped).
  char* reserve(std::size_t n);
  void commit(std::size_t got);
  // Cuts the chunks that end in the buffer after a read (`eof`: the read ended at EOF). Returns false if
  // `take` stopped, or an error message if the unfinished record has grown past max_chunk.
  protocol::Result<bool> round(bool eof, const Take& take);
  // At EOF: the rest as the last chunk (none if empty). Same returns as round().
  protocol::Result<bool> finish(const Take& take);
  std::uint64_t block() const { return m_block; }

 private:
  bool give(std::size_t end, const Take& take);
  PipeSplit m_split;
  Warn m_warn;
  std::string m_separator;  // recend followed by recstart: a cut goes after its recend part
  std::uint64_t m_block;
  std::string m_buf;  // input read and not yet cut off (and, between reserve and commit, room for a read)
  std::size_t m_held = 0;  // bytes of m_buf that are input
  bool m_written = false;   // a chunk was cut in this round
};

struct ExecOptions;

// --pipe, --block, --recstart, --recend and --delay as given on the command line.
struct PipeFlags {
  std::string block = "1M";
  std::optional<std::string> recstart, recend;  // as typed (escapes not yet applied)
  std::string delay;                            // "" if not given
  bool sources = false;                         // the command line gave ::: / :::: / -a arguments
};

// Checks `flags` against the rest of `o` and fills o.pipe_split and o.delay_s (-N becomes records per
// chunk). Errors: usage, naming the option (a size or duration that does not parse, --block above what a
// job's input may be, --block without --pipe, --pipe with ::: arguments or with an option it cannot honour).
protocol::Result<void> apply_pipe_flags(const PipeFlags& flags, ExecOptions& o);

// Reads `fd` to its end and cuts it with `split`, calling `take` per chunk (which may block: that is the
// back-pressure on the input). Stops early when `take` returns false or `stop_fd` (-1: none) becomes
// readable. Returns nullopt, or an error message naming `name` (a read error, a record too long).
std::optional<std::string> split_stream(int fd, const std::string& name, const PipeSplit& split, int stop_fd,
                                        const PipeSplitter::Take& take, const PipeSplitter::Warn& warn);

}  // namespace authrun::runner
