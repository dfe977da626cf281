// What a task function sees and gives back besides its JSON: the raw Attachment and the TaskError. Needs
// nothing of ours, so the worker SDK installs it with its public header (authrun/protocol/task_values.hpp).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace authrun::protocol {

using json = nlohmann::json;

// Raw bytes carried after a task's or result's body (frame flag k_flag_attachment), without any text
// encoding. `storage` may hold more than the attachment (the whole received payload, so that receiving
// copies nothing): the attachment is storage[offset..]. `Attachment{bytes}` makes one of `bytes`.
struct Attachment {
  std::string storage;
  std::size_t offset = 0;

  std::size_t size() const { return storage.size() - offset; }
  bool empty() const { return size() == 0; }
  std::string_view view() const { return std::string_view(storage).substr(offset); }
};

// A task's failure, as carried in a result.
struct TaskError {
  std::string type;     // e.g. "bad_args", "unknown_function", "exec_failed", or the type given to `fail`
  std::string message;
  json details;         // null when there are none
  int outside_signal = 0;  // the signal (1 to 64) that ended a process the task ran, which the worker did not
                           // send (exec's child, stopped from outside); 0: none. PROTOCOL.md section 6
};

}  // namespace authrun::protocol
