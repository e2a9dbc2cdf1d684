"""Frame fuzzing: malformed frames and bodies on many connections, authenticated or not, while another client is served.

Seeded (the same frames every run): random bytes, broken and oversize headers, bodies
that are not JSON, not JSON-RPC, or JSON-RPC with wrong ids, methods and params
(lone surrogates, NUL bytes, absurd shapes), msgpack noise, truncated frames, HTTP
requests. The daemon must answer or drop each, never crash, and keep its memory."""
from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import Counter

import msgpack
from stresslib import MODEL, Probe, hwm_mib, rss_mib

from rpc_client import Daemon, _Stream, frame

MAX_MESSAGE = 1 << 20


def _rpc(rid, method, params) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode()


def garbage(rng: random.Random, model_id: str) -> tuple[str, bytes]:
    """(kind, bytes) of one malformed or hostile frame."""
    k = rng.randrange(16)
    blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
    if k == 0:
        return "random bytes", blob + b"\r\n\r\n"
    if k == 1:
        return "random body", frame(blob)
    if k == 2:
        return "bad length", b"Content-Length: " + rng.choice([b"-1", b"abc", b"1e9", b"99999999999999999999", b""]) \
            + b"\r\n\r\n{}"
    if k == 3:
        return "long header", b"X-Junk: " + b"a" * rng.randrange(8000, 20000) + b"\r\nContent-Length: 2\r\n\r\n{}"
    if k == 4:
        return "many headers", b"".join(b"X-%d: y\r\n" % i for i in range(40)) + b"Content-Length: 2\r\n\r\n{}"
    if k == 5:
        return "content type", b"Content-Type: text/html\r\n" + frame(b"{}")[:-2] + b"{}"
    if k == 6:
        return "not an object", frame(rng.choice([b"[]", b"[1,2]", b'"x"', b"42", b"null", b"true"]))
    if k == 7:
        rid = rng.choice([1.5, True, None, [], {}, "\ud800", 2**70, "x" * 1000])
        return "bad id", frame(json.dumps({"jsonrpc": "2.0", "id": rid, "method": "sbexport/status"}).encode())
    if k == 8:
        return "bad method", frame(json.dumps({"jsonrpc": "2.0", "id": 1, "method": rng.choice(
            [None, 5, "", "sbexport/" + "x" * 500, "$/nothing", "exit\x00"])}).encode())
    if k == 9:
        return "bad params", frame(_rpc(rng.randrange(1000), rng.choice(
            ["sbexport/open", "sbexport/predict", "sbexport/export", "sbexport/inspect", "sbexport/parameters"]),
            rng.choice([5, "x", [1, 2], {"path": "a\x00b"}, {"path": ""}, {"path": "\udc80"},
                        {"modelId": model_id, "obs": {"dtype": "float32", "shape": [2**40, 2**40], "data": ""}},
                        {"modelId": model_id, "obs": {"dtype": "int8", "shape": [1, 4], "data": [1000, 0, 0, 0]}},
                        {"modelId": model_id, "obs": [[1, 2], [3]]}, {"modelId": model_id, "obs": OBS_BAD},
                        {"modelId": model_id, "obs": [[0, 0, 0, 0]], "seed": -1, "deterministic": False},
                        {"modelId": model_id, "to": "nothing", "out": "/nonexistent"},
                        {"modelId": model_id, "to": "portable", "out": ""},
                        {"modelId": "m-" + "0" * 20}])))
    if k == 10:
        return "msgpack noise", b"Content-Type: application/msgpack\r\n" + frame(blob)[:-len(blob) - 2] + b"\r\n" + blob
    if k == 11:
        body = msgpack.packb({"jsonrpc": "2.0", "id": 3, "method": "sbexport/predict",
                              "params": {"modelId": model_id, "obs": {"dtype": "float32", "shape": [1, 4],
                                                                      "data": blob[:7]}}})
        return "msgpack bad array", b"Content-Type: application/msgpack\r\n" + frame(body)[:-len(body) - 2] \
            + b"\r\n" + body
    if k == 12:
        return "oversize", b"Content-Length: %d\r\n\r\n" % (MAX_MESSAGE + 10) + b"x" * (MAX_MESSAGE + 10)
    if k == 13:
        return "deep json", frame(b'{"jsonrpc": "2.0", "id": 1, "method": "sbexport/status", "params": '
                                  + b"[" * 5000 + b"]" * 5000 + b"}")
    if k == 14:
        return "http request", b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}"
    return "truncated", b"Content-Length: 100\r\n\r\n" + blob[:50]


OBS_BAD = [[float("nan")] * 4]


class Conn:
    """A raw connection whose answers a thread counts."""

    def __init__(self, d: Daemon, token: str | None, codes: Counter):
        self.sock = socket.create_connection((d.host, d.port), timeout=60)
        self.answers, self.closed, self.codes = 0, False, codes
        if token is not None:
            self.sock.sendall(frame(_rpc(0, "initialize", {"capabilities": {}, "initializationOptions":
                                                           {"token": token}})))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stream = _Stream(self.sock.recv)
        try:
            while True:
                headers, body = stream.read_frame()
                self.answers += 1
                try:
                    msg = (msgpack.unpackb(body) if "msgpack" in headers.get("content-type", "")
                           else json.loads(body))
                    self.codes[msg.get("error", {}).get("code", "result")] += 1
                except (ValueError, TypeError, AttributeError, msgpack.ExtraData):
                    self.codes["undecodable"] += 1
        except (OSError, ConnectionError, ValueError, KeyError):
            self.closed = True

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self.closed = True
            return False


def run(quick: bool = False) -> dict:
    n = 2500 if quick else 12500
    rng = random.Random(0)
    d = Daemon("--max-message-bytes", str(MAX_MESSAGE))
    try:
        c = d.client()
        model_id = c.request("sbexport/open", {"path": str(MODEL)})["modelId"]
        rss0 = rss_mib(d.proc.pid)
        probe = Probe(d)
        codes: Counter = Counter()
        conns = [Conn(d, d.token if i % 2 else None, codes) for i in range(8)]
        kinds: dict[str, int] = {}
        reopened = answers = 0
        t0 = time.monotonic()
        for _ in range(n):
            j = rng.randrange(len(conns))
            if conns[j].closed:
                answers += conns[j].answers
                conns[j] = Conn(d, d.token if j % 2 else None, codes)
                reopened += 1
            kind, data = garbage(rng, model_id)
            kinds[kind] = kinds.get(kind, 0) + 1
            conns[j].send(data)
        seconds = time.monotonic() - t0
        time.sleep(2)
        answers += sum(x.answers for x in conns)
        alive = d.alive()
        status = c.request("sbexport/status")
        figures = {"malformed frames sent": n, "kinds": len(kinds), "seconds": round(seconds, 1),
                   "frames per second": round(n / seconds), "answers received": answers,
                   "connections closed by the daemon (then reopened)": reopened,
                   "daemon crashed": not alive, "daemon still serving": status["pid"] == d.proc.pid,
                   "answers by code": dict(sorted(codes.items(), key=lambda kv: str(kv[0]))),
                   "internal errors (-32603)": codes.get(-32603, 0),
                   "RSS before MiB": round(rss0, 1), "RSS after MiB": round(rss_mib(d.proc.pid), 1),
                   "RSS peak MiB": round(hwm_mib(d.proc.pid), 1),
                   "refused (auth, origin, http)": status["security"]["refused"]}
        figures.update(probe.stop())
        for x in conns:
            x.sock.close()
        c.close()
        return figures
    finally:
        d.stop()
