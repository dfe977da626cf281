// `authrun bench`: the measurements themselves. Payload codecs, echo rows over a bench worker, tiny-task
// latency and throughput, the in-process nlohmann baseline, and the raw pipe baseline (a forked child).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/fd.hpp"
#include "protocol/message.hpp"
#include "protocol/result.hpp"
#include "runner/bench/bench_report.hpp"
#include "runner/bench/bench_worker.hpp"

namespace authrun::runner::bench {

// How a payload travels in a task and back.
enum class Codec {
  json_base64,  // {"payload": "<base64>"} as JSON text
  json_array,   // {"payload": [bytes as numbers]} as JSON text
  cbor,         // {"payload": json::binary} as CBOR
  msgpack,      // {"payload": json::binary} as MessagePack
  raw,          // {"n": size} as JSON text, the bytes as the frame's attachment
};

inline constexpr Codec k_all_codecs[] = {Codec::json_base64, Codec::json_array, Codec::cbor, Codec::msgpack, Codec::raw};

const char* to_string(Codec codec);
// "authenticated", "encrypted", "insecure" (insecure_measurement): the bench's names for the channel modes.
const char* mode_label(protocol::ChannelMode mode);
std::optional<protocol::ChannelMode> mode_from_label(std::string_view name);
std::optional<Codec> codec_from_string(std::string_view name);
// Body bytes a task of this codec carries for `size` payload bytes (an estimate for json_array).
std::size_t estimated_payload_bytes(Codec codec, std::size_t size);

// Deterministic pseudo-random bytes: incompressible, every byte value present.
std::string make_payload(std::size_t size);

// How many round trips a row gets.
struct RepsPolicy {
  int fixed = 0;                 // > 0: exactly this many (after `warmup`)
  int warmup = -1;               // with fixed: untimed round trips first; -1 = chosen by size
  double target_seconds = 0.2;   // automatic: about this long per row
  double predicted_rep_s = -1;   // automatic: expected time of one round trip (-1 unknown: measured by a warm-up)
};

// Round trips chosen for a row expected to take `rep_s` per round trip: ~target_seconds, at least 3,
// at least 2000 up to 1 KiB and 300 up to 64 KiB (for a meaningful p99), at most 20000.
int choose_reps(std::size_t size, double rep_s, double target_seconds);

// One codec x mode x size row over `worker`: every echo verified byte for byte against `payload` (which is
// make_payload(size); a raw row ignores it and may be given an empty one: it makes its bytes once and sends
// each echo back as the next task's attachment, checking it against the generator piece by piece, so that
// the runner holds the payload once). On a wrong echo or a channel error the row stops early with `failure`
// set; `broken` says the channel is unusable and the worker must be replaced.
Row measure_row(BenchWorker& worker, Codec codec, protocol::ChannelMode mode, const std::string& payload, std::size_t size,
                const RepsPolicy& reps, bool& broken);

// In-process cost of the codec for one round trip: 2 x (serialise + parse) of the same args, with
// nlohmann's own calls (dump/parse, to_cbor/from_cbor, to_msgpack/from_msgpack); -1 for raw.
double nlohmann_round_trip_us(Codec codec, const std::string& payload, double target_seconds);

// Tiny echo tasks ({"x":"abcd"}), one at a time: `reps` round-trip times in microseconds (after a few
// untimed). Errors: those of the channel, malformed for a wrong echo.
protocol::Result<std::vector<double>> tiny_latency(BenchWorker& worker, int reps);

// `tasks` tiny echo tasks spread over `workers`, `window` in flight on each (a poll loop driving every
// worker's Connection, as the runner's event loop does). Errors: as tiny_latency, timeout after 30 s idle.
protocol::Result<double> tiny_throughput_seconds(const std::vector<BenchWorker*>& workers, int window,
                                                 std::uint64_t tasks);

// The raw pipe baseline: a forked child that reads each message whole and writes it back, over two pipes
// raised like the workers' (no framing, no codec, no MAC).
class RawPipe {
 public:
  // Forks the child. Errors: io.
  static protocol::Result<RawPipe> start(int pipe_size);
  RawPipe(RawPipe&&) noexcept = default;
  RawPipe& operator=(RawPipe&&) = delete;
  // Ends the child (EOF) and reaps it.
  ~RawPipe();

  // `warmup` untimed then `reps` timed echoes of `payload`: the round-trip times in microseconds. Each
  // echo is checked. Errors: io, eof, malformed (the bytes came back different).
  protocol::Result<std::vector<double>> echo(const std::string& payload, int reps, int warmup);
  // Pins this process to CPU `parent_cpu` and the child to `child_cpu`; -1 restores both to every CPU
  // they had at the start. Errors: io (sched_setaffinity refused).
  protocol::Result<void> pin(int parent_cpu, int child_cpu);
  int pipe_size() const { return m_pipe_size; }

 private:
  RawPipe(protocol::Fd to_child, protocol::Fd from_child, int pid, int pipe_size);
  protocol::Fd m_to_child;
  protocol::Fd m_from_child;
  int m_pid = -1;
  int m_pipe_size = 0;
};

// Pins process `pid` (0 = this one) to CPU `cpu`, or with -1 back to every CPU this process had when first
// called. False if refused.
bool pin_to_cpu(int pid, int cpu);

// /proc helpers (pid 0 = this process). Peak RSS reset: writes "5" to clear_refs; false if refused.
bool reset_peak_rss(int pid);
// VmHWM in KiB, -1 if unreadable.
long peak_rss_kib(int pid);
// On-CPU time of the process's main thread in ns (/proc/PID/schedstat), -1 if unreadable.
double cpu_ns(int pid);

}  // namespace authrun::runner::bench
