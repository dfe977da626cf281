// The test vectors printed in protocol/PROTOCOL.md, "Test vectors": a handshake from fixed inputs, checked
// three ways: the library's bytes, an independent computation straight from libsodium primitives (as a peer
// in another language would do it), and the hex constants that the document shows.
// Set AUTHRUN_PRINT_VECTORS=1 to print the computed values.
#include <doctest/doctest.h>

#include <sodium.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "protocol/connection.hpp"
#include "protocol/handshake.hpp"
#include "protocol/json_codec.hpp"
#include "protocol/limits.hpp"
#include "protocol/run_key.hpp"
#include "tests/helpers/connection_pair.hpp"

using namespace authrun::protocol;
using authrun::test::drain;

namespace {

// ---- The constants shown in PROTOCOL.md. ----

const char k_parent_hello_auth[] =
    "4152554e01010000e60000007b2265706b223a22613765303964323132393536"
    "3865386161356366393665613766643965306638383161356437386266353932"
    "3236393536323936336637623666363839303530222c226d61785f7061796c6f"
    "6164223a3236383530303939322c226d6f646573223a5b2261757468656e7469"
    "6361746564225d2c226e6f6e6365223a22343034313432343334343435343634"
    "3734383439346134623463346434653466353035313532353335343535353635"
    "3735383539356135623563356435653566222c22726f6c65223a22706172656e"
    "74222c2276657273696f6e73223a5b315d7d";
const char k_parent_hello_enc[] =
    "4152554e01010000e20000007b2265706b223a22613765303964323132393536"
    "3865386161356366393665613766643965306638383161356437386266353932"
    "3236393536323936336637623666363839303530222c226d61785f7061796c6f"
    "6164223a3236383530303939322c226d6f646573223a5b22656e637279707465"
    "64225d2c226e6f6e6365223a2234303431343234333434343534363437343834"
    "3934613462346334643465346635303531353235333534353535363537353835"
    "39356135623563356435653566222c22726f6c65223a22706172656e74222c22"
    "76657273696f6e73223a5b315d7d";
const char k_worker_hello[] =
    "4152554e01010000f20000007b2265706b223a22663833323837323666636435"
    "3730363234313638386261616332363438316235326630616563653666633662"
    "6435323631396334366136333930643262613732222c226d61785f7061796c6f"
    "6164223a3236383530303939322c226d6f646573223a5b22656e637279707465"
    "64222c2261757468656e74696361746564225d2c226e6f6e6365223a22383038"
    "3138323833383438353836383738383839386138623863386438653866393039"
    "3139323933393439353936393739383939396139623963396439653966222c22"
    "726f6c65223a22776f726b6572222c2276657273696f6e73223a5b315d7d";
const char k_transcript_auth[] = "d93efc17f774b1d44c5ba38ad5e18d1f3085291ecd737cb5ff8fd548b5d75a81";
const char k_transcript_enc[] = "14f2eb0a952caacba374e025cbbe31368cadc27d40fc440fa26f806a6c791adc";
const char k_parent_proof_auth[] = "f848f865798479406a25dd0531116929704e79ae80cbfbdd85eddcc5887c809f";
const char k_worker_proof_auth[] = "67a8b4947de673f9a8de6b68ae20d580b2e7cb1b7d7baa15520f986be90bd615";
const char k_parent_proof_enc[] = "5721b5fd42e5110ef4068c92be2a339b27deba7f884c163c626bbb157e77a8df";
const char k_worker_proof_enc[] = "7a040e67551693a03f7be680423f86c2330978e7d326ee10a1ccb87153c03005";
const char k_p2w_auth[] = "78930927337548a0b2484e73cc4cc6fba9dbcb95ed6096702345a3424c9d898e";
const char k_w2p_auth[] = "bdabc60f14fa8a3a98207576485d23329279ed135285642808bd5b31a258f6de";
const char k_p2w_enc[] = "0171fb650587667b568fa27b2e349cbae5da35603cc26e03948d195b54f87b38";
const char k_w2p_enc[] = "ddc48f5d2d80d6a60ac3215b114c720cb8cb25bed2055c6e074ff6dd6aa8bf85";
const char k_task_frame_auth[] =
    "4152554e01100000230000007b2261726773223a5b312c322c335d2c22666e22"
    "3a226563686f222c226964223a317da083679260086c447e538ba3b2651a0a";
const char k_result_frame_auth[] =
    "4152554e01110000220000007b226964223a312c226f6b223a747275652c2276"
    "616c7565223a5b312c322c335d7dc8b9fd335c8979c9f8b5addfa39c5eb2";
const char k_task_frame_enc[] =
    "4152554e0110000023000000b8d1ab5d8d773fec82313572b4a178760db91cd2"
    "07e39728f8471fe52c1f80194e492d4da8614425b70c89ecdbe39783945cbb";

// Frames after the first (PROTOCOL.md, "Later frames").
const char k_task2_frame_auth[] =
    "4152554e0110040029000000210000007b2261726773223a22616263222c2266"
    "6e223a226563686f222c226964223a327d000102ff16ade4372e3aa1c7daff0a"
    "7b9d107420";
const char k_result2_frame_auth[] =
    "4152554e0111040028000000200000007b226964223a322c226f6b223a747275"
    "652c2276616c7565223a22616263227d000102ff9f27aa542a7259997b941b18"
    "dd6d27bf";
const char k_error_frame_auth[] =
    "4152554e011200003d0000007b22636f6465223a22756e657870656374656422"
    "2c226d657373616765223a22776f726b657220676f74206120726573756c7420"
    "6d657373616765227d13a4e61a9312b7ccd5e9b0ae5331c046";
const char k_result_frame_enc[] =
    "4152554e0111000022000000223eb16e560818dcf9212a19dcad9189bbcfe1fe"
    "48c7e105db7a10f3dc6073f344d11db795527511cb74c4cc6cfc9771e37f";
const char k_task2_frame_enc[] =
    "4152554e0110040029000000013bf422447a4ad97393891a15850cd6144b9127"
    "f5225cceb3db4c3fcf3443a6f3f9438735a2d5dd632c8a98d196e58645521c54"
    "a572a40574";
const char k_result2_frame_enc[] =
    "4152554e0111040028000000f657032408ab14ae712b0769220b0d4b5c5e585f"
    "566edb12beca3c30d4a2fc9b7dc4a73087236d19deb197e5fc2da1db99a907ad"
    "1a9b075b";
const char k_error_frame_enc[] =
    "4152554e011200003d0000008ad6ca4ee5d1285e2ecd2066a941e86b58ddbe80"
    "0d46a0fdbfb4da641632403b5012636f23a1c20b387e15f7e5c59a9fe25d7443"
    "33340a0560ecc3648e6316972c7bdb9a340df7f6b388bbd9e4";
// The worker's keepalive `{}` (type 25) at seq 2, in both modes (PROTOCOL.md, "Later frames").
const char k_keepalive_frame_auth[] = "4152554e01190000020000007b7dcba26a6a04976ea371858428e8be51c0";
const char k_keepalive_frame_enc[] = "4152554e01190000020000008a89a6ce6a43ed6d08c3a5dc3a63bbe14f0b";
const char k_outcome_frame[] =
    "4152554e010300004c0000007b226d657373616765223a227065657227732070"
    "726f6f6620646f6573206e6f7420766572696679222c226f6b223a66616c7365"
    "2c22726561736f6e223a22617574685f6661696c6564227d";

// ---- Helpers. ----

std::string hex(const void* data, std::size_t n) {
  std::string out(2 * n + 1, '\0');
  ::sodium_bin2hex(out.data(), out.size(), static_cast<const unsigned char*>(data), n);
  out.resize(2 * n);
  return out;
}
std::string hex(const std::string& s) { return hex(s.data(), s.size()); }
std::string hex(const Bytes32& b) { return hex(b.data(), b.size()); }

Bytes32 counting(std::uint8_t first) {
  Bytes32 b{};
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(first + i);
  return b;
}

bool printing() { return std::getenv("AUTHRUN_PRINT_VECTORS") != nullptr; }

void print(const char* name, const std::string& value) {
  if (printing()) std::printf("%s = %s\n", name, value.c_str());
}

// Checks a computed value against the document's constant (skipped while printing, to regenerate them).
void check_vector(const char* name, const std::string& computed, const char* expected) {
  print(name, computed);
  if (printing()) return;
  INFO(name);
  CHECK(computed == std::string(expected));
}

std::vector<Message> feed(Connection& c, const std::string& bytes) {
  std::vector<Message> messages;
  std::size_t pos = 0;
  for (;;) {
    auto got = c.receive();
    REQUIRE(got.has_value());
    if (*got) {
      messages.push_back(std::move(**got));
      continue;
    }
    if (pos == bytes.size()) return messages;
    auto space = c.read_space();
    std::size_t n = std::min(space.size(), bytes.size() - pos);
    std::memcpy(space.data(), bytes.data() + pos, n);
    c.commit(n);
    pos += n;
  }
}

// ---- The fixed inputs. ----

const std::string k_attachment("\x00\x01\x02\xff", 4);

RunKey vector_key() { return RunKey::from_bytes(counting(0x00)); }
const Bytes32 k_parent_nonce = counting(0x40);
const Bytes32 k_parent_seed = counting(0x60);
const Bytes32 k_worker_nonce = counting(0x80);
const Bytes32 k_worker_seed = counting(0xa0);

// ---- The independent computation, from libsodium primitives only. ----

struct KeyPair {
  Bytes32 pk{}, sk{};
};

// crypto_kx_seed_keypair spelled out: sk = BLAKE2b-256(seed), pk = X25519(sk, base point).
KeyPair seed_keypair(const Bytes32& seed) {
  KeyPair kp;
  ::crypto_generichash(kp.sk.data(), 32, seed.data(), seed.size(), nullptr, 0);
  ::crypto_scalarmult_base(kp.pk.data(), kp.sk.data());
  return kp;
}

Bytes32 blake2b_256(const std::string& data) {
  Bytes32 out{};
  ::crypto_generichash(out.data(), 32, reinterpret_cast<const unsigned char*>(data.data()), data.size(), nullptr, 0);
  return out;
}

std::string bytes_of(const Bytes32& b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

Bytes32 hmac_sha512_256(const Bytes32& key, const std::string& data) {
  // HMAC-SHA-512 truncated to 32 bytes is crypto_auth; spelled out with the SHA-512 HMAC API.
  unsigned char full[crypto_auth_hmacsha512_BYTES];
  ::crypto_auth_hmacsha512(full, reinterpret_cast<const unsigned char*>(data.data()), data.size(), key.data());
  Bytes32 out{};
  std::memcpy(out.data(), full, 32);
  return out;
}

Bytes32 keyed_blake2b_256(const Bytes32& key, const std::string& data) {
  Bytes32 out{};
  ::crypto_generichash(out.data(), 32, reinterpret_cast<const unsigned char*>(data.data()), data.size(), key.data(),
                       key.size());
  return out;
}

struct Derived {
  Bytes32 th, parent_proof, worker_proof, p2w, w2p;
};

Derived derive(const std::string& parent_hello, const std::string& worker_hello) {
  const Bytes32 run_key = counting(0x00);
  KeyPair parent = seed_keypair(k_parent_seed);
  KeyPair worker = seed_keypair(k_worker_seed);
  Derived d;
  d.th = blake2b_256(parent_hello + worker_hello);
  d.parent_proof = hmac_sha512_256(run_key, "authrun v1 parent proof" + bytes_of(d.th));
  d.worker_proof = hmac_sha512_256(run_key, "authrun v1 worker proof" + bytes_of(d.th));
  // Shared secret, the same from both sides.
  Bytes32 q{}, q2{};
  REQUIRE(::crypto_scalarmult(q.data(), parent.sk.data(), worker.pk.data()) == 0);
  REQUIRE(::crypto_scalarmult(q2.data(), worker.sk.data(), parent.pk.data()) == 0);
  REQUIRE(q == q2);
  // H = BLAKE2b-512(q || parent pk || worker pk); worker->parent uses H[0..32), parent->worker H[32..64).
  unsigned char h[64];
  std::string in = bytes_of(q) + bytes_of(parent.pk) + bytes_of(worker.pk);
  ::crypto_generichash(h, 64, reinterpret_cast<const unsigned char*>(in.data()), in.size(), nullptr, 0);
  std::string w2p_kx(reinterpret_cast<const char*>(h), 32);
  std::string p2w_kx(reinterpret_cast<const char*>(h + 32), 32);
  d.p2w = keyed_blake2b_256(run_key, "authrun v1 parent->worker" + p2w_kx + bytes_of(d.th));
  d.w2p = keyed_blake2b_256(run_key, "authrun v1 worker->parent" + w2p_kx + bytes_of(d.th));
  return d;
}

std::string le32(std::uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>(v >> (8 * i));
  return s;
}

std::string nonce_for(std::uint64_t seq) {
  std::string n(12, '\0');
  for (int i = 0; i < 8; ++i) n[static_cast<std::size_t>(i)] = static_cast<char>(seq >> (8 * i));
  return n;
}

std::string header(std::uint8_t type, std::uint16_t flags, std::uint32_t length) {
  return std::string("ARUN") + char(1) + char(type) + char(flags & 0xff) + char(flags >> 8) + le32(length);
}

// authenticated mode: Poly1305 keyed with the first 32 bytes of the ChaCha20 (IETF) keystream for this
// frame's nonce, over header || payload.
std::string seal_authenticated(const Bytes32& key, std::uint64_t seq, const std::string& hdr, const std::string& payload) {
  unsigned char otk[32];
  std::string nonce = nonce_for(seq);
  ::crypto_stream_chacha20_ietf(otk, sizeof otk, reinterpret_cast<const unsigned char*>(nonce.data()), key.data());
  std::string msg = hdr + payload;
  unsigned char tag[16];
  ::crypto_onetimeauth_poly1305(tag, reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), otk);
  return hdr + payload + std::string(reinterpret_cast<const char*>(tag), 16);
}

// encrypted mode: ChaCha20-Poly1305 (RFC 8439) with the header as additional data, detached tag last.
std::string seal_encrypted(const Bytes32& key, std::uint64_t seq, const std::string& hdr, const std::string& payload) {
  std::string nonce = nonce_for(seq);
  std::string c(payload.size(), '\0');
  unsigned char tag[16];
  ::crypto_aead_chacha20poly1305_ietf_encrypt_detached(
      reinterpret_cast<unsigned char*>(c.data()), tag, nullptr, reinterpret_cast<const unsigned char*>(payload.data()),
      payload.size(), reinterpret_cast<const unsigned char*>(hdr.data()), hdr.size(), nullptr,
      reinterpret_cast<const unsigned char*>(nonce.data()), key.data());
  return hdr + c + std::string(reinterpret_cast<const char*>(tag), 16);
}

// ---- One handshake through the library. ----

struct LibraryRun {
  std::string parent_hello, worker_hello, parent_proof, worker_proof, task_frame, result_frame;
  // Later frames: a task and its result with an attachment (seq 1 each way), then the worker's error (seq 2).
  std::string task2_frame, result2_frame, error_frame;
  Bytes32 th{};
  ChannelMode mode{};
};

LibraryRun run_library(ChannelMode parent_mode) {
  RunKey key = vector_key();
  Connection parent(key, HandshakeConfig{Role::parent, {parent_mode}, limits::default_max_payload},
                    Ephemeral::from_seed(k_parent_nonce, k_parent_seed));
  Connection worker(key,
                    HandshakeConfig{Role::worker, {ChannelMode::encrypted, ChannelMode::authenticated},
                                    limits::default_max_payload},
                    Ephemeral::from_seed(k_worker_nonce, k_worker_seed));
  LibraryRun r;
  r.parent_hello = drain(parent);
  r.worker_hello = drain(worker);
  CHECK(feed(worker, r.parent_hello).empty());
  CHECK(feed(parent, r.worker_hello).empty());
  r.worker_proof = drain(worker);
  r.parent_proof = drain(parent);
  CHECK(feed(parent, r.worker_proof).empty());
  CHECK(feed(worker, r.parent_proof).empty());
  REQUIRE(parent.established());
  REQUIRE(worker.established());
  r.th = parent.session().transcript_hash;
  CHECK(worker.session().transcript_hash == r.th);
  r.mode = parent.session().mode;

  REQUIRE(parent.send(Task{1, "echo", json::array({1, 2, 3})}));
  r.task_frame = drain(parent);
  auto tasks = feed(worker, r.task_frame);
  REQUIRE(tasks.size() == 1);
  CHECK(std::get<Task>(tasks[0]).args == json::array({1, 2, 3}));

  TaskResult result;
  result.id = 1;
  result.value = json::array({1, 2, 3});
  REQUIRE(worker.send(result));
  r.result_frame = drain(worker);
  auto results = feed(parent, r.result_frame);
  REQUIRE(results.size() == 1);
  CHECK(std::get<TaskResult>(results[0]).value == json::array({1, 2, 3}));

  REQUIRE(parent.send(Task{2, "echo", "abc", BodyFormat::json, Attachment{k_attachment, 0}}));
  r.task2_frame = drain(parent);
  tasks = feed(worker, r.task2_frame);
  REQUIRE(tasks.size() == 1);
  CHECK(std::get<Task>(tasks[0]).attachment.view() == k_attachment);
  REQUIRE(worker.send(TaskResult{2, true, "abc", {}, BodyFormat::json, Attachment{k_attachment, 0}}));
  r.result2_frame = drain(worker);
  results = feed(parent, r.result2_frame);
  REQUIRE(results.size() == 1);
  CHECK(std::get<TaskResult>(results[0]).attachment.view() == k_attachment);
  REQUIRE(worker.send(ProtocolError{"unexpected", "worker got a result message"}));
  r.error_frame = drain(worker);
  auto refused = parent.receive();
  (void)refused;
  return r;
}

std::string proof_frame(const Bytes32& mac) {
  std::string body = "{\"mac\":\"" + hex(mac) + "\"}";
  return header(2, 0, static_cast<std::uint32_t>(body.size())) + body;
}

}  // namespace

TEST_CASE("vectors: fixed inputs give the documented handshake and frames") {
  REQUIRE(sodium_ready());
  const std::string task_body = R"({"args":[1,2,3],"fn":"echo","id":1})";
  const std::string result_body = R"({"id":1,"ok":true,"value":[1,2,3]})";

  // Authenticated: the parent asks for authenticated only.
  LibraryRun a = run_library(ChannelMode::authenticated);
  CHECK(a.mode == ChannelMode::authenticated);
  Derived da = derive(a.parent_hello, a.worker_hello);
  CHECK(a.th == da.th);
  CHECK(a.parent_proof == proof_frame(da.parent_proof));
  CHECK(a.worker_proof == proof_frame(da.worker_proof));
  CHECK(a.task_frame == seal_authenticated(da.p2w, 0, header(16, 0, static_cast<std::uint32_t>(task_body.size())), task_body));
  CHECK(a.result_frame ==
        seal_authenticated(da.w2p, 0, header(17, 0, static_cast<std::uint32_t>(result_body.size())), result_body));

  // Encrypted: the parent asks for encrypted only; the worker's hello is the same bytes.
  LibraryRun e = run_library(ChannelMode::encrypted);
  CHECK(e.mode == ChannelMode::encrypted);
  CHECK(e.worker_hello == a.worker_hello);
  Derived de = derive(e.parent_hello, e.worker_hello);
  CHECK(e.th == de.th);
  CHECK(e.parent_proof == proof_frame(de.parent_proof));
  CHECK(e.worker_proof == proof_frame(de.worker_proof));
  CHECK(e.task_frame == seal_encrypted(de.p2w, 0, header(16, 0, static_cast<std::uint32_t>(task_body.size())), task_body));

  // Later frames: seq 1 and 2, an attachment (flags 0x0004), an error message; the same in both modes.
  const std::string task2_body = R"({"args":"abc","fn":"echo","id":2})";
  const std::string result2_body = R"({"id":2,"ok":true,"value":"abc"})";
  const std::string error_body = R"({"code":"unexpected","message":"worker got a result message"})";
  auto attached = [&](const std::string& body) { return le32(static_cast<std::uint32_t>(body.size())) + body + k_attachment; };
  auto size = [](const std::string& s) { return static_cast<std::uint32_t>(s.size()); };
  CHECK(a.task2_frame == seal_authenticated(da.p2w, 1, header(16, 4, size(attached(task2_body))), attached(task2_body)));
  CHECK(a.result2_frame == seal_authenticated(da.w2p, 1, header(17, 4, size(attached(result2_body))), attached(result2_body)));
  CHECK(a.error_frame == seal_authenticated(da.w2p, 2, header(18, 0, size(error_body)), error_body));
  CHECK(e.result_frame == seal_encrypted(de.w2p, 0, header(17, 0, size(result_body)), result_body));
  CHECK(e.task2_frame == seal_encrypted(de.p2w, 1, header(16, 4, size(attached(task2_body))), attached(task2_body)));
  CHECK(e.result2_frame == seal_encrypted(de.w2p, 1, header(17, 4, size(attached(result2_body))), attached(result2_body)));
  CHECK(e.error_frame == seal_encrypted(de.w2p, 2, header(18, 0, size(error_body)), error_body));
  const OutFrame outcome = outcome_for(make_error(ErrorCode::auth_failed, "peer's proof does not verify"));
  const std::string outcome_bytes =
      std::string(reinterpret_cast<const char*>(outcome.header.data()), outcome.header.size()) + outcome.payload;
  const std::string outcome_body = R"({"message":"peer's proof does not verify","ok":false,"reason":"auth_failed"})";
  CHECK(outcome_bytes == header(3, 0, size(outcome_body)) + outcome_body);
  check_vector("k_task2_frame_auth", hex(a.task2_frame), k_task2_frame_auth);
  check_vector("k_result2_frame_auth", hex(a.result2_frame), k_result2_frame_auth);
  check_vector("k_error_frame_auth", hex(a.error_frame), k_error_frame_auth);
  check_vector("k_result_frame_enc", hex(e.result_frame), k_result_frame_enc);
  check_vector("k_task2_frame_enc", hex(e.task2_frame), k_task2_frame_enc);
  check_vector("k_result2_frame_enc", hex(e.result2_frame), k_result2_frame_enc);
  check_vector("k_error_frame_enc", hex(e.error_frame), k_error_frame_enc);
  check_vector("k_outcome_frame", hex(outcome_bytes), k_outcome_frame);
  // A keepalive: the library's body and type, sealed as the worker's frame at seq 2.
  CHECK(encode_body(Message{KeepAlive{}}) == "{}");
  CHECK(type_of(Message{KeepAlive{}}) == MessageType::keepalive);
  CHECK(static_cast<int>(MessageType::keepalive) == 25);
  check_vector("k_keepalive_frame_auth", hex(seal_authenticated(da.w2p, 2, header(25, 0, 2), "{}")), k_keepalive_frame_auth);
  check_vector("k_keepalive_frame_enc", hex(seal_encrypted(de.w2p, 2, header(25, 0, 2), "{}")), k_keepalive_frame_enc);

  // The hellos' public keys are crypto_kx_seed_keypair's.
  CHECK(a.parent_hello.find(hex(seed_keypair(k_parent_seed).pk)) != std::string::npos);
  CHECK(a.worker_hello.find(hex(seed_keypair(k_worker_seed).pk)) != std::string::npos);

  if (printing()) {
    std::printf("parent hello (authenticated) text = %s\n", a.parent_hello.substr(k_header_size).c_str());
    std::printf("parent hello (encrypted) text = %s\n", e.parent_hello.substr(k_header_size).c_str());
    std::printf("worker hello text = %s\n", a.worker_hello.substr(k_header_size).c_str());
    std::printf("parent public key = %s\n", hex(seed_keypair(k_parent_seed).pk).c_str());
    std::printf("worker public key = %s\n", hex(seed_keypair(k_worker_seed).pk).c_str());
  }
  check_vector("k_parent_hello_auth", hex(a.parent_hello), k_parent_hello_auth);
  check_vector("k_parent_hello_enc", hex(e.parent_hello), k_parent_hello_enc);
  check_vector("k_worker_hello", hex(a.worker_hello), k_worker_hello);
  check_vector("k_transcript_auth", hex(a.th), k_transcript_auth);
  check_vector("k_transcript_enc", hex(e.th), k_transcript_enc);
  check_vector("k_parent_proof_auth", hex(da.parent_proof), k_parent_proof_auth);
  check_vector("k_worker_proof_auth", hex(da.worker_proof), k_worker_proof_auth);
  check_vector("k_parent_proof_enc", hex(de.parent_proof), k_parent_proof_enc);
  check_vector("k_worker_proof_enc", hex(de.worker_proof), k_worker_proof_enc);
  check_vector("k_p2w_auth", hex(da.p2w), k_p2w_auth);
  check_vector("k_w2p_auth", hex(da.w2p), k_w2p_auth);
  check_vector("k_p2w_enc", hex(de.p2w), k_p2w_enc);
  check_vector("k_w2p_enc", hex(de.w2p), k_w2p_enc);
  check_vector("k_task_frame_auth", hex(a.task_frame), k_task_frame_auth);
  check_vector("k_result_frame_auth", hex(a.result_frame), k_result_frame_auth);
  check_vector("k_task_frame_enc", hex(e.task_frame), k_task_frame_enc);
  CHECK(hex(a.parent_proof).substr(0, 24) == "4152554e010200004a000000");
}

namespace {

// ---- The other data messages (PROTOCOL.md section 10, "The other data messages"): run A's keys. ----
const char k_program_frame[] =
    "4152554e01150000500000007b22637764223a222f77222c226d6f64756c6573"
    "223a5b7b2266696c65223a222f772f7461736b732e7079222c226e616d65223a"
    "227461736b73227d5d2c227379735f70617468223a5b222f77225d7d05a1d16e"
    "904405c6f27b1c7f60c07433";
const char k_task_batch_frame[] =
    "4152554e011700006c0000007b227461736b73223a5b7b226964223a332c2266"
    "6e223a226563686f222c2261726773223a5b315d7d2c7b226964223a342c2266"
    "6e223a2265786563222c2261726773223a7b2261726776223a5b226563686f22"
    "2c226869225d2c2273747265616d223a747275657d7d5d7d1ffdcafe28975756"
    "69493de6298a490b";
const char k_shutdown_frame[] =
    "4152554e01130000020000007b7d1371d1a629dba990e14102c223d6e1a5";
const char k_worker_info_frame[] =
    "4152554e011400002c0000007b2262617463686573223a747275652c22686f73"
    "74223a226e6f64653037222c22706964223a34313233347d0765e22cc3e939c0"
    "c53747818095b1fc";
const char k_output_frame[] =
    "4152554e01160400210000001a0000007b226964223a342c2273747265616d22"
    "3a227374646f7574227d68690a5a94462eab73d88d2ab6f7e94ad88162";
const char k_result_batch_frame[] =
    "4152554e01180000570000007b22726573756c7473223a5b7b226964223a332c"
    "226f6b223a747275652c2276616c7565223a5b315d7d2c7b226964223a342c22"
    "6f6b223a747275652c2276616c7565223a7b22657869745f636f6465223a307d"
    "7d5d7d2cd3f0ae372edb05240cc4d28a421629";

}  // namespace

TEST_CASE("vectors: program, task_batch, shutdown, worker_info, output and result_batch frames") {
  REQUIRE(sodium_ready());
  RunKey key = vector_key();
  Connection parent(key, HandshakeConfig{Role::parent, {ChannelMode::authenticated}, limits::default_max_payload},
                    Ephemeral::from_seed(k_parent_nonce, k_parent_seed));
  Connection worker(key,
                    HandshakeConfig{Role::worker, {ChannelMode::encrypted, ChannelMode::authenticated},
                                    limits::default_max_payload},
                    Ephemeral::from_seed(k_worker_nonce, k_worker_seed));
  const std::string hello_p = drain(parent);
  const std::string hello_w = drain(worker);
  CHECK(feed(worker, hello_p).empty());
  CHECK(feed(parent, hello_w).empty());
  CHECK(feed(parent, drain(worker)).empty());
  CHECK(feed(worker, drain(parent)).empty());
  REQUIRE(parent.established());
  REQUIRE(worker.established());
  const Derived d = derive(hello_p, hello_w);
  auto size = [](const std::string& t) { return static_cast<std::uint32_t>(t.size()); };

  // Parent -> worker, seq 0, 1, 2: a Python worker's program, a batch of two tasks (the second streams), the end.
  Program program;
  program.modules = {ProgramModule{"tasks", "/w/tasks.py"}};
  program.sys_path = {"/w"};
  program.cwd = "/w";
  REQUIRE(parent.send(program));
  const std::string program_frame = drain(parent);
  const std::string batch_body =
      R"({"tasks":[{"id":3,"fn":"echo","args":[1]},{"id":4,"fn":"exec","args":{"argv":["echo","hi"],"stream":true}}]})";
  REQUIRE(parent.send_body(MessageType::task_batch, batch_body));
  const std::string batch_frame = drain(parent);
  REQUIRE(parent.send(Shutdown{}));
  const std::string shutdown_frame = drain(parent);
  auto got = feed(worker, program_frame + batch_frame + shutdown_frame);
  REQUIRE(got.size() == 3);
  CHECK(std::get<Program>(got[0]).modules.at(0).file == "/w/tasks.py");
  const auto& tasks = std::get<TaskBatch>(got[1]).tasks;
  REQUIRE(tasks.size() == 2);
  CHECK(tasks[1].fn == "exec");
  CHECK(std::holds_alternative<Shutdown>(got[2]));

  // Worker -> parent, seq 0, 1, 2: where it runs, the streamed task's stdout, both results.
  REQUIRE(worker.send(WorkerInfo{"node07", 41234, true}));
  const std::string info_frame = drain(worker);
  Output piece;
  piece.id = 4;
  piece.data = Attachment{"hi\n", 0};
  REQUIRE(worker.send(std::move(piece)));
  const std::string output_frame = drain(worker);
  const std::string results_body = R"({"results":[{"id":3,"ok":true,"value":[1]},{"id":4,"ok":true,"value":{"exit_code":0}}]})";
  REQUIRE(worker.send_body(MessageType::result_batch, results_body));
  const std::string results_frame = drain(worker);
  auto back = feed(parent, info_frame + output_frame + results_frame);
  REQUIRE(back.size() == 2);  // the Connection takes worker_info in itself
  REQUIRE(parent.peer_info().has_value());
  CHECK(parent.peer_info()->batches);
  CHECK(std::get<Output>(back[0]).data.view() == "hi\n");
  CHECK(std::get<ResultBatch>(back[1]).results.size() == 2);

  // The same bytes from scratch.
  const std::string program_body = R"({"cwd":"/w","modules":[{"file":"/w/tasks.py","name":"tasks"}],"sys_path":["/w"]})";
  const std::string info_body = R"({"batches":true,"host":"node07","pid":41234})";
  const std::string output_body = R"({"id":4,"stream":"stdout"})";
  const std::string output_payload = le32(size(output_body)) + output_body + "hi\n";
  CHECK(program_frame == seal_authenticated(d.p2w, 0, header(21, 0, size(program_body)), program_body));
  CHECK(batch_frame == seal_authenticated(d.p2w, 1, header(23, 0, size(batch_body)), batch_body));
  CHECK(shutdown_frame == seal_authenticated(d.p2w, 2, header(19, 0, 2), "{}"));
  CHECK(info_frame == seal_authenticated(d.w2p, 0, header(20, 0, size(info_body)), info_body));
  CHECK(output_frame == seal_authenticated(d.w2p, 1, header(22, 4, size(output_payload)), output_payload));
  CHECK(results_frame == seal_authenticated(d.w2p, 2, header(24, 0, size(results_body)), results_body));
  check_vector("k_program_frame", hex(program_frame), k_program_frame);
  check_vector("k_task_batch_frame", hex(batch_frame), k_task_batch_frame);
  check_vector("k_shutdown_frame", hex(shutdown_frame), k_shutdown_frame);
  check_vector("k_worker_info_frame", hex(info_frame), k_worker_info_frame);
  check_vector("k_output_frame", hex(output_frame), k_output_frame);
  check_vector("k_result_batch_frame", hex(results_frame), k_result_batch_frame);
}

TEST_CASE("vectors: PROTOCOL.md shows the same vectors as this test") {
  std::ifstream in(std::string(AUTHRUN_SOURCE_DIR) + "/protocol/PROTOCOL.md");
  REQUIRE(in.good());
  std::string doc;
  for (char c; in.get(c);) {
    if (c != ' ' && c != '\n') doc += c;  // hex is wrapped over lines in the document
  }
  const std::pair<const char*, const char*> vectors[] = {
      {"k_parent_hello_auth", k_parent_hello_auth}, {"k_parent_hello_enc", k_parent_hello_enc},
      {"k_worker_hello", k_worker_hello},           {"k_transcript_auth", k_transcript_auth},
      {"k_transcript_enc", k_transcript_enc},       {"k_parent_proof_auth", k_parent_proof_auth},
      {"k_worker_proof_auth", k_worker_proof_auth}, {"k_parent_proof_enc", k_parent_proof_enc},
      {"k_worker_proof_enc", k_worker_proof_enc},   {"k_p2w_auth", k_p2w_auth},
      {"k_w2p_auth", k_w2p_auth},                   {"k_p2w_enc", k_p2w_enc},
      {"k_w2p_enc", k_w2p_enc},                     {"k_task_frame_auth", k_task_frame_auth},
      {"k_result_frame_auth", k_result_frame_auth}, {"k_task_frame_enc", k_task_frame_enc},
      {"k_task2_frame_auth", k_task2_frame_auth},   {"k_result2_frame_auth", k_result2_frame_auth},
      {"k_error_frame_auth", k_error_frame_auth},   {"k_result_frame_enc", k_result_frame_enc},
      {"k_task2_frame_enc", k_task2_frame_enc},     {"k_result2_frame_enc", k_result2_frame_enc},
      {"k_error_frame_enc", k_error_frame_enc},     {"k_outcome_frame", k_outcome_frame},
      {"k_program_frame", k_program_frame},         {"k_task_batch_frame", k_task_batch_frame},
      {"k_shutdown_frame", k_shutdown_frame},       {"k_worker_info_frame", k_worker_info_frame},
      {"k_output_frame", k_output_frame},           {"k_result_batch_frame", k_result_batch_frame},
      {"k_keepalive_frame_auth", k_keepalive_frame_auth}, {"k_keepalive_frame_enc", k_keepalive_frame_enc},
  };
  for (const auto& [name, value] : vectors) {
    INFO(name);
    CHECK(std::string(value).size() >= 60);  // at least a header and a tag; the shortest: a keepalive frame (30 bytes)
    CHECK(doc.find(value) != std::string::npos);
  }
  // The inputs and the public keys derived from them.
  for (const Bytes32& b : {counting(0x00), k_parent_nonce, k_parent_seed, k_worker_nonce, k_worker_seed,
                           seed_keypair(k_parent_seed).pk, seed_keypair(k_worker_seed).pk}) {
    CHECK(doc.find(hex(b)) != std::string::npos);
  }
}
