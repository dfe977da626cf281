// Line-by-line reading with a length limit and a stop fd.
#include "runner/engine/line_reader.hpp"

#include <cerrno>
#include <cstring>
#include <vector>

#include <poll.h>
#include <unistd.h>

namespace authrun::runner {

std::optional<std::string> read_lines(int fd, const std::string& name, int stop_fd, std::size_t max_line,
                                      const LineHandler& on_line, char delimiter) {
  std::string pending;     // the current, unfinished line
  std::size_t length = 0;  // its length so far (also when it is over the limit and not kept)
  std::vector<char> buf(1 << 16);
  auto finish = [&](std::string_view last_part) {
    length += last_part.size();
    bool ok;
    if (length > max_line) {
      ok = on_line(std::string_view(), length);
    } else if (pending.empty()) {
      ok = on_line(last_part, length);
    } else {
      pending.append(last_part);
      ok = on_line(pending, length);
    }
    pending.clear();
    length = 0;
    return ok;
  };
  for (;;) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
    if (::poll(fds, stop_fd >= 0 ? 2 : 1, -1) < 0) {
      if (errno == EINTR) continue;
      return name + ": poll: " + std::strerror(errno);
    }
    if (stop_fd >= 0 && fds[1].revents != 0) return std::nullopt;
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return name + ": read: " + std::strerror(errno);
    }
    if (n == 0) {
      if (length > 0) finish({});
      return std::nullopt;
    }
    std::string_view chunk(buf.data(), static_cast<std::size_t>(n));
    while (!chunk.empty()) {
      auto nl = chunk.find(delimiter);
      if (nl == std::string_view::npos) {
        if (length + chunk.size() <= max_line) pending.append(chunk);
        else pending.clear();  // over the limit: keep counting, stop keeping
        length += chunk.size();
        break;
      }
      if (!finish(chunk.substr(0, nl))) return std::nullopt;
      chunk.remove_prefix(nl + 1);
    }
  }
}

}  // namespace authrun::runner
