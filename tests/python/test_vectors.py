#!/usr/bin/env python3
"""The test vectors of protocol/PROTOCOL.md section 10, checked with the Python worker's own code
(python/authrun/_bootstrap.py): hellos, transcript hash, proofs, session keys and data frames of both modes,
including frames after the first (seq >= 1), an attachment, an error message and every other data message
(program, task_batch, shutdown, worker_info, output, result_batch). Also the worker's checks of a task_batch
(the whole frame before any task runs). Also drives the worker's
handshake over real pipes against a scripted parent whose frames are the documented ones.

Run: python3 tests/python/test_vectors.py (the suite runs it with /usr/bin/python3). Exit 0 when all pass."""

import os
import struct
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
from authrun import _bootstrap as b  # noqa: E402

RUN_KEY = bytes(range(0x00, 0x20))
PARENT_NONCE = bytes(range(0x40, 0x60))
PARENT_SEED = bytes(range(0x60, 0x80))
WORKER_NONCE = bytes(range(0x80, 0xa0))
WORKER_SEED = bytes(range(0xa0, 0xc0))

V = {
    "parent_epk": "a7e09d2129568e8aa5cf96ea7fd9e0f881a5d78bf592269562963f7b6f689050",
    "worker_epk": "f8328726fcd5706241688baac26481b52f0aece6fc6bd52619c46a6390d2ba72",
    "worker_hello": "4152554e01010000f20000007b2265706b223a226638333238373236666364353730363234313638386261616332363438316235326630616563653666633662"
                    "6435323631396334366136333930643262613732222c226d61785f7061796c6f6164223a3236383530303939322c226d6f646573223a5b22656e637279707465"
                    "64222c2261757468656e74696361746564225d2c226e6f6e6365223a223830383138323833383438353836383738383839386138623863386438653866393039"
                    "3139323933393439353936393739383939396139623963396439653966222c22726f6c65223a22776f726b6572222c2276657273696f6e73223a5b315d7d",
    "A": {
        "parent_hello": "4152554e01010000e60000007b2265706b223a2261376530396432313239353638653861613563663936656137666439653066383831613564373862663539"
                        "323236393536323936336637623666363839303530222c226d61785f7061796c6f6164223a3236383530303939322c226d6f646573223a5b2261757468656e7469"
                        "6361746564225d2c226e6f6e6365223a223430343134323433343434353436343734383439346134623463346434653466353035313532353335343535353635"
                        "3735383539356135623563356435653566222c22726f6c65223a22706172656e74222c2276657273696f6e73223a5b315d7d",
        "th": "d93efc17f774b1d44c5ba38ad5e18d1f3085291ecd737cb5ff8fd548b5d75a81",
        "proof_P": "f848f865798479406a25dd0531116929704e79ae80cbfbdd85eddcc5887c809f",
        "proof_W": "67a8b4947de673f9a8de6b68ae20d580b2e7cb1b7d7baa15520f986be90bd615",
        "K_p2w": "78930927337548a0b2484e73cc4cc6fba9dbcb95ed6096702345a3424c9d898e",
        "K_w2p": "bdabc60f14fa8a3a98207576485d23329279ed135285642808bd5b31a258f6de",
        "task": "4152554e01100000230000007b2261726773223a5b312c322c335d2c22666e223a226563686f222c226964223a317da083679260086c447e538ba3b2651a0a",
        "result": "4152554e01110000220000007b226964223a312c226f6b223a747275652c2276616c7565223a5b312c322c335d7dc8b9fd335c8979c9f8b5addfa39c5eb2",
    },
    "B": {
        "parent_hello": "4152554e01010000e20000007b2265706b223a2261376530396432313239353638653861613563663936656137666439653066383831613564373862663539"
                        "323236393536323936336637623666363839303530222c226d61785f7061796c6f6164223a3236383530303939322c226d6f646573223a5b22656e637279707465"
                        "64225d2c226e6f6e6365223a2234303431343234333434343534363437343834393461346234633464346534663530353135323533353435353536353735383539"
                        "356135623563356435653566222c22726f6c65223a22706172656e74222c2276657273696f6e73223a5b315d7d",
        "th": "14f2eb0a952caacba374e025cbbe31368cadc27d40fc440fa26f806a6c791adc",
        "proof_P": "5721b5fd42e5110ef4068c92be2a339b27deba7f884c163c626bbb157e77a8df",
        "proof_W": "7a040e67551693a03f7be680423f86c2330978e7d326ee10a1ccb87153c03005",
        "K_p2w": "0171fb650587667b568fa27b2e349cbae5da35603cc26e03948d195b54f87b38",
        "K_w2p": "ddc48f5d2d80d6a60ac3215b114c720cb8cb25bed2055c6e074ff6dd6aa8bf85",
        "task": "4152554e0110000023000000b8d1ab5d8d773fec82313572b4a178760db91cd207e39728f8471fe52c1f80194e492d4da8614425b70c89ecdbe39783945cbb",
    },
}

# PROTOCOL.md section 10, "Later frames" (the C++ test checks the same constants).
LATER = {
    "k_task2_frame_auth": "4152554e0110040029000000210000007b2261726773223a22616263222c22666e223a226563686f222c226964223a327d000102ff16ade4372e3aa1c7daff0a7b9d107420",
    "k_result2_frame_auth": "4152554e0111040028000000200000007b226964223a322c226f6b223a747275652c2276616c7565223a22616263227d000102ff9f27aa542a7259997b941b18dd6d27bf",
    "k_error_frame_auth": "4152554e011200003d0000007b22636f6465223a22756e6578706563746564222c226d657373616765223a22776f726b657220676f74206120726573756c74206d657373616765227d13a4e61a9312b7ccd5e9b0ae5331c046",
    "k_task2_frame_enc": "4152554e0110040029000000013bf422447a4ad97393891a15850cd6144b9127f5225cceb3db4c3fcf3443a6f3f9438735a2d5dd632c8a98d196e58645521c54a572a40574",
    "k_result2_frame_enc": "4152554e0111040028000000f657032408ab14ae712b0769220b0d4b5c5e585f566edb12beca3c30d4a2fc9b7dc4a73087236d19deb197e5fc2da1db99a907ad1a9b075b",
    "k_error_frame_enc": "4152554e011200003d0000008ad6ca4ee5d1285e2ecd2066a941e86b58ddbe800d46a0fdbfb4da641632403b5012636f23a1c20b387e15f7e5c59a9fe25d744333340a0560ecc3648e6316972c7bdb9a340df7f6b388bbd9e4",
    "k_result_frame_enc": "4152554e0111000022000000223eb16e560818dcf9212a19dcad9189bbcfe1fe48c7e105db7a10f3dc6073f344d11db795527511cb74c4cc6cfc9771e37f",
    "k_keepalive_frame_auth": "4152554e01190000020000007b7dcba26a6a04976ea371858428e8be51c0",
    "k_keepalive_frame_enc": "4152554e01190000020000008a89a6ce6a43ed6d08c3a5dc3a63bbe14f0b",
    "k_outcome_frame": "4152554e010300004c0000007b226d657373616765223a227065657227732070726f6f6620646f6573206e6f7420766572696679222c226f6b223a66616c73652c22726561736f6e223a22617574685f6661696c6564227d",
}

# PROTOCOL.md section 10, "The other data messages": a fresh channel with run A's keys, seq from 0 each way.
OTHER = {
    "k_program_frame": "4152554e01150000500000007b22637764223a222f77222c226d6f64756c6573223a5b7b2266696c65223a222f772f7461736b732e7079222c226e616d65223a227461736b73227d5d2c227379735f70617468223a5b222f77225d7d05a1d16e904405c6f27b1c7f60c07433",
    "k_task_batch_frame": "4152554e011700006c0000007b227461736b73223a5b7b226964223a332c22666e223a226563686f222c2261726773223a5b315d7d2c7b226964223a342c22666e223a2265786563222c2261726773223a7b2261726776223a5b226563686f222c226869225d2c2273747265616d223a747275657d7d5d7d1ffdcafe2897575669493de6298a490b",
    "k_shutdown_frame": "4152554e01130000020000007b7d1371d1a629dba990e14102c223d6e1a5",
    "k_worker_info_frame": "4152554e011400002c0000007b2262617463686573223a747275652c22686f7374223a226e6f64653037222c22706964223a34313233347d0765e22cc3e939c0c53747818095b1fc",
    "k_output_frame": "4152554e01160400210000001a0000007b226964223a342c2273747265616d223a227374646f7574227d68690a5a94462eab73d88d2ab6f7e94ad88162",
    "k_result_batch_frame": "4152554e01180000570000007b22726573756c7473223a5b7b226964223a332c226f6b223a747275652c2276616c7565223a5b315d7d2c7b226964223a342c226f6b223a747275652c2276616c7565223a7b22657869745f636f6465223a307d7d5d7d2cd3f0ae372edb05240cc4d28a421629",
}

TASK_BODY = b'{"args":[1,2,3],"fn":"echo","id":1}'
RESULT_BODY = b'{"id":1,"ok":true,"value":[1,2,3]}'
failures = []


def check(name, got, want):
    if isinstance(got, bytes):
        got = got.hex()
    if got != want:
        failures.append(name)
        print("FAIL %s\n  got  %s\n  want %s" % (name, got, want))
    else:
        print("ok   %s" % name)


def run(mode_name, parent_modes):
    v = V[mode_name]
    key = b.SecretKey(RUN_KEY)
    parent_epk, _ = b.keypair(PARENT_SEED)
    worker_epk, worker_sk = b.keypair(WORKER_SEED)
    check("parent epk", parent_epk, V["parent_epk"])
    check("worker epk", worker_epk, V["worker_epk"])
    hello_p = b.make_hello("parent", PARENT_NONCE, parent_epk, parent_modes, b.DEFAULT_MAX_PAYLOAD)
    hello_w = b.make_hello("worker", WORKER_NONCE, worker_epk, ["encrypted", "authenticated"], b.DEFAULT_MAX_PAYLOAD)
    check(mode_name + " parent hello", hello_p, v["parent_hello"])
    check("worker hello", hello_w, V["worker_hello"])
    th = b.sodium().blake2b(hello_p + hello_w, 32)
    check(mode_name + " th", th, v["th"])
    check(mode_name + " proof_P", b.proof_mac(key, b.LABEL_PARENT_PROOF, th), v["proof_P"])
    check(mode_name + " proof_W", b.proof_mac(key, b.LABEL_WORKER_PROOF, th), v["proof_W"])
    import ctypes
    q = ctypes.create_string_buffer(32)
    b.sodium().crypto_scalarmult(q, worker_sk, parent_epk)
    k_p2w, k_w2p = b.session_keys(key, q.raw, parent_epk, worker_epk, th)
    check(mode_name + " K_p2w", k_p2w, v["K_p2w"])
    check(mode_name + " K_w2p", k_w2p, v["K_w2p"])
    return hello_p, k_p2w, k_w2p


def seal(key, mode, seq, ftype, body, attachment=None, flags=0):
    p = b.Protector(key, mode)
    p.seq = seq
    payload = body if attachment is None else struct.pack("<I", len(body)) + body + attachment
    header = b.encode_header(ftype, flags, len(payload))
    sent, tag = p.seal(header, payload)
    return header + sent + tag


def worker_over_pipes(hello_p, proof_p_mac, mode, frames_after):
    """Drives Channel.handshake (worker side) over real pipes; returns what the worker wrote, the channel."""
    p2w_r, p2w_w = os.pipe()
    w2p_r, w2p_w = os.pipe()
    proof_body = b.dump({"mac": proof_p_mac.hex()})
    os.write(p2w_w, hello_p + b.encode_header(b.T_PROOF, 0, len(proof_body)) + proof_body + frames_after)
    os.close(p2w_w)
    ch = b.Channel(p2w_r, w2p_w, b.SecretKey(RUN_KEY), ["encrypted", "authenticated"])
    ch.handshake(time.monotonic() + 5, nonce=WORKER_NONCE, seed=WORKER_SEED)
    os.close(w2p_w)
    written = b""
    while True:
        chunk = os.read(w2p_r, 65536)
        if not chunk:
            break
        written += chunk
    os.close(w2p_r)
    check("%s agreed mode" % mode, ch.mode, mode)
    return written, ch


class _Module:
    """A program module of one function that records its calls."""
    __name__ = "m"

    def __init__(self):
        self.calls = []

    def f(self, *args):
        self.calls.append(args)
        return len(self.calls)


class _Held:
    """Stands in for HeldResults: keeps what would be sent."""

    def __init__(self):
        self.results = []

    def task_started(self):
        pass

    def task_ended(self):
        pass

    def add(self, task_id, body, attachment):
        self.results.append(task_id)

    def send(self):
        pass


def check_batch_refusals():
    """PROTOCOL.md sections 3 and 6: a task_batch is checked whole before any of its tasks runs; its format is
    checked (malformed) before anything else about it."""
    module = _Module()
    functions = b.Functions({"m": module})
    good = b'{"tasks":[{"id":1,"fn":"f","args":[1]},{"id":2,"fn":"f","args":[2]}]}'
    held = _Held()
    b.run_batch(functions, held, good, 0, lambda: None)
    check("a good batch runs every task", str(held.results), "[1, 2]")
    for name, payload in (("a bad last entry", b'{"tasks":[{"id":3,"fn":"f"},{"id":4}]}'),
                          ("an entry that is no object", b'{"tasks":[{"id":5,"fn":"f"},7]}'),
                          ("an id of the wrong type", b'{"tasks":[{"id":6,"fn":"f"},{"id":"7","fn":"f"}]}')):
        calls, held = len(module.calls), _Held()
        try:
            b.run_batch(functions, held, payload, 0, lambda: None)
            failures.append(name + " accepted")
        except b.ProtocolError as e:
            check(name + ": malformed", e.code, "malformed")
            check(name + ": names the entry", str("task_batch tasks[1]" in e.message), "True")
        check(name + ": none of the batch ran", str((len(module.calls) - calls, held.results)), "(0, [])")
    try:
        b.run_batch(functions, _Held(), good, 1, lambda: None)  # CBOR flag
        failures.append("a CBOR task_batch accepted")
    except b.ProtocolError as e:
        check("a CBOR task_batch: malformed", e.code, "malformed")


def main():
    hello_a, p2w_a, w2p_a = run("A", ["authenticated"])
    hello_b, p2w_b, w2p_b = run("B", ["encrypted"])
    check("A task seq 0", seal(p2w_a, "authenticated", 0, b.T_TASK, TASK_BODY), V["A"]["task"])
    check("A result seq 0", seal(w2p_a, "authenticated", 0, b.T_RESULT, RESULT_BODY), V["A"]["result"])
    check("B task seq 0", seal(p2w_b, "encrypted", 0, b.T_TASK, TASK_BODY), V["B"]["task"])

    # The worker's side of both handshakes over real pipes: its bytes are the documented hello and proof, and
    # it opens the documented task frame with the keys it derived.
    for name, hello_p, mode in (("A", hello_a, "authenticated"), ("B", hello_b, "encrypted")):
        proof_p = bytes.fromhex(V[name]["proof_P"])
        written, ch = worker_over_pipes(hello_p, proof_p, mode, bytes.fromhex(V[name]["task"]))
        proof_w = b.dump({"mac": V[name]["proof_W"]})
        check(name + " worker's bytes", written, V["worker_hello"] + (b.encode_header(b.T_PROOF, 0, len(proof_w)) + proof_w).hex())
        got = ch.receive()
        check(name + " task opened", got[2], TASK_BODY.hex())

    # A parent proof that does not verify is refused with an outcome.
    try:
        worker_over_pipes(hello_a, bytes(32), "authenticated", b"")
        failures.append("wrong proof accepted")
    except b.ProtocolError as e:
        check("wrong proof refused", e.code, "auth_failed")

    check("depth 64 accepted", str(b.check_depth(b"[" * 64 + b"]" * 64)), "None")
    try:
        b.check_depth(b'{"a":"[[[["}' + b"[" * 65 + b"]" * 65)
        failures.append("depth 65 accepted")
    except b.ProtocolError as e:
        check("depth 65 refused", e.code, "json_too_deep")
    check("brackets in strings do not count", str(b.check_depth(b'["' + b"[" * 100 + b'\\"]"]')), "None")

    later = LATER
    att = bytes([0, 1, 2, 255])
    task2 = b'{"args":"abc","fn":"echo","id":2}'
    result2 = b'{"id":2,"ok":true,"value":"abc"}'
    error = b'{"code":"unexpected","message":"worker got a result message"}'
    for name, p2w, w2p, mode in (("auth", p2w_a, w2p_a, "authenticated"), ("enc", p2w_b, w2p_b, "encrypted")):
        check("task2 " + name, seal(p2w, mode, 1, b.T_TASK, task2, att, 4), later["k_task2_frame_" + name])
        check("result2 " + name, seal(w2p, mode, 1, b.T_RESULT, result2, att, 4), later["k_result2_frame_" + name])
        check("error " + name, seal(w2p, mode, 2, b.T_ERROR, error), later["k_error_frame_" + name])
        check("keepalive " + name, seal(w2p, mode, 2, b.T_KEEPALIVE, b.KEEPALIVE_BODY), later["k_keepalive_frame_" + name])
    check("result enc seq 0", seal(w2p_b, "encrypted", 0, b.T_RESULT, RESULT_BODY), later["k_result_frame_enc"])
    check("outcome", b.outcome_frame("auth_failed", "peer's proof does not verify"), later["k_outcome_frame"])
    # And the receiving side opens them, in order (seq 0 then 1).
    rx = b.Protector(p2w_b, "encrypted")
    f0 = bytes.fromhex(V["B"]["task"])
    rx.open(f0[:12], f0[12:-16], f0[-16:])
    f1 = bytes.fromhex(later["k_task2_frame_enc"])
    check("task2 enc opened", rx.open(f1[:12], f1[12:-16], f1[-16:]), (struct.pack("<I", len(task2)) + task2 + att).hex())

    # The other data messages: the parent's program, task_batch and shutdown, the worker's worker_info, output
    # (with an attachment) and result_batch, as the bootstrap seals them; and the worker opens the parent's.
    program = b'{"cwd":"/w","modules":[{"file":"/w/tasks.py","name":"tasks"}],"sys_path":["/w"]}'
    batch = b'{"tasks":[{"id":3,"fn":"echo","args":[1]},{"id":4,"fn":"exec","args":{"argv":["echo","hi"],"stream":true}}]}'
    info = b.dump({"batches": True, "host": "node07", "pid": 41234})
    output = b.dump({"id": 4, "stream": "stdout"})
    results = b'{"results":[{"id":3,"ok":true,"value":[1]},{"id":4,"ok":true,"value":{"exit_code":0}}]}'
    auth = "authenticated"
    check("program", seal(p2w_a, auth, 0, b.T_PROGRAM, program), OTHER["k_program_frame"])
    check("task_batch", seal(p2w_a, auth, 1, b.T_TASK_BATCH, batch), OTHER["k_task_batch_frame"])
    check("shutdown", seal(p2w_a, auth, 2, b.T_SHUTDOWN, b"{}"), OTHER["k_shutdown_frame"])
    check("worker_info", seal(w2p_a, auth, 0, b.T_WORKER_INFO, info), OTHER["k_worker_info_frame"])
    check("output", seal(w2p_a, auth, 1, b.T_OUTPUT, output, b"hi\n", 4), OTHER["k_output_frame"])
    check("result_batch", seal(w2p_a, auth, 2, b.T_RESULT_BATCH, results), OTHER["k_result_batch_frame"])
    rx = b.Protector(p2w_a, auth)
    for name, body in (("k_program_frame", program), ("k_task_batch_frame", batch), ("k_shutdown_frame", b"{}")):
        f = bytes.fromhex(OTHER[name])
        check(name + " opened", rx.open(f[:12], f[12:-16], f[-16:]), body.hex())

    check_batch_refusals()

    if failures:
        print("%d FAILED: %s" % (len(failures), ", ".join(failures)))
        return 1
    print("all vectors match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
