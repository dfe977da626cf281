// Names of message types, roles and modes, as they appear on the wire and in errors.
#include "protocol/message.hpp"

namespace authrun::protocol {

const char* to_string(MessageType type) {
  switch (type) {
    case MessageType::hello: return "hello";
    case MessageType::proof: return "proof";
    case MessageType::outcome: return "outcome";
    case MessageType::task: return "task";
    case MessageType::result: return "result";
    case MessageType::error: return "error";
    case MessageType::shutdown: return "shutdown";
    case MessageType::worker_info: return "worker_info";
    case MessageType::program: return "program";
    case MessageType::output: return "output";
    case MessageType::task_batch: return "task_batch";
    case MessageType::result_batch: return "result_batch";
    case MessageType::keepalive: return "keepalive";
  }
  return "unknown";
}

const char* to_string(Role role) { return role == Role::parent ? "parent" : "worker"; }

const char* to_string(ChannelMode mode) {
  switch (mode) {
    case ChannelMode::authenticated: return "authenticated";
    case ChannelMode::encrypted: return "encrypted";
    case ChannelMode::insecure_measurement: return "insecure-measurement-only";
  }
  return "unknown";
}

MessageType type_of(const Message& message) {
  static constexpr MessageType types[] = {MessageType::hello,  MessageType::proof, MessageType::outcome,
                                          MessageType::task,   MessageType::result, MessageType::error,
                                          MessageType::shutdown, MessageType::worker_info, MessageType::program,
                                          MessageType::output, MessageType::task_batch, MessageType::result_batch,
                                          MessageType::keepalive};
  return types[message.index()];
}

}  // namespace authrun::protocol
