// Streams a JSONL batch into a bounded queue from a reader thread: tasks start while input is still being
// read, and an endless stdin costs bounded memory (the reader waits while the queue is full).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "protocol/fd.hpp"
#include "protocol/message.hpp"

namespace authrun::runner {

using protocol::json;

// One line of the batch, read and checked.
struct BatchTask {
  std::uint64_t seq = 0;   // 0-based position among the batch's tasks (input order)
  std::uint64_t line = 0;  // 1-based line number in the input
  json id;                 // the line's "id", or the line number when it has none
  std::string fn;
  std::string args_json;   // the args, dumped once (sent as is, and again on a retry)
  std::optional<double> timeout_s;        // the line's "timeout", seconds
  std::optional<protocol::TaskError> error;  // set when the line is not a valid task (type "bad_task")
};

// Checks one line of a batch. `where` names it in errors ("tasks.jsonl:3").
BatchTask parse_task_line(std::string_view text, std::uint64_t line, std::uint64_t seq, const std::string& where,
                          std::uint32_t max_line);

class BatchInput {
 public:
  // Starts a thread reading `fd` (owned) named `name` in messages. `notify` is called from that thread when
  // a task arrives in an empty queue and when input ends: the consumer then drains with try_pop().
  // Lines longer than `max_line` bytes become bad_task results without being held in memory. Valid tasks
  // for which `skip` (may be empty) returns true are counted and dropped (--resume), taking no seq.
  BatchInput(protocol::Fd fd, std::string name, std::size_t capacity, std::uint32_t max_line,
             std::function<void()> notify, std::function<bool(const BatchTask&)> skip = {});
  // Stops the reader and joins it.
  ~BatchInput();
  BatchInput(const BatchInput&) = delete;
  BatchInput& operator=(const BatchInput&) = delete;

  // The next task, if one is ready.
  std::optional<BatchTask> try_pop();
  // True once the input has ended (or failed) and every task has been taken.
  bool finished();
  // The read error that ended input early, if any ("stdin: read: ...").
  std::optional<std::string> read_error();
  // Stops reading soon, even if the reader is blocked on a pipe; what was queued stays.
  void stop();
  // Tasks dropped by `skip`.
  std::uint64_t count_skipped();

 private:
  void run();
  bool push(BatchTask task);

  protocol::Fd m_fd;
  std::string m_name;
  std::size_t m_capacity;
  std::uint32_t m_max_line;
  std::function<void()> m_notify;
  std::function<bool(const BatchTask&)> m_skip;
  protocol::Fd m_stop_read, m_stop_write;  // a pipe that wakes the reader's poll()

  std::mutex m_mutex;
  std::condition_variable m_not_full;
  std::deque<BatchTask> m_queue;
  bool m_ended = false;
  bool m_stopping = false;
  std::uint64_t m_skipped = 0;
  std::optional<std::string> m_error;
  std::thread m_thread;
};

}  // namespace authrun::runner
