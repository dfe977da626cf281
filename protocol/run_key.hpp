// The 32-byte run key: generated, loaded from a 0600 key file, an inherited fd or the head of stdin; wiped after use.
// It has no operator<< and no accessor that returns a string, so it cannot end up in a log by accident.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "protocol/fd.hpp"
#include "protocol/result.hpp"

namespace authrun::protocol {

inline constexpr std::size_t k_run_key_size = 32;

// What a worker started with --key-stdin writes first: the runner sends the key only once it has seen this,
// so the key never waits in a pipe for a worker that is not running yet (and that has not yet made itself
// undumpable), and never reaches whatever else answers (a shell printing a banner, `cat`).
inline constexpr std::string_view k_key_request = "ARUNKEY?";

// Whether `received` (the first bytes from a worker that is to ask for its key) is the whole request
// (complete), a prefix of it (partial), or anything else (wrong).
enum class KeyRequestState { partial, complete, wrong };
KeyRequestState key_request_state(std::span<const std::uint8_t> received);

// Initialises libsodium once (thread-safe); returns false if it cannot be used.
bool sodium_ready();

class RunKey {
 public:
  // A fresh random key (randombytes_buf). Locked in memory (sodium_mlock) where the system allows it.
  static RunKey generate();
  // Reads a key file written by write_file: 64 hex digits and an optional newline. The file must be a
  // regular file owned by this user with no permission bits for group or others. Errors: key_invalid
  // (message names the file and why).
  static Result<RunKey> load_file(const std::string& path);
  // Reads exactly 32 raw bytes from `fd` (the runner's key socket) and closes it. Fails closed on a short
  // read (someone else read the key first) or a longer stream. Errors: key_invalid.
  static Result<RunKey> read_fd(int fd);
  // Reads exactly 32 raw bytes from `fd` (the fresh socket of a v2 hand-over) and then its end (the runner
  // closes it after the key), before `deadline`; closes it. Errors: key_invalid (short, longer, no end in time).
  static Result<RunKey> read_to_end(int fd, Clock::time_point deadline);
  // Asks for the key on a worker's own channel (through an encrypted launcher such as ssh): writes
  // k_key_request to `out_fd`, then reads exactly 32 raw bytes from `in_fd` before `deadline`, and nothing
  // beyond them (the protocol follows). Closes neither fd. Errors: key_invalid (EOF, short read, timeout,
  // the request could not be written).
  static Result<RunKey> request(int in_fd, int out_fd, Clock::time_point deadline);
  // Builds a key from raw bytes (tests and test vectors).
  static RunKey from_bytes(std::span<const std::uint8_t, k_run_key_size> bytes);

  RunKey(RunKey&& other) noexcept;
  RunKey& operator=(RunKey&& other) noexcept;
  RunKey(const RunKey&) = delete;
  RunKey& operator=(const RunKey&) = delete;
  // Wipes the key (sodium_memzero) and unlocks it.
  ~RunKey();

  // Writes the key as a new file with mode 0600 (refuses to overwrite). Errors: key_invalid, io.
  Result<void> write_file(const std::string& path) const;

  const std::uint8_t* data() const { return m_bytes; }
  static constexpr std::size_t size() { return k_run_key_size; }

 private:
  RunKey();
  std::uint8_t m_bytes[k_run_key_size];
};

}  // namespace authrun::protocol
