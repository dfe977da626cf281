// Every limit of the protocol in one place. See protocol/PROTOCOL.md, "Limits".
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace authrun::protocol::limits {

// Largest payload accepted before the handshake completes (hello, proof, outcome are far smaller).
inline constexpr std::uint32_t pre_auth_max_payload = 512;

// Default largest payload a peer accepts after the handshake; announced in its hello, configurable.
inline constexpr std::uint32_t default_max_payload = 256u * 1024 * 1024 + 64 * 1024;

// Default budget of task payload bytes the runner has sent to workers and not yet had answered (held for
// retries and in the pipes' write buffers): over it, no new task is taken until results come back; a task
// larger than the budget still runs, alone.
inline constexpr std::uint64_t default_max_in_flight_bytes = std::uint64_t(256) << 20;

// Hard ceiling on any configured payload limit (the header's length field is 32 bits).
inline constexpr std::uint32_t absolute_max_payload = 0xFFFFFFF0u;

// Deepest nesting of arrays and objects accepted in any JSON body or batch line.
inline constexpr int json_max_depth = 64;

// Most tasks (results) one task_batch (result_batch) message may hold. Their JSON bodies may nest two
// levels deeper than json_max_depth: the batch's object and array around each task or result.
inline constexpr std::size_t max_batch_entries = 4096;

// Default time a handshake may take, from the first byte sent to the peer's proof verified.
inline constexpr std::chrono::milliseconds default_handshake_timeout{5000};

// Frames at least this large are written straight from the caller's buffer (writev) instead of being
// copied into the output buffer first.
inline constexpr std::size_t zero_copy_threshold = 16 * 1024;

// Size of a reader's input buffer (several small frames arrive in one read).
inline constexpr std::size_t read_buffer_size = 64 * 1024;

}  // namespace authrun::protocol::limits
