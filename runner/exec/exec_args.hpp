// `authrun exec` arguments in GNU parallel's manner: input sources (::: values, :::: files, stdin lines)
// combined as a cross product, and replacement strings in the command.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "protocol/result.hpp"

namespace authrun::runner {

// One input source: literal values (`::: a b c`) or the lines of a file (`:::: FILE`, "-" for stdin).
struct ArgSource {
  std::vector<std::string> values;
  std::string file;     // when set, the values come from this file's lines
  bool linked = false;  // `:::+` / `::::+` (or --link): paired with the previous source, not crossed with it
};

// The command and its sources, split from the words after `authrun exec [options]`: `-- CMD ARGS...
// ::: A B :::: FILE :::+ C D ::::+ FILE2 ...`. Without any source, stdin's lines are the one source. Errors:
// usage (no command, or a linked source first).
struct ExecCommand {
  std::vector<std::string> command;
  std::vector<ArgSource> sources;
};
protocol::Result<ExecCommand> split_exec_words(const std::vector<std::string>& words);

// The arguments of one job (one value per source) and its numbers.
struct JobArgs {
  std::vector<std::string> values;
  std::uint64_t number = 0;  // {#}: 1-based
  bool context_replace = false;  // -X: a word with {} is repeated once per value instead of split
  std::size_t positions = 0;     // -N: {N} up to this many is the empty string when the job has fewer values
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
// with the values appended. A replacement string for all values ({}, {.}, ...) gives one word per value, as
// GNU parallel's shell would split them ("x{}y" with a and b: "xa", "by"). With `shell`, ["/bin/sh", "-c",
// the words joined by spaces with every value shell-quoted].
std::vector<std::string> job_argv(const std::vector<std::string>& command, const JobArgs& job, int slot, bool shell);

// True for a command given as one word with shell syntax (spaces, |, >, ;, ...): GNU parallel runs it through
// a shell, and so does authrun (`cmd {} | x > {.}.out`).
bool needs_shell(const std::vector<std::string>& command);

// The values of each job, in order, from the sources' values (all read): linked sources are paired (the
// shorter ones wrap around, as with GNU parallel's --link), groups of them crossed, the first outermost.
// Calls `sink` per job until it returns false.
void combine_sources(const std::vector<std::vector<std::string>>& lists, const std::vector<bool>& linked,
                     const std::function<bool(std::vector<std::string>)>& sink);

// Quotes a string for sh as GNU parallel does (exec's shell command lines, --dry-run, the joblog): plain
// words as they are, others in single quotes, a single quote inside as '"'"'.
std::string parallel_quote(const std::string& s);

}  // namespace authrun::runner
