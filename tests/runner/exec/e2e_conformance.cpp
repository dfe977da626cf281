// GNU parallel conformance: every case of tests/runner/exec/conformance/cases.txt runs through GNU parallel and through
// `authrun exec`; stdout and exit status must be identical for the cases marked `same`. Prints the count.
#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "tests/helpers/test_util.hpp"

using namespace authrun::test;

namespace {

struct Case {
  std::size_t line = 0;
  bool same = true;
  std::string why;  // for a difference on purpose
  std::string snippet;
};

std::vector<Case> read_cases(const std::string& path) {
  std::vector<Case> cases;
  std::ifstream in(path);
  REQUIRE(in);
  std::string text;
  for (std::size_t n = 1; std::getline(in, text); ++n) {
    if (text.empty() || text[0] == '#') continue;
    const auto bar = text.find(" | ");
    REQUIRE_MESSAGE(bar != std::string::npos, path << ":" << n << ": no ' | '");
    Case c;
    c.line = n;
    const std::string expect = text.substr(0, bar);
    c.same = expect == "same";
    REQUIRE_MESSAGE((c.same || expect.rfind("differs: ", 0) == 0), path << ":" << n << ": expected 'same' or 'differs: why'");
    if (!c.same) c.why = expect.substr(9);
    c.snippet = text.substr(bar + 3);
    cases.push_back(std::move(c));
  }
  return cases;
}

RunOutput run_case(const std::string& runner, const std::string& snippet) {
  TempDir dir;
  const std::string script = "cd '" + dir.path() + "' || exit 99\nP() { " + runner + " \"$@\"; }\n" + snippet + "\n";
  return run_program({"/bin/bash", "-c", script}, "", std::chrono::seconds(120));
}

}  // namespace

TEST_CASE("conformance: GNU parallel and authrun exec agree on every case marked same") {
  if (::access("/usr/bin/parallel", X_OK) != 0) {
    MESSAGE("GNU parallel is not installed (scripts/bench-exec or scripts/install-packages parallel): conformance not run");
    return;
  }
  const std::vector<Case> cases = read_cases(std::string(source_dir()) + "/tests/runner/exec/conformance/cases.txt");
  std::size_t identical = 0, same_cases = 0;
  for (const Case& c : cases) {
    CAPTURE(c.line);
    CAPTURE(c.snippet);
    RunOutput parallel = run_case("parallel --will-cite", c.snippet);
    const RunOutput authrun = run_case(std::string(authrun_bin()) + " exec --no-progress", c.snippet);
    auto same = [&](const RunOutput& p) { return p.out == authrun.out && p.exit_code == authrun.exit_code; };
    bool agree = same(parallel);
    // GNU parallel itself is not always the same under load (what --retry-failed reruns, seen once in a
    // loaded run): authrun, run once, must match one of up to three of its runs; each rerun is reported.
    for (int again = 0; !agree && c.same && again < 2; ++again) {
      RunOutput other = run_case("parallel --will-cite", c.snippet);
      if (same(other)) {
        MESSAGE("case at line " << c.line << ": GNU parallel's own result varied (exit " << parallel.exit_code << ", stdout ["
                                << parallel.out << "]); authrun matches another of its runs");
        agree = true;
      }
    }
    identical += agree;
    if (c.same) {
      ++same_cases;
      CHECK_MESSAGE(agree, "parallel: exit " << parallel.exit_code << ", stdout [" << parallel.out << "]; authrun: exit "
                                             << authrun.exit_code << ", stdout [" << authrun.out << "], stderr [" << authrun.err << "]");
    } else if (agree) {
      MESSAGE("case at line " << c.line << " is marked 'differs' but agrees now: " << c.snippet);
    }
  }
  MESSAGE("conformance: " << identical << " of " << cases.size() << " cases identical to GNU parallel (" << same_cases
                          << " marked same)");
  std::printf("conformance: %zu of %zu cases identical to GNU parallel (%zu marked same)\n", identical, cases.size(), same_cases);
}
