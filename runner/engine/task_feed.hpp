// A bounded queue of tasks filled by a producer on a thread of its own: tasks start while the input is still
// being read, and an endless input costs bounded memory (the producer waits while the queue is full).
//
// Nothing is allocated per task on one thread and freed on the other: the queue is a ring of slots, and the
// consumer gives the args buffers of finished tasks back (recycle) for the producer to fill again (spare).
// A buffer malloc'd by the producer's thread and freed by the consumer's takes the lock of the producer's
// malloc arena, which the producer holds for its own allocations: at tiny tasks, a futex wait on most tasks.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

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
    // An empty string with a buffer a finished task gave back (recycle), if there is one: build the next
    // task's args in it.
    std::string spare();
    // Becomes readable when the feed is stopping: poll it beside a blocking input.
    int stop_fd() const;

   private:
    friend class TaskFeed;
    explicit Sink(TaskFeed& feed) : m_feed(feed) {}
    TaskFeed& m_feed;
    std::vector<std::string> m_spares;  // taken from the feed's pool a batch at a time, used on this thread
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
  // Gives the buffers of finished tasks' strings back for the producer's spare(); `spent` is left empty.
  // Buffers larger than k_max_spare_bytes, any beyond k_max_spares in the pool, and all while the producer
  // has not asked for a spare are freed instead.
  void recycle(std::vector<std::string>& spent);
  static constexpr std::size_t k_max_spare_bytes = 1024;
  static constexpr std::size_t k_max_spares = 4096;
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
  // The oldest queued task, taken out of its slot (m_count > 0, m_mutex held).
  BatchTask take_front_locked();

  std::size_t m_capacity;
  std::function<void()> m_notify;
  protocol::Fd m_stop_read, m_stop_write;  // a pipe that wakes a producer blocked in poll()
  std::mutex m_mutex;
  std::condition_variable m_not_full;
  std::vector<BatchTask> m_ring;  // m_capacity slots: the queue is m_count of them from m_head, wrapping
  std::size_t m_head = 0;
  std::size_t m_count = 0;
  std::vector<std::string> m_spares;  // recycled buffers, for the producer
  bool m_wants_spares = false;        // the producer has asked for one: a producer that never does gets none
  std::uint64_t m_next_seq = 0;
  bool m_ended = false;
  bool m_stopping = false;
  bool m_cut = false;  // the producer returned because it was stopped
  std::optional<std::string> m_error;
  std::thread m_thread;
};

}  // namespace authrun::runner
