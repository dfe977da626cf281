// The worker's task loop.
#include "worker/worker_loop.hpp"

#include "worker/held_results.hpp"
#include "worker/orphan_watch.hpp"
#include "worker/task_output.hpp"

namespace authrun::worker {

using namespace protocol;

namespace {

// Runs one task with its streamed output (exec's, PROTOCOL.md section 6) sent through `held`, ahead of the
// result: returns its result, which carries the task's attachment back.
TaskResult run_task(Task& task, const Registry& registry, HeldResults& held, ProgressMarker* progress) {
  TaskResult result;
  result.id = task.id;
  result.format = task.format;
  TaskOutputScope output_scope([&held, id = task.id](bool is_stderr, std::string_view bytes) {
    Output out;
    out.id = id;
    out.is_stderr = is_stderr;
    out.data.storage.assign(bytes);
    return held.send_now(std::move(out)).has_value();
  });
  held.begin_task();  // ended by held.add() or held.send_alone() with the result
  if (progress) progress->begin(task.id);
  FunctionResult value = [&] {
    RunningTask running;
    return registry.call(task.fn, std::move(task.args), task.attachment);
  }();
  if (progress) progress->end();
  result.attachment = std::move(task.attachment);
  if (value) {
    result.value = std::move(value).value();
  } else {
    result.ok = false;
    result.error = std::move(value).error();
  }
  return result;
}

}  // namespace

Result<void> serve_tasks(Channel& channel, const Registry& registry, ProgressMarker* progress) {
  HeldResults held(channel, /*write_before_task=*/progress == nullptr);
  for (;;) {
    // A message already buffered comes back at once, and what is queued stays queued; the channel writes
    // it before it waits for input.
    auto msg = channel.receive();
    if (!msg) {
      if (msg.error().code == ErrorCode::eof) return {};
      return std::move(msg).error();
    }
    if (std::holds_alternative<Shutdown>(*msg)) return channel.flush(no_deadline());
    if (auto* batch = std::get_if<TaskBatch>(&*msg)) {
      // Results are held, to go out many to a frame, but never long (see HeldResults).
      for (Task& task : batch->tasks) AUTHRUN_TRY(held.add(run_task(task, registry, held, progress)));
      AUTHRUN_TRY(held.queue());
      continue;
    }
    auto* task = std::get_if<Task>(&*msg);
    if (task == nullptr) {
      Error e = make_error(ErrorCode::unexpected, std::string("worker got a ") + to_string(type_of(*msg)) + " message");
      std::ignore = channel.send(ProtocolError{to_string(e.code), e.message});
      return e;
    }
    AUTHRUN_TRY(held.send_alone(run_task(*task, registry, held, progress)));
  }
}

}  // namespace authrun::worker
