// Tests of the worker SDK's Registry: the forms a function may take, what happens to the attachment in each,
// return conversions, unknown names, exceptions, and misuse.
#include "authrun/worker.hpp"

#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "worker/builtin/functions.hpp"

using authrun::worker::Attachment;
using authrun::worker::FunctionResult;
using authrun::worker::json;
using authrun::worker::Registry;
using authrun::worker::TaskError;
using namespace std::string_literals;

namespace {

// Runs `name` with `args` and an attachment of `bytes`; returns the result and what the attachment became.
struct Call {
  FunctionResult result;
  std::string attachment_after;
};

Call call(const Registry& r, std::string_view name, json args, std::string bytes = "") {
  // Stored the way the channel receives it: a prefix in front of the attachment.
  Attachment a{"HEADER" + bytes, 6};
  FunctionResult result = r.call(name, std::move(args), a);
  return Call{std::move(result), std::string(a.view())};
}

json value_of(const Call& c) {
  REQUIRE_MESSAGE(c.result.has_value(), (c.result.has_value() ? "" : c.result.error().message));
  return c.result.value();
}

std::string shout(std::string_view s) {
  std::string out(s);
  for (char& ch : out) ch = (ch >= 'a' && ch <= 'z') ? static_cast<char>(ch - 'a' + 'A') : ch;
  return out;
}

}  // namespace

TEST_CASE("registry: each function form gets its args, and the attachment as that form says") {
  Registry r;
  r.add("plain", "args only", [](json&& args) { return json{{"got", std::move(args)}}; })
      .add("by_value", "args by value", [](json args) { return args.size(); })
      .add("const_ref", "args by const ref", [](const json& args) { return args.dump(); })
      .add("view", "reads the attachment", [](const json&, std::string_view bytes) { return bytes.size(); })
      .add("const_attachment", "reads the attachment",
           [](const json&, const Attachment& a) { return std::string(a.view()); })
      .add("in_out", "replaces the attachment",
           [](json&&, Attachment& a) {
             a = Attachment{shout(a.view())};
             return json("done");
           })
      .add("keeps", "leaves the attachment alone", [](json&& args, Attachment&) { return std::move(args); });

  Call c = call(r, "plain", json{1, 2}, "dropped");
  CHECK(value_of(c) == json{{"got", {1, 2}}});
  CHECK(c.attachment_after.empty());

  CHECK(value_of(call(r, "by_value", json{1, 2, 3})) == 3);
  CHECK(value_of(call(r, "const_ref", json{{"a", 1}})) == R"({"a":1})");

  c = call(r, "view", nullptr, "12345");
  CHECK(value_of(c) == 5);
  CHECK(c.attachment_after.empty());

  c = call(r, "const_attachment", nullptr, "bytes\0in"s);
  CHECK(value_of(c) == "bytes\0in"s);
  CHECK(c.attachment_after.empty());

  c = call(r, "in_out", nullptr, "make me loud");
  CHECK(value_of(c) == "done");
  CHECK(c.attachment_after == "MAKE ME LOUD");

  c = call(r, "keeps", json("x"), "echoed");
  CHECK(value_of(c) == "x");
  CHECK(c.attachment_after == "echoed");
}

TEST_CASE("registry: a TaskError comes back as the error and void gives null") {
  Registry r;
  r.add("check", "fails on negative numbers",
        [](const json& args) -> FunctionResult {
          if (!args.is_number() || args.get<double>() < 0) return TaskError{"bad_args", "want a number >= 0", args};
          return args;
        })
      .add("nothing", "returns nothing", [](const json&) {});
  CHECK(value_of(call(r, "check", json(2))) == 2);
  Call c = call(r, "check", json(-1));
  REQUIRE_FALSE(c.result.has_value());
  CHECK(c.result.error().type == "bad_args");
  CHECK(c.result.error().details == -1);
  CHECK(value_of(call(r, "nothing", nullptr)).is_null());
}

TEST_CASE("registry: an unknown name lists the known ones and drops the attachment") {
  Registry r;
  r.add("b", "", [](const json&) { return 1; }).add("a", "", [](const json&) { return 2; });
  Call c = call(r, "zz", nullptr, "bytes");
  REQUIRE_FALSE(c.result.has_value());
  CHECK(c.result.error().type == "unknown_function");
  CHECK(c.result.error().message == "unknown function 'zz' (known: a, b)");
  CHECK(c.result.error().details == json{{"known", {"a", "b"}}});
  CHECK(c.attachment_after.empty());

  const std::string long_name(5000, 'x');
  c = call(r, long_name, nullptr);
  REQUIRE_FALSE(c.result.has_value());
  CHECK(c.result.error().message.size() < 200);
}

TEST_CASE("registry: an exception escaping a function is an internal error naming it") {
  Registry r;
  r.add("throws", "", [](const json&) -> json { throw std::runtime_error("disk on fire"); })
      .add("throws_int", "", [](const json&) -> json { throw 42; });
  Call c = call(r, "throws", nullptr, "bytes");
  REQUIRE_FALSE(c.result.has_value());
  CHECK(c.result.error().type == "internal");
  CHECK(c.result.error().message == "throws: internal error: disk on fire");
  CHECK(c.attachment_after.empty());
  c = call(r, "throws_int", nullptr);
  REQUIRE_FALSE(c.result.has_value());
  CHECK(c.result.error().message == "throws_int: internal error: unknown exception");
}

TEST_CASE("registry: entries are in name order and empty or repeated names are refused") {
  Registry r;
  for (const char* name : {"m", "c", "x", "a"}) r.add(name, std::string("summary of ") + name, [](const json&) { return 0; });
  std::vector<std::string> names;
  for (const auto& e : r.entries()) names.push_back(e.name);
  CHECK(names == std::vector<std::string>{"a", "c", "m", "x"});
  CHECK(r.entries()[0].summary == "summary of a");
  CHECK_THROWS_AS(r.add("c", "again", [](const json&) { return 0; }), std::invalid_argument);
  CHECK_THROWS_AS(r.add("", "no name", [](const json&) { return 0; }), std::invalid_argument);
  CHECK(r.entries().size() == 4);
}

TEST_CASE("registry: the built-ins are registered through it: echo keeps the attachment, hash drops it") {
  Registry r;
  authrun::worker::register_builtins(r);
  r.add("mine", "a user's function beside the built-ins", [](const json&) { return "mine"; });
  std::vector<std::string> names;
  for (const auto& e : r.entries()) names.push_back(e.name);
  CHECK(names == std::vector<std::string>{"echo", "exec", "fail", "hash", "mine", "sleep"});
  Call c = call(r, "echo", json{{"k", 1}}, "raw\xff");
  CHECK(value_of(c) == json{{"k", 1}});
  CHECK(c.attachment_after == "raw\xff");
  c = call(r, "hash", json{{"data", "abc"}}, "ignored");
  CHECK(value_of(c)["size"] == 3);
  CHECK(c.attachment_after.empty());
  CHECK(value_of(call(r, "mine", nullptr)) == "mine");
  CHECK_THROWS_AS(authrun::worker::register_builtins(r), std::invalid_argument);
}
