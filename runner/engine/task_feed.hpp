// A bounded queue of tasks filled by a producer on a thread of its own: tasks start while the input is still
// being read, and an endless input costs bounded memory (the producer waits while the queue is full).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "protocol/fd.hpp"
#include "runner/engine/batch_task.hpp"

namespace authrun::runner {

class TaskFeed {
 public:
  // What the producer sees.
  class Sink {
   public:
    // Queues a task, giving it the next seq; blocks while the queue is full. False once the feed is
    // stopping: the producer should return.
    bool emit(BatchTask task);
    // Becomes readable when the feed is stopping: poll it beside a blocking input.
    int stop_fd() const;

   private:
    friend class TaskFeed;
    explicit Sink(TaskFeed& feed) : m_feed(feed) {}
    TaskFeed& m_feed;
  };
  // Produces every task, then returns nullopt, or an error message that ended input early.
  using Producer = std::function<std::optional<std::string>(Sink&)>;

  // Starts the producer thread. `notify` is called from it when a task arrives in an empty queue and when
  // input ends: the consumer then drains with try_pop().
  TaskFeed(std::size_t capacity, Producer producer, std::function<void()> notify);
  // Stops the producer and joins it.
  ~TaskFeed();
  TaskFeed(const TaskFeed&) = delete;
  TaskFeed& operator=(const TaskFeed&) = delete;

  // The next task, if one is ready.
  std::optional<BatchTask> try_pop();
  // Moves up to `max` ready tasks to the end of `out` under one lock (the reader thread hands over batches);
  // returns how many.
  std::size_t try_pop_batch(std::deque<BatchTask>& out, std::size_t max);
  // True once the producer has returned and every task has been taken.
  bool finished();
  // True once the producer has returned having read its whole input: not stopped, no error.
  bool input_complete();
  // Tasks produced so far (taken or still queued).
  std::uint64_t produced();
  // The error that ended input early, if any.
  std::optional<std::string> error();
  // Asks the producer to stop soon, even if it is blocked on its input; what was queued stays.
  void stop();

 private:
  bool push(BatchTask task);

  std::size_t m_capacity;
  std::function<void()> m_notify;
  protocol::Fd m_stop_read, m_stop_write;  // a pipe that wakes a producer blocked in poll()
  std::mutex m_mutex;
  std::condition_variable m_not_full;
  std::deque<BatchTask> m_queue;
  std::uint64_t m_next_seq = 0;
  bool m_ended = false;
  bool m_stopping = false;
  bool m_cut = false;  // the producer returned because it was stopped
  std::optional<std::string> m_error;
  std::thread m_thread;
};

}  // namespace authrun::runner
