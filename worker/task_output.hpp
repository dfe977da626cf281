// The streamed output of the task running on this thread: the task loop says where it goes, a function (the
// exec built-in) sends its pieces there as they come.
#pragma once

#include <functional>
#include <string_view>

namespace authrun::worker {

// Where a task's streamed output goes: called with each piece as it is read, in order; returns false if it
// could not be delivered. Blocking in it holds the producer back (a child's pipe fills): that is the
// backpressure.
using OutputSink = std::function<bool(bool is_stderr, std::string_view bytes)>;

// Makes `sink` the output sink of tasks run on this thread while the scope lives (the task loop sets it
// around each task).
class TaskOutputScope {
 public:
  explicit TaskOutputScope(OutputSink sink);
  ~TaskOutputScope();
  TaskOutputScope(const TaskOutputScope&) = delete;
  TaskOutputScope& operator=(const TaskOutputScope&) = delete;

 private:
  OutputSink m_sink;
  const OutputSink* m_previous;
};

// The sink of the task running on this thread, or null outside a TaskOutputScope.
const OutputSink* current_output_sink();

}  // namespace authrun::worker
