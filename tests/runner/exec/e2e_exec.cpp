// `authrun exec` end to end: the real authrun and workers running real commands.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include <unistd.h>

#include "tests/helpers/test_util.hpp"

using namespace authrun::test;

namespace {

RunOutput exec(std::vector<std::string> args, const std::string& input = "") {
  if (std::find(args.begin(), args.end(), "-j") == args.end()) args.insert(args.begin(), {"-j", "2"});
  args.insert(args.begin(), {authrun_bin(), "exec", "--no-progress"});
  return run_program(args, input);
}

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> fields;
  std::size_t at = 0;
  for (std::size_t tab; (tab = line.find('\t', at)) != std::string::npos; at = tab + 1) fields.push_back(line.substr(at, tab - at));
  fields.push_back(line.substr(at));
  return fields;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

TEST_CASE("exec: ::: values, one job each, output whole") {
  auto r = exec({"--", "echo", "hello", ":::", "a", "b", "c"});
  CHECK(r.exit_code == 0);
  CHECK(sorted(split_lines(r.out)) == std::vector<std::string>{"hello a", "hello b", "hello c"});
}

TEST_CASE("exec: --keep-order prints in input order") {
  auto r = exec({"-k", "--", "sh", "-c", "sleep 0.$0; echo $0", ":::", "3", "1", "2", "0"});
  CHECK(r.exit_code == 0);
  CHECK(split_lines(r.out) == std::vector<std::string>{"3", "1", "2", "0"});
}

TEST_CASE("exec: several sources combine as a cross product, first source outermost") {
  auto r = exec({"-k", "--", "echo", "{1}-{2}", ":::", "a", "b", ":::", "1", "2"});
  CHECK(r.exit_code == 0);
  CHECK(split_lines(r.out) == std::vector<std::string>{"a-1", "a-2", "b-1", "b-2"});
}

TEST_CASE("exec: :::: FILE and stdin lines as sources") {
  TempDir dir;
  std::string file = dir.write("args.txt", "x\ny\n");
  auto r = exec({"-k", "--", "echo", "f", "::::", file});
  CHECK(split_lines(r.out) == std::vector<std::string>{"f x", "f y"});
  auto s = exec({"-k", "--", "echo", "s"}, "one\ntwo\n");
  CHECK(s.exit_code == 0);
  CHECK(split_lines(s.out) == std::vector<std::string>{"s one", "s two"});
  auto mixed = exec({"-k", "--", "echo", "::::", file, ":::", "1", "2"});
  CHECK(split_lines(mixed.out) == std::vector<std::string>{"x 1", "x 2", "y 1", "y 2"});
}

TEST_CASE("exec: replacement strings reach the command") {
  auto r = exec({"-k", "--", "echo", "{#}", "{.}", "{/}", "{//}", "{/.}", ":::", "/d/e/f.txt"});
  CHECK(r.exit_code == 0);
  CHECK(r.out == "1 /d/e/f f.txt /d/e f\n");
  auto slot = exec({"--", "echo", "{%}", ":::", "a"});
  CHECK((slot.out == "1\n" || slot.out == "2\n"));
}

TEST_CASE("exec: arguments with spaces, quotes and newlines arrive as one argv element each") {
  const std::string tricky = "it's \"quoted\" $HOME `x` ; rm -rf /nothing";
  auto r = exec({"--", "printf", "[%s]", ":::", tricky});
  CHECK(r.exit_code == 0);
  CHECK(r.out == "[" + tricky + "]");
  auto nl = exec({"--", "printf", "[%s]", ":::", "two\nlines"});
  CHECK(nl.out == "[two\nlines]");
  auto sh = exec({"--shell", "--", "printf", "'[%s]'", "{}", ":::", tricky});
  CHECK(sh.out == "[" + tricky + "]");
}

TEST_CASE("exec: --tag prefixes each line with the arguments") {
  auto r = exec({"-k", "--tag", "--", "printf", "1\\n2\\n", ":::", "a"});
  CHECK(r.out == "a\t1\na\t2\n");
}

TEST_CASE("exec: --results stores seq, stdout and stderr per job (GNU parallel's layout)") {
  TempDir dir;
  auto r = exec({"--results", dir.path() + "/res", "--", "sh", "-c", "echo out $0; echo err >&2; exit $0", ":::", "0", "3"});
  CHECK(r.exit_code == 1);
  CHECK(read_file(dir.path() + "/res/1/0/stdout") == "out 0\n");
  CHECK(read_file(dir.path() + "/res/1/0/stderr") == "err\n");
  CHECK(read_file(dir.path() + "/res/1/0/seq") == "1");
  CHECK(read_file(dir.path() + "/res/1/3/seq") == "2");
}

TEST_CASE("exec: exit status counts failed jobs, 101 past 100") {
  CHECK(exec({"--", "true", ":::", "a"}).exit_code == 0);
  CHECK(exec({"--", "sh", "-c", "exit $0", ":::", "0", "1", "2", "0"}).exit_code == 2);
  std::vector<std::string> many = {"--", "false", ":::"};
  for (int i = 0; i < 105; ++i) many.push_back(std::to_string(i));
  CHECK(exec(many).exit_code == 101);
  auto missing = exec({"--", "/no/such/program", ":::", "a"});
  CHECK(missing.exit_code == 1);
  CHECK(missing.err.find("exec_failed") != std::string::npos);
  CHECK(exec({"--bad-option"}).exit_code == 255);
}

TEST_CASE("exec: a job that times out fails and the others run") {
  // The quick job takes milliseconds: a limit of two seconds (scaled under the sanitizers) is a hundred times
  // its work; the slow one would take an hour.
  auto r = exec({"-k", "--timeout", std::to_string(2 * time_scale()), "--", "sh", "-c", "sleep $0; echo done $0", ":::",
                 "3600", "0"});
  CHECK(r.exit_code == 1);
  CHECK(r.out == "done 0\n");
  CHECK(r.err.find("timed out") != std::string::npos);
}

TEST_CASE("exec: --halt now,fail=1 stops at the first failure, soon lets running jobs finish") {
  auto now = exec({"-j", "1", "--halt", "now,fail=1", "--", "sh", "-c", "echo $0; exit $0", ":::", "0", "1", "0", "0"});
  CHECK(now.exit_code >= 1);
  CHECK(split_lines(now.out).size() <= 2);
  CHECK(now.err.find("halting") != std::string::npos);
  auto soon = exec({"-j", "1", "--window", "1", "--halt", "soon,fail=1", "--", "sh", "-c", "echo $0; exit $0", ":::", "1", "0", "0"});
  CHECK(soon.exit_code == 1);
  CHECK(split_lines(soon.out) == std::vector<std::string>{"1"});
  CHECK(exec({"--halt", "sometimes", "--", "true", ":::", "a"}).exit_code == 255);
}

TEST_CASE("exec: --dry-run prints the commands and runs nothing") {
  TempDir dir;
  auto r = exec({"--dry-run", "--", "touch", dir.path() + "/{}", ":::", "a", "b c"});
  CHECK(r.exit_code == 0);
  // As GNU parallel prints them: quoted only where the shell needs it.
  CHECK(split_lines(r.out) == std::vector<std::string>{"touch " + dir.path() + "/a", "touch '" + dir.path() + "/b c'"});
  CHECK(read_file(dir.path() + "/a").empty());
  CHECK(::access((dir.path() + "/a").c_str(), F_OK) != 0);
}

TEST_CASE("exec: empty input runs nothing and succeeds") {
  auto r = exec({"--", "echo", "x"}, "");
  CHECK(r.exit_code == 0);
  CHECK(r.out.empty());
  auto none = exec({"--", "echo", ":::"});
  CHECK(none.exit_code == 0);
  CHECK(none.out.empty());
}

TEST_CASE("exec: --joblog has GNU parallel's columns, --resume-failed reruns failed jobs, --resume skips every job logged") {
  TempDir dir;
  const std::string log = dir.path() + "/joblog";
  auto first = exec({"--joblog", log, "--", "sh", "-c", "test -e " + dir.path() + "/ok$0 || exit 1; echo $0", ":::", "1", "2"});
  CHECK(first.exit_code == 2);
  dir.write("ok1", "");
  dir.write("ok2", "");
  const auto first_lines = split_lines(read_file(log));
  REQUIRE(first_lines.size() == 3);
  CHECK(first_lines[0] == "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand");
  for (std::size_t i = 1; i < first_lines.size(); ++i) {
    const auto fields = split_tabs(first_lines[i]);
    REQUIRE(fields.size() == 9);
    CHECK(fields[1] == ":");
    CHECK(fields[6] == "1");  // Exitval
    CHECK(fields[7] == "0");  // Signal
    CHECK(fields[8].find("test -e") != std::string::npos);  // Command
  }
  auto second = exec({"--joblog", log, "--resume-failed", "--", "sh", "-c", "echo again $0", ":::", "1", "2"});
  CHECK(second.exit_code == 0);
  CHECK(sorted(split_lines(second.out)) == std::vector<std::string>{"again 1", "again 2"});
  auto third = exec({"--joblog", log, "--resume", "--", "sh", "-c", "echo third $0", ":::", "1", "2"});
  CHECK(third.exit_code == 0);
  CHECK(third.out.empty());
  CHECK(split_lines(read_file(log)).size() == 1 + 2 + 2);

  // A joblog with other columns (an older authrun's) is not appended to: its lines would not line up.
  const std::string old_log = dir.write("old-joblog", "Seq\tId\tWorker\tAttempt\tStarttime\tJobRuntime\tOutcome\tMessage\n");
  auto mixed = exec({"--joblog", old_log, "--resume", "--", "echo", ":::", "1"});
  CHECK(mixed.exit_code == 255);
  CHECK(contains(mixed.err, "GNU parallel's"));
}
