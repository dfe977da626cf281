"""authrun's Python worker: the one file an interpreter runs before its parent has proven the run key.

Run as `python3 -I -S _bootstrap.py [options]` (authrun run --python does). Order of events, and the point of
it: make the process undumpable, get the key, complete the mutual handshake of protocol/PROTOCOL.md, and
only then receive the program (the modules to import, sys.path additions, the directory) over the
authenticated channel, import it and serve tasks. Nothing of the user's code is imported, and no file of
it is named on the command line, before the parent has proven the key. Standard library only; the crypto
is libsodium through ctypes, the library the C++ side uses.

Exit status: 0 clean end, 2 usage (or this file is not the one the runner expects), 3 key or handshake
failure, 4 protocol error after the handshake, 5 the program failed to load.
"""

import ctypes
import errno
import fcntl
import json
import os
import re
import select
import signal
import socket
import stat
import struct
import sys
import threading
import time

# What this worker does alike with authrun-python: loading the program, finding a function, values and errors.
# authrun gives the interpreter this file with _worker_core.py's text in place of the next line.
from authrun._worker_core import *  # noqa: E402,F401,F403 (authrun: _worker_core.py here)

# ---- Constants (protocol/PROTOCOL.md) ----

MAGIC = b"ARUN"
VERSION = 1
HEADER = struct.Struct("<4sBBHI")
TAG_SIZE = 16
PRE_AUTH_MAX_PAYLOAD = 512
DEFAULT_MAX_PAYLOAD = 256 * 1024 * 1024 + 64 * 1024
ABSOLUTE_MAX_PAYLOAD = 0xFFFFFFF0
JSON_MAX_DEPTH = 64
FLAG_FORMAT_MASK = 0x0003
FLAG_ATTACHMENT = 0x0004
T_HELLO, T_PROOF, T_OUTCOME = 1, 2, 3
T_TASK, T_RESULT, T_ERROR, T_SHUTDOWN, T_WORKER_INFO, T_PROGRAM = 16, 17, 18, 19, 20, 21
T_OUTPUT, T_TASK_BATCH, T_RESULT_BATCH, T_KEEPALIVE = 22, 23, 24, 25
TYPE_NAMES = {1: "hello", 2: "proof", 3: "outcome", 16: "task", 17: "result", 18: "error", 19: "shutdown",
              20: "worker_info", 21: "program", 23: "task_batch", 24: "result_batch", 25: "keepalive"}
KEEPALIVE_BODY = b"{}"
KEEPALIVE_MS = 250  # while a task runs, a frame at least this often (worker_info's keepalive_ms; PROTOCOL.md)
MAX_BATCH_ENTRIES = 4096
MAX_HOLD_SECONDS = 0.001  # a finished result of a batch waits at most this long (PROTOCOL.md section 3)
MODES = ("authenticated", "encrypted", "insecure-measurement-only")
KEY_REQUEST = b"ARUNKEY?"
EXIT_USAGE, EXIT_KEY, EXIT_PROTOCOL, EXIT_PROGRAM = 2, 3, 4, 5
# This file, or None when the runner gave its text on the command line (-c: the bytes it read and hashed).
_HERE = os.path.abspath(__file__) if "__file__" in globals() else None


class ProtocolError(Exception):
    """A failure with an error code name (PROTOCOL.md section 7) and a message naming what and where."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


# ---- libsodium through ctypes ----

def _load_sodium():
    names = ["libsodium.so.23", "libsodium.so.26", "libsodium.so"]
    if sys.platform != "linux":
        from ctypes import util  # slow to import (shutil, re): only where the names above do not apply
        found = util.find_library("sodium")
        if found:
            names.append(found)
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        if lib.sodium_init() >= 0:
            return lib
    raise ProtocolError("key_invalid", "libsodium not found (tried " + ", ".join(names) +
                        "; install libsodium23)")


class Sodium:
    """The few libsodium functions the protocol needs, with argument types set once."""

    def __init__(self):
        lib = self.lib = _load_sodium()
        P, S, U64 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_ulonglong

        def fn(name, *args):
            f = getattr(lib, name)
            f.argtypes = list(args)
            f.restype = ctypes.c_int
            return f

        self.randombytes_buf = fn("randombytes_buf", ctypes.c_void_p, S)
        self.crypto_kx_keypair = fn("crypto_kx_keypair", ctypes.c_void_p, ctypes.c_void_p)
        self.crypto_kx_seed_keypair = fn("crypto_kx_seed_keypair", ctypes.c_void_p, ctypes.c_void_p, P)
        self.crypto_scalarmult = fn("crypto_scalarmult", ctypes.c_void_p, ctypes.c_void_p, P)
        self.crypto_generichash = fn("crypto_generichash", ctypes.c_void_p, S, P, U64, P, S)
        self.crypto_auth = fn("crypto_auth", ctypes.c_void_p, P, U64, ctypes.c_void_p)
        self.crypto_auth_verify = fn("crypto_auth_verify", P, P, U64, ctypes.c_void_p)
        self.stream = fn("crypto_stream_chacha20_ietf", ctypes.c_void_p, U64, P, ctypes.c_void_p)
        self.onetimeauth = fn("crypto_onetimeauth", ctypes.c_void_p, P, U64, ctypes.c_void_p)
        self.onetimeauth_verify = fn("crypto_onetimeauth_verify", P, P, U64, ctypes.c_void_p)
        self.aead_encrypt = fn("crypto_aead_chacha20poly1305_ietf_encrypt_detached", ctypes.c_void_p,
                               ctypes.c_void_p, ctypes.c_void_p, P, U64, P, U64, ctypes.c_void_p, P,
                               ctypes.c_void_p)
        self.aead_decrypt = fn("crypto_aead_chacha20poly1305_ietf_decrypt_detached", ctypes.c_void_p,
                               ctypes.c_void_p, P, U64, P, P, U64, P, ctypes.c_void_p)
        self.memzero = fn("sodium_memzero", ctypes.c_void_p, S)
        self.mlock = fn("sodium_mlock", ctypes.c_void_p, S)

    def random(self, n):
        buf = ctypes.create_string_buffer(n)
        self.randombytes_buf(buf, n)
        return buf.raw

    def blake2b(self, data, size=32, key=None):
        out = ctypes.create_string_buffer(size)
        self.crypto_generichash(out, size, data, len(data), key, len(key) if key else 0)
        return out.raw


_sodium = None


def sodium():
    global _sodium
    if _sodium is None:
        _sodium = Sodium()
    return _sodium


class SecretKey:
    """32 secret bytes in locked ctypes memory, wiped by wipe() (the protocol's run key)."""

    def __init__(self, data=None):
        self.buf = ctypes.create_string_buffer(32)
        sodium().mlock(self.buf, 32)
        if data is not None:
            ctypes.memmove(self.buf, data, 32)

    def wipe(self):
        sodium().memzero(self.buf, 32)


# ---- Frames ----

def encode_header(ftype, flags, length):
    return HEADER.pack(MAGIC, VERSION, ftype, flags, length)


def decode_header(data, offset, limit):
    """Checks a 12-byte header in PROTOCOL.md section 2's order; returns (type, flags, length)."""
    magic, version, ftype, flags, length = HEADER.unpack_from(data, offset)
    if magic != MAGIC:
        raise ProtocolError("bad_magic", "frame header does not start with ARUN")
    if version != VERSION:
        raise ProtocolError("bad_version", "frame version %d (this worker speaks 1)" % version)
    if flags & ~0x0007 or (flags & FLAG_FORMAT_MASK) == 3 or (ftype < 16 and flags):
        raise ProtocolError("bad_flags", "frame flags 0x%04x are not valid for type %d" % (flags, ftype))
    if length > limit:
        raise ProtocolError("frame_too_large", "frame of %d bytes exceeds the limit of %d" % (length, limit))
    return ftype, flags, length


def dump(obj):
    """Compact JSON with sorted keys, as the reference encoder writes it (PROTOCOL.md section 3)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False,
                      allow_nan=False).encode("utf-8", "replace")


_TOKENS = re.compile(rb'["\\\[\]{}]')


def check_depth(text, limit=JSON_MAX_DEPTH):
    """Raises json_too_deep if arrays and objects in JSON text nest deeper than `limit` (strings skipped)."""
    if text.count(b"[") + text.count(b"{") <= limit:
        return
    depth, in_string, skip = 0, False, -1
    for m in _TOKENS.finditer(text):
        i, c = m.start(), text[m.start()]
        if i == skip:
            continue
        if in_string:
            if c == 0x5C:
                skip = i + 1
            elif c == 0x22:
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                raise ProtocolError("json_too_deep", "JSON nested deeper than %d levels" % limit)
        elif c in (0x5D, 0x7D):
            depth -= 1


def parse_body(ftype, body):
    name = TYPE_NAMES.get(ftype, str(ftype))
    check_depth(body)
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise ProtocolError("malformed", "%s body: not valid JSON: %s" % (name, e))
    if not isinstance(obj, dict):
        raise ProtocolError("malformed", "%s body must be a JSON object" % name)
    return obj


def field(obj, name, kind, what):
    if name not in obj:
        raise ProtocolError("malformed", "%s: field '%s' is missing" % (what, name))
    value = obj[name]
    ok = {"string": lambda v: isinstance(v, str),
          "uint": lambda v: type(v) is int and 0 <= v < 1 << 64,
          "bool": lambda v: type(v) is bool,
          "array": lambda v: isinstance(v, list),
          "object": lambda v: isinstance(v, dict)}[kind](value)
    if not ok:
        raise ProtocolError("malformed", "%s: field '%s' must be a%s %s" % (what, name, "n" if kind[0] in "aou" else "",
                                                                           kind))
    return value


def hex32(obj, name, what):
    text = field(obj, name, "string", what)
    try:
        raw = bytes.fromhex(text) if len(text) == 64 else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ProtocolError("malformed", "%s: field '%s' must be 64 hex digits" % (what, name))
    return raw


class Stream:
    """Frames from a blocking fd: whole frames out of one buffer, reading in large chunks."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = bytearray()
        self.pos = 0
        self.limit = PRE_AUTH_MAX_PAYLOAD
        self.tags = False
        self.eof = False

    def fill(self, deadline=None, need=0):
        """Reads what is there (at least one byte, blocking): 64 KiB at a time, more when a frame needs more.
        (A read of a fixed large size would allocate and free that much per call: a mmap/munmap per task.)"""
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise ProtocolError("timeout", "the handshake did not complete in time")
        if self.pos and self.pos == len(self.buf):
            self.buf.clear()
            self.pos = 0
        elif self.pos > 1 << 20:
            del self.buf[:self.pos]
            self.pos = 0
        chunk = os.read(self.fd, min(max(65536, need), 16 << 20))
        if not chunk:
            self.eof = True
        self.buf += chunk

    def next_frame(self, deadline=None):
        """(type, flags, header bytes, payload bytes, tag bytes), or None at a clean end of input."""
        while True:
            have = len(self.buf) - self.pos
            size = 12
            if have >= 12:
                ftype, flags, length = decode_header(self.buf, self.pos, self.limit)
                size = 12 + length + (TAG_SIZE if self.tags and ftype >= 16 else 0)
                if have >= size:
                    p = self.pos
                    self.pos += size
                    b = self.buf
                    return (ftype, flags, bytes(b[p:p + 12]), bytes(b[p + 12:p + 12 + length]),
                            bytes(b[p + 12 + length:p + size]))
            if self.eof:
                if have:
                    raise ProtocolError("truncated", "peer closed the channel inside a frame")
                return None
            self.fill(deadline, size - have)

    def buffered(self):
        return len(self.buf) - self.pos > 0


def write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# ---- Frame protection (PROTOCOL.md section 5) ----

class Protector:
    """One direction's sealing or opening: its key, mode and the implicit sequence number."""

    def __init__(self, key, mode):
        self.s = sodium()
        self.key = ctypes.create_string_buffer(key, 32)
        self.mode = mode
        self.seq = 0
        self.otk = ctypes.create_string_buffer(32)
        self.tag = ctypes.create_string_buffer(16)

    def _nonce(self):
        n = struct.pack("<QI", self.seq, 0)
        self.seq += 1
        return n

    def seal(self, header, payload):
        """Returns (payload as sent, tag)."""
        if self.mode == "insecure-measurement-only":
            return payload, b""
        nonce = self._nonce()
        if self.mode == "authenticated":
            self.s.stream(self.otk, 32, nonce, self.key)
            msg = header + payload
            self.s.onetimeauth(self.tag, msg, len(msg), self.otk)
            return payload, self.tag.raw
        out = ctypes.create_string_buffer(len(payload) or 1)
        self.s.aead_encrypt(out, self.tag, None, payload, len(payload), header, 12, None, nonce, self.key)
        return out.raw[:len(payload)], self.tag.raw

    def open(self, header, payload, tag):
        """Returns the plaintext payload; raises bad_mac."""
        if self.mode == "insecure-measurement-only":
            return payload
        seq = self.seq
        nonce = self._nonce()
        if self.mode == "authenticated":
            self.s.stream(self.otk, 32, nonce, self.key)
            msg = header + payload
            if self.s.onetimeauth_verify(tag, msg, len(msg), self.otk) == 0:
                return payload
        else:
            out = ctypes.create_string_buffer(len(payload) or 1)
            if self.s.aead_decrypt(out, None, payload, len(payload), tag, header, 12, nonce, self.key) == 0:
                return out.raw[:len(payload)]
        raise ProtocolError("bad_mac", "frame %d failed authentication (altered, injected, dropped, reordered or "
                                       "replayed)" % seq)

    def wipe(self):
        self.s.memzero(self.key, 32)
        self.s.memzero(self.otk, 32)


# ---- Handshake (PROTOCOL.md section 4), worker side ----

LABEL_PARENT_PROOF = b"authrun v1 parent proof"
LABEL_WORKER_PROOF = b"authrun v1 worker proof"
LABEL_P2W = b"authrun v1 parent->worker"
LABEL_W2P = b"authrun v1 worker->parent"


def proof_mac(key, label, th):
    out = ctypes.create_string_buffer(32)
    msg = label + th
    sodium().crypto_auth(out, msg, len(msg), key.buf)
    return out.raw


def session_keys(key, q, epk_parent, epk_worker, th):
    """(K_p2w, K_w2p) from the X25519 result, both public keys and the transcript hash."""
    s = sodium()
    h = s.blake2b(q + epk_parent + epk_worker, 64)
    kx_w2p, kx_p2w = h[:32], h[32:]
    k_p2w = s.blake2b(LABEL_P2W + kx_p2w + th, 32, key.buf)
    k_w2p = s.blake2b(LABEL_W2P + kx_w2p + th, 32, key.buf)
    return k_p2w, k_w2p


def keypair(seed=None):
    s = sodium()
    pk, sk = ctypes.create_string_buffer(32), ctypes.create_string_buffer(32)
    if seed is None:
        s.crypto_kx_keypair(pk, sk)
    else:
        s.crypto_kx_seed_keypair(pk, sk, seed)
    return pk.raw, sk


def make_hello(role, nonce, epk, modes, max_payload):
    body = dump({"epk": epk.hex(), "max_payload": max_payload, "modes": list(modes), "nonce": nonce.hex(),
                 "role": role, "versions": [VERSION]})
    return encode_header(T_HELLO, 0, len(body)) + body


def outcome_frame(code, message):
    """An outcome (type 3) that fits the peer's 512-byte pre-auth limit however the message escapes."""
    message = message[:200]
    while True:
        body = dump({"message": message, "ok": False, "reason": code})
        if len(body) <= PRE_AUTH_MAX_PAYLOAD:
            return encode_header(T_OUTCOME, 0, len(body)) + body
        message = message[:len(message) // 2]


class Channel:
    """The worker's end of a channel: handshake, then protected messages over two fds."""

    def __init__(self, in_fd, out_fd, key, modes, max_payload=DEFAULT_MAX_PAYLOAD):
        self.stream = Stream(in_fd)
        self.out_fd = out_fd
        self.key = key
        self.modes = modes
        self.max_payload = max_payload
        self.tx = self.rx = None
        self.peer_max_payload = 0
        self.mode = None

    def handshake(self, deadline, nonce=None, seed=None):
        """Runs the worker's side of the handshake (PROTOCOL.md 4.2). `nonce` and `seed` only for test vectors."""
        s = sodium()
        nonce = nonce or s.random(32)
        epk, esk = keypair(seed)
        hello_w = make_hello("worker", nonce, epk, self.modes, self.max_payload)
        try:
            write_all(self.out_fd, hello_w)
            frame = self.stream.next_frame(deadline)
            if frame is None:
                raise ProtocolError("eof", "peer closed the channel during the handshake")
            ftype, _, header, payload, _ = frame
            hello_p = header + payload
            self._expect(ftype, payload, T_HELLO)
            h = parse_body(ftype, payload)
            role = field(h, "role", "string", "hello")
            versions = field(h, "versions", "array", "hello")
            peer_nonce = hex32(h, "nonce", "hello")
            peer_epk = hex32(h, "epk", "hello")
            modes = field(h, "modes", "array", "hello")
            max_payload = field(h, "max_payload", "uint", "hello")
            if role not in ("parent", "worker"):
                raise ProtocolError("malformed", "hello: field 'role' must be \"parent\" or \"worker\"")
            if not versions or len(versions) > 16 or any(type(v) is not int or not 0 <= v <= 2**31 - 1 for v in versions):
                raise ProtocolError("malformed", "hello: field 'versions' must hold 1 to 16 integers from 0 to 2147483647")
            if not modes or len(modes) > 8 or any(m not in MODES for m in modes):
                raise ProtocolError("malformed", "hello: field 'modes' must hold 1 to 8 known channel modes")
            if max_payload > ABSOLUTE_MAX_PAYLOAD:
                raise ProtocolError("malformed", "hello: field 'max_payload' is too large")
            if role != "parent":
                raise ProtocolError("auth_failed", "peer's hello claims role worker, the same as this side (a "
                                                   "reflected hello?)")
            if peer_nonce == nonce or peer_epk == epk:
                raise ProtocolError("auth_failed", "peer's hello repeats this side's nonce or key (a reflected hello)")
            if VERSION not in versions:
                raise ProtocolError("bad_version", "no common protocol version: this side speaks 1")
            agreed = next((m for m in modes if m in self.modes), None)
            if agreed is None:
                raise ProtocolError("mode_refused", "no channel mode both sides accept (parent asked for %s)" %
                                    ", ".join(modes))
            q = ctypes.create_string_buffer(32)
            bad = s.crypto_scalarmult(q, esk, peer_epk)
            s.memzero(esk, 32)
            if bad != 0 or q.raw == bytes(32):
                raise ProtocolError("auth_failed", "peer's ephemeral public key is invalid")
            th = s.blake2b(hello_p + hello_w, 32)
            k_p2w, k_w2p = session_keys(self.key, q.raw, peer_epk, epk, th)
            s.memzero(q, 32)
            mine = dump({"mac": proof_mac(self.key, LABEL_WORKER_PROOF, th).hex()})
            write_all(self.out_fd, encode_header(T_PROOF, 0, len(mine)) + mine)
            frame = self.stream.next_frame(deadline)
            if frame is None:
                raise ProtocolError("eof", "peer closed the channel during the handshake")
            ftype, _, header, payload, _ = frame
            self._expect(ftype, payload, T_PROOF)
            mac = hex32(parse_body(ftype, payload), "mac", "proof")
            if s.crypto_auth_verify(mac, LABEL_PARENT_PROOF + th, len(LABEL_PARENT_PROOF) + 32, self.key.buf) != 0:
                raise ProtocolError("auth_failed", "peer's proof does not verify: it does not hold this run key, "
                                                   "or a hello was altered")
        except ProtocolError as e:
            if e.code not in ("io", "eof", "truncated", "timeout", "peer_refused"):
                try:
                    write_all(self.out_fd, outcome_frame(e.code, e.message))
                except OSError:
                    pass
            raise
        except OSError as e:
            raise ProtocolError("io", "handshake: %s" % e.strerror)
        self.mode = agreed
        self.peer_max_payload = max_payload
        self.tx = Protector(k_w2p, agreed)
        self.rx = Protector(k_p2w, agreed)
        self.stream.limit = self.max_payload
        self.stream.tags = agreed != "insecure-measurement-only"

    def _expect(self, ftype, payload, wanted):
        if ftype == T_OUTCOME:
            o = parse_body(ftype, payload)
            raise ProtocolError("peer_refused", "peer refused the handshake: %s: %s" % (o.get("reason"), o.get("message")))
        if ftype not in TYPE_NAMES:
            raise ProtocolError("unexpected", "unknown message type %d" % ftype)
        if ftype != wanted:
            raise ProtocolError("unexpected", "expected %s, got %s" % (TYPE_NAMES[wanted], TYPE_NAMES[ftype]))

    def frame(self, ftype, body, attachment=None):
        """The bytes of a sealed data frame (nothing is written)."""
        flags = 0
        payload = body
        if attachment is not None:
            flags = FLAG_ATTACHMENT
            payload = struct.pack("<I", len(body)) + body + attachment
        if len(payload) > self.peer_max_payload:
            raise ProtocolError("frame_too_large", "%s of %d bytes exceeds the peer's limit of %d" %
                                (TYPE_NAMES[ftype], len(payload), self.peer_max_payload))
        header = encode_header(ftype, flags, len(payload))
        sent, tag = self.tx.seal(header, payload)
        return header + sent + tag

    def receive(self):
        """The next data message as (type, flags, payload), None at a clean end of input."""
        got = self.stream.next_frame()
        if got is None:
            return None
        ftype, flags, header, payload, tag = got
        if ftype < 16:
            raise ProtocolError("unexpected", "unexpected %s after the handshake" % TYPE_NAMES.get(ftype, ftype))
        payload = self.rx.open(header, payload, tag)
        if ftype not in TYPE_NAMES:
            raise ProtocolError("unexpected", "unknown message type %d" % ftype)
        if ftype == T_ERROR:
            e = parse_body(ftype, payload)
            raise ProtocolError("peer_refused", "peer closed the channel: %s: %s" % (e.get("code"), e.get("message")))
        return ftype, flags, payload

    def fail(self, error, pending=b""):
        """Sends what is queued and then an error message (PROTOCOL.md section 7), best effort."""
        if error.code in ("io", "eof", "truncated", "timeout", "peer_refused"):
            return
        try:
            body = dump({"code": error.code, "message": error.message[:1000]})
            write_all(self.out_fd, pending + self.frame(T_ERROR, body))
        except (OSError, ProtocolError):
            pass


# ---- The key (PROTOCOL.md section 9) ----

def _read_exact(fd, n, deadline, what):
    got = b""
    while len(got) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise ProtocolError("key_invalid", "%s: timed out after %d of %d bytes" % (what, len(got), n))
        chunk = os.read(fd, n - len(got))
        if not chunk:
            raise ProtocolError("key_invalid", "%s: end of input after %d of %d bytes (was the key read by another "
                                               "process?)" % (what, len(got), n))
        got += chunk
    return got


def _no_more(fd, what):
    if select.select([fd], [], [], 0)[0] and os.read(fd, 1):
        raise ProtocolError("key_invalid", "%s: more than 32 bytes" % what)


def _read_key_and_page(sock, deadline):
    """The 32 key bytes from the key socket and the fd passed with them (the progress page, PROTOCOL.md section
    9.1), or None: exactly one fd is kept; any other number, or a truncated control message, keeps none."""
    got, fds, refused = b"", [], False
    while len(got) < 32:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise ProtocolError("key_invalid", "key socket: timed out after %d of 32 bytes" % len(got))
        chunk, ancillary, msg_flags, _ = sock.recvmsg(32 - len(got), socket.CMSG_SPACE(4), socket.MSG_CMSG_CLOEXEC)
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                passed = list(struct.unpack("%di" % (len(data) // 4), data[:len(data) - len(data) % 4]))
                refused = refused or len(passed) != 1 or bool(fds)
                fds.extend(passed)
        if msg_flags & socket.MSG_CTRUNC:
            refused = True
        if not chunk:
            for f in fds:
                os.close(f)
            raise ProtocolError("key_invalid", "key socket: end of input after %d of 32 bytes (was the key read by "
                                               "another process?)" % len(got))
        got += chunk
    if refused:
        for f in fds:
            os.close(f)
        return got, None
    return got, (fds[0] if fds else None)


class ProgressPage:
    """The runner's progress page, mapped (PROTOCOL.md section 9.1): the id of the task begun last at byte 8,
    1 at byte 16 while it runs. After this process dies the runner reads which task was running."""

    def __init__(self, fd):
        import mmap
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size < 64:
                raise ValueError("not a file of 64 bytes")
            if not fcntl.fcntl(fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_SHRINK:
                raise ValueError("not a memfd sealed against shrinking")
            self.map = mmap.mmap(fd, 64, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        if hasattr(mmap, "MADV_DONTFORK"):
            self.map.madvise(mmap.MADV_DONTFORK)  # a task's fork must not mark it
        self.words = memoryview(self.map).cast("Q")  # little-endian on every Linux target; 8-byte stores
        self.words[2] = 0
        self.words[0] = 0x313047504E555241  # b"ARUNPG01": the runner now believes the page

    def begin(self, task_id):
        self.words[1] = task_id
        self.words[2] = 1

    def end(self):
        self.words[2] = 0


PROGRESS = None  # the ProgressPage, when the runner handed one with the key


def _map_progress_page(fd):
    global PROGRESS
    try:
        PROGRESS = ProgressPage(fd)
    except (OSError, ValueError) as e:
        _log("progress page: %s (going on without it)" % e)


def key_by_request(fd, deadline):
    """Key hand-over v2 (PROTOCOL.md section 9): asks on the rendezvous socket `fd` with one sendmsg carrying
    "ARUNKEY?", our credentials (SCM_CREDENTIALS) and a fresh socket (SCM_RIGHTS); the runner checks who asks
    (pid, uid, that socket's peer, that nothing traces us, that we are undumpable) and writes the 32 key bytes
    into that socket, then closes it. The rendezvous itself never carries a secret. Call only once undumpable
    and untraced: the fresh socket must not exist before."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        rendezvous = socket.socket(fileno=fd)
        try:
            creds = struct.pack("iII", os.getpid(), os.geteuid(), os.getegid())
            rendezvous.sendmsg([KEY_REQUEST], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds),
                                               (socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", theirs.fileno()))])
        except OSError as e:
            raise ProtocolError("key_invalid", "key request on fd %d: %s" % (fd, e.strerror))
        finally:
            rendezvous.close()
        theirs.close()
        raw, page_fd = _read_key_and_page(mine, deadline)
        key = SecretKey(raw)
        if page_fd is not None:
            _map_progress_page(page_fd)
        left = max(0.0, deadline - time.monotonic())
        if not select.select([mine], [], [], left)[0]:
            raise ProtocolError("key_invalid", "key socket: the runner did not close it after the key")
        if mine.recv(1):
            raise ProtocolError("key_invalid", "key socket: more than 32 bytes")
        return key
    finally:
        mine.close()
        theirs.close()


def check_not_traced(allow_ptrace):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("TracerPid:"):
                tracer = int(line.split()[1])
                if tracer and not allow_ptrace:
                    raise ProtocolError("key_invalid", "refusing to run: traced by pid %d (--allow-ptrace to permit)" %
                                        tracer)


def key_from_file(path):
    def fail(why):
        return ProtocolError("key_invalid", "key file %s: %s" % (path, why))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as e:
        raise fail(e.strerror)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise fail("not a regular file")
        if st.st_uid != os.geteuid():
            raise fail("owned by uid %d, not by this user (uid %d)" % (st.st_uid, os.geteuid()))
        if st.st_mode & 0o077:
            raise fail("mode is %04o; it must not be readable by group or others (chmod 600 %s)" %
                       (st.st_mode & 0o7777, path))
        text = b""
        while len(text) < 66:
            chunk = os.read(fd, 66 - len(text))
            if not chunk:
                break
            text += chunk
    finally:
        os.close(fd)
    if text.endswith(b"\n"):
        text = text[:-1]
    raw = b""
    if len(text) == 64:
        try:
            raw = bytes.fromhex(text.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            raw = b""
    if len(raw) != 32:
        raise fail("expected 64 hex digits and an optional newline (make one with 'authrun keygen')")
    return SecretKey(raw)


def key_from_stdin(in_fd, out_fd, deadline):
    try:
        write_all(out_fd, KEY_REQUEST)
    except OSError as e:
        raise ProtocolError("key_invalid", "asking for the key on stdout: %s" % e.strerror)
    return SecretKey(_read_exact(in_fd, 32, deadline, "key on stdin"))


def acquire_key(opts, in_fd, out_fd, deadline):
    """The run key as the options say: a key file, the head of stdin, or fd 3 as the runner hands it over."""
    if opts.key_file:
        return key_from_file(opts.key_file)
    if opts.key_stdin:
        return key_from_stdin(in_fd, out_fd, deadline)
    return key_by_request(opts.key_fd, deadline)


# ---- The program and the tasks ----

def load_program(program):
    """Imports the program's modules; returns {name: module}. Raises program_failed naming module, file, line."""
    what = "program"
    modules = field(program, "modules", "array", what)
    extra = program.get("sys_path", [])
    cwd = program.get("cwd")
    if not isinstance(extra, list) or not all(isinstance(p, str) for p in extra):
        raise ProtocolError("malformed", "program: field 'sys_path' must be an array of strings")
    if cwd is not None and not isinstance(cwd, str):
        raise ProtocolError("malformed", "program: field 'cwd' must be a string")
    for i, m in enumerate(modules):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or ("file" in m and not isinstance(m["file"], str)):
            raise ProtocolError("malformed", "program: modules[%d] must be an object with a string 'name' (and 'file')" % i)
    try:
        _enter_program(program)
        return _load_modules(modules, _HERE)
    except _Failed as e:
        raise ProtocolError("program_failed", str(e))


class Functions:
    """Finds a task's `fn` among the program's modules: "module.function", or "function" with one module."""

    def __init__(self, modules):
        self.modules = modules
        self.cache = {}

    def find(self, fn):
        """The callable; raises LookupError (unknown_function) or TypeError (not_callable)."""
        f = self.cache.get(fn)
        if f is None:
            f, why = _find_function(self.modules, fn)
            if f is None:
                raise (LookupError if why[0] == "unknown_function" else TypeError)(why[1])
            self.cache[fn] = f
        return f


def _error(task_id, etype, message, details=None):
    err = {"message": message, "type": etype}
    if details is not None:
        err["details"] = details
    try:
        return json.dumps({"error": err, "id": task_id, "ok": False}, separators=(",", ":"), sort_keys=True,
                          ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (UnicodeEncodeError, TypeError, ValueError):
        # A message with a lone surrogate: each such code point written as \udcXX.
        err["message"] = message.encode("utf-8", "backslashreplace").decode("utf-8")
        err.pop("details", None)
        return dump({"error": err, "id": task_id, "ok": False})


def _call(f, args, attachment):
    """JSON array -> positional arguments, object -> keywords, null -> none, anything else -> one argument.
    A task's raw attachment (bytes) comes last among the positional arguments."""
    extra = () if attachment is None else (attachment,)
    if isinstance(args, list):
        return f(*args, *extra)
    if isinstance(args, dict):
        return f(*extra, **args)
    if args is None:
        return f(*extra)
    return f(args, *extra)


def run_task(functions, payload, flags):
    """The result body (and attachment, or None) for one task frame's payload."""
    attachment = None
    body = payload
    if flags & FLAG_ATTACHMENT:
        size = struct.unpack_from("<I", payload)[0] if len(payload) >= 4 else -1
        if size < 0 or size > len(payload) - 4:
            raise ProtocolError("malformed", "attachment frame's body length exceeds its payload")
        body, attachment = payload[4:4 + size], payload[4 + size:]
    if flags & FLAG_FORMAT_MASK:
        raise ProtocolError("malformed", "this worker reads JSON task bodies only (CBOR and MessagePack are not in "
                                         "Python's standard library)")
    task = parse_body(T_TASK, body)
    return run_parsed(functions, task, attachment, b"$bytes" in body or b"$dict" in body)


_INTERRUPTED = []


def _on_interrupt(signum, frame):
    _INTERRUPTED.append(signum)


def check_task_fields(task):
    """Raises malformed, naming the field, unless `task` has a uint `id` and a string `fn`."""
    task_id = task.get("id")
    if type(task_id) is not int or not 0 <= task_id < 1 << 64:
        field(task, "id", "uint", "task")
    if not isinstance(task.get("fn"), str):
        field(task, "fn", "string", "task %d" % task_id)


def run_parsed(functions, task, attachment, has_bytes):
    """The result body (and attachment, or None) for a task body already parsed; `has_bytes` if its text
    holds a {"$bytes": ...} or {"$dict": ...} somewhere."""
    check_task_fields(task)
    task_id = task["id"]
    fn = task["fn"]
    args = task.get("args")
    if _INTERRUPTED:
        return _error(task_id, "interrupted", "not started: the run was interrupted (SIGINT)"), None
    try:
        f = functions.find(fn)
    except LookupError as e:
        return _error(task_id, "unknown_function", str(e)), None
    except TypeError as e:
        return _error(task_id, "not_callable", str(e)), None
    if has_bytes:
        try:
            args = _from_json(args)
        except ValueError as e:
            return _error(task_id, "bad_args", "a {\"$bytes\": ...} in args is not valid base64: %s" % e), None
    if PROGRESS is not None:
        PROGRESS.begin(task_id)
    try:
        value = _call(f, args, attachment)
    except BaseException as e:  # noqa: B902 - SystemExit, KeyboardInterrupt: that task's error, no more
        details = _error_details(e, ("<string>", _HERE))
        return _error(task_id, _type_name(type(e)), _exc_text(e), details), None
    finally:
        if PROGRESS is not None:
            PROGRESS.end()
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value):
        # The protocol's binary path: the bytes travel raw after the body, not as text. (No bytes at all go
        # as {"$bytes": ""}: an empty attachment cannot be told from none.)
        return dump({"id": task_id, "ok": True, "value": None}), bytes(value)
    try:
        text = _encode(value)
    except (TypeError, ValueError) as e:
        return _error(task_id, "bad_result", _unencodable(fn, value, e), {"type": type(value).__name__}), None
    except RecursionError:
        return _error(task_id, "bad_result", "%s returned a value nested too deep for JSON" % fn), None
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError as e:
        return _error(task_id, "bad_result", "%s returned text that is not valid Unicode (%s); return bytes for such "
                                             "data, or decode it with errors='replace'" %
                      (fn, str(e).encode("ascii", "backslashreplace").decode("ascii"))), None
    out = b'{"id":%d,"ok":true,"value":%s}' % (task_id, encoded)
    try:
        check_depth(out)
    except ProtocolError:
        return _error(task_id, "bad_result", "%s returned a value nested deeper than %d levels" %
                      (fn, JSON_MAX_DEPTH - 1)), None
    return out, None


class HeldResults:
    """The results of a task_batch, held to go out many to a result_batch frame, and a watchdog thread that
    sends them once one has waited MAX_HOLD_SECONDS while a task runs (with a busy GIL, the thread gets to run
    within the interpreter's switch interval, 5 ms by default). One lock guards the channel's sealing."""

    def __init__(self, channel):
        self.channel = channel
        self.cond = threading.Condition()
        self.entries = []
        self.size = 0
        self.since = 0.0
        self.in_task = False
        self.error = None
        self.thread = None

    def _send_held(self):
        if not self.entries:
            return
        body = b'{"results":[' + b",".join(self.entries) + b"]}"
        self.entries, self.size = [], 0
        write_all(self.channel.out_fd, self.channel.frame(T_RESULT_BATCH, body))

    def add(self, task_id, body, attachment):
        """Holds one result; one with bytes (an attachment) is written alone, after what is held."""
        with self.cond:
            if self.error is not None:
                raise self.error
            if self.thread is None:
                self.thread = threading.Thread(target=self._watch, name="authrun-held-results", daemon=True)
                self.thread.start()
            limit = self.channel.peer_max_payload
            if attachment is not None:
                self._send_held()
                try:
                    frame = self.channel.frame(T_RESULT, body, attachment)
                except ProtocolError as e:
                    frame = self.channel.frame(T_RESULT, _error(task_id, "result_too_large", e.message))
                write_all(self.channel.out_fd, frame)
                return
            if len(body) + 14 > limit:
                body = _error(task_id, "result_too_large",
                              "result of %d bytes exceeds the peer's limit of %d" % (len(body), limit))
            if self.entries and (self.size + len(body) + 15 > limit or len(self.entries) == MAX_BATCH_ENTRIES):
                self._send_held()
            if not self.entries:
                self.since = time.monotonic()
            self.entries.append(body)
            self.size += len(body) + 1

    def send(self):
        with self.cond:
            if self.error is not None:
                raise self.error
            self._send_held()

    def task_started(self):
        with self.cond:
            self.in_task = True
            if self.entries:
                self.cond.notify()

    def task_ended(self):
        with self.cond:
            self.in_task = False

    def _watch(self):
        with self.cond:
            while True:
                while not (self.in_task and self.entries):
                    self.cond.wait()
                wait = self.since + MAX_HOLD_SECONDS - time.monotonic()
                if wait > 0:
                    self.cond.wait(wait)
                    continue
                try:
                    self._send_held()
                except (OSError, ProtocolError) as e:
                    self.error = e if isinstance(e, ProtocolError) else ProtocolError("io", str(e))
                    self.entries, self.size = [], 0
                    return


def start_keep_alive(held):
    """A thread that sends a keepalive frame every KEEPALIVE_MS while a task runs (held.in_task), under held's
    lock, so that the runner can tell a long task from a stopped or hung worker. A failed write is kept in
    held.error, for the task loop to raise."""
    def run():
        while True:
            time.sleep(KEEPALIVE_MS / 1000.0)
            with held.cond:
                if held.error is not None:
                    return
                if not held.in_task:
                    continue
                try:
                    held._send_held()
                    write_all(held.channel.out_fd, held.channel.frame(T_KEEPALIVE, KEEPALIVE_BODY))
                except (OSError, ProtocolError) as e:
                    held.error = e if isinstance(e, ProtocolError) else ProtocolError("io", str(e))
                    return
    threading.Thread(target=run, name="authrun-keepalive", daemon=True).start()


def run_batch(functions, held, payload, flags, stdout_flush):
    """Runs a task_batch's tasks in order; their results go out through `held`."""
    if flags:
        raise ProtocolError("malformed", "task_batch frames carry JSON bodies and no attachment")
    check_depth(payload, JSON_MAX_DEPTH + 2)
    try:
        batch = json.loads(payload)
    except (ValueError, RecursionError) as e:
        raise ProtocolError("malformed", "task_batch body: not valid JSON: %s" % e)
    if not isinstance(batch, dict):
        raise ProtocolError("malformed", "task_batch body must be a JSON object")
    tasks = batch.get("tasks")
    if not isinstance(tasks, list) or not 1 <= len(tasks) <= MAX_BATCH_ENTRIES:
        raise ProtocolError("malformed", "task_batch: field 'tasks' must be an array of 1 to %d objects" %
                            MAX_BATCH_ENTRIES)
    # The whole frame is checked before any of its tasks runs (PROTOCOL.md section 3): one bad entry and
    # none runs.
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise ProtocolError("malformed", "task_batch tasks[%d] must be an object" % i)
        try:
            check_task_fields(task)
        except ProtocolError as e:
            raise ProtocolError(e.code, "task_batch tasks[%d]: %s" % (i, e.message))
    has_bytes = b"$bytes" in payload or b"$dict" in payload
    for i, task in enumerate(tasks):
        if PROGRESS is None:
            # No progress page: the runner takes the first task it has no result for as the one that ran when
            # a worker dies, so nothing is held while a later task runs (PROTOCOL.md section 9.1).
            held.send()
        held.task_started()
        try:
            body, attachment = run_parsed(functions, task, None, has_bytes)
        except ProtocolError as e:
            raise ProtocolError(e.code, "task_batch tasks[%d]: %s" % (i, e.message))
        finally:
            held.task_ended()
        try:
            stdout_flush()
        except (OSError, ValueError):
            pass
        held.add(task["id"], body, attachment)
    held.send()


def serve(channel, log):
    """Receives the program, loads it, answers tasks until shutdown or end of input. Returns the exit status.
    print() in a task goes to the runner's stderr (fd 1 is a copy of fd 2 here)."""
    try:
        first = channel.receive()
        if first is None or first[0] == T_SHUTDOWN:
            return 0
        ftype, flags, payload = first
        if ftype != T_PROGRAM:
            raise ProtocolError("unexpected", "expected the program before any %s (is the parent authrun run "
                                              "--python?)" % TYPE_NAMES[ftype])
        if flags:
            raise ProtocolError("malformed", "program frames carry JSON bodies and no attachment")
        try:
            functions = Functions(load_program(parse_body(T_PROGRAM, payload)))
        except ProtocolError as e:
            if e.code != "program_failed":
                raise
            channel.fail(e)  # the runner says it, once for the run
            return EXIT_PROGRAM
        # Where it runs, once the program is in: the parent times the import until this comes.
        info = dump({"batches": True, "host": socket.gethostname()[:255], "keepalive_ms": KEEPALIVE_MS,
                     "pid": os.getpid()})
        write_all(channel.out_fd, channel.frame(T_WORKER_INFO, info))
        stdout_flush = sys.stdout.flush
        held = HeldResults(channel)
        start_keep_alive(held)
        while True:
            got = channel.receive()
            if got is None or got[0] == T_SHUTDOWN:
                return 0
            ftype, flags, payload = got
            if ftype == T_TASK_BATCH:
                run_batch(functions, held, payload, flags, stdout_flush)
                continue
            if ftype != T_TASK:
                # Its format and body are checked before its type, as authrun-worker does (PROTOCOL.md section 6).
                if flags & FLAG_FORMAT_MASK and ftype != T_RESULT:
                    raise ProtocolError("malformed", "%s frames carry a JSON body" % TYPE_NAMES[ftype])
                if flags & FLAG_ATTACHMENT and ftype not in (T_RESULT, T_OUTPUT):
                    raise ProtocolError("malformed", "%s frames carry no attachment" % TYPE_NAMES[ftype])
                if not flags:
                    parse_body(ftype, payload)
                raise ProtocolError("unexpected", "worker got a %s message" % TYPE_NAMES[ftype])
            held.task_started()
            try:
                body, attachment = run_task(functions, payload, flags)
            finally:
                held.task_ended()  # from here the channel is this thread's again (the keep-alive waits)
            if held.error is not None:
                raise held.error
            try:
                stdout_flush()
            except (OSError, ValueError):
                pass
            try:
                frame = channel.frame(T_RESULT, body, attachment)
            except ProtocolError as e:
                frame = channel.frame(T_RESULT, _error(json.loads(body)["id"], "result_too_large", e.message))
            # Each answer goes out at once, as authrun-worker does: the runner refills the window while the next
            # task runs (holding answers back until the input is drained made runner and worker take turns).
            write_all(channel.out_fd, frame)
    except ProtocolError as e:
        # (Answers are written as soon as they are sealed: none is pending here to go out before the error.)
        channel.fail(e)
        log("channel closed (%s): %s" % (e.code, e.message))
        return EXIT_PROTOCOL
    except OSError as e:
        why = "the parent is gone (broken pipe)" if e.errno == errno.EPIPE else str(e)
        log("channel closed (io): %s" % why)
        return EXIT_PROTOCOL


# ---- Start-up ----

class Options:
    key_fd = 3
    key_file = None
    key_stdin = False
    handshake_timeout = 5.0
    max_payload = DEFAULT_MAX_PAYLOAD
    encrypted_only = False
    allow_ptrace = False
    orphan_watch = False
    expect_sha256 = None


USAGE = """usage: python3 -I -S _bootstrap.py [--key-fd N | --key-file FILE | --key-stdin] [--handshake-timeout S]
       [--max-payload N] [--encrypted-only] [--allow-ptrace] [--orphan-watch] [--expect-sha256 HEX]
authrun's Python worker: started by `authrun run --python MODULE`, which sends the program after the handshake."""


def parse_args(argv):
    o = Options()
    i = 0
    while i < len(argv):
        a = argv[i]
        value_opts = ("--key-fd", "--key-file", "--handshake-timeout", "--max-payload", "--expect-sha256")
        if a in value_opts:
            if i + 1 >= len(argv):
                raise SystemExit("%s needs a value\n%s" % (a, USAGE))
            v = argv[i + 1]
            i += 2
            try:
                if a == "--key-fd":
                    o.key_fd = int(v)
                elif a == "--key-file":
                    o.key_file = v
                elif a == "--handshake-timeout":
                    o.handshake_timeout = float(v)
                    if not o.handshake_timeout > 0:
                        raise ValueError(v)
                elif a == "--max-payload":
                    o.max_payload = int(v)
                    if not 1024 <= o.max_payload <= ABSOLUTE_MAX_PAYLOAD:
                        raise ValueError(v)
                else:
                    o.expect_sha256 = v.lower()
            except ValueError:
                raise SystemExit("%s: invalid value %r\n%s" % (a, v, USAGE))
            continue
        flags = {"--key-stdin": "key_stdin", "--encrypted-only": "encrypted_only", "--allow-ptrace": "allow_ptrace",
                 "--orphan-watch": "orphan_watch"}
        if a in flags:
            setattr(o, flags[a], True)
        elif a in ("-h", "--help"):
            print(USAGE)
            raise SystemExit(0)
        else:
            raise SystemExit("unknown option %r\n%s" % (a, USAGE))
        i += 1
    if sum(bool(x) for x in (o.key_file, o.key_stdin)) > 1:
        raise SystemExit("--key-file and --key-stdin exclude each other")
    return o


def _log(text):
    try:
        os.write(2, ("authrun-python[%d]: %s\n" % (os.getpid(), text)).encode("utf-8", "replace"))
    except OSError:
        pass


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _take_protocol_fds():
    """Moves the protocol off fds 0 and 1 (copies above 10, close-on-exec): fd 0 becomes /dev/null and fd 1 a
    copy of stderr, so print() in a task goes to the runner's stderr and can never corrupt the channel."""
    in_fd = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 10)
    out_fd = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 10)
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    return in_fd, out_fd


def _start_orphan_watch(in_fd, out_fd):
    """Exits once the channel's far end is gone, even in the middle of a task (for launched workers)."""
    import threading

    def watch():
        p = select.poll()
        p.register(in_fd, getattr(select, "POLLRDHUP", 0x2000))
        p.register(out_fd, 0)
        while not p.poll():
            pass
        time.sleep(0.1)
        os._exit(EXIT_PROTOCOL)
    threading.Thread(target=watch, daemon=True).start()


def main(argv=None):
    parent = os.getppid()
    libc = _libc()
    # Not dumpable: other processes of the user can neither read our memory (the key) nor open our pipes.
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG: never outlive the runner
    if os.getppid() != parent:
        return 0
    # Ctrl-C is the runner's to handle for the running task; tasks not started yet do not start.
    signal.signal(signal.SIGINT, _on_interrupt)
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        # A tracer attached before the prctl above stays attached and could read the key: refuse.
        check_not_traced(opts.allow_ptrace)
    except ProtocolError as e:
        _log(e.message)
        return EXIT_KEY
    if opts.expect_sha256 and _HERE:
        import hashlib
        with open(os.path.abspath(__file__), "rb") as f:
            have = hashlib.sha256(f.read()).hexdigest()
        if have != opts.expect_sha256:
            _log("refusing to run: %s is not the bootstrap the runner expects (sha256 %s, expected %s)" %
                 (__file__, have, opts.expect_sha256))
            return EXIT_USAGE
    if not opts.key_file and not opts.key_stdin:
        try:
            fcntl.fcntl(opts.key_fd, fcntl.F_GETFD)
        except OSError:
            _log("no key: fd %d is not open (this worker is started by authrun run --python, which hands it a key "
                 "there; or give --key-file)" % opts.key_fd)
            return EXIT_KEY
    in_fd, out_fd = _take_protocol_fds()
    deadline = time.monotonic() + opts.handshake_timeout
    try:
        key = acquire_key(opts, in_fd, out_fd, deadline)
    except ProtocolError as e:
        _log("no usable key, refusing to run: " + e.message)
        return EXIT_KEY
    modes = ["encrypted"] if opts.encrypted_only else ["encrypted", "authenticated"]
    channel = Channel(in_fd, out_fd, key, modes, opts.max_payload)
    try:
        channel.handshake(deadline)
    except ProtocolError as e:
        _log("handshake failed (%s): %s" % (e.code, e.message))
        return EXIT_KEY
    finally:
        key.wipe()
    if opts.orphan_watch:
        _start_orphan_watch(in_fd, out_fd)
    try:
        return serve(channel, _log)
    finally:
        channel.tx.wipe()
        channel.rx.wipe()


if __name__ == "__main__":
    sys.exit(main())
