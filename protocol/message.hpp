// The messages of the protocol and their types. Bodies are JSON (see protocol/json_codec.hpp);
// the byte-level layout of each is in protocol/PROTOCOL.md, "Messages".
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol/frame.hpp"
#include "protocol/task_values.hpp"

namespace authrun::protocol {

using json = nlohmann::json;
using Bytes32 = std::array<std::uint8_t, 32>;

// The type byte of a frame header. Handshake types (< 16) never carry a tag; data types always do once
// the channel is keyed (unless the mode is insecure_measurement).
enum class MessageType : std::uint8_t {
  hello = 1,
  proof = 2,
  outcome = 3,
  task = 16,
  result = 17,
  error = 18,
  shutdown = 19,
  worker_info = 20,
  program = 21,
  output = 22,
  task_batch = 23,
  result_batch = 24,
};

// True for the types exchanged during the handshake.
inline bool is_handshake_type(std::uint8_t type) { return type < k_first_data_type; }

// Which side of a channel a peer is.
enum class Role { parent, worker };

// How frames are protected after the handshake.
enum class ChannelMode {
  authenticated,         // every data frame carries a Poly1305 tag over header and payload
  encrypted,             // ChaCha20-Poly1305 AEAD: payload encrypted, header authenticated
  insecure_measurement,  // no tag at all; only for `authrun bench`, both peers must opt in
};

// How a data message's body is encoded (frame flags bits 0-1).
enum class BodyFormat : std::uint8_t { json = 0, cbor = 1, msgpack = 2 };

const char* to_string(MessageType type);
const char* to_string(Role role);
const char* to_string(ChannelMode mode);

// First message of each side, sent at once and in parallel.
struct Hello {
  Role role = Role::parent;
  std::vector<int> versions;       // protocol versions spoken, any order
  Bytes32 nonce{};                 // fresh randombytes_buf
  Bytes32 ephemeral_public_key{};  // fresh crypto_kx_keypair
  std::vector<ChannelMode> modes;  // parent: acceptable modes in preference order; worker: modes it accepts
  std::uint32_t max_payload = 0;   // largest data payload this peer accepts
};

// Second message of each side: MAC of the run key over its role label and the transcript hash.
struct Proof {
  Bytes32 mac{};
};

// Sent only on failure (then the sender closes): why the handshake or channel ended.
struct Outcome {
  bool ok = false;
  std::string reason;   // an ErrorCode name
  std::string message;
};

// One unit of work.
struct Task {
  Task() = default;
  Task(std::uint64_t id_, std::string fn_, json args_, BodyFormat format_ = BodyFormat::json, Attachment attachment_ = {})
      : id(id_), fn(std::move(fn_)), args(std::move(args_)), format(format_), attachment(std::move(attachment_)) {}

  std::uint64_t id = 0;
  std::string fn;
  json args;
  std::string args_json;  // when decoded with args as text (see decode_frame): the args' JSON text, checked;
                          // `args` is then null ("" when the task had none)
  BodyFormat format = BodyFormat::json;  // as received; the result is sent back in the same format
  Attachment attachment;
};

// The answer to one task: a value or an error.
struct TaskResult {
  TaskResult() = default;
  TaskResult(std::uint64_t id_, bool ok_, json value_, TaskError error_ = {}, BodyFormat format_ = BodyFormat::json,
             Attachment attachment_ = {})
      : id(id_), ok(ok_), value(std::move(value_)), error(std::move(error_)), format(format_),
        attachment(std::move(attachment_)) {}

  std::uint64_t id = 0;
  bool ok = true;
  json value;       // when ok
  std::string value_json;  // when ok and decoded as text (see decode_frame): the value's JSON text, checked
                           // and on one line; `value` is then null. When sending: if set, sent instead of
                           // `value` (the sender vouches that it is valid JSON on one line)
  TaskError error;  // when !ok
  BodyFormat format = BodyFormat::json;
  Attachment attachment;
};

// A peer's report that it is closing the channel because of a protocol error.
struct ProtocolError {
  std::string code;  // an ErrorCode name
  std::string message;
};

// Asks the worker to finish and exit.
struct Shutdown {};

// Where the worker runs, sent once by the worker right after its handshake (optional: a parent must not
// require it). Lets the parent name the host of a worker it started through a launcher (srun picks the node).
struct WorkerInfo {
  std::string host;  // the worker's host name
  std::int64_t pid = 0;  // the worker's process id on that host
  bool batches = false;  // it takes task_batch messages (and answers each with result_batch messages)
};

// One module of a Python worker's program: its dotted name, and the file it is loaded from ("" when it is to
// be found on sys.path).
struct ProgramModule {
  std::string name;
  std::string file;
};

// What a Python worker imports once the handshake is done (`authrun run --python`): the parent sends it once,
// before any task, over the authenticated channel (multiprocessing's "preparation data").
struct Program {
  std::vector<ProgramModule> modules;  // imported in this order
  std::vector<std::string> sys_path;   // put in front of sys.path, in this order
  std::string cwd;                     // the directory to work in ("" = stay)
  std::string initializer;             // base64 of a pickle of (function, args) run once after the import ("" = none)
};

// A piece of what a running task's program wrote (worker -> parent, only for a task that asked for it with
// "stream": true), sent before that task's result. The bytes travel as the raw attachment, never as text.
struct Output {
  std::uint64_t id = 0;    // the task's id
  bool is_stderr = false;  // "stream": "stdout" or "stderr" on the wire
  Attachment data;         // the bytes, exactly as the program wrote them
};

// Several tasks in one frame (parent -> worker, only to a worker whose worker_info said "batches"): JSON body,
// no attachments. The worker runs them in order and answers with result_batch messages holding their results
// in the same order, each result sent at the latest about a millisecond after its task ended.
struct TaskBatch {
  std::vector<Task> tasks;
};

// The results of tasks of a task_batch, in the order the tasks came (worker -> parent).
struct ResultBatch {
  std::vector<TaskResult> results;
};

using Message = std::variant<Hello, Proof, Outcome, Task, TaskResult, ProtocolError, Shutdown, WorkerInfo, Program,
                             Output, TaskBatch, ResultBatch>;

// The frame type that carries a message.
MessageType type_of(const Message& message);

}  // namespace authrun::protocol
