// `authrun exec` arguments in GNU parallel's manner: input sources (::: values, :::: files, stdin lines)
// combined as a cross product, and replacement strings in the command.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "protocol/result.hpp"

namespace authrun::runner {

// One input source: literal values (`::: a b c`) or the lines of a file (`:::: FILE`, "-" for stdin).
struct ArgSource {
  std::vector<std::string> values;
  std::string file;  // when set, the values come from this file's lines
};

// The command and its sources, split from the words after `authrun exec [options]`: `-- CMD ARGS...
// ::: A B :::: FILE ...`. Without any source, stdin's lines are the one source. Errors: usage (no command).
struct ExecCommand {
  std::vector<std::string> command;
  std::vector<ArgSource> sources;
};
protocol::Result<ExecCommand> split_exec_words(const std::vector<std::string>& words);

// The arguments of one job (one value per source) and its numbers.
struct JobArgs {
  std::vector<std::string> values;
  std::uint64_t number = 0;  // {#}: 1-based
};

// True if any word of the command holds a replacement string ({}, {.}, {/}, {//}, {/.}, {#}, {%}, {N}).
bool has_replacement(const std::vector<std::string>& command);
// True if the command uses {%} (the worker slot, known only when the job is dispatched).
bool uses_slot(const std::vector<std::string>& command);

// Replaces the replacement strings of `word`: {} all values joined by spaces, {.} without the extension,
// {/} the basename, {//} the directory, {/.} the basename without extension, {#} the job number, {%} the
// slot, {N} the N-th source's value (1-based, with the same modifiers: {1.}, {1/}, {1//}, {1/.}).
// `quote` shell-quotes each substituted value (for --shell).
std::string replace_in(const std::string& word, const JobArgs& job, int slot, bool quote);

// The argv of one job: each word with its replacement strings, or, if the command has none, the command
// with the values appended. With `shell`, ["/bin/sh", "-c", the words joined by spaces with quoted values].
std::vector<std::string> job_argv(const std::vector<std::string>& command, const JobArgs& job, int slot, bool shell);

// Quotes a string for sh (single quotes).
std::string shell_quote(const std::string& s);

}  // namespace authrun::runner
