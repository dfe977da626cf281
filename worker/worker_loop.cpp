// The worker's task loop.
#include "worker/worker_loop.hpp"

#include "worker/task_output.hpp"
#include "worker/orphan_watch.hpp"

namespace authrun::worker {

using namespace protocol;

Result<void> serve_tasks(Channel& channel, const Registry& registry) {
  for (;;) {
    auto msg = channel.receive();
    if (!msg) {
      if (msg.error().code == ErrorCode::eof) return {};
      return std::move(msg).error();
    }
    if (std::holds_alternative<Shutdown>(*msg)) return {};
    auto* task = std::get_if<Task>(&*msg);
    if (task == nullptr) {
      Error e = make_error(ErrorCode::unexpected, std::string("worker got a ") + to_string(type_of(*msg)) + " message");
      std::ignore = channel.send(ProtocolError{to_string(e.code), e.message});
      return e;
    }
    TaskResult result;
    result.id = task->id;
    result.format = task->format;
    // exec's streamed output goes out as output messages ahead of the result (PROTOCOL.md section 6).
    TaskOutputScope output_scope([&channel, id = task->id](bool is_stderr, std::string_view bytes) {
      Output out;
      out.id = id;
      out.is_stderr = is_stderr;
      out.data.storage.assign(bytes);
      return channel.send(std::move(out)).has_value();
    });
    FunctionResult value = [&] {
      RunningTask running;
      return registry.call(task->fn, std::move(task->args), task->attachment);
    }();
    result.attachment = std::move(task->attachment);
    if (value) {
      result.value = std::move(value).value();
    } else {
      result.ok = false;
      result.error = std::move(value).error();
    }
    const BodyFormat format = result.format;
    auto sent = channel.send(std::move(result), no_deadline(), format);
    if (!sent && sent.error().code == ErrorCode::frame_too_large) {
      TaskResult too_large;
      too_large.id = task->id;
      too_large.ok = false;
      too_large.error = TaskError{"result_too_large", sent.error().message, nullptr};
      sent = channel.send(std::move(too_large));
    }
    if (!sent) return std::move(sent).error();
  }
}

}  // namespace authrun::worker
