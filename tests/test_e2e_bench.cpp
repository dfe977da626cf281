// `authrun bench` end to end: the real authrun and workers, a quick sweep. The output's shape is checked,
// never the timings.
#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

#include "protocol/json_codec.hpp"
#include "tests/helpers/test_util.hpp"

using namespace authrun::test;
using authrun::protocol::json;

namespace {

const std::vector<std::string> k_codecs = {"json-base64", "json-array", "cbor", "msgpack", "raw"};
const std::vector<std::string> k_modes = {"authenticated", "encrypted", "insecure"};

// Splits one CSV line (RFC 4180 quoting).
std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        fields.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        fields.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else {
      fields.back() += c;
    }
  }
  return fields;
}

// True when `v` is a positive number, or null (a figure this machine cannot give).
bool positive_or_null(const json& v) { return v.is_null() || (v.is_number() && v.get<double>() > 0); }

}  // namespace

TEST_CASE("bench: --quick writes a table, a JSON object and a CSV file covering every codec and mode") {
  TempDir dir;
  const std::string json_path = dir.path() + "/bench.json";
  const std::string csv_path = dir.path() + "/bench.csv";
  auto r = run_program({authrun_bin(), "bench", "--quick", "--json", json_path, "--csv", csv_path}, "",
                       std::chrono::seconds(150));
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("raw pipe ping-pong") != std::string::npos);
  CHECK(r.out.find("pipes: 1 MiB") != std::string::npos);

  auto parsed = authrun::protocol::parse_json(read_file(json_path));
  REQUIRE(parsed.has_value());
  const json& bench = *parsed;
  REQUIRE(bench.is_object());
  CHECK(bench["machine"]["cpus"].get<int>() > 0);
  CHECK(bench["machine"]["pipe_size"].get<int>() > 0);
  CHECK(bench["baselines"]["pingpong_64"]["p50_us"].get<double>() > 0);
  CHECK(bench["baselines"]["raw_pipe"].size() == 3);
  CHECK(bench["baselines"]["start"].size() == 3);
  CHECK(bench["baselines"]["tiny_latency"].size() == 3);
  CHECK(!bench["baselines"]["tiny_throughput"].empty());
  for (const json& t : bench["baselines"]["tiny_throughput"]) CHECK(t["tasks_per_s"].get<double>() > 0);
  for (const json& s : bench["baselines"]["start"]) CHECK(s["handshake"]["p50_us"].get<double>() > 0);
  CHECK(bench["targets"].size() == 4);

  std::set<std::pair<std::string, std::string>> seen;
  REQUIRE(bench["rows"].is_array());
  CHECK(bench["rows"].size() == k_codecs.size() * k_modes.size() * 3);
  for (const json& row : bench["rows"]) {
    const std::string what = row["codec"].get<std::string>() + " " + row["mode"].get<std::string>() + " " +
                             std::to_string(row["size"].get<std::size_t>());
    INFO(what);
    seen.insert({row["codec"].get<std::string>(), row["mode"].get<std::string>()});
    CHECK(row["ok"].get<bool>());
    CHECK(row["reps"].get<int>() == 20);
    for (const char* key : {"size", "encode_us", "decode_us", "mb_s", "tasks_per_s", "wire_per_byte", "runner_cpu_us",
                            "raw_mb_s", "vs_raw", "vs_pingpong"}) {
      INFO(key);
      CHECK((row[key].is_number() && row[key].get<double>() > 0));
    }
    for (const char* key : {"p50_us", "p99_us", "mean_us"}) CHECK(row["rtt"][key].get<double>() > 0);
    for (const char* key : {"worker_cpu_us", "runner_peak_kib", "worker_peak_kib"}) CHECK(positive_or_null(row[key]));
    if (row["codec"] == "raw") {
      CHECK(row["nlohmann_us"].is_null());
    } else {
      CHECK(row["nlohmann_us"].get<double>() > 0);
      CHECK(row["vs_nlohmann"].get<double>() > 0);
    }
  }
  for (const auto& codec : k_codecs) {
    for (const auto& mode : k_modes) CHECK_MESSAGE(seen.count({codec, mode}) == 1, codec << " " << mode);
  }

  const auto lines = split_lines(read_file(csv_path));
  REQUIRE(lines.size() > 1 + bench["rows"].size());
  const std::size_t columns = csv_fields(lines[0]).size();
  CHECK(columns > 10);
  std::size_t echo_lines = 0;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    INFO("csv line " << i + 1 << ": " << lines[i]);
    const auto fields = csv_fields(lines[i]);
    CHECK(fields.size() == columns);
    if (fields[0] == "echo") ++echo_lines;
  }
  CHECK(echo_lines == bench["rows"].size());
}

TEST_CASE("bench: --sizes takes K/M/KiB/MiB suffixes; --codecs and --modes choose the rows") {
  TempDir dir;
  const std::string json_path = dir.path() + "/bench.json";
  auto r = run_program({authrun_bin(), "bench", "--quick", "--sizes", "1K,2KiB,1M", "--codecs", "raw,cbor", "--modes",
                        "insecure", "--reps", "3", "--json", json_path},
                       "", std::chrono::seconds(120));
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  auto parsed = authrun::protocol::parse_json(read_file(json_path));
  REQUIRE(parsed.has_value());
  std::multiset<std::size_t> sizes;
  for (const json& row : (*parsed)["rows"]) {
    CHECK(row["mode"] == "insecure");
    CHECK((row["codec"] == "raw" || row["codec"] == "cbor"));
    CHECK(row["reps"].get<int>() == 3);
    sizes.insert(row["size"].get<std::size_t>());
  }
  CHECK(sizes == std::multiset<std::size_t>{1024, 1024, 2048, 2048, 1u << 20, 1u << 20});
}

TEST_CASE("bench: an unknown codec, mode or size is a usage error (exit 2)") {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--codecs", "xml"}, {"--modes", "plaintext"}, {"--sizes", "12Q"}}) {
    std::vector<std::string> argv = {authrun_bin(), "bench", "--quick"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run_program(argv);
    INFO(args[0] << " " << args[1] << ": " << r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.out.empty());
  }
}
