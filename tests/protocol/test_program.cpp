// The program message (type 21) a Python worker gets after its handshake: encoding, decoding with
// field-named errors, and program_failed from a worker's error message.
#include <doctest/doctest.h>

#include "protocol/json_codec.hpp"
#include "protocol/message.hpp"
#include "protocol/run_key.hpp"
#include "tests/helpers/connection_pair.hpp"

using namespace authrun::protocol;

TEST_CASE("program: encodes and decodes modules, sys_path and cwd") {
  Program p;
  p.modules = {{"mytasks", "/w/mytasks.py"}, {"pkg.mod", ""}};
  p.sys_path = {"/w", "/lib"};
  p.cwd = "/w";
  const std::string body = encode_body(p);
  CHECK(body == R"({"cwd":"/w","modules":[{"file":"/w/mytasks.py","name":"mytasks"},{"name":"pkg.mod"}],"sys_path":["/w","/lib"]})");
  auto decoded = decode_message(static_cast<std::uint8_t>(MessageType::program), body);
  REQUIRE(decoded.has_value());
  const auto& q = std::get<Program>(*decoded);
  REQUIRE(q.modules.size() == 2);
  CHECK(q.modules[0].name == "mytasks");
  CHECK(q.modules[0].file == "/w/mytasks.py");
  CHECK(q.modules[1].file.empty());
  CHECK(q.sys_path == std::vector<std::string>{"/w", "/lib"});
  CHECK(q.cwd == "/w");
  CHECK(std::string(to_string(MessageType::program)) == "program");
  CHECK(type_of(*decoded) == MessageType::program);
}

TEST_CASE("program: the optional initializer (the Pool's pickled function) round trips") {
  Program p;
  p.modules = {{"__mp_main__", "/w/main.py"}};
  p.initializer = "gASVAAAA";
  const std::string body = encode_body(p);
  CHECK(body == R"({"initializer":"gASVAAAA","modules":[{"file":"/w/main.py","name":"__mp_main__"}],"sys_path":[]})");
  auto decoded = decode_message(static_cast<std::uint8_t>(MessageType::program), body);
  REQUIRE(decoded.has_value());
  CHECK(std::get<Program>(*decoded).initializer == "gASVAAAA");
  CHECK(!decode_message(static_cast<std::uint8_t>(MessageType::program), R"({"modules":[{"name":"m"}],"initializer":1})")
             .has_value());
}

TEST_CASE("program: a malformed program names the field") {
  const auto type = static_cast<std::uint8_t>(MessageType::program);
  struct Case {
    const char* body;
    const char* message;
  };
  for (const Case& c : {Case{R"({})", "program: field 'modules' is missing"},
                        Case{R"({"modules":[]})", "program: field 'modules' must be a non-empty array"},
                        Case{R"({"modules":[{"file":"/x.py"}]})", "program modules[0]: field 'name' is missing"},
                        Case{R"({"modules":[{"name":"a","file":3}]})", "program modules[0]: field 'file' must be a string"},
                        Case{R"({"modules":[{"name":"a"}],"sys_path":"/w"})", "program: field 'sys_path' must be an array of strings"},
                        Case{R"({"modules":[{"name":"a"}],"cwd":1})", "program: field 'cwd' must be a string"}}) {
    CAPTURE(c.body);
    auto decoded = decode_message(type, c.body);
    REQUIRE(!decoded.has_value());
    CHECK(decoded.error().code == ErrorCode::malformed);
    CHECK(decoded.error().message == c.message);
  }
  auto deep = decode_message(type, std::string(100, '[') + std::string(100, ']'));
  REQUIRE(!deep.has_value());
  CHECK(deep.error().code == ErrorCode::json_too_deep);
}

TEST_CASE("program: a worker's program_failed error reaches the parent as program_failed, unanswered") {
  RunKey key = RunKey::generate();
  authrun::test::Peer parent(key, authrun::test::parent_config());
  authrun::test::Peer worker(key, authrun::test::worker_config());
  authrun::test::pump(parent, worker);
  REQUIRE(parent.conn.established());
  REQUIRE(worker.conn.established());
  REQUIRE(worker.conn.send(ProtocolError{"program_failed", "module 'm' (/w/m.py, line 3): SyntaxError"}));
  parent.feed(authrun::test::drain(worker.conn));
  REQUIRE(parent.error.has_value());
  CHECK(parent.error->code == ErrorCode::program_failed);
  CHECK(parent.error->message == "module 'm' (/w/m.py, line 3): SyntaxError");
  CHECK(parent.conn.output().empty());  // no error frame sent back: nobody answers an error
}
