// End-to-end tests of task ids in `authrun run`: kept byte for byte, matched exactly by --resume, and
// duplicates refused (unless --allow-duplicate-ids). The real binaries over real pipes.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "protocol/json_codec.hpp"
#include "tests/helpers/test_util.hpp"

namespace {

using namespace authrun;
using namespace authrun::test;

// The result lines of `out` whose text has `"id":ID_TEXT,` in it (the id exactly as written).
std::size_t lines_with_id(const std::string& out, const std::string& id_text) {
  std::size_t n = 0;
  for (std::size_t at = 0; (at = out.find("\"id\":" + id_text + ",", at)) != std::string::npos; ++at) ++n;
  return n;
}

}  // namespace

TEST_CASE("ids: big integers, escaped strings and odd number forms are echoed byte for byte") {
  const std::vector<std::string> ids = {"123456789012345678901234567890", "-98765432109876543210.5e3",
                                        "\"caf\\u00e9 \\\"q\\\"\"", "\"plain\"", "1.0"};
  std::string input;
  for (const auto& id : ids) input += "{\"id\":" + id + ",\"fn\":\"echo\",\"args\":[1, 2.50, {\"a\" : null}]}\n";
  auto r = run_batch({"-j", "2", "-"}, input);
  CHECK(r.exit_code == 0);
  CHECK(contains(summary_of(r.err), "5 tasks: 5 ok, 0 failed"));
  for (const auto& id : ids) {
    CAPTURE(id);
    CHECK(lines_with_id(r.out, id) == 1);
  }
  // The args reach the worker as valid JSON and come back as its value.
  for (const auto& res : parse_results(r.out)) CHECK(res["value"] == protocol::json::parse("[1, 2.5, {\"a\": null}]"));
}

TEST_CASE("ids: --resume skips exactly the ids done, a big integer included") {
  TempDir dir;
  const std::string big = "123456789012345678901234567890";
  const std::string near = "123456789012345678901234567891";  // the same double: must not count as done
  const std::string results = dir.path() + "/results.jsonl";
  auto first = run_batch({"-j", "1", "--resume", results, "-"}, "{\"id\":" + big + ",\"fn\":\"echo\",\"args\":1}\n");
  REQUIRE(first.exit_code == 0);
  std::string input = "{\"id\":" + big + ",\"fn\":\"echo\",\"args\":1}\n{\"id\":" + near + ",\"fn\":\"echo\",\"args\":2}\n";
  auto second = run_batch({"-j", "1", "--resume", results, "-"}, input);
  CHECK(second.exit_code == 0);
  CHECK(contains(summary_of(second.err), "1 task: 1 ok"));
  CHECK(contains(summary_of(second.err), "1 skipped as already done"));
  const std::string all = read_file(results);
  CHECK(lines_with_id(all, big) == 1);
  CHECK(lines_with_id(all, near) == 1);
}

TEST_CASE("ids: a duplicate id fails as bad_task naming both lines, unless --allow-duplicate-ids") {
  TempDir dir;
  const std::string tasks = dir.write("tasks.jsonl",
                                      "{\"id\":\"a\",\"fn\":\"echo\",\"args\":1}\n"
                                      "{\"id\":7,\"fn\":\"echo\",\"args\":2}\n"
                                      "\n"
                                      "{\"id\":\"a\",\"fn\":\"echo\",\"args\":3}\n");
  auto r = run_batch({"-j", "2", tasks}, "");
  CHECK(r.exit_code == 1);
  CHECK(contains(summary_of(r.err), "3 tasks: 2 ok, 1 failed"));
  auto results = parse_results(r.out);
  REQUIRE(results.size() == 3);
  int bad = 0;
  for (const auto& res : results) {
    if (res["ok"] == true) continue;
    ++bad;
    CHECK(res["id"] == "a");
    CHECK(res["error"]["type"] == "bad_task");
    const std::string message = res["error"]["message"];
    CHECK(contains(message, "tasks.jsonl:4"));
    CHECK(contains(message, "tasks.jsonl:1"));
    CHECK(contains(message, "duplicate id"));
  }
  CHECK(bad == 1);

  auto allowed = run_batch({"-j", "2", "--allow-duplicate-ids", tasks}, "");
  CHECK(allowed.exit_code == 0);
  CHECK(contains(summary_of(allowed.err), "3 tasks: 3 ok, 0 failed"));
}
