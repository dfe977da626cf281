// The bench's measurements. Timed regions hold only the work named; verification is never timed.
#include "runner/bench/bench_measure.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "protocol/connection.hpp"

namespace authrun::runner::bench {

using namespace protocol;

namespace {

double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }
double micros_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::micro>(b - a).count(); }

double process_cpu_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e9 + double(ts.tv_nsec);
}

constexpr char k_b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(std::string_view in) {
  std::string out((in.size() + 2) / 3 * 4, '=');
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  char* o = out.data();
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3, o += 4) {
    const std::uint32_t v = (std::uint32_t(p[i]) << 16) | (std::uint32_t(p[i + 1]) << 8) | p[i + 2];
    o[0] = k_b64_alphabet[v >> 18];
    o[1] = k_b64_alphabet[(v >> 12) & 63];
    o[2] = k_b64_alphabet[(v >> 6) & 63];
    o[3] = k_b64_alphabet[v & 63];
  }
  if (const std::size_t rest = in.size() - i; rest > 0) {
    const std::uint32_t v = (std::uint32_t(p[i]) << 16) | (rest == 2 ? std::uint32_t(p[i + 1]) << 8 : 0);
    o[0] = k_b64_alphabet[v >> 18];
    o[1] = k_b64_alphabet[(v >> 12) & 63];
    if (rest == 2) o[2] = k_b64_alphabet[(v >> 6) & 63];
  }
  return out;
}

// Strict standard base64 with padding; false on anything else.
bool base64_decode(std::string_view in, std::string& out) {
  static const std::array<std::int8_t, 256> table = [] {
    std::array<std::int8_t, 256> t{};
    t.fill(-1);
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(k_b64_alphabet[i])] = static_cast<std::int8_t>(i);
    return t;
  }();
  if (in.size() % 4 != 0) return false;
  std::size_t pad = 0;
  if (!in.empty() && in.back() == '=') pad = in[in.size() - 2] == '=' ? 2 : 1;
  out.resize(in.size() / 4 * 3 - pad);
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  const std::size_t full = in.size() / 4 - (pad ? 1 : 0);
  for (std::size_t g = 0; g < full; ++g, p += 4, o += 3) {
    const int a = table[p[0]], b = table[p[1]], c = table[p[2]], d = table[p[3]];
    if ((a | b | c | d) < 0) return false;
    const std::uint32_t v = (std::uint32_t(a) << 18) | (std::uint32_t(b) << 12) | (std::uint32_t(c) << 6) | std::uint32_t(d);
    o[0] = static_cast<unsigned char>(v >> 16);
    o[1] = static_cast<unsigned char>(v >> 8);
    o[2] = static_cast<unsigned char>(v);
  }
  if (pad) {
    const int a = table[p[0]], b = table[p[1]], c = pad == 1 ? table[p[2]] : 0;
    if ((a | b | c) < 0) return false;
    const std::uint32_t v = (std::uint32_t(a) << 18) | (std::uint32_t(b) << 12) | (std::uint32_t(c) << 6);
    o[0] = static_cast<unsigned char>(v >> 16);
    if (pad == 1) o[1] = static_cast<unsigned char>(v >> 8);
  }
  return true;
}

BodyFormat format_of(Codec codec) {
  switch (codec) {
    case Codec::cbor: return BodyFormat::cbor;
    case Codec::msgpack: return BodyFormat::msgpack;
    default: return BodyFormat::json;
  }
}

// The args a task of this codec carries (for raw, the header only).
json make_args(Codec codec, const std::string& payload) {
  json args = json::object();
  switch (codec) {
    case Codec::json_base64: args["payload"] = base64_encode(payload); break;
    case Codec::json_array: {
      json::array_t bytes;
      bytes.reserve(payload.size());
      for (unsigned char c : payload) bytes.emplace_back(static_cast<std::uint64_t>(c));
      args["payload"] = std::move(bytes);
      break;
    }
    case Codec::cbor:
    case Codec::msgpack: args["payload"] = json::binary(json::binary_t::container_type(payload.begin(), payload.end())); break;
    case Codec::raw: args["n"] = payload.size(); break;
  }
  return args;
}

Task make_task(Codec codec, std::uint64_t id, const std::string& payload) {
  Attachment attachment;
  if (codec == Codec::raw) attachment.storage.assign(payload);
  return Task(id, "echo", make_args(codec, payload), format_of(codec), std::move(attachment));
}

// Takes the payload out of an echo's value (into `scratch` when it must be decoded). Returns the bytes, or
// nullopt with `why` set.
std::optional<std::string_view> extract(Codec codec, TaskResult& r, std::size_t size, std::string& scratch, std::string& why) {
  if (codec == Codec::raw) {
    auto n = r.value.find("n");
    if (!r.value.is_object() || n == r.value.end() || !n->is_number_unsigned() || n->get<std::uint64_t>() != size) {
      why = "raw echo header is not {\"n\":" + std::to_string(size) + "}";
      return std::nullopt;
    }
    return r.attachment.view();
  }
  auto it = r.value.is_object() ? r.value.find("payload") : r.value.end();
  if (!r.value.is_object() || it == r.value.end()) {
    why = "echo value has no payload";
    return std::nullopt;
  }
  switch (codec) {
    case Codec::json_base64:
      if (!it->is_string() || !base64_decode(it->get_ref<const std::string&>(), scratch)) {
        why = "echoed payload is not base64";
        return std::nullopt;
      }
      return std::string_view(scratch);
    case Codec::json_array: {
      if (!it->is_array()) break;
      const auto& items = it->get_ref<const json::array_t&>();
      scratch.resize(items.size());
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (!items[i].is_number_unsigned() || items[i].get<std::uint64_t>() > 255) {
          why = "echoed array holds a non-byte at index " + std::to_string(i);
          return std::nullopt;
        }
        scratch[i] = static_cast<char>(items[i].get<std::uint64_t>());
      }
      return std::string_view(scratch);
    }
    case Codec::cbor:
    case Codec::msgpack: {
      if (!it->is_binary()) break;
      const auto& bytes = it->get_binary();
      return std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
    case Codec::raw: break;
  }
  why = "echoed payload has the wrong JSON type";
  return std::nullopt;
}

// Describes where two byte strings first differ.
std::string mismatch(std::string_view got, std::string_view want) {
  if (got.size() != want.size()) {
    return "echo is " + std::to_string(got.size()) + " bytes, sent " + std::to_string(want.size());
  }
  auto at = std::mismatch(got.begin(), got.end(), want.begin()).first - got.begin();
  return "echo differs at byte " + std::to_string(at);
}

// A raw pipe command with this size is not an echo: it pins the child (to the CPU in the second word, or
// back to every CPU when that is this value too).
constexpr std::uint64_t k_pin_command = ~std::uint64_t{0};

const json& tiny_args() {
  static const json args = {{"x", "abcd"}};
  return args;
}

Result<void> check_tiny(const Message& msg, std::uint64_t id) {
  const auto* r = std::get_if<TaskResult>(&msg);
  if (r == nullptr) return make_error(ErrorCode::unexpected, std::string("worker sent a ") + to_string(type_of(msg)));
  if (r->id != id || !r->ok || r->value != tiny_args()) {
    return make_error(ErrorCode::malformed, "tiny echo " + std::to_string(id) + " came back wrong (id " +
                                                std::to_string(r->id) + (r->ok ? ")" : ", error " + r->error.message + ")"));
  }
  return {};
}

std::string proc_path(int pid, const char* file) {
  return "/proc/" + (pid == 0 ? std::string("self") : std::to_string(pid)) + "/" + file;
}

}  // namespace

const char* to_string(Codec codec) {
  switch (codec) {
    case Codec::json_base64: return "json-base64";
    case Codec::json_array: return "json-array";
    case Codec::cbor: return "cbor";
    case Codec::msgpack: return "msgpack";
    case Codec::raw: return "raw";
  }
  return "?";
}

const char* mode_label(ChannelMode mode) {
  return mode == ChannelMode::insecure_measurement ? "insecure" : to_string(mode);
}

std::optional<ChannelMode> mode_from_label(std::string_view name) {
  for (ChannelMode m : {ChannelMode::authenticated, ChannelMode::encrypted, ChannelMode::insecure_measurement}) {
    if (name == mode_label(m)) return m;
  }
  if (name == "insecure_measurement") return ChannelMode::insecure_measurement;
  return std::nullopt;
}

std::optional<Codec> codec_from_string(std::string_view name) {
  for (Codec c : k_all_codecs) {
    if (name == to_string(c)) return c;
  }
  return std::nullopt;
}

std::size_t estimated_payload_bytes(Codec codec, std::size_t size) {
  constexpr std::size_t envelope = 64;
  switch (codec) {
    case Codec::json_base64: return (size + 2) / 3 * 4 + envelope;
    case Codec::json_array: return size / 10 * 36 + 4 * (size % 10) + envelope;  // 3.57 bytes per random byte
    default: return size + envelope;
  }
}

namespace {

// The bytes of make_payload(size), produced in pieces: 8-byte words of xorshift64*, then a short tail.
class PayloadStream {
 public:
  explicit PayloadStream(std::size_t size) : m_size(size), m_x(0x9E3779B97F4A7C15ull ^ size) {}
  // Writes the next `n` bytes (a multiple of 8 unless it reaches the end) to `out`.
  void fill(char* out, std::size_t n) {
    const std::size_t end = m_at + n;
    for (; m_at + 8 <= end && m_at + 8 <= m_size; m_at += 8, out += 8) {
      // xorshift64*: fast, and every byte value turns up.
      m_x ^= m_x >> 12;
      m_x ^= m_x << 25;
      m_x ^= m_x >> 27;
      const std::uint64_t v = m_x * 0x2545F4914F6CDD1Dull;
      std::memcpy(out, &v, 8);
    }
    for (; m_at < end; ++m_at, ++out) *out = static_cast<char>(m_at * 131 + 7);
  }

 private:
  std::size_t m_size;
  std::uint64_t m_x;
  std::size_t m_at = 0;
};

// Where `got` first differs from make_payload(size) (got.size() if only in length), or nullopt if equal;
// compared piece by piece, so the bytes need not be held twice.
std::optional<std::size_t> payload_difference(std::string_view got, std::size_t size) {
  constexpr std::size_t k_piece = 64 * 1024;
  PayloadStream stream(size);
  std::string piece(k_piece, '\0');
  for (std::size_t at = 0; at < std::min(got.size(), size); at += k_piece) {
    const std::size_t n = std::min(k_piece, size - at);
    stream.fill(piece.data(), n);
    const std::string_view part = got.substr(at, n);
    if (part != std::string_view(piece.data(), std::min(n, part.size()))) {
      return at + static_cast<std::size_t>(std::mismatch(part.begin(), part.end(), piece.begin()).first - part.begin());
    }
  }
  if (got.size() != size) return std::min(got.size(), size);
  return std::nullopt;
}

}  // namespace

std::string make_payload(std::size_t size) {
  std::string out(size, '\0');
  PayloadStream(size).fill(out.data(), size);
  return out;
}

int choose_reps(std::size_t size, double rep_s, double target_seconds) {
  double n = rep_s > 0 ? std::ceil(target_seconds / rep_s) : 3;
  if (size <= 1024) n = std::max(n, 2000.0);
  else if (size <= 64 * 1024) n = std::max(n, 300.0);
  return static_cast<int>(std::clamp(n, 3.0, 20000.0));
}

Row measure_row(BenchWorker& worker, Codec codec, ChannelMode mode, const std::string& payload, std::size_t size,
                const RepsPolicy& policy, bool& broken) {
  Row row;
  row.codec = to_string(codec);
  row.mode = mode_label(mode);
  row.size = size;
  // Raw rows: the bytes are made once, before the row, and each echo goes out again as the next task's
  // attachment (as the raw pipe baseline reuses its buffers); every echo is compared with the generator.
  Attachment circulating;
  if (codec == Codec::raw) circulating.storage = make_payload(size);
  broken = false;
  Channel& channel = worker.channel();
  const BodyFormat format = format_of(codec);
  static std::uint64_t next_id = 1;
  std::string scratch;

  // One verified round trip; the three timed parts are added to the given accumulators.
  double wire_bytes = 0;
  auto round_trip = [&](double& encode_us, double& rtt_us, double& decode_us) -> bool {
    const std::uint64_t id = next_id++;
    const auto t0 = Clock::now();
    Task task = codec == Codec::raw ? Task(id, "echo", json{{"n", size}}, format, std::move(circulating))
                                    : make_task(codec, id, payload);
    const auto t1 = Clock::now();
    if (auto sent = channel.connection().send(std::move(task), format); !sent) {
      row.failure = "send: " + sent.error().message;
      return false;
    }
    wire_bytes = static_cast<double>(channel.connection().output().pending_bytes());
    if (auto flushed = channel.flush(no_deadline()); !flushed) {
      row.failure = "send: " + flushed.error().message;
      broken = true;
      return false;
    }
    auto msg = channel.receive(Clock::now() + std::chrono::seconds(300));
    const auto t2 = Clock::now();
    if (!msg) {
      row.failure = "receive: " + msg.error().message;
      broken = true;
      return false;
    }
    auto* result = std::get_if<TaskResult>(&*msg);
    if (result == nullptr || result->id != id || !result->ok) {
      row.failure = result == nullptr ? std::string("worker sent a ") + to_string(type_of(*msg))
                    : result->id != id ? "result for task " + std::to_string(result->id) + ", expected " + std::to_string(id)
                                       : "echo failed: " + result->error.type + ": " + result->error.message;
      broken = result == nullptr || result->id != id;
      return false;
    }
    std::string why;
    auto got = extract(codec, *result, size, scratch, why);
    const auto t3 = Clock::now();
    if (!got) {
      row.failure = why;
      return false;
    }
    if (codec == Codec::raw) {  // untimed
      if (auto at = payload_difference(*got, size)) {
        row.failure = got->size() != size ? "echo is " + std::to_string(got->size()) + " bytes, sent " + std::to_string(size)
                                          : "echo differs at byte " + std::to_string(*at);
        return false;
      }
    } else if (*got != payload) {
      row.failure = mismatch(*got, payload);
      return false;
    }
    const auto t4 = Clock::now();
    if (codec == Codec::raw) circulating = std::move(result->attachment);
    msg = Message{Shutdown{}};  // frees the result: part of decoding's cost
    const auto t5 = Clock::now();
    encode_us += micros_between(t0, t1);
    rtt_us += micros_between(t1, t2);
    decode_us += micros_between(t2, t3) + micros_between(t4, t5);
    return true;
  };

  // Warm-up: the worker's and our buffers, page cache, branch predictors; also sizes the row.
  // A round trip expected to take 50 ms or more gets none: its first allocations' page faults recur on
  // every round trip anyway (glibc maps blocks that large afresh each time).
  int warmup = policy.fixed > 0 ? policy.warmup : -1;
  if (warmup < 0) warmup = row.size <= 64 * 1024 ? 10 : policy.predicted_rep_s < 0.05 ? 1 : 0;
  double measured_rep_s = -1;
  if (warmup > 0) {
    double e = 0, r = 0, d = 0;
    const auto w0 = Clock::now();
    for (int i = 0; i < warmup; ++i) {
      if (!round_trip(e, r, d)) return row;
    }
    measured_rep_s = seconds_between(w0, Clock::now()) / warmup;
  }
  const int reps = policy.fixed > 0 ? policy.fixed
                                    : choose_reps(row.size, measured_rep_s >= 0 ? measured_rep_s : policy.predicted_rep_s,
                                                  policy.target_seconds);

  const int pid = worker.pid();
  reset_peak_rss(0);
  reset_peak_rss(pid);
  const double worker_cpu0 = cpu_ns(pid);
  const double runner_cpu0 = process_cpu_ns();
  std::vector<double> rtts;
  rtts.reserve(static_cast<std::size_t>(reps));
  double encode_sum = 0, rtt_sum = 0, decode_sum = 0;
  for (int i = 0; i < reps; ++i) {
    double rtt = 0;
    if (!round_trip(encode_sum, rtt, decode_sum)) return row;
    rtt_sum += rtt;
    rtts.push_back(rtt);
  }
  const double worker_cpu1 = cpu_ns(pid);
  const double runner_cpu1 = process_cpu_ns();
  row.runner_peak_kib = peak_rss_kib(0);
  row.worker_peak_kib = peak_rss_kib(pid);

  row.reps = reps;
  row.encode_us = encode_sum / reps;
  row.rtt = summarize(std::move(rtts));
  row.decode_us = decode_sum / reps;
  const double per_task_s = (encode_sum + rtt_sum + decode_sum) / reps / 1e6;
  row.tasks_per_s = 1 / per_task_s;
  row.mb_s = 2.0 * double(row.size) / per_task_s / 1e6;
  row.wire_per_byte = row.size > 0 ? wire_bytes / double(row.size) : 0;
  if (worker_cpu0 >= 0 && worker_cpu1 >= 0) row.worker_cpu_us = (worker_cpu1 - worker_cpu0) / 1e3 / reps;
  row.runner_cpu_us = (runner_cpu1 - runner_cpu0) / 1e3 / reps;
  return row;
}

double nlohmann_round_trip_us(Codec codec, const std::string& payload, double target_seconds) {
  if (codec == Codec::raw) return -1;
  const json args = make_args(codec, payload);
  // nlohmann's own calls, without exceptions (allow_exceptions = false): this input is always valid.
  auto once = [&]() -> bool {
    switch (codec) {
      case Codec::json_base64:
      case Codec::json_array: {
        std::string text = args.dump();
        json back = json::parse(text, nullptr, false);
        return !back.is_discarded();
      }
      case Codec::cbor: {
        std::vector<std::uint8_t> bytes = json::to_cbor(args);
        json back = json::from_cbor(bytes, true, false);
        return !back.is_discarded();
      }
      case Codec::msgpack: {
        std::vector<std::uint8_t> bytes = json::to_msgpack(args);
        json back = json::from_msgpack(bytes, true, false);
        return !back.is_discarded();
      }
      case Codec::raw: break;
    }
    return false;
  };
  const auto t0 = Clock::now();
  if (!once()) return -1;
  const double first = seconds_between(t0, Clock::now());
  const int more = static_cast<int>(std::clamp(std::floor(target_seconds / std::max(first, 1e-9)), 0.0, 5000.0));
  const auto t1 = Clock::now();
  for (int i = 0; i < more; ++i) std::ignore = once();
  const double per = more > 0 ? seconds_between(t1, Clock::now()) / more : first;
  return 2 * per * 1e6;  // a round trip serialises and parses twice (task, then result)
}

Result<std::vector<double>> tiny_latency(BenchWorker& worker, int reps) {
  static std::uint64_t next_id = 1u << 30;
  Channel& channel = worker.channel();
  std::vector<double> rtts;
  rtts.reserve(static_cast<std::size_t>(reps));
  for (int i = -std::min(reps, 20); i < reps; ++i) {
    const std::uint64_t id = next_id++;
    const auto t0 = Clock::now();
    AUTHRUN_TRY(channel.send(Task(id, "echo", tiny_args())));
    AUTHRUN_TRY_ASSIGN(Message msg, channel.receive(Clock::now() + std::chrono::seconds(30)));
    const auto t1 = Clock::now();
    AUTHRUN_TRY(check_tiny(msg, id));
    if (i >= 0) rtts.push_back(micros_between(t0, t1));
  }
  return rtts;
}

Result<double> tiny_throughput_seconds(const std::vector<BenchWorker*>& workers, int window, std::uint64_t tasks) {
  static std::uint64_t next_id = 1u << 31;
  struct Lane {
    Channel* channel;
    std::deque<std::uint64_t> in_flight;
  };
  std::vector<Lane> lanes;
  for (BenchWorker* w : workers) lanes.push_back(Lane{&w->channel(), {}});
  std::uint64_t sent = 0, done = 0;
  auto send_one = [&](Lane& lane) -> Result<void> {
    const std::uint64_t id = next_id++;
    AUTHRUN_TRY(lane.channel->connection().send(Task(id, "echo", tiny_args())));
    lane.in_flight.push_back(id);
    ++sent;
    return {};
  };
  const auto t0 = Clock::now();
  for (Lane& lane : lanes) {
    for (int k = 0; k < window && sent < tasks; ++k) AUTHRUN_TRY(send_one(lane));
    AUTHRUN_TRY(lane.channel->flush(Clock::now() + std::chrono::seconds(30)));
  }
  std::vector<pollfd> fds(lanes.size());
  while (done < tasks) {
    for (std::size_t i = 0; i < lanes.size(); ++i) fds[i] = pollfd{lanes[i].channel->in_fd(), POLLIN, 0};
    const int n = ::poll(fds.data(), fds.size(), 30000);
    if (n == 0) return make_error(ErrorCode::timeout, "no tiny result for 30 s");
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(ErrorCode::io, std::string("poll: ") + std::strerror(errno));
    }
    for (std::size_t i = 0; i < lanes.size(); ++i) {
      if (fds[i].revents == 0) continue;
      Lane& lane = lanes[i];
      Connection& conn = lane.channel->connection();
      auto space = conn.read_space();
      const ssize_t got = ::read(lane.channel->in_fd(), space.data(), space.size());
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) return got == 0 ? conn.end_of_input() : make_error(ErrorCode::io, std::string("read: ") + std::strerror(errno));
      conn.commit(static_cast<std::size_t>(got));
      for (;;) {
        AUTHRUN_TRY_ASSIGN(std::optional<Message> msg, conn.receive());
        if (!msg) break;
        if (lane.in_flight.empty()) return make_error(ErrorCode::unexpected, "result with no task in flight");
        AUTHRUN_TRY(check_tiny(*msg, lane.in_flight.front()));
        lane.in_flight.pop_front();
        ++done;
        if (sent < tasks) AUTHRUN_TRY(send_one(lane));
      }
      AUTHRUN_TRY(lane.channel->flush(Clock::now() + std::chrono::seconds(30)));
    }
  }
  return seconds_between(t0, Clock::now());
}

Result<RawPipe> RawPipe::start(int pipe_size) {
  AUTHRUN_TRY_ASSIGN(Pipe down, make_pipe());
  AUTHRUN_TRY_ASSIGN(Pipe up, make_pipe());
  ::fcntl(down.write.get(), F_SETPIPE_SZ, pipe_size);
  ::fcntl(up.write.get(), F_SETPIPE_SZ, pipe_size);
  const int in_effect = std::min(::fcntl(down.write.get(), F_GETPIPE_SZ), ::fcntl(up.write.get(), F_GETPIPE_SZ));
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return make_error(ErrorCode::io, std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // The child: for each command {size, count}, read `size` bytes whole and write them back, `count` times.
    down.write.close();
    up.read.close();
    std::string buf;
    cpu_set_t all;
    ::sched_getaffinity(0, sizeof all, &all);
    for (;;) {
      std::uint64_t cmd[2];
      if (!read_exact(down.read.get(), std::as_writable_bytes(std::span(cmd)), no_deadline())) ::_exit(0);
      if (cmd[0] == k_pin_command) {
        cpu_set_t set = all;
        if (cmd[1] != k_pin_command) {
          CPU_ZERO(&set);
          CPU_SET(static_cast<int>(cmd[1]), &set);
        }
        const char ok = ::sched_setaffinity(0, sizeof set, &set) == 0 ? 1 : 0;
        if (!write_all(up.write.get(), std::as_bytes(std::span(&ok, 1)), no_deadline())) ::_exit(1);
        continue;
      }
      if (buf.size() < cmd[0]) buf.resize(cmd[0]);
      auto bytes = std::as_writable_bytes(std::span(buf.data(), cmd[0]));
      for (std::uint64_t i = 0; i < cmd[1]; ++i) {
        if (!read_exact(down.read.get(), bytes, no_deadline())) ::_exit(1);
        if (!write_all(up.write.get(), bytes, no_deadline())) ::_exit(1);
      }
    }
  }
  return RawPipe(std::move(down.write), std::move(up.read), pid, in_effect);
}

RawPipe::RawPipe(Fd to_child, Fd from_child, int pid, int pipe_size)
    : m_to_child(std::move(to_child)), m_from_child(std::move(from_child)), m_pid(pid), m_pipe_size(pipe_size) {}

RawPipe::~RawPipe() {
  if (m_pid <= 0 || !m_to_child.valid()) return;  // moved from
  m_to_child.close();
  m_from_child.close();
  int status = 0;
  while (::waitpid(m_pid, &status, 0) < 0 && errno == EINTR) {
  }
}

Result<std::vector<double>> RawPipe::echo(const std::string& payload, int reps, int warmup) {
  const std::uint64_t cmd[2] = {payload.size(), static_cast<std::uint64_t>(warmup + reps)};
  AUTHRUN_TRY(write_all(m_to_child.get(), std::as_bytes(std::span(cmd)), no_deadline()));
  // Allocated per call and reused by its round trips: warm after the first, freed after the last.
  std::string back(payload.size(), '\0');
  auto back_bytes = std::as_writable_bytes(std::span(back.data(), back.size()));
  std::vector<double> rtts;
  rtts.reserve(static_cast<std::size_t>(reps));
  for (int i = -warmup; i < reps; ++i) {
    const auto t0 = Clock::now();
    AUTHRUN_TRY(write_all(m_to_child.get(), as_bytes(payload), no_deadline()));
    AUTHRUN_TRY(read_exact(m_from_child.get(), back_bytes, no_deadline()));
    const auto t1 = Clock::now();
    if (i >= 0) rtts.push_back(micros_between(t0, t1));
  }
  if (back != payload) return make_error(ErrorCode::malformed, "raw pipe echo came back different");
  return rtts;
}

Result<void> RawPipe::pin(int parent_cpu, int child_cpu) {
  const std::uint64_t cmd[2] = {k_pin_command, child_cpu < 0 ? k_pin_command : static_cast<std::uint64_t>(child_cpu)};
  AUTHRUN_TRY(write_all(m_to_child.get(), std::as_bytes(std::span(cmd)), no_deadline()));
  char ok = 0;
  AUTHRUN_TRY(read_exact(m_from_child.get(), std::as_writable_bytes(std::span(&ok, 1)), no_deadline()));
  if (!pin_to_cpu(0, parent_cpu) || !ok) return make_error(ErrorCode::io, "sched_setaffinity refused");
  return {};
}

bool pin_to_cpu(int pid, int cpu) {
  static const cpu_set_t all = [] {
    cpu_set_t set;
    ::sched_getaffinity(0, sizeof set, &set);
    return set;
  }();
  cpu_set_t set = all;
  if (cpu >= 0) {
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
  }
  return ::sched_setaffinity(pid, sizeof set, &set) == 0;
}

bool reset_peak_rss(int pid) {
  std::ofstream f(proc_path(pid, "clear_refs"));
  f << "5";
  f.flush();
  return bool(f);
}

long peak_rss_kib(int pid) {
  std::ifstream f(proc_path(pid, "status"));
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

double cpu_ns(int pid) {
  std::ifstream f(proc_path(pid, "schedstat"));
  double ns = -1;
  if (!(f >> ns)) return -1;
  return ns;
}

}  // namespace authrun::runner::bench
