// The worker's task loop.
#include "worker/worker_loop.hpp"

#include <cerrno>
#include <csignal>
#include <ctime>

#include "protocol/json_codec.hpp"
#include "worker/held_results.hpp"
#include "worker/keep_alive.hpp"
#include "worker/orphan_watch.hpp"
#include "worker/task_output.hpp"

namespace authrun::worker {

using namespace protocol;

namespace {

volatile std::sig_atomic_t g_interrupted = 0;  // set by SIGINT: tasks not started yet do not start

// Runs one task with its streamed output (exec's, PROTOCOL.md section 6) sent through `held`, ahead of the
// result: returns its result, which carries the task's attachment back.
TaskResult run_task(Task& task, const Registry& registry, const DynamicFunctions* dynamic, HeldResults& held,
                    ProgressMarker* progress) {
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
  if (g_interrupted) {
    result.ok = false;
    result.error = TaskError{"interrupted", "not started: the run was interrupted (SIGINT)", nullptr};
    return result;
  }
  if (dynamic != nullptr && !registry.has(task.fn)) {
    const std::string args_text = !task.args_json.empty() ? std::move(task.args_json)
                                  : task.args.is_null()   ? std::string("null")
                                                          : dump_json(task.args);
    if (progress) progress->begin(task.id);
    Result<std::string, TaskError> text = [&] {
      RunningTask running;
      return dynamic->call(task.fn, args_text, task.attachment);
    }();
    if (progress) progress->end();
    result.attachment = std::move(task.attachment);
    if (!text) {
      result.ok = false;
      result.error = std::move(text).error();
    } else if (task.format == BodyFormat::json) {
      result.value_json = std::move(*text);
    } else if (auto parsed = parse_json(*text)) {  // a binary body holds the value itself
      result.value = std::move(*parsed);
    } else {
      result.ok = false;
      result.error = TaskError{"bad_result", "the value is not JSON: " + parsed.error().message, nullptr};
    }
    return result;
  }
  if (!task.args_json.empty()) {
    auto parsed = parse_json(task.args_json);
    if (parsed) task.args = std::move(*parsed);
  }
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

// True for a failure whose cause was a signal from outside the worker (exec's child stopped by kill, scancel...).
bool ended_from_outside(const TaskResult& result) { return !result.ok && result.error.outside_signal != 0; }

// After such a failure a stop of the whole worker may be under way, its own signal still to come: the failure
// is written out now, nothing more is sent for `wait`, and then a keepalive says that the worker outlived the
// signal. The runner holds the failure until it hears from the worker again, and retries the task as a
// worker death if the worker dies first (PROTOCOL.md section 6, outside_signal).
Result<void> confirm_survival(Channel& channel, std::chrono::nanoseconds wait) {
  AUTHRUN_TRY(channel.flush(no_deadline()));
  timespec until{};
  ::clock_gettime(CLOCK_MONOTONIC, &until);
  const auto total = std::chrono::nanoseconds(until.tv_nsec) + wait;
  until.tv_sec += static_cast<time_t>(std::chrono::duration_cast<std::chrono::seconds>(total).count());
  until.tv_nsec = static_cast<long>((total % std::chrono::seconds(1)).count());
  while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, nullptr) == EINTR) {
  }
  return channel.send(protocol::KeepAlive{});
}

}  // namespace

namespace {

// The program message, first after the handshake, given to `dynamic.load`. Returns false at a clean end
// (shutdown or end of input before it). Errors: unexpected (another message came first), program_failed
// (sent to the parent as such), and those of the channel.
Result<bool> load_program(Channel& channel, const DynamicFunctions& dynamic) {
  auto msg = channel.receive();
  if (!msg) {
    if (msg.error().code == ErrorCode::eof) return false;
    return std::move(msg).error();
  }
  if (std::holds_alternative<Shutdown>(*msg)) return false;
  auto* program = std::get_if<Program>(&*msg);
  if (program == nullptr) {
    Error e = make_error(ErrorCode::unexpected, std::string("expected the program before any ") + to_string(type_of(*msg)) +
                                                    " message (is the parent authrun run --python?)");
    std::ignore = channel.send(ProtocolError{to_string(e.code), e.message});
    return e;
  }
  if (auto loaded = dynamic.load(encode_body(*program)); !loaded) {
    Error e = make_error(ErrorCode::program_failed, loaded.error().message);
    std::ignore = channel.send(ProtocolError{to_string(e.code), e.message});
    return e;
  }
  return true;
}

}  // namespace

void mark_interrupted() { g_interrupted = 1; }

Result<void> serve_tasks(Channel& channel, const Registry& registry, WorkerInfo info, const DynamicFunctions* dynamic,
                         ProgressMarker* progress, std::chrono::nanoseconds outside_signal_wait) {
  if (dynamic != nullptr && dynamic->load) {
    AUTHRUN_TRY_ASSIGN(const bool go_on, load_program(channel, *dynamic));
    if (!go_on) return {};
  }
  // A small write on a fresh channel fails only when the parent is gone already (it needed no task): a
  // clean end.
  if (!channel.send(std::move(info))) return {};
  HeldResults held(channel, /*write_before_task=*/progress == nullptr);
  KeepAlive keep_alive([&held] { return held.keep_alive(); });  // while a task runs (after `held`: stops first)
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
      for (Task& task : batch->tasks) {
        TaskResult result = run_task(task, registry, dynamic, held, progress);
        const bool outside = ended_from_outside(result);
        AUTHRUN_TRY(held.add(std::move(result)));
        if (outside) {
          AUTHRUN_TRY(held.queue());
          AUTHRUN_TRY(confirm_survival(channel, outside_signal_wait));
        }
      }
      AUTHRUN_TRY(held.queue());
      continue;
    }
    auto* task = std::get_if<Task>(&*msg);
    if (task == nullptr) {
      Error e = make_error(ErrorCode::unexpected, std::string("worker got a ") + to_string(type_of(*msg)) + " message");
      std::ignore = channel.send(ProtocolError{to_string(e.code), e.message});
      return e;
    }
    TaskResult result = run_task(*task, registry, dynamic, held, progress);
    const bool outside = ended_from_outside(result);
    AUTHRUN_TRY(held.send_alone(std::move(result)));
    if (outside) AUTHRUN_TRY(confirm_survival(channel, outside_signal_wait));
  }
}

}  // namespace authrun::worker
