// `authrun exec` argument handling: splitting the words, replacement strings, argv of a job.
#include <doctest/doctest.h>

#include "runner/exec/exec_args.hpp"

using namespace authrun::runner;

namespace {

JobArgs job(std::vector<std::string> values, std::uint64_t number = 1) { return JobArgs{std::move(values), number}; }

}  // namespace

TEST_CASE("exec args: words split into command and sources") {
  auto c = split_exec_words({"--", "echo", "x", ":::", "a", "b", "::::", "f1", "f2", ":::", "c"});
  REQUIRE(c);
  CHECK(c->command == std::vector<std::string>{"echo", "x"});
  REQUIRE(c->sources.size() == 4);
  CHECK(c->sources[0].values == std::vector<std::string>{"a", "b"});
  CHECK(c->sources[1].file == "f1");
  CHECK(c->sources[2].file == "f2");
  CHECK(c->sources[3].values == std::vector<std::string>{"c"});
}

TEST_CASE("exec args: no source means stdin lines, no command is a usage error") {
  auto c = split_exec_words({"echo"});
  REQUIRE(c);
  REQUIRE(c->sources.size() == 1);
  CHECK(c->sources[0].file == "-");
  auto none = split_exec_words({":::", "a"});
  REQUIRE(!none);
  CHECK(none.error().code == authrun::protocol::ErrorCode::usage);
}

TEST_CASE("exec args: each replacement string") {
  JobArgs j = job({"/dir/sub/file.tar.gz"}, 7);
  CHECK(replace_in("{}", j, 3, false) == "/dir/sub/file.tar.gz");
  CHECK(replace_in("{.}", j, 3, false) == "/dir/sub/file.tar");
  CHECK(replace_in("{/}", j, 3, false) == "file.tar.gz");
  CHECK(replace_in("{//}", j, 3, false) == "/dir/sub");
  CHECK(replace_in("{/.}", j, 3, false) == "file.tar");
  CHECK(replace_in("{#}", j, 3, false) == "7");
  CHECK(replace_in("{%}", j, 3, false) == "3");
  CHECK(replace_in("pre-{/.}-post", j, 3, false) == "pre-file.tar-post");
  CHECK(replace_in("{nope} {", j, 3, false) == "{nope} {");
  CHECK(replace_in("{//}", job({"plain"}), 1, false) == ".");
  CHECK(replace_in("{.}", job({".hidden"}), 1, false) == ".hidden");
  CHECK(replace_in("{.}", job({"dir.d/file"}), 1, false) == "dir.d/file");
}

TEST_CASE("exec args: positional replacement strings for several sources") {
  JobArgs j = job({"a/x.c", "b"});
  CHECK(replace_in("{1} {2}", j, 1, false) == "a/x.c b");
  CHECK(replace_in("{1/.}", j, 1, false) == "x");
  CHECK(replace_in("{}", j, 1, false) == "a/x.c b");
  CHECK(replace_in("{3}", j, 1, false) == "{3}");
}

TEST_CASE("exec args: argv appends the values when there is no replacement string") {
  CHECK(job_argv({"echo", "-n"}, job({"a b", "c"}), 1, false) == std::vector<std::string>{"echo", "-n", "a b", "c"});
  CHECK(job_argv({"echo", "<{}>"}, job({"a b"}), 1, false) == std::vector<std::string>{"echo", "<a b>"});
  CHECK(!has_replacement({"echo", "{x}"}));
  CHECK(has_replacement({"echo", "x{#}"}));
  CHECK(uses_slot({"echo", "{%}"}));
  CHECK(!uses_slot({"echo", "{}"}));
}

TEST_CASE("exec args: --shell quotes every value") {
  auto argv = job_argv({"echo", "{}", "|", "tr", "a", "b"}, job({"it's $HOME \"x\"\n"}), 1, true);
  REQUIRE(argv.size() == 3);
  CHECK(argv[0] == "/bin/sh");
  CHECK(argv[2] == "echo 'it'\"'\"'s $HOME \"x\"\n' | tr a b");
  CHECK(parallel_quote("") == "''");
  CHECK(parallel_quote("plain-word_1.2/x:y,z+=@%") == "plain-word_1.2/x:y,z+=@%");
  CHECK(parallel_quote("caf\xe9") == "'caf\xe9'");
}

TEST_CASE("exec args: :::+ links sources, {} with several values gives separate words, one shell word needs a shell") {
  auto split = split_exec_words({"--", "echo", ":::", "a", "b", ":::+", "1", "2", ":::", "x"});
  REQUIRE(split.has_value());
  REQUIRE(split->sources.size() == 3);
  CHECK(split->sources[1].linked);
  CHECK_FALSE(split->sources[2].linked);
  CHECK_FALSE(split_exec_words({"--", "echo", ":::+", "a"}).has_value());
  std::vector<std::vector<std::string>> jobs;
  combine_sources({{"a", "b", "c"}, {"1", "2"}, {"x", "y"}}, {false, true, false}, [&](std::vector<std::string> v) {
    jobs.push_back(std::move(v));
    return true;
  });
  // Linked: paired (the shorter wraps around); then crossed with the third source.
  CHECK(jobs == std::vector<std::vector<std::string>>{{"a", "1", "x"}, {"a", "1", "y"}, {"b", "2", "x"},
                                                     {"b", "2", "y"}, {"c", "1", "x"}, {"c", "1", "y"}});
  CHECK(job_argv({"printf", "%s|", "{}"}, job({"a b", "c"}), 1, false) == std::vector<std::string>{"printf", "%s|", "a b", "c"});
  CHECK(job_argv({"echo", "x{}y"}, job({"a", "b"}), 1, false) == std::vector<std::string>{"echo", "xa", "by"});
  JobArgs context = job({"a", "b"});
  context.context_replace = true;
  CHECK(job_argv({"echo", "x{}y"}, context, 1, false) == std::vector<std::string>{"echo", "xay", "xby"});
  CHECK(needs_shell({"cat {} | wc -l > {.}.out"}));
  CHECK_FALSE(needs_shell({"cat", "{}", "|", "wc"}));
  CHECK_FALSE(needs_shell({"echo"}));
}
