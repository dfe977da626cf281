// HeldResults: results of a batch go out in order, many to a frame; bytes go alone in a result frame
// between them; a too-large result becomes an error; the watchdog sends a held result while a task runs.
// A real parent Channel and worker Channel over two pipes, with real keys.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "protocol/channel.hpp"
#include "protocol/run_key.hpp"
#include "tests/helpers/connection_pair.hpp"
#include "tests/helpers/test_util.hpp"
#include "worker/held_results.hpp"

using namespace authrun;
using namespace authrun::protocol;
using authrun::worker::HeldResults;

namespace {

struct Pair {
  RunKey key = RunKey::generate();
  std::optional<Channel> parent;
  std::optional<Channel> worker;

  explicit Pair(std::uint32_t parent_max_payload = limits::default_max_payload) {
    auto to_worker = make_pipe();
    auto to_parent = make_pipe();
    REQUIRE((to_worker && to_parent));
    HandshakeConfig pc = test::parent_config();
    pc.max_payload = parent_max_payload;
    parent.emplace(std::move(to_parent->read), std::move(to_worker->write), key, pc);
    worker.emplace(std::move(to_worker->read), std::move(to_parent->write), key, test::worker_config());
    const auto deadline = Clock::now() + test::scaled(std::chrono::seconds(20));
    Result<void> worker_side = make_error(ErrorCode::io, "not run");
    std::thread t([&] { worker_side = worker->handshake(deadline); });
    auto parent_side = parent->handshake(deadline);
    t.join();
    REQUIRE(parent_side.has_value());
    REQUIRE(worker_side.has_value());
  }

  Message next() {
    auto msg = parent->receive(Clock::now() + test::scaled(std::chrono::seconds(20)));
    REQUIRE_MESSAGE(msg.has_value(), msg.error().message);
    return std::move(*msg);
  }
};

std::vector<std::uint64_t> ids_of(const Message& m) {
  std::vector<std::uint64_t> ids;
  for (const TaskResult& r : std::get<ResultBatch>(m).results) ids.push_back(r.id);
  return ids;
}

}  // namespace

TEST_CASE("held_results: held results go in one batch, one with bytes goes alone between, in order") {
  Pair p;
  HeldResults held(*p.worker, false);
  REQUIRE(held.add(TaskResult(1, true, "a")));
  REQUIRE(held.add(TaskResult(2, true, "b")));
  REQUIRE(held.add(TaskResult(3, true, nullptr, {}, BodyFormat::json, Attachment{std::string("raw\0bytes", 9)})));
  REQUIRE(held.add(TaskResult(4, false, nullptr, TaskError{"boom", "no", nullptr})));
  REQUIRE(held.queue());
  REQUIRE(p.worker->flush(no_deadline()));
  CHECK(ids_of(p.next()) == std::vector<std::uint64_t>{1, 2});
  Message alone = p.next();
  REQUIRE(std::holds_alternative<TaskResult>(alone));
  CHECK(std::get<TaskResult>(alone).id == 3);
  CHECK(std::get<TaskResult>(alone).attachment.view() == std::string_view("raw\0bytes", 9));
  Message last = p.next();
  CHECK(ids_of(last) == std::vector<std::uint64_t>{4});
  CHECK(std::get<ResultBatch>(last).results[0].error.type == "boom");
}

TEST_CASE("held_results: a result too large for the parent becomes a result_too_large error in its place") {
  Pair p(2048);
  HeldResults held(*p.worker, false);
  REQUIRE(held.add(TaskResult(1, true, std::string(3000, 'x'))));
  REQUIRE(held.add(TaskResult(2, true, std::string(1500, 'y'))));
  REQUIRE(held.add(TaskResult(3, true, std::string(1500, 'z'))));  // fits alone, not with 2: a new frame
  REQUIRE(held.add(TaskResult(4, true, nullptr, {}, BodyFormat::json, Attachment{std::string(3000, 'b')})));
  REQUIRE(held.queue());
  REQUIRE(p.worker->flush(no_deadline()));
  Message first = p.next();
  REQUIRE(ids_of(first) == std::vector<std::uint64_t>{1, 2});
  const auto& r1 = std::get<ResultBatch>(first).results[0];
  CHECK((!r1.ok && r1.error.type == "result_too_large"));
  CHECK(std::get<ResultBatch>(first).results[1].value == std::string(1500, 'y'));
  CHECK(ids_of(p.next()) == std::vector<std::uint64_t>{3});
  Message fourth = p.next();
  REQUIRE(std::holds_alternative<TaskResult>(fourth));
  CHECK(std::get<TaskResult>(fourth).error.type == "result_too_large");
}

TEST_CASE("held_results: while a task runs, the watchdog sends what is held") {
  Pair p;
  HeldResults held(*p.worker, false);
  REQUIRE(held.add(TaskResult(1, true, "done")));
  held.begin_task();  // a long task starts; nobody else will send result 1 until it ends
  Message m = p.next();
  CHECK(ids_of(m) == std::vector<std::uint64_t>{1});
  // Its result ends the task: outside a task nothing is written by the watchdog, the task loop does it.
  REQUIRE(held.add(TaskResult(2, true, "later")));
  REQUIRE(held.queue());
  REQUIRE(p.worker->flush(no_deadline()));
  CHECK(ids_of(p.next()) == std::vector<std::uint64_t>{2});
}

TEST_CASE("held_results: after a stream of short tasks, a long task's held result is still sent while it runs") {
  Pair p;
  HeldResults held(*p.worker, false);
  // Batches of short tasks for 10 ms or more, as the task loop runs them: the watchdog, seeing tasks keep
  // beginning, looks every millisecond instead of waiting to be woken. 50 batches of 10 small results
  // stay within the pipe's buffer, so nothing needs reading yet.
  std::uint64_t id = 0;
  for (int batch = 0; batch < 50; ++batch) {
    for (int i = 0; i < 10; ++i) {
      held.begin_task();
      REQUIRE(held.add(TaskResult(++id, true, "short")));
    }
    REQUIRE(held.queue());
    REQUIRE(p.worker->flush(no_deadline()));
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  // One more short task, then a long one begins: only the watchdog can send the short one's result now.
  held.begin_task();
  REQUIRE(held.add(TaskResult(++id, true, "short")));
  held.begin_task();
  std::vector<std::uint64_t> got;
  while (got.empty() || got.back() != id) {
    for (std::uint64_t r : ids_of(p.next())) got.push_back(r);
  }
  // Every result, in order, once; the last of them arrived while the long task still ran.
  REQUIRE(got.size() == id);
  for (std::uint64_t i = 0; i < id; ++i) CHECK(got[i] == i + 1);
  REQUIRE(held.add(TaskResult(id + 1, true, "long")));
  REQUIRE(held.queue());
  REQUIRE(p.worker->flush(no_deadline()));
  CHECK(ids_of(p.next()) == std::vector<std::uint64_t>{id + 1});
}

TEST_CASE("held_results: without a progress page, what is held is written before the next task begins") {
  Pair p;
  HeldResults held(*p.worker, /*write_before_task=*/true);
  held.begin_task();
  REQUIRE(held.add(TaskResult(1, true, "a")));
  REQUIRE(held.add(TaskResult(2, true, "b")));  // held, not written: no task runs
  // The next task's start writes them before its function runs (the watchdog never gets the chance: a
  // nonblocking look finds them already in the pipe).
  held.begin_task();
  auto msg = p.parent->receive(Clock::now());
  REQUIRE_MESSAGE(msg.has_value(), msg.error().message);
  CHECK(ids_of(*msg) == std::vector<std::uint64_t>{1, 2});
  REQUIRE(held.add(TaskResult(3, true, "c")));
  REQUIRE(held.queue());
  REQUIRE(p.worker->flush(no_deadline()));
  CHECK(ids_of(p.next()) == std::vector<std::uint64_t>{3});
}
