// TaskFeed: tasks in order through the ring (wrapping, blocking while full, stop), and the args buffers a
// consumer gives back reaching the producer's thread again.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>

#include "runner/engine/task_feed.hpp"

using authrun::runner::BatchTask;
using authrun::runner::TaskFeed;

namespace {

// The consumer in these tests polls: it needs no wake-up.
void no_wake_up() {}

// The args of task `i` in the ordering test.
std::string args_of(std::uint64_t i) {
  std::string s = "[";
  s += std::to_string(i);
  s += ",\"xxxxxxxxxxxxxxxxxxxx\"]";
  return s;
}

BatchTask task_numbered(std::uint64_t n, std::string args) {
  BatchTask t;
  t.number = n;
  t.fn = "echo";
  t.args_json = std::move(args);
  return t;
}

// Takes every task until the producer has returned, in batches of `batch`.
std::deque<BatchTask> drain(TaskFeed& feed, std::size_t batch) {
  std::deque<BatchTask> got;
  while (!feed.finished()) {
    if (feed.try_pop_batch(got, batch) == 0) std::this_thread::yield();
  }
  return got;
}

}  // namespace

TEST_CASE("task feed: tasks come out in order, numbered by seq, through a ring smaller than the input") {
  constexpr std::uint64_t k_tasks = 1000;
  TaskFeed feed(
      7,
      [](TaskFeed::Sink& sink) -> std::optional<std::string> {
        for (std::uint64_t i = 1; i <= k_tasks; ++i) {
          if (!sink.emit(task_numbered(i, args_of(i)))) return "stopped";
        }
        return std::nullopt;
      },
      no_wake_up);
  // Odd batch sizes, so that batches straddle the ring's end.
  std::deque<BatchTask> got = drain(feed, 3);
  REQUIRE(got.size() == k_tasks);
  for (std::uint64_t i = 0; i < k_tasks; ++i) {
    CHECK(got[i].seq == i);
    CHECK(got[i].number == i + 1);
    CHECK(got[i].args_json == args_of(i + 1));
  }
  CHECK(feed.input_complete());
  CHECK(feed.produced() == k_tasks);
  CHECK(!feed.error());
}

TEST_CASE("task feed: a full ring blocks the producer until the consumer takes, and stop() releases it") {
  std::atomic<int> emitted{0};
  auto feed = std::make_unique<TaskFeed>(
      4,
      [&](TaskFeed::Sink& sink) -> std::optional<std::string> {
        for (int i = 0;; ++i) {
          if (!sink.emit(task_numbered(std::uint64_t(i), "null"))) return std::nullopt;
          ++emitted;
        }
      },
      no_wake_up);
  // The producer fills the 4 slots and then waits: the fifth emit does not return.
  while (emitted.load() < 4) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(emitted.load() == 4);
  // Taking one task makes room for exactly one more.
  auto first = feed->try_pop();
  REQUIRE(first);
  CHECK(first->seq == 0);
  while (emitted.load() < 5) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(emitted.load() == 5);
  feed->stop();
  feed.reset();  // joins the producer: it returned once emit said the feed stops
  CHECK(emitted.load() == 5);
}

TEST_CASE("task feed: recycled buffers reach the producer as spares, empty, and only while it asks") {
  std::mutex mutex;
  std::condition_variable cv;
  bool recycled = false;
  std::set<const char*> spare_buffers;  // data() of the spares the producer got with a buffer
  std::string first_spare_seen = "unset";
  TaskFeed feed(
      16,
      [&](TaskFeed::Sink& sink) -> std::optional<std::string> {
        // Before anything is recycled, a spare is just an empty string.
        std::string s = sink.spare();
        first_spare_seen = s;
        if (!sink.emit(task_numbered(1, std::string(40, 'a')))) return "stopped";
        std::unique_lock lock(mutex);
        cv.wait(lock, [&] { return recycled; });
        for (int i = 0; i < 3; ++i) {
          std::string spare = sink.spare();
          if (spare.capacity() > std::string().capacity()) {
            CHECK(spare.empty());
            spare_buffers.insert(spare.data());
          }
        }
        return std::nullopt;
      },
      no_wake_up);
  std::deque<BatchTask> got;
  while (got.empty()) feed.try_pop_batch(got, 8);
  const char* buffer = got.front().args_json.data();
  std::vector<std::string> spent;
  spent.push_back(std::move(got.front().args_json));
  spent.emplace_back("short");              // lives in itself: nothing to give
  spent.push_back(std::string(5000, 'b'));  // too large to keep
  feed.recycle(spent);
  CHECK(spent.empty());
  {
    std::lock_guard lock(mutex);
    recycled = true;
  }
  cv.notify_all();
  while (!feed.finished()) std::this_thread::yield();
  CHECK(first_spare_seen.empty());
  // The one buffer worth keeping came back, and only it.
  CHECK(spare_buffers == std::set<const char*>{buffer});
}

TEST_CASE("task feed: buffers recycled before the producer first asks for a spare are not kept for it") {
  std::mutex mutex;
  std::condition_variable cv;
  bool recycled = false;
  std::size_t spare_capacity = 12345;
  TaskFeed feed(
      4,
      [&](TaskFeed::Sink& sink) -> std::optional<std::string> {
        if (!sink.emit(task_numbered(1, std::string(100, 'c')))) return "stopped";
        std::unique_lock lock(mutex);
        cv.wait(lock, [&] { return recycled; });
        spare_capacity = sink.spare().capacity();
        return std::nullopt;
      },
      no_wake_up);
  std::deque<BatchTask> got;
  while (got.empty()) feed.try_pop_batch(got, 4);
  std::vector<std::string> spent{std::move(got.front().args_json)};
  feed.recycle(spent);  // the producer has not asked yet (an exec producer never does): freed, not pooled
  CHECK(spent.empty());
  {
    std::lock_guard lock(mutex);
    recycled = true;
  }
  cv.notify_all();
  while (!feed.finished()) std::this_thread::yield();
  CHECK(spare_capacity == std::string().capacity());
}
