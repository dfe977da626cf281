// JSONL batch reading on a thread of its own.
#include "runner/batch_input.hpp"

#include <cerrno>
#include <cstring>

#include <poll.h>
#include <unistd.h>

#include "protocol/json_codec.hpp"

namespace authrun::runner {

using namespace protocol;

namespace {

BatchTask bad_line(BatchTask t, const std::string& where, const std::string& why) {
  t.error = TaskError{"bad_task", where + ": " + why, json{{"line", t.line}}};
  return t;
}

}  // namespace

BatchTask parse_task_line(std::string_view text, std::uint64_t line, std::uint64_t seq, const std::string& where,
                          std::uint32_t max_line) {
  BatchTask t;
  t.seq = seq;
  t.line = line;
  t.id = line;
  if (text.size() > max_line) {
    return bad_line(std::move(t), where, "line of " + std::to_string(text.size()) + " bytes is longer than the limit of " +
                                             std::to_string(max_line));
  }
  auto parsed = parse_json(text);
  if (!parsed) return bad_line(std::move(t), where, "not valid JSON: " + parsed.error().message);
  json& j = *parsed;
  if (!j.is_object()) return bad_line(std::move(t), where, std::string("a task must be a JSON object, not ") + j.type_name());
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    if (k != "id" && k != "fn" && k != "args" && k != "timeout") {
      return bad_line(std::move(t), where, "unknown field '" + k + "' (a task has id, fn, args and timeout)");
    }
  }
  if (auto id = j.find("id"); id != j.end()) {
    if (!id->is_string() && !id->is_number()) return bad_line(std::move(t), where, "field 'id' must be a string or a number");
    t.id = *id;
  }
  auto fn = j.find("fn");
  if (fn == j.end()) return bad_line(std::move(t), where, "field 'fn' is missing");
  if (!fn->is_string() || fn->get_ref<const std::string&>().empty()) {
    return bad_line(std::move(t), where, "field 'fn' must be a non-empty string");
  }
  t.fn = fn->get<std::string>();
  if (auto to = j.find("timeout"); to != j.end()) {
    if (!to->is_number() || to->get<double>() <= 0) return bad_line(std::move(t), where, "field 'timeout' must be a positive number of seconds");
    t.timeout_s = to->get<double>();
  }
  auto args = j.find("args");
  t.args_json = args == j.end() ? "null" : dump_json(*args);
  return t;
}

BatchInput::BatchInput(Fd fd, std::string name, std::size_t capacity, std::uint32_t max_line,
                       std::function<void()> notify, std::function<bool(const BatchTask&)> skip)
    : m_fd(std::move(fd)),
      m_name(std::move(name)),
      m_capacity(capacity),
      m_max_line(max_line),
      m_notify(std::move(notify)),
      m_skip(std::move(skip)) {
  auto p = make_pipe();
  if (p) {
    m_stop_read = std::move(p->read);
    m_stop_write = std::move(p->write);
  }
  m_thread = std::thread([this] { run(); });
}

BatchInput::~BatchInput() {
  stop();
  if (m_thread.joinable()) m_thread.join();
}

void BatchInput::stop() {
  {
    std::lock_guard lock(m_mutex);
    if (m_stopping) return;
    m_stopping = true;
  }
  m_not_full.notify_all();
  if (m_stop_write.valid()) {
    char c = 1;
    std::ignore = ::write(m_stop_write.get(), &c, 1);
  }
}

bool BatchInput::push(BatchTask task) {
  bool was_empty = false;
  {
    std::unique_lock lock(m_mutex);
    m_not_full.wait(lock, [&] { return m_queue.size() < m_capacity || m_stopping; });
    if (m_stopping) return false;
    was_empty = m_queue.empty();
    m_queue.push_back(std::move(task));
  }
  if (was_empty) m_notify();
  return true;
}

void BatchInput::run() {
  std::string pending;       // the current, unfinished line
  bool skipping = false;     // the current line is over the limit: drop its bytes, keep its length
  std::uint64_t skipped = 0;
  std::uint64_t line = 0, seq = 0;
  std::vector<char> buf(1 << 16);
  auto finish_line = [&](std::string_view text) -> bool {
    ++line;
    std::string where = m_name + ":" + std::to_string(line);
    if (skipping) {
      BatchTask t;
      t.seq = seq++;
      t.line = line;
      t.id = line;
      t = bad_line(std::move(t), where, "line of " + std::to_string(skipped + text.size()) +
                                           " bytes is longer than the limit of " + std::to_string(m_max_line));
      skipping = false;
      skipped = 0;
      return push(std::move(t));
    }
    if (text.find_first_not_of(" \t\r") == std::string_view::npos) return true;  // blank line
    BatchTask t = parse_task_line(text, line, seq, where, m_max_line);
    if (!t.error && m_skip && m_skip(t)) {
      std::lock_guard lock(m_mutex);
      ++m_skipped;
      return true;
    }
    ++seq;
    return push(std::move(t));
  };
  for (;;) {
    pollfd fds[2] = {{m_fd.get(), POLLIN, 0}, {m_stop_read.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents != 0) break;
    ssize_t n = ::read(m_fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      std::lock_guard lock(m_mutex);
      m_error = m_name + ": read: " + std::strerror(errno);
      break;
    }
    if (n == 0) {
      if ((!pending.empty() || skipping) && !finish_line(pending)) break;
      break;
    }
    std::string_view chunk(buf.data(), static_cast<std::size_t>(n));
    bool stopped = false;
    while (!chunk.empty()) {
      auto nl = chunk.find('\n');
      std::string_view part = chunk.substr(0, nl);
      if (nl == std::string_view::npos) {
        if (skipping) skipped += part.size();
        else if (pending.size() + part.size() > m_max_line) {
          skipping = true;
          skipped = pending.size() + part.size();
          pending.clear();
          pending.shrink_to_fit();
        } else pending.append(part);
        break;
      }
      bool ok;
      if (pending.empty() || skipping) {
        ok = finish_line(part);
      } else {
        pending.append(part);
        ok = finish_line(pending);
        pending.clear();
      }
      if (!ok) {
        stopped = true;
        break;
      }
      chunk.remove_prefix(nl + 1);
    }
    if (stopped) break;
  }
  {
    std::lock_guard lock(m_mutex);
    m_ended = true;
  }
  m_notify();
}

std::optional<BatchTask> BatchInput::try_pop() {
  std::optional<BatchTask> t;
  {
    std::lock_guard lock(m_mutex);
    if (m_queue.empty()) return t;
    t = std::move(m_queue.front());
    m_queue.pop_front();
  }
  m_not_full.notify_one();
  return t;
}

bool BatchInput::finished() {
  std::lock_guard lock(m_mutex);
  return m_ended && m_queue.empty();
}

std::optional<std::string> BatchInput::read_error() {
  std::lock_guard lock(m_mutex);
  return m_error;
}

std::uint64_t BatchInput::count_skipped() {
  std::lock_guard lock(m_mutex);
  return m_skipped;
}


}  // namespace authrun::runner
