// `authrun exec` argument sources and replacement strings.
#include "runner/exec/exec_args.hpp"

#include <cctype>

namespace authrun::runner {

namespace {

bool is_separator(const std::string& w) { return w == ":::" || w == "::::" || w == ":::+" || w == "::::+"; }

}  // namespace

protocol::Result<ExecCommand> split_exec_words(const std::vector<std::string>& words) {
  ExecCommand out;
  std::size_t i = 0;
  if (i < words.size() && words[i] == "--") ++i;
  for (; i < words.size() && !is_separator(words[i]); ++i) out.command.push_back(words[i]);
  while (i < words.size()) {
    const bool files = words[i] == "::::" || words[i] == "::::+";
    const bool linked = words[i].back() == '+';
    if (linked && out.sources.empty()) {
      return protocol::make_error(protocol::ErrorCode::usage, words[i] + " links to the source before it, and there is none");
    }
    ++i;
    if (files) {
      bool first = true;
      for (; i < words.size() && !is_separator(words[i]); ++i) {
        ArgSource source;
        source.file = words[i];
        source.linked = linked && first;
        first = false;
        out.sources.push_back(std::move(source));
      }
    } else {
      ArgSource source;
      source.linked = linked;
      for (; i < words.size() && !is_separator(words[i]); ++i) source.values.push_back(words[i]);
      out.sources.push_back(std::move(source));
    }
  }
  if (out.command.empty()) {
    return protocol::make_error(protocol::ErrorCode::usage, "no command given (authrun exec [options] -- COMMAND [ARGS...] ::: VALUES...)");
  }
  if (out.sources.empty()) {
    ArgSource stdin_lines;
    stdin_lines.file = "-";
    out.sources.push_back(std::move(stdin_lines));
  }
  return out;
}

bool needs_shell(const std::vector<std::string>& command) {
  return command.size() == 1 && command[0].find_first_of(" \t\n|&;<>()$`\\\"'*?[]#~=%") != std::string::npos;
}

void combine_sources(const std::vector<std::vector<std::string>>& lists, const std::vector<bool>& linked,
                     const std::function<bool(std::vector<std::string>)>& sink) {
  // Groups of linked sources: [first, last) ranges; each group has as many rows as its longest source.
  std::vector<std::pair<std::size_t, std::size_t>> groups;
  for (std::size_t k = 0; k < lists.size(); ++k) {
    if (k > 0 && linked[k]) groups.back().second = k + 1;
    else groups.emplace_back(k, k + 1);
  }
  std::vector<std::size_t> rows;
  for (const auto& [first, last] : groups) {
    std::size_t n = 0;
    for (std::size_t k = first; k < last; ++k) {
      if (lists[k].empty()) return;  // an empty source: no combination at all
      n = std::max(n, lists[k].size());
    }
    rows.push_back(n);
  }
  std::vector<std::size_t> at(groups.size(), 0);
  for (;;) {
    std::vector<std::string> values;
    for (std::size_t g = 0; g < groups.size(); ++g) {
      for (std::size_t k = groups[g].first; k < groups[g].second; ++k) values.push_back(lists[k][at[g] % lists[k].size()]);
    }
    if (!sink(std::move(values))) return;
    std::size_t g = groups.size();
    while (g-- > 0) {
      if (++at[g] < rows[g]) break;
      at[g] = 0;
      if (g == 0) return;
    }
  }
}

namespace {

std::string strip_extension(const std::string& s) {
  auto slash = s.rfind('/');
  auto dot = s.rfind('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash) || dot == 0 ||
      (slash != std::string::npos && dot == slash + 1)) {
    return s;
  }
  return s.substr(0, dot);
}

std::string basename_of(const std::string& s) {
  auto slash = s.rfind('/');
  return slash == std::string::npos ? s : s.substr(slash + 1);
}

std::string dirname_of(const std::string& s) {
  auto slash = s.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : s.substr(0, slash);
}

// Applies a modifier ("", ".", "/", "//", "/.") to a value; false if the modifier is not one.
bool modify(const std::string& modifier, const std::string& value, std::string& out) {
  if (modifier.empty()) out = value;
  else if (modifier == ".") out = strip_extension(value);
  else if (modifier == "/") out = basename_of(value);
  else if (modifier == "//") out = dirname_of(value);
  else if (modifier == "/.") out = strip_extension(basename_of(value));
  else return false;
  return true;
}

// Expands the replacement string `inner` (the text between braces); nullopt if it is not one.
std::optional<std::string> expand(const std::string& inner, const JobArgs& job, int slot, bool quote) {
  auto q = [quote](const std::string& s) { return quote ? parallel_quote(s) : s; };
  if (inner == "#") return std::to_string(job.number);
  if (inner == "%") return std::to_string(slot);
  std::size_t digits = 0;
  while (digits < inner.size() && std::isdigit(static_cast<unsigned char>(inner[digits]))) ++digits;
  std::string result;
  if (digits > 0) {
    std::size_t n = std::stoul(inner.substr(0, std::min<std::size_t>(digits, 6)));
    if (n > job.values.size() && n <= job.positions) return std::string();
    if (n == 0 || n > job.values.size()) return std::nullopt;
    if (!modify(inner.substr(digits), job.values[n - 1], result)) return std::nullopt;
    return q(result);
  }
  std::string joined;
  for (std::size_t i = 0; i < job.values.size(); ++i) {
    std::string v;
    if (!modify(inner, job.values[i], v)) return std::nullopt;
    if (i) joined += ' ';
    joined += q(v);
  }
  return joined;
}

bool is_replacement(const std::string& inner) {
  if (inner == "#" || inner == "%") return true;
  std::size_t digits = 0;
  while (digits < inner.size() && std::isdigit(static_cast<unsigned char>(inner[digits]))) ++digits;
  std::string ignored;
  return modify(inner.substr(digits), "x", ignored);
}

// Calls `f(inner)` for each {...} in `word` that is a replacement string.
template <class F>
std::string substitute(const std::string& word, F&& f) {
  std::string out;
  std::size_t i = 0;
  while (i < word.size()) {
    auto open = word.find('{', i);
    if (open == std::string::npos) break;
    auto close = word.find('}', open + 1);
    if (close == std::string::npos) break;
    std::string inner = word.substr(open + 1, close - open - 1);
    out.append(word, i, open - i);
    if (is_replacement(inner)) {
      out += f(inner);
    } else {
      out.append(word, open, close - open + 1);
    }
    i = close + 1;
  }
  out.append(word, i, std::string::npos);
  return out;
}

}  // namespace

bool has_replacement(const std::vector<std::string>& command) {
  bool found = false;
  for (const auto& w : command) substitute(w, [&](const std::string&) { found = true; return std::string(); });
  return found;
}

bool uses_slot(const std::vector<std::string>& command) {
  bool found = false;
  for (const auto& w : command) {
    substitute(w, [&](const std::string& inner) {
      if (inner == "%") found = true;
      return std::string();
    });
  }
  return found;
}

std::string replace_in(const std::string& word, const JobArgs& job, int slot, bool quote) {
  return substitute(word, [&](const std::string& inner) { return expand(inner, job, slot, quote).value_or("{" + inner + "}"); });
}

std::string parallel_quote(const std::string& s) {
  // As GNU parallel 2022 quotes (--dry-run shows it): plain words stay as they are, anything else goes in
  // single quotes, a single quote inside as '"'"'.
  static const std::string plain = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:,+=@%";
  if (!s.empty() && s.find_first_not_of(plain) == std::string::npos) return s;
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\"'\"'";
    else out += c;
  }
  out += '\'';
  return out;
}

std::vector<std::string> job_argv(const std::vector<std::string>& command, const JobArgs& job, int slot, bool shell) {
  const bool replace = has_replacement(command);
  if (shell) {
    std::string script;
    for (std::size_t i = 0; i < command.size(); ++i) {
      if (i) script += ' ';
      script += replace_in(command[i], job, slot, true);
    }
    if (!replace) {
      for (const auto& v : job.values) {
        script += ' ';
        script += parallel_quote(v);
      }
    }
    return {"/bin/sh", "-c", script};
  }
  std::vector<std::string> argv;
  if (!replace) {
    argv = command;
    argv.insert(argv.end(), job.values.begin(), job.values.end());
    return argv;
  }
  for (const auto& w : command) {
    if (job.context_replace && job.values.size() > 1) {
      bool has_all = false;
      substitute(w, [&](const std::string& inner) {
        if (inner != "#" && inner != "%" && !std::isdigit(static_cast<unsigned char>(inner.empty() ? 'x' : inner[0]))) has_all = true;
        return std::string();
      });
      if (has_all) {
        for (const std::string& v : job.values) argv.push_back(replace_in(w, JobArgs{{v}, job.number, false}, slot, false));
        continue;
      }
    }
    // A replacement for all values splits the word, one value per word (GNU parallel quotes each value).
    std::vector<std::string> words{""};
    std::size_t i = 0;
    while (i < w.size()) {
      auto open = w.find('{', i);
      auto close = open == std::string::npos ? open : w.find('}', open + 1);
      if (close == std::string::npos) break;
      const std::string inner = w.substr(open + 1, close - open - 1);
      words.back().append(w, i, open - i);
      i = close + 1;
      const bool all_values = is_replacement(inner) && inner != "#" && inner != "%" &&
                              !std::isdigit(static_cast<unsigned char>(inner.empty() ? 'x' : inner[0]));
      if (!all_values || job.values.size() <= 1) {
        words.back() += is_replacement(inner) ? expand(inner, job, slot, false).value_or("{" + inner + "}") : "{" + inner + "}";
        continue;
      }
      for (std::size_t k = 0; k < job.values.size(); ++k) {
        std::string v;
        modify(inner, job.values[k], v);
        if (k) words.emplace_back();
        words.back() += v;
      }
    }
    words.back().append(w, i, std::string::npos);
    argv.insert(argv.end(), words.begin(), words.end());
  }
  return argv;
}

}  // namespace authrun::runner
