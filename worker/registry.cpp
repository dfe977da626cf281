// Registry: the functions a worker serves, kept in name order, and the dispatcher that runs one by name.
#include "authrun/worker.hpp"

#include <algorithm>
#include <exception>
#include <stdexcept>

namespace authrun::worker {

namespace {

// A peer-supplied name, shortened so that an error message stays small whatever it sent.
std::string shown_name(std::string_view name) {
  return name.size() > 100 ? std::string(name.substr(0, 100)) + "..." : std::string(name);
}

}  // namespace

Registry& Registry::add_function(std::string name, std::string summary, Function fn) {
  if (name.empty()) throw std::invalid_argument("authrun::worker::Registry::add: empty function name");
  if (!fn) throw std::invalid_argument("authrun::worker::Registry::add: no function given for '" + name + "'");
  auto at = std::lower_bound(m_entries.begin(), m_entries.end(), name,
                             [](const Entry& e, const std::string& n) { return e.name < n; });
  if (at != m_entries.end() && at->name == name)
    throw std::invalid_argument("authrun::worker::Registry::add: function '" + name + "' is registered twice");
  m_entries.insert(at, Entry{std::move(name), std::move(summary), std::move(fn)});
  return *this;
}

bool Registry::has(std::string_view name) const {
  auto at = std::lower_bound(m_entries.begin(), m_entries.end(), name,
                             [](const Entry& e, std::string_view n) { return e.name < n; });
  return at != m_entries.end() && at->name == name;
}

FunctionResult Registry::call(std::string_view name, json&& args, Attachment& attachment) const {
  auto at = std::lower_bound(m_entries.begin(), m_entries.end(), name,
                             [](const Entry& e, std::string_view n) { return e.name < n; });
  if (at == m_entries.end() || at->name != name) {
    attachment = Attachment{};
    std::string known;
    json names = json::array();
    for (const Entry& e : m_entries) {
      known += (known.empty() ? "" : ", ") + e.name;
      names.push_back(e.name);
    }
    return TaskError{"unknown_function", "unknown function '" + shown_name(name) + "' (known: " + known + ")",
                     json{{"known", std::move(names)}}};
  }
  // A function throwing is a bug in it; the task fails, the worker goes on.
  try {
    return at->fn(std::move(args), attachment);
  } catch (const std::exception& e) {
    attachment = Attachment{};
    return TaskError{"internal", at->name + ": internal error: " + e.what(), nullptr};
  } catch (...) {
    attachment = Attachment{};
    return TaskError{"internal", at->name + ": internal error: unknown exception", nullptr};
  }
}

}  // namespace authrun::worker
