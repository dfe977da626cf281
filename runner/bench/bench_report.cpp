// Rendering a bench report: the table, the JSON object, the CSV lines, and the reported targets.
#include "runner/bench/bench_report.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>
#include <tuple>

namespace authrun::runner::bench {

using protocol::json;

namespace {

std::string format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

}  // namespace

std::string size_text(std::size_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  return (v == std::floor(v) ? format("%.0f", v) : format("%.1f", v)) + " " + units[u];
}

namespace {

std::string fmt_us(double us) {
  if (us < 0) return "-";
  if (us < 1000) return format(us < 10 ? "%.2f us" : us < 100 ? "%.1f us" : "%.0f us", us);
  if (us < 1e6) return format(us < 1e4 ? "%.2f ms" : us < 1e5 ? "%.1f ms" : "%.0f ms", us / 1e3);
  return format("%.2f s", us / 1e6);
}

std::string fmt_kib(long kib) { return kib < 0 ? "-" : size_text(static_cast<std::size_t>(kib) * 1024); }

std::string fmt_rate(double v) {
  if (v >= 100) return format("%.0f", v);
  if (v >= 10) return format("%.1f", v);
  return format("%.2f", v);
}

std::string fmt_ratio(double v) { return v < 0 ? "-" : v >= 10 ? format("%.0fx", v) : format("%.2fx", v); }

json stats_json(const Stats& s) {
  return json{{"count", s.count}, {"mean_us", s.mean_us}, {"p50_us", s.p50_us}, {"p99_us", s.p99_us},
              {"min_us", s.min_us}, {"max_us", s.max_us}};
}

// A number, or null when it is not known (-1).
json maybe(double v) { return v < 0 ? json(nullptr) : json(v); }

const char* k_csv_header =
    "kind,codec,mode,size,jobs,window,driver,reps,encode_us,rtt_mean_us,rtt_p50_us,rtt_p99_us,decode_us,mb_s,tasks_per_s,"
    "wire_per_byte,worker_cpu_us,runner_cpu_us,runner_peak_kib,worker_peak_kib,nlohmann_us,vs_raw,vs_pingpong,"
    "vs_nlohmann,failure";

// One CSV line; fields given by name, the rest empty.
class CsvLine {
 public:
  CsvLine& set(const std::string& column, const std::string& value) {
    m_fields[column] = value;
    return *this;
  }
  CsvLine& num(const std::string& column, double value) {
    if (value >= 0 && std::isfinite(value)) {
      m_fields[column] = value == std::floor(value) && value < 1e15 ? format("%.0f", value) : format("%.6g", value);
    }
    return *this;
  }
  CsvLine& stats(const Stats& s) {
    return num("reps", double(s.count)).num("rtt_mean_us", s.mean_us).num("rtt_p50_us", s.p50_us).num("rtt_p99_us", s.p99_us);
  }
  std::string str() const {
    std::string out;
    std::istringstream header(k_csv_header);
    std::string column;
    bool first = true;
    while (std::getline(header, column, ',')) {
      if (!first) out += ',';
      first = false;
      auto it = m_fields.find(column);
      if (it == m_fields.end()) continue;
      std::string v = it->second;
      if (v.find_first_of(",\"\n") != std::string::npos) {
        std::string q = "\"";
        for (char c : v) q += c == '"' ? std::string("\"\"") : std::string(1, c == '\n' ? ' ' : c);
        v = q + "\"";
      }
      out += v;
    }
    return out + "\n";
  }

 private:
  std::map<std::string, std::string> m_fields;
};


// Launched against one local path, as launched / local: for times above 1 is slower, for rates below 1 is.
struct LaunchRatios {
  std::string against;  // "local authenticated"
  double start = -1, rtt_p50 = -1, rtt_p99 = -1, tasks_per_s = -1;
  std::vector<std::pair<std::size_t, double>> mb_s;  // per echo size; -1 where either echo failed
};

double ratio(double a, double b) { return a > 0 && b > 0 ? a / b : -1; }

// The echo sizes any path measured, ascending.
std::vector<std::size_t> echo_sizes(const LaunchSection& section) {
  std::vector<std::size_t> sizes;
  for (const LaunchPath& p : section.paths) {
    for (const Row& r : p.echoes) sizes.push_back(r.size);
  }
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  return sizes;
}

// The path's echo MB/s at `size`, -1 if it failed or was not measured.
double echo_mb_s(const LaunchPath& path, std::size_t size) {
  for (const Row& r : path.echoes) {
    if (r.size == size) return r.failure.empty() ? r.mb_s : -1;
  }
  return -1;
}

// The launched worker (the last path) against each local one.
std::vector<LaunchRatios> launch_ratios(const LaunchSection& section) {
  std::vector<LaunchRatios> out;
  if (section.paths.size() < 2) return out;
  const LaunchPath& launched = section.paths.back();
  for (std::size_t i = 0; i + 1 < section.paths.size(); ++i) {
    const LaunchPath& local = section.paths[i];
    LaunchRatios r;
    r.against = local.label() + " " + local.mode;
    r.start = ratio(launched.start.p50_us, local.start.p50_us);
    r.rtt_p50 = ratio(launched.tiny_rtt.p50_us, local.tiny_rtt.p50_us);
    r.rtt_p99 = ratio(launched.tiny_rtt.p99_us, local.tiny_rtt.p99_us);
    r.tasks_per_s = ratio(launched.tiny_tasks.tasks_per_s, local.tiny_tasks.tasks_per_s);
    for (std::size_t size : echo_sizes(section)) r.mb_s.emplace_back(size, ratio(echo_mb_s(launched, size), echo_mb_s(local, size)));
    out.push_back(std::move(r));
  }
  return out;
}

std::string joined(const std::vector<std::string>& words) {
  std::string text;
  for (const auto& w : words) text += (text.empty() ? "" : " ") + w;
  return text;
}

void print_launcher(const LaunchSection& section, std::FILE* out) {
  const std::vector<std::size_t> sizes = echo_sizes(section);
  const int window = section.paths.empty() ? 0 : section.paths.front().tiny_tasks.window;
  std::fprintf(out, "\nLauncher: %s next to the local pipe, this run (every echo verified byte for byte)\n", section.launcher.c_str());
  std::fprintf(out, "  launched with: %s\n  its key: %s\n", joined(section.argv).c_str(),
               section.key_delivery == "stdin" ? "a fresh one, the first 32 bytes of its stdin" : "the --key-file key, read where it runs");
  std::fprintf(out, "  %-30s %-13s %9s %9s %9s %11s", "worker", "mode", "start p50", "rtt p50", "rtt p99",
               ("tasks/s w" + std::to_string(window)).c_str());
  for (std::size_t size : sizes) std::fprintf(out, " %13s", (size_text(size) + " MB/s").c_str());
  std::fprintf(out, "\n");
  for (const LaunchPath& p : section.paths) {
    std::fprintf(out, "  %-30s %-13s %9s %9s %9s %11s", p.label().c_str(), p.mode.c_str(), fmt_us(p.start.p50_us).c_str(),
                 fmt_us(p.tiny_rtt.p50_us).c_str(), fmt_us(p.tiny_rtt.p99_us).c_str(), fmt_rate(p.tiny_tasks.tasks_per_s).c_str());
    for (std::size_t size : sizes) {
      const double v = echo_mb_s(p, size);
      std::fprintf(out, " %13s", v < 0 ? "FAILED" : fmt_rate(v).c_str());
    }
    std::fprintf(out, "\n");
  }
  for (const LaunchRatios& r : launch_ratios(section)) {
    std::fprintf(out, "  %-44s %9s %9s %9s %11s", ("launched / " + r.against).c_str(), fmt_ratio(r.start).c_str(),
                 fmt_ratio(r.rtt_p50).c_str(), fmt_ratio(r.rtt_p99).c_str(), fmt_ratio(r.tasks_per_s).c_str());
    for (const auto& [size, v] : r.mb_s) std::fprintf(out, " %13s", fmt_ratio(v).c_str());
    std::fprintf(out, "\n");
  }
  for (const LaunchPath& p : section.paths) {
    for (const Row& r : p.echoes) {
      if (!r.failure.empty()) {
        std::fprintf(out, "  %s %s echo of %s FAILED: %s\n", p.label().c_str(), p.mode.c_str(), size_text(r.size).c_str(),
                     r.failure.c_str());
      }
    }
  }
  std::fprintf(out,
               "columns: start = spawn until the worker's proof verified (p50 of %zu fresh workers); rtt = a tiny echo, "
               "one at a time; tasks/s = tiny echoes, %d in flight on one worker; MB/s = 2 x size / round trip of a "
               "raw-attachment echo; ratios = launched / local (times: above 1 is slower; rates: below 1 is slower).\n",
               section.paths.empty() ? std::size_t{0} : section.paths.back().start.count, window);
}

json launcher_json(const LaunchSection& section) {
  json paths = json::array();
  for (const LaunchPath& p : section.paths) {
    json echoes = json::array();
    for (const Row& r : p.echoes) {
      json e = {{"size", r.size}, {"reps", r.reps}, {"rtt", stats_json(r.rtt)}, {"mb_s", r.mb_s}, {"ok", r.failure.empty()}};
      if (!r.failure.empty()) e["failure"] = r.failure;
      echoes.push_back(std::move(e));
    }
    const TinyThroughput& t = p.tiny_tasks;
    paths.push_back({{"via", p.via},
                     {"host", p.host},
                     {"mode", p.mode},
                     {"start", stats_json(p.start)},
                     {"tiny_rtt", stats_json(p.tiny_rtt)},
                     {"tiny_tasks", {{"window", t.window}, {"tasks", t.tasks}, {"seconds", t.seconds}, {"tasks_per_s", t.tasks_per_s}}},
                     {"echo", echoes}});
  }
  json ratios = json::array();
  for (const LaunchRatios& r : launch_ratios(section)) {
    json mb_s = json::array();
    for (const auto& [size, v] : r.mb_s) mb_s.push_back({{"size", size}, {"ratio", maybe(v)}});
    ratios.push_back({{"against", r.against},
                      {"start_p50", maybe(r.start)},
                      {"tiny_rtt_p50", maybe(r.rtt_p50)},
                      {"tiny_rtt_p99", maybe(r.rtt_p99)},
                      {"tiny_tasks_per_s", maybe(r.tasks_per_s)},
                      {"echo_mb_s", mb_s}});
  }
  return {{"name", section.launcher}, {"argv", section.argv}, {"key_delivery", section.key_delivery},
          {"paths", paths}, {"launched_vs_local", ratios}};
}

// A tiny-task throughput as a CSV line of `kind`, with `driver` in the driver column.
std::string tiny_tasks_csv(const std::string& kind, const std::string& driver, const TinyThroughput& t) {
  return CsvLine()
      .set("kind", kind)
      .set("mode", t.mode)
      .set("driver", driver)
      .num("jobs", t.jobs)
      .num("window", t.window)
      .num("reps", double(t.tasks))
      .num("tasks_per_s", t.tasks_per_s)
      .str();
}

std::string launcher_csv(const LaunchSection& section) {
  std::string out;
  for (const LaunchPath& p : section.paths) {
    const std::string who = p.label();
    out += CsvLine().set("kind", "launcher_start").set("driver", who).set("mode", p.mode).stats(p.start).str();
    out += CsvLine().set("kind", "launcher_tiny_rtt").set("driver", who).set("mode", p.mode).num("size", 14).stats(p.tiny_rtt).str();
    out += tiny_tasks_csv("launcher_tiny_tasks", who, p.tiny_tasks);
    for (const Row& r : p.echoes) {
      CsvLine line;
      line.set("kind", "launcher_echo").set("codec", r.codec).set("driver", who).set("mode", p.mode).num("size", double(r.size));
      line.stats(r.rtt).num("reps", r.reps).num("mb_s", r.mb_s).num("tasks_per_s", r.tasks_per_s).set("failure", r.failure);
      out += line.str();
    }
  }
  return out;
}

}  // namespace

std::string LaunchPath::label() const {
  if (via == "local") return via;
  return (host.empty() ? "" : host + " ") + "via " + via;
}

Stats summarize(std::vector<double> samples) {
  Stats s;
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  s.count = samples.size();
  double sum = 0;
  for (double v : samples) sum += v;
  s.mean_us = sum / double(samples.size());
  // Nearest rank: the smallest sample with at least q of the samples at or below it.
  auto rank = [&](double q) {
    auto r = static_cast<std::size_t>(std::ceil(q * double(samples.size())));
    return samples[std::clamp<std::size_t>(r, 1, samples.size()) - 1];
  };
  s.p50_us = rank(0.50);
  s.p99_us = rank(0.99);
  s.min_us = samples.front();
  s.max_us = samples.back();
  return s;
}

void evaluate_targets(Report& report) {
  report.targets.clear();
  for (const auto& [mode, share] : {std::pair<const char*, double>{"authenticated", 0.7}, {"encrypted", 0.4}}) {
    Target t{std::string("raw attachment (") + mode + ") >= " + format("%.0f%%", 100 * share) +
                 " of the raw pipe echo at 64 MiB and up",
             "", true};
    bool any = false;
    for (const Row& r : report.rows) {
      if (r.codec != "raw" || r.mode != mode || r.size < 64u << 20 || !r.failure.empty()) continue;
      any = true;
      t.met = t.met && r.vs_raw >= share;
      t.detail += (t.detail.empty() ? "" : "; ") + size_text(r.size) + ": " + fmt_rate(r.mb_s) + " MB/s = " +
                  format("%.0f%%", 100 * r.vs_raw) + " of " + fmt_rate(r.raw_mb_s);
    }
    if (!any) t = Target{t.name, std::string("no raw ") + mode + " row of 64 MiB or more", false, false};
    report.targets.push_back(t);
  }
  {
    Target t{"CBOR/MessagePack round trip <= 1.2x nlohmann's own to_*+from_* of the same args (2 x), 512 KiB and up", "", true};
    const Row* worst = nullptr;
    for (const Row& r : report.rows) {
      if ((r.codec != "cbor" && r.codec != "msgpack") || r.size < 512u << 10 || r.vs_nlohmann < 0 || !r.failure.empty()) continue;
      if (!worst || r.vs_nlohmann > worst->vs_nlohmann) worst = &r;
      t.met = t.met && r.vs_nlohmann <= 1.2;
      t.detail += (t.detail.empty() ? "" : "; ") + r.codec + " " + r.mode + " " + size_text(r.size) + " " + fmt_ratio(r.vs_nlohmann);
    }
    if (!worst) t = Target{t.name, "no CBOR or MessagePack row of 512 KiB or more", false, false};
    else t.detail = "worst " + worst->codec + " " + worst->mode + " " + size_text(worst->size) + ": " + fmt_ratio(worst->vs_nlohmann) + " (" + t.detail + ")";
    report.targets.push_back(t);
  }
  {
    Target t{"JSON paths <= 1.2x nlohmann's own dump+parse of the same payload (round trip vs 2 x (dump+parse)), 512 KiB and up", "", true};
    const Row* worst = nullptr;
    std::string at8;
    for (const Row& r : report.rows) {
      if ((r.codec != "json-base64" && r.codec != "json-array") || r.size < 512u << 10 || r.vs_nlohmann < 0 || !r.failure.empty()) continue;
      if (!worst || r.vs_nlohmann > worst->vs_nlohmann) worst = &r;
      t.met = t.met && r.vs_nlohmann <= 1.2;
      if (r.size == 8u << 20) at8 += (at8.empty() ? "" : ", ") + r.codec + " " + r.mode + " " + fmt_ratio(r.vs_nlohmann);
    }
    if (!worst) {
      t = Target{t.name, "no JSON row of 512 KiB or more", false, false};
    } else {
      t.detail = "worst " + worst->codec + " " + worst->mode + " " + size_text(worst->size) + ": " + fmt_ratio(worst->vs_nlohmann);
      if (!at8.empty()) t.detail += "; at 8 MiB: " + at8;
    }
    report.targets.push_back(t);
  }
  {
    Target t{"peak runner RSS on the raw path <= 2x the largest payload, every mode", "", true};
    std::size_t largest = 0;
    for (const Row& r : report.rows) {
      if (r.codec == "raw" && r.failure.empty()) largest = std::max(largest, r.size);
    }
    // Below a few MiB the process's own footprint (about 6 MiB) is all a peak shows: not a measure of copies.
    constexpr std::size_t k_smallest_telling = std::size_t(16) << 20;
    if (largest < k_smallest_telling) largest = 0;
    for (const Row& r : report.rows) {
      if (largest == 0) break;
      if (r.codec != "raw" || r.size != largest || r.runner_peak_kib < 0 || !r.failure.empty()) continue;
      const double ratio = double(r.runner_peak_kib) * 1024 / double(largest);
      t.met = t.met && ratio <= 2;
      t.detail += (t.detail.empty() ? "" : "; ") + r.mode + " " + fmt_kib(r.runner_peak_kib) + " = " + fmt_ratio(ratio);
    }
    if (t.detail.empty()) t = Target{t.name, "no raw row of 16 MiB or more", false, false};
    else t.detail = "at " + size_text(largest) + ": " + t.detail + " (per-row VmHWM, includes the caller's payload)";
    report.targets.push_back(t);
  }
  {
    // Judged on the pinned pairs when there are any (like against like: the ping-pong pinned the same way,
    // in rounds alternating with the tiny ones), else on the unpinned rounds.
    Target t{"tiny task round trip <= 2x raw pipe ping-pong under the same CPU placement (p50)", "", true};
    for (const TinyLatency& l : report.tiny_latency) {
      std::string d = l.mode + ": unpinned " + fmt_us(l.rtt.p50_us) + " = " + fmt_ratio(l.vs_pingpong);
      bool pinned = false;
      for (const auto& [tiny, pp, where] : {std::tuple{&l.same_cpu, &l.same_cpu_pingpong, "one CPU"},
                                            std::tuple{&l.cross_cpu, &l.cross_cpu_pingpong, "two CPUs"}}) {
        if (tiny->count == 0 || pp->count == 0) continue;
        const double ratio = tiny->p50_us / pp->p50_us;
        t.met = t.met && ratio <= 2;
        pinned = true;
        d += std::string(", ") + where + " " + fmt_us(tiny->p50_us) + " vs " + fmt_us(pp->p50_us) + " = " + fmt_ratio(ratio);
      }
      if (!pinned) t.met = t.met && l.vs_pingpong <= 2;
      t.detail += (t.detail.empty() ? "" : "; ") + d;
    }
    if (t.detail.empty()) t = Target{t.name, "no row to measure it by", false, false};
    report.targets.push_back(t);
  }
}

void print_table(const Report& report, std::FILE* out) {
  const Machine& m = report.machine;
  std::fprintf(out, "authrun bench: %d CPUs (%s), Linux %s, %ld MiB RAM\n", m.cpus, m.cpu_model.c_str(), m.kernel.c_str(),
               m.memory_mib);
  std::string argv;
  for (const auto& a : m.worker_argv) argv += (argv.empty() ? "" : " ") + a;
  std::fprintf(out, "pipes: %s each way (F_SETPIPE_SZ asked %s%s); worker: %s\n", size_text(std::size_t(m.pipe_size)).c_str(),
               size_text(std::size_t(m.pipe_size_requested)).c_str(),
               m.pipe_size == m.pipe_size_requested ? ", granted" : ", refused: kernel default kept", argv.c_str());
  for (const auto& n : report.notes) std::fprintf(out, "note: %s\n", n.c_str());

  std::fprintf(out, "\nBaselines (this run)\n");
  std::fprintf(out, "  raw pipe ping-pong 64 B      p50 %s, p99 %s (n=%zu); after the rows: p50 %s\n",
               fmt_us(report.pingpong.p50_us).c_str(), fmt_us(report.pingpong.p99_us).c_str(), report.pingpong.count,
               fmt_us(report.pingpong_end.p50_us).c_str());
  if (report.pingpong_same_cpu.count > 0) {
    std::fprintf(out, "    pinned: both on one CPU p50 %s; on two CPUs p50 %s (the scheduler picks one or the other)\n",
                 fmt_us(report.pingpong_same_cpu.p50_us).c_str(),
                 report.pingpong_cross_cpu.count > 0 ? fmt_us(report.pingpong_cross_cpu.p50_us).c_str() : "-");
  }
  std::fprintf(out, "  raw pipe echo (child reads all, writes back):\n    %10s %10s %10s %10s\n", "size", "rtt p50", "rtt mean", "MB/s");
  for (const RawPipeRow& r : report.raw_pipe) {
    std::fprintf(out, "    %10s %10s %10s %10s\n", size_text(r.size).c_str(), fmt_us(r.rtt.p50_us).c_str(),
                 fmt_us(r.rtt.mean_us).c_str(), fmt_rate(r.mb_s).c_str());
  }
  for (const StartRow& s : report.starts) {
    std::fprintf(out,
                 "  start %-14s          spawn until the worker's hello p50 %s (spawn() call %s), then handshake p50 %s "
                 "(min %s, max %s; n=%zu)\n",
                 s.mode.c_str(), fmt_us(s.spawn.p50_us + s.first_byte.p50_us).c_str(), fmt_us(s.spawn.p50_us).c_str(),
                 fmt_us(s.handshake.p50_us).c_str(), fmt_us(s.handshake.min_us).c_str(), fmt_us(s.handshake.max_us).c_str(),
                 s.handshake.count);
  }
  for (const TinyLatency& l : report.tiny_latency) {
    std::fprintf(out, "  tiny round trip %-14s p50 %s, p99 %s (n=%zu) = %s the raw ping-pong interleaved with it (p50 %s)\n",
                 l.mode.c_str(), fmt_us(l.rtt.p50_us).c_str(), fmt_us(l.rtt.p99_us).c_str(), l.rtt.count,
                 fmt_ratio(l.vs_pingpong).c_str(), fmt_us(l.pingpong.p50_us).c_str());
    if (l.same_cpu.count > 0 && l.same_cpu_pingpong.count > 0) {
      std::fprintf(out, "    pinned (ping-pong pinned alike, alternating): one CPU p50 %s = %s ping-pong p50 %s",
                   fmt_us(l.same_cpu.p50_us).c_str(), fmt_ratio(l.same_cpu.p50_us / l.same_cpu_pingpong.p50_us).c_str(),
                   fmt_us(l.same_cpu_pingpong.p50_us).c_str());
      if (l.cross_cpu.count > 0 && l.cross_cpu_pingpong.count > 0) {
        std::fprintf(out, "; two CPUs p50 %s = %s ping-pong p50 %s", fmt_us(l.cross_cpu.p50_us).c_str(),
                     fmt_ratio(l.cross_cpu.p50_us / l.cross_cpu_pingpong.p50_us).c_str(), fmt_us(l.cross_cpu_pingpong.p50_us).c_str());
      }
      std::fprintf(out, "\n");
    }
  }
  if (!report.tiny_throughput.empty()) {
    std::fprintf(out, "  tiny tasks: channel = a poll loop over blocking Channels; engine = the runner's WorkerLink event loop\n");
  }
  for (const TinyThroughput& t : report.tiny_throughput) {
    std::fprintf(out, "  tiny tasks %-14s %-7s -j %d window %d: %7.0f tasks/s (%llu tasks in %.2f s)\n", t.mode.c_str(),
                 t.driver.c_str(), t.jobs, t.window, t.tasks_per_s, static_cast<unsigned long long>(t.tasks), t.seconds);
  }

  std::fprintf(out, "\nEcho round trips (every echo verified byte for byte)\n");
  std::fprintf(out, "%-11s %-13s %8s %5s %9s %9s %9s %9s %8s %6s %8s %6s %9s %9s %6s %8s %8s\n", "codec", "mode", "size",
               "reps", "encode", "rtt p50", "rtt p99", "decode", "MB/s", "x raw", "tasks/s", "wire/B", "wrk cpu",
               "nlohmann", "x nl", "rss run", "rss wrk");
  std::vector<const Row*> rows;
  for (const Row& r : report.rows) rows.push_back(&r);
  for (const Row* r : rows) {
    if (!r->failure.empty()) {
      std::fprintf(out, "%-11s %-13s %8s FAILED: %s\n", r->codec.c_str(), r->mode.c_str(), size_text(r->size).c_str(),
                   r->failure.c_str());
      continue;
    }
    std::fprintf(out, "%-11s %-13s %8s %5d %9s %9s %9s %9s %8s %6s %8s %6s %9s %9s %6s %8s %8s\n", r->codec.c_str(),
                 r->mode.c_str(), size_text(r->size).c_str(), r->reps, fmt_us(r->encode_us).c_str(),
                 fmt_us(r->rtt.p50_us).c_str(), fmt_us(r->rtt.p99_us).c_str(), fmt_us(r->decode_us).c_str(),
                 fmt_rate(r->mb_s).c_str(), fmt_ratio(r->vs_raw).c_str(), fmt_rate(r->tasks_per_s).c_str(),
                 format("%.2f", r->wire_per_byte).c_str(), fmt_us(r->worker_cpu_us).c_str(), fmt_us(r->nlohmann_us).c_str(),
                 fmt_ratio(r->vs_nlohmann).c_str(), fmt_kib(r->runner_peak_kib).c_str(), fmt_kib(r->worker_peak_kib).c_str());
  }
  std::fprintf(out,
               "columns: encode = payload -> task (runner); rtt = send (serialise, seal, write) .. result read, verified "
               "and parsed; decode = payload out of the result + freeing it; MB/s = 2 x size / (encode + rtt + decode); "
               "x raw = MB/s / raw pipe echo MB/s at the same size; wire/B = task frame bytes / payload byte; wrk cpu = "
               "worker on-CPU time per task (/proc/PID/schedstat); nlohmann = in-process 2 x (dump + parse) of the same "
               "args; x nl = rtt mean / nlohmann; rss = VmHWM over the row (reset before it).\n");

  if (report.launcher) print_launcher(*report.launcher, out);

  std::fprintf(out, "\nTargets (reported, not asserted)\n");
  for (const Target& t : report.targets) {
    // A target --quick (or a failed row) did not measure is neither met nor missed.
    const char* verdict = !t.measured ? "not measured" : t.met ? "met" : "MISSED";
    std::fprintf(out, "  [%s] %s: %s\n", verdict, t.name.c_str(), t.detail.c_str());
  }
  std::fprintf(out, "runner ru_maxrss (whole process lifetime): %s; total time %.1f s\n", fmt_kib(report.runner_max_rss_kib).c_str(),
               report.seconds);
}

json to_json(const Report& report) {
  const Machine& m = report.machine;
  json out;
  out["machine"] = {{"cpus", m.cpus},
                    {"cpu_model", m.cpu_model},
                    {"kernel", m.kernel},
                    {"memory_mib", m.memory_mib},
                    {"pipe_size", m.pipe_size},
                    {"pipe_size_requested", m.pipe_size_requested},
                    {"worker_argv", m.worker_argv}};
  out["notes"] = report.notes;
  json raw = json::array();
  for (const RawPipeRow& r : report.raw_pipe) raw.push_back({{"size", r.size}, {"rtt", stats_json(r.rtt)}, {"mb_s", r.mb_s}});
  json starts = json::array();
  for (const StartRow& s : report.starts) {
    starts.push_back({{"mode", s.mode}, {"spawn", stats_json(s.spawn)}, {"first_byte", stats_json(s.first_byte)},
                      {"handshake", stats_json(s.handshake)}});
  }
  json latency = json::array();
  for (const TinyLatency& l : report.tiny_latency) {
    latency.push_back({{"mode", l.mode}, {"rtt", stats_json(l.rtt)}, {"pingpong", stats_json(l.pingpong)},
                       {"vs_pingpong", l.vs_pingpong}, {"same_cpu", stats_json(l.same_cpu)},
                       {"same_cpu_pingpong", stats_json(l.same_cpu_pingpong)}, {"cross_cpu_pingpong", stats_json(l.cross_cpu_pingpong)},
                       {"cross_cpu", stats_json(l.cross_cpu)}});
  }
  json throughput = json::array();
  for (const TinyThroughput& t : report.tiny_throughput) {
    throughput.push_back({{"driver", t.driver}, {"mode", t.mode}, {"jobs", t.jobs}, {"window", t.window}, {"tasks", t.tasks},
                          {"seconds", t.seconds}, {"tasks_per_s", t.tasks_per_s}});
  }
  out["baselines"] = {{"pingpong_64", stats_json(report.pingpong)},
                      {"pingpong_64_end", stats_json(report.pingpong_end)},
                      {"pingpong_64_same_cpu", stats_json(report.pingpong_same_cpu)},
                      {"pingpong_64_cross_cpu", stats_json(report.pingpong_cross_cpu)},
                      {"raw_pipe", raw},
                      {"start", starts},
                      {"tiny_latency", latency},
                      {"tiny_throughput", throughput}};
  json rows = json::array();
  for (const Row& r : report.rows) {
    json j = {{"codec", r.codec},
              {"mode", r.mode},
              {"size", r.size},
              {"reps", r.reps},
              {"encode_us", r.encode_us},
              {"rtt", stats_json(r.rtt)},
              {"decode_us", r.decode_us},
              {"mb_s", r.mb_s},
              {"tasks_per_s", r.tasks_per_s},
              {"wire_per_byte", r.wire_per_byte},
              {"worker_cpu_us", maybe(r.worker_cpu_us)},
              {"runner_cpu_us", r.runner_cpu_us},
              {"runner_peak_kib", maybe(double(r.runner_peak_kib))},
              {"worker_peak_kib", maybe(double(r.worker_peak_kib))},
              {"nlohmann_us", maybe(r.nlohmann_us)},
              {"raw_mb_s", r.raw_mb_s},
              {"vs_raw", r.vs_raw},
              {"vs_pingpong", r.vs_pingpong},
              {"vs_nlohmann", maybe(r.vs_nlohmann)},
              {"ok", r.failure.empty()}};
    if (!r.failure.empty()) j["failure"] = r.failure;
    rows.push_back(std::move(j));
  }
  out["rows"] = rows;
  if (report.launcher) out["launcher"] = launcher_json(*report.launcher);
  json targets = json::array();
  for (const Target& t : report.targets) targets.push_back({{"name", t.name}, {"detail", t.detail}, {"met", t.met}, {"measured", t.measured}});
  out["targets"] = targets;
  out["runner_max_rss_kib"] = report.runner_max_rss_kib;
  out["seconds"] = report.seconds;
  return out;
}

std::string to_csv(const Report& report) {
  std::string out = std::string(k_csv_header) + "\n";
  out += CsvLine().set("kind", "pingpong").num("size", 64).stats(report.pingpong).str();
  out += CsvLine().set("kind", "pingpong_end").num("size", 64).stats(report.pingpong_end).str();
  if (report.pingpong_same_cpu.count > 0) {
    out += CsvLine().set("kind", "pingpong_same_cpu").num("size", 64).stats(report.pingpong_same_cpu).str();
  }
  if (report.pingpong_cross_cpu.count > 0) {
    out += CsvLine().set("kind", "pingpong_cross_cpu").num("size", 64).stats(report.pingpong_cross_cpu).str();
  }
  for (const RawPipeRow& r : report.raw_pipe) {
    out += CsvLine().set("kind", "raw_pipe").num("size", double(r.size)).stats(r.rtt).num("mb_s", r.mb_s).str();
  }
  for (const StartRow& s : report.starts) {
    out += CsvLine().set("kind", "spawn").set("mode", s.mode).stats(s.spawn).str();
    out += CsvLine().set("kind", "worker_startup").set("mode", s.mode).stats(s.first_byte).str();
    out += CsvLine().set("kind", "handshake").set("mode", s.mode).stats(s.handshake).str();
  }
  for (const TinyLatency& l : report.tiny_latency) {
    out += CsvLine().set("kind", "tiny_rtt").set("mode", l.mode).num("size", 14).stats(l.rtt).num("vs_pingpong", l.vs_pingpong).str();
    out += CsvLine().set("kind", "tiny_rtt_pingpong").set("mode", l.mode).num("size", 64).stats(l.pingpong).str();
    if (l.same_cpu.count > 0) out += CsvLine().set("kind", "tiny_rtt_same_cpu").set("mode", l.mode).num("size", 14).stats(l.same_cpu).str();
    if (l.cross_cpu.count > 0) out += CsvLine().set("kind", "tiny_rtt_cross_cpu").set("mode", l.mode).num("size", 14).stats(l.cross_cpu).str();
  }
  for (const TinyThroughput& t : report.tiny_throughput) out += tiny_tasks_csv("tiny_tasks", t.driver, t);
  for (const Row& r : report.rows) {
    CsvLine line;
    line.set("kind", "echo").set("codec", r.codec).set("mode", r.mode).num("size", double(r.size)).stats(r.rtt);
    line.num("reps", r.reps).num("encode_us", r.encode_us).num("decode_us", r.decode_us).num("mb_s", r.mb_s);
    line.num("tasks_per_s", r.tasks_per_s).num("wire_per_byte", r.wire_per_byte).num("worker_cpu_us", r.worker_cpu_us);
    line.num("runner_cpu_us", r.runner_cpu_us).num("runner_peak_kib", double(r.runner_peak_kib));
    line.num("worker_peak_kib", double(r.worker_peak_kib)).num("nlohmann_us", r.nlohmann_us).num("vs_raw", r.vs_raw);
    line.num("vs_pingpong", r.vs_pingpong).num("vs_nlohmann", r.vs_nlohmann).set("failure", r.failure);
    out += line.str();
  }
  if (report.launcher) out += launcher_csv(*report.launcher);
  return out;
}

}  // namespace authrun::runner::bench
