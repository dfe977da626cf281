// Tasks in batches (task_batch / result_batch, PROTOCOL.md section 3) between `authrun run` and the real
// authrun-worker: many tasks go in few frames, every task still ends in exactly one result line, and a
// window of one never batches. The counts come from --summary-json's task_frames.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "protocol/json_codec.hpp"
#include "tests/helpers/test_util.hpp"

using namespace authrun::test;
using authrun::protocol::json;

namespace {

struct Counted {
  std::vector<json> results;
  std::uint64_t task_frames = 0;
};

Counted run_counted(const TempDir& dir, int tasks, const std::vector<std::string>& options) {
  std::string input;
  for (int i = 0; i < tasks; ++i) input += task_line(json{{"id", i}, {"fn", "echo"}, {"args", {i, "x"}}});
  const std::string summary = dir.path() + "/summary.json";
  std::vector<std::string> argv = options;
  argv.insert(argv.end(), {"--summary-json", summary});
  auto r = run_batch(argv, input);
  CHECK(r.exit_code == 0);
  Counted out;
  for (const std::string& line : split_lines(r.out)) {
    auto parsed = authrun::protocol::parse_json(line);
    REQUIRE(parsed.has_value());
    CHECK((*parsed)["value"] == json{(*parsed)["id"], "x"});
    out.results.push_back(std::move(*parsed));
  }
  auto s = authrun::protocol::parse_json(read_file(summary));
  REQUIRE(s.has_value());
  out.task_frames = (*s)["task_frames"].get<std::uint64_t>();
  return out;
}

}  // namespace

TEST_CASE("batches: 3000 tiny tasks reach two workers in far fewer frames, and each ends in one result line") {
  TempDir dir;
  auto run = run_counted(dir, 3000, {"-j", "2", "--window", "64"});
  check_each_ok_once(run.results, 3000);
  INFO("task frames: " << run.task_frames);
  // 64 tasks are in flight per worker: the first turn alone sends two batches of 64, and results come
  // back in batches, so refills are batches too. Without batches this is 3000.
  CHECK(run.task_frames > 0);
  CHECK(run.task_frames <= 1500);
}

TEST_CASE("batches: a window of one sends one task per frame, as to a worker that takes no batches") {
  TempDir dir;
  auto run = run_counted(dir, 200, {"-j", "2", "--window", "1"});
  check_each_ok_once(run.results, 200);
  CHECK(run.task_frames == 200);
}

TEST_CASE("batches: values passed on as text come out byte for byte as parsed ones do") {
  // Results in batches go to the output line as the text the worker wrote; alone, they are parsed and dumped.
  // Both ways give the same bytes, for values of every kind.
  const std::vector<std::string> values = {
      "null", "true", "0", "-7", "18446744073709551615", "-9223372036854775808", "2.5", "1e+300", "0.1",
      "\"caf\\u00e9 \\\"q\\\" \\\\ \\n\\t \\u0001\"", "\"\xf0\x9f\x98\x80\"", "[]", "{}", "[1,[2,[3,{\"a\":null}]]]",
      "{\"z\":1,\"a\":{\"y\":[true,false],\"b\":\"\"}}"};
  std::string input;
  for (int round = 0; round < 40; ++round) {
    for (std::size_t i = 0; i < values.size(); ++i) {
      input += "{\"id\":" + std::to_string(round * 100 + int(i)) + ",\"fn\":\"echo\",\"args\":" + values[i] + "}\n";
    }
  }
  auto value_texts = [&](const std::vector<std::string>& options) {
    auto r = run_batch(options, input);
    CHECK(r.exit_code == 0);
    std::map<std::string, std::string> by_id;  // id -> the line from "ok" on (host, worker and time differ)
    for (const std::string& line : split_lines(r.out)) {
      const auto id_at = line.find("\"id\":");
      REQUIRE(id_at != std::string::npos);
      const std::string id = line.substr(id_at + 5, line.find(',', id_at) - id_at - 5);
      by_id[id] = line.substr(line.find(",\"ok\":"), line.rfind(",\"worker\":") - line.find(",\"ok\":"));
    }
    return by_id;
  };
  const auto alone = value_texts({"-j", "2", "--window", "1"});
  TempDir dir;
  const std::string summary = dir.path() + "/summary.json";
  const auto batched = value_texts({"-j", "2", "--window", "64", "--summary-json", summary});
  auto s = authrun::protocol::parse_json(read_file(summary));
  REQUIRE(s.has_value());
  CHECK((*s)["task_frames"].get<std::uint64_t>() < 40 * values.size());  // the second run did go in batches
  REQUIRE(alone.size() == 40 * values.size());
  CHECK(alone == batched);
  CHECK(alone.at("10") == ",\"ok\":true,\"value\":\"\xf0\x9f\x98\x80\"");
}
