// The output sink of the task running on this thread.
#include "worker/task_output.hpp"

#include <utility>

namespace authrun::worker {

namespace {

thread_local const OutputSink* t_sink = nullptr;  // set by the task loop for the task running on this thread

}  // namespace

TaskOutputScope::TaskOutputScope(OutputSink sink) : m_sink(std::move(sink)), m_previous(t_sink) { t_sink = &m_sink; }
TaskOutputScope::~TaskOutputScope() { t_sink = m_previous; }

const OutputSink* current_output_sink() { return t_sink; }

}  // namespace authrun::worker
