"""Browsers and token guessing: web-origin WebSocket handshakes, HTTP on the TCP port, wrong tokens, many connections.

What a web page can make a browser do (a WebSocket handshake, which carries the page's
Origin; a POST to 127.0.0.1:<port> with a body of its choosing) must reach nothing; a
local process guessing tokens over many connections at once gets RATE guesses a
second after a burst, while a client with the right token still gets in."""
from __future__ import annotations

import json
import random
import socket
import threading
import time

from stresslib import MODEL, Probe

from rpc_client import Client, Daemon, RpcError, frame


def _ws_attempts(n: int, rng: random.Random) -> dict:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    d = Daemon("--allow-origin", "http://localhost:3000", transport="ws")
    try:
        refused = accepted = 0
        origins = ["http://evil.example", "null", "https://localhost:3000", "http://localhost:3000.evil.example",
                   "file://", "http://127.0.0.1:8000", "chrome-extension://abcdefgh"]
        for _ in range(n):
            try:
                ws = connect(f"ws://{d.host}:{d.port}", origin=rng.choice(origins), open_timeout=20)
                accepted += 1
                ws.close()
            except InvalidStatus as e:
                refused += e.response.status_code == 403
        ws = connect(f"ws://{d.host}:{d.port}", origin="http://localhost:3000", open_timeout=20)
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                            "params": {"capabilities": {}, "initializationOptions": {"token": d.token}}}))
        allowed_ok = "result" in json.loads(ws.recv(timeout=20))
        ws.close()
        status = d.client().request("sbexport/status")
        return {"WebSocket handshakes from web origins": n, "refused (403)": refused, "accepted": accepted,
                "the --allow-origin page initializes": allowed_ok,
                "counted by the daemon": status["security"]["refused"]["origin"]}
    finally:
        d.stop()


def _http_attempts(n: int) -> dict:
    d = Daemon("--no-auth")  # the review's setting: even without a token, nothing must run
    try:
        calls = [{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}},
                 {"jsonrpc": "2.0", "id": 2, "method": "sbexport/open", "params": {"path": str(MODEL)}}]
        body = b"".join(frame(json.dumps(m).encode()) for m in calls)
        answered = 0
        for i in range(n):
            head = [b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n",
                    b"Content-Length: %d\r\nHost: evil.example\r\n" % len(body),
                    b"GET / HTTP/1.1\r\nOrigin: http://evil.example\r\n"][i % 3]
            with socket.create_connection((d.host, d.port), timeout=20) as s:
                s.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                answered += bool(s.recv(4096))
        status = d.client().request("sbexport/status")
        return {"HTTP requests on the TCP port": n, "answered": answered,
                "requests run from them": status["requests"]["byMethod"].get("sbexport/open", 0),
                "closed unanswered (counted by the daemon)": status["security"]["refused"]["http"]}
    finally:
        d.stop()


def _guesses(n: int, threads: int) -> dict:
    from sbexportd.serve.auth import BURST, RATE
    d = Daemon()
    try:
        probe = Probe(d)  # authenticated before the attack: keeps being served
        done: list[float] = []
        lock = threading.Lock()
        t0 = time.monotonic()

        def attacker(k: int) -> None:
            for j in range(k, n, threads):
                c = Client.tcp(d.host, d.port, timeout=600)
                try:
                    c.initialize(f"guess-{j:06d}-0123456789abcdef")
                except (RpcError, ConnectionError, OSError):
                    pass
                with lock:
                    done.append(time.monotonic() - t0)
                c.close()
        workers = [threading.Thread(target=attacker, args=(k,), daemon=True) for k in range(threads)]
        for w in workers:
            w.start()
        time.sleep(1.0)
        t = time.monotonic()
        right = d.client()  # a right token, arriving while guesses are queued
        right_wait = time.monotonic() - t
        right.close()
        for w in workers:
            w.join(600)
        wall = max(done)
        beyond = sorted(done)[BURST:]
        rate = (len(beyond) - 1) / (beyond[-1] - beyond[0]) if len(beyond) > 2 else float("nan")
        status = d.client().request("sbexport/status")
        figures = {"wrong guesses": n, "attacking connections at once": threads,
                   "guesses refused (counted by the daemon)": status["security"]["refused"]["auth"],
                   "seconds for all of them": round(wall, 1),
                   "guesses per second after the burst": round(rate, 2),
                   "configured burst, rate": f"{BURST}, {RATE}/s",
                   "a right token's wait during the attack, seconds": round(right_wait, 2),
                   "before (the review)": "6,283 guesses per second, no limit"}
        figures.update(probe.stop())
        return figures
    finally:
        d.stop()


def run(quick: bool = False) -> dict:
    rng = random.Random(0)
    figures = {}
    figures.update(_ws_attempts(20 if quick else 200, rng))
    figures.update(_http_attempts(15 if quick else 150))
    figures.update(_guesses(20 if quick else 60, 10 if quick else 30))
    return figures
