// The small built-in functions: echo, sleep, hash, fail (exec is in worker/builtin/exec_function.hpp).
#pragma once

#include "worker/builtin/functions.hpp"

namespace authrun::worker {

// Returns args unchanged (moved, never copied).
FunctionResult echo_function(json&& args);

// args: {"seconds": n} or a bare n, 0 <= n <= 86400. Blocks that long (EINTR-safe); returns {"slept": n}.
// Errors: bad_args.
FunctionResult sleep_function(json&& args);

// args: {"data": "text"} or {"base64": "standard, padded"} (exactly one). Returns {"blake2b": 64 hex
// digits of the 32-byte BLAKE2b (libsodium crypto_generichash, no key), "size": input bytes}.
// Errors: bad_args (including invalid base64), internal (libsodium unusable).
FunctionResult hash_function(json&& args);

// args: {"type": string = "failed", "message": string = "requested failure", "details": any = null}.
// Always returns that TaskError (or bad_args if the fields have the wrong types).
FunctionResult fail_function(json&& args);

}  // namespace authrun::worker
