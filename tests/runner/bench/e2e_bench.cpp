// `authrun bench` end to end: the real authrun and workers, a quick sweep. The output's shape is checked,
// never the timings.
#include <doctest/doctest.h>

#include <map>
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
  // raw authenticated and encrypted against the pipe, CBOR/MessagePack and JSON against nlohmann, runner RSS,
  // tiny round trip against the ping-pong pinned alike.
  CHECK(bench["targets"].size() == 6);
  // --quick measures no large payload: the targets about them are "not measured", not missed.
  int unmeasured = 0;
  for (const json& t : bench["targets"]) {
    const std::string name = t["name"].get<std::string>();
    INFO(name);
    if (t["measured"] == false) {
      ++unmeasured;
      CHECK(t["met"] == false);
      CHECK(r.out.find("[not measured] " + name) != std::string::npos);
      CHECK(r.out.find("[MISSED] " + name) == std::string::npos);
    }
  }
  CHECK(unmeasured >= 4);
  for (const json& l : bench["baselines"]["tiny_latency"]) {
    // Pinned tiny round trips come with a ping-pong pinned the same way (when pinning is allowed at all).
    if (l["same_cpu"]["count"].get<int>() > 0) CHECK(l["same_cpu_pingpong"]["count"].get<int>() > 0);
  }
  CHECK(!bench.contains("launcher"));  // no launch options, no launcher section
  CHECK(r.out.find("Launcher:") == std::string::npos);

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

TEST_CASE("bench: --sizes takes K/M/KiB/MiB suffixes, --codecs and --modes choose the rows") {
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
           {"--codecs", "xml"}, {"--modes", "plaintext"}, {"--sizes", "12Q"},
           {"-S", ":"},                     // no remote host to measure the launcher with
           {"--key-file", "/nonexistent"},  // a key file is for a launched worker
       }) {
    std::vector<std::string> argv = {authrun_bin(), "bench", "--quick"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run_program(argv);
    INFO(args[0] << " " << args[1] << ": " << r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.out.empty());
  }
}

TEST_CASE("bench: a launcher adds a section next to the local pipe (env as the launcher: the key goes over stdin)") {
  TempDir dir;
  const std::string json_path = dir.path() + "/bench.json";
  const std::string csv_path = dir.path() + "/bench.csv";
  // env execs the worker command that follows it: a launcher with no network, over the key-on-stdin path.
  auto r = run_program({authrun_bin(), "bench", "--quick", "--sizes", "8", "--codecs", "raw", "--modes", "authenticated",
                        "--launcher", "/usr/bin/env", "--launcher-encrypted", "--json", json_path, "--csv", csv_path},
                       "", std::chrono::seconds(120));
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("Launcher: env next to the local pipe") != std::string::npos);
  CHECK(r.out.find("launched / local encrypted") != std::string::npos);
  CHECK(r.out.find("FAILED") == std::string::npos);

  auto parsed = authrun::protocol::parse_json(read_file(json_path));
  REQUIRE(parsed.has_value());
  const json& launcher = (*parsed)["launcher"];
  CHECK(launcher["name"] == "env");
  CHECK(launcher["key_delivery"] == "stdin");
  CHECK(launcher["argv"].back() == "--key-stdin");
  REQUIRE(launcher["paths"].size() == 3);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"local", "authenticated"}, {"local", "encrypted"}, {"env", "encrypted"}};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const json& path = launcher["paths"][i];
    INFO(path.dump());
    CHECK(path["via"] == expected[i].first);
    CHECK(path["mode"] == expected[i].second);
    CHECK(path["start"]["count"] == 2);
    CHECK(path["start"]["p50_us"].get<double>() > 0);
    CHECK(path["tiny_rtt"]["p50_us"].get<double>() > 0);
    CHECK(path["tiny_rtt"]["p99_us"].get<double>() > 0);
    CHECK(path["tiny_tasks"]["window"] == 8);
    CHECK(path["tiny_tasks"]["tasks_per_s"].get<double>() > 0);
    REQUIRE(path["echo"].size() == 2);
    CHECK(path["echo"][0]["size"] == (1u << 20));
    CHECK(path["echo"][1]["size"] == (16u << 20));
    for (const json& echo : path["echo"]) {
      CHECK(echo["ok"] == true);
      CHECK(echo["reps"] == 2);
      CHECK(echo["mb_s"].get<double>() > 0);
    }
  }
  // The launcher does not say where its worker runs: the worker does (its host name).
  CHECK(!launcher["paths"][2]["host"].get<std::string>().empty());
  REQUIRE(launcher["launched_vs_local"].size() == 2);
  CHECK(launcher["launched_vs_local"][0]["against"] == "local authenticated");
  CHECK(launcher["launched_vs_local"][1]["against"] == "local encrypted");
  for (const json& ratios : launcher["launched_vs_local"]) {
    for (const char* key : {"start_p50", "tiny_rtt_p50", "tiny_rtt_p99", "tiny_tasks_per_s"}) {
      INFO(key);
      CHECK(ratios[key].get<double>() > 0);
    }
    for (const json& echo : ratios["echo_mb_s"]) CHECK(echo["ratio"].get<double>() > 0);
  }

  const auto lines = split_lines(read_file(csv_path));
  REQUIRE(!lines.empty());
  const std::size_t columns = csv_fields(lines[0]).size();
  std::map<std::string, int> kinds;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    INFO("csv line " << i + 1 << ": " << lines[i]);
    const auto fields = csv_fields(lines[i]);
    CHECK(fields.size() == columns);
    if (fields[0].rfind("launcher_", 0) == 0) ++kinds[fields[0]];
  }
  CHECK(kinds == std::map<std::string, int>{
                     {"launcher_start", 3}, {"launcher_tiny_rtt", 3}, {"launcher_tiny_tasks", 3}, {"launcher_echo", 6}});
}

TEST_CASE("bench: a launched worker that fails its handshake is a set-up error naming the launcher and how it ended") {
  auto r = run_program({authrun_bin(), "bench", "--quick", "--sizes", "8", "--codecs", "raw", "--modes", "authenticated",
                        "--launcher", "/usr/bin/false", "--launcher-encrypted"},
                       "", std::chrono::seconds(120));
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 2);
  CHECK(contains(r.err, "the worker via false failed its handshake"));
  CHECK(contains(r.err, "false ended with exit code 1"));
}
