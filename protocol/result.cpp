// Names of error codes.
#include "protocol/result.hpp"

namespace authrun::protocol {

const char* to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::io: return "io";
    case ErrorCode::eof: return "eof";
    case ErrorCode::truncated: return "truncated";
    case ErrorCode::timeout: return "timeout";
    case ErrorCode::bad_magic: return "bad_magic";
    case ErrorCode::bad_version: return "bad_version";
    case ErrorCode::bad_flags: return "bad_flags";
    case ErrorCode::frame_too_large: return "frame_too_large";
    case ErrorCode::unexpected: return "unexpected";
    case ErrorCode::malformed: return "malformed";
    case ErrorCode::json_too_deep: return "json_too_deep";
    case ErrorCode::auth_failed: return "auth_failed";
    case ErrorCode::peer_refused: return "peer_refused";
    case ErrorCode::bad_mac: return "bad_mac";
    case ErrorCode::mode_refused: return "mode_refused";
    case ErrorCode::key_invalid: return "key_invalid";
    case ErrorCode::spawn_failed: return "spawn_failed";
    case ErrorCode::usage: return "usage";
    case ErrorCode::program_failed: return "program_failed";
  }
  return "unknown";
}

}  // namespace authrun::protocol
