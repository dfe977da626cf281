// Error values for protocol and I/O boundaries: an ErrorCode a caller can act on plus a message naming
// what and where. Result<T> uses std::expected's member names so that moving to C++23 is a using-declaration.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace authrun::protocol {

// The failure classes a caller can act on. See protocol/PROTOCOL.md, "Failure reasons".
enum class ErrorCode {
  io,               // read/write/poll failed (errno in the message)
  eof,              // the peer closed between frames (a clean end)
  truncated,        // the peer closed inside a frame
  timeout,          // a deadline passed
  bad_magic,        // a frame header does not start with the magic bytes
  bad_version,      // a frame or hello names a version this peer does not speak
  bad_flags,        // a frame header sets flags this version does not define
  frame_too_large,  // a header announces more bytes than the receiver accepts
  unexpected,       // a message type not allowed in this state
  malformed,        // a body that is not the JSON this message needs (field named in the message)
  json_too_deep,    // JSON nested deeper than limits::json_max_depth
  auth_failed,      // the peer's proof does not verify against the run key
  peer_refused,     // the peer sent a failure outcome (its reason in the message)
  bad_mac,          // a frame's tag does not verify (altered, injected, dropped, reordered or replayed)
  mode_refused,     // no channel mode or protocol version both peers accept
  key_invalid,      // a key file or key fd is unusable (message says why)
  spawn_failed,     // a worker process could not be started
  usage,            // a command-line or input error
  program_failed,   // a Python worker's program (its modules) failed to load; retrying cannot help
};

// Stable lower-case name of a code, as used in outcome messages and error results.
const char* to_string(ErrorCode code);

// An error: what kind, and a message naming what and where (peer, file:line, field).
struct Error {
  ErrorCode code;
  std::string message;
};

// Prefixes the message with context ("worker 1234: "), keeping the code.
inline Error with_context(Error e, const std::string& context) {
  e.message = context + ": " + e.message;
  return e;
}

// Either a T or an E (an Error unless said otherwise). Accessing the wrong alternative is a bug (asserted).
template <class T, class E = Error>
class [[nodiscard]] Result {
 public:
  Result(T value) : m_v(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(E error) : m_v(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool has_value() const { return m_v.index() == 0; }
  explicit operator bool() const { return has_value(); }
  T& value() & { assert(has_value()); return std::get<0>(m_v); }
  const T& value() const& { assert(has_value()); return std::get<0>(m_v); }
  T&& value() && { assert(has_value()); return std::get<0>(std::move(m_v)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const E& error() const& { assert(!has_value()); return std::get<1>(m_v); }
  E&& error() && { assert(!has_value()); return std::get<1>(std::move(m_v)); }

 private:
  std::variant<T, E> m_v;
};

// Success carries nothing.
template <class E>
class [[nodiscard]] Result<void, E> {
 public:
  Result() = default;
  Result(E error) : m_error(std::move(error)) {}  // NOLINT: implicit by design

  bool has_value() const { return !m_error.has_value(); }
  explicit operator bool() const { return has_value(); }
  void value() const { assert(has_value()); }
  const E& error() const& { assert(!has_value()); return *m_error; }
  E&& error() && { assert(!has_value()); return std::move(*m_error); }

 private:
  std::optional<E> m_error;
};

// Shorthand for returning an error value.
inline Error make_error(ErrorCode code, std::string message) {
  return Error{code, std::move(message)};
}

}  // namespace authrun::protocol

// Evaluates a Result expression; returns its error from the enclosing function if it failed.
#define AUTHRUN_TRY(expr)                                       \
  do {                                                          \
    auto authrun_try_result_ = (expr);                          \
    if (!authrun_try_result_) return std::move(authrun_try_result_).error(); \
  } while (false)

// Evaluates a Result<T> expression into `lhs` (a declaration or an lvalue), or returns its error.
#define AUTHRUN_TRY_ASSIGN(lhs, expr) AUTHRUN_TRY_ASSIGN_IMPL(AUTHRUN_CONCAT(authrun_r_, __LINE__), lhs, expr)
#define AUTHRUN_CONCAT_IMPL(a, b) a##b
#define AUTHRUN_CONCAT(a, b) AUTHRUN_CONCAT_IMPL(a, b)
#define AUTHRUN_TRY_ASSIGN_IMPL(tmp, lhs, expr)   \
  auto tmp = (expr);                              \
  if (!tmp) return std::move(tmp).error();        \
  lhs = std::move(tmp).value()
