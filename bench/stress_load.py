"""Stress scenarios of the request path (a benchmark, not a test): load, slow clients,
and memory amplification, each against real `sbexportd serve` processes over TCP.

    .venv/bin/python bench/stress_load.py [--quick]        # prints the figures as JSON

`run() -> dict` is what bench/stress.py imports (one scenario module of several);
docs/security.md ("The request path") gives the figures and what the daemon promises.

- load: 16 client processes sending batch-1 predicts (half JSON, half msgpack) as
  fast as they can, and one connection pipelining 3,000 reference predicts of 1,024
  observations while another client opens a model and predicts: throughput, errors,
  the other client's waits, requests in flight, memory;
- slow clients: one client that never reads ~220 MiB of answers; 1,000 connections
  that stop inside a header; 1,100 connections against a daemon whose file limit is
  1,024: memory, how long stalled connections are held, refusals, whether the served
  client can still open files;
- memory amplification: the daemon's peak memory growth per request body, for each
  array encoding, on the fast path and on the NumPy reference, and the refusal of a
  predict over --max-predict-values.
"""
from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import msgpack
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from rpc_client import Client, Daemon, RpcError, b64, encode, memory, raw  # noqa: E402

MLP = ROOT / "tests" / "fixtures" / "ppo2_mlp_vec_discrete" / "model.zip"
MLP2 = ROOT / "tests" / "fixtures" / "ppo2_mlp_vec_box" / "model.zip"
CNN = ROOT / "tests" / "fixtures" / "a2c_cnn_img_discrete" / "model.zip"
MiB = 1 << 20

LOAD_CLIENT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from rpc_client import Client, raw
host, port, mid, seconds, k = sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]), int(sys.argv[6])
c = Client.tcp(host, port)
c.initialize()
rng = np.random.default_rng(k)
ok = errors = 0
times = []
end = time.time() + seconds
while time.time() < end:
    obs = rng.normal(size=(1, 4)).astype(np.float32)
    enc = "msgpack" if (ok + k) % 2 else "json"
    t = time.perf_counter()
    try:
        out = c.request("sbexport/predict",
                        {"modelId": mid, "obs": raw(obs) if enc == "msgpack" else obs.tolist()}, enc)
        ok += 1
    except Exception:
        errors += 1
    times.append(time.perf_counter() - t)
print(json.dumps({"ok": ok, "errors": errors, "p50": float(np.percentile(times, 50)),
                  "p99": float(np.percentile(times, 99))}))
"""


def _mib(n: int) -> float:
    return round(n / MiB, 1)


# -- load ------------------------------------------------------------------------------------
def load(seconds: float = 10.0, clients: int = 16) -> dict:
    d = Daemon()
    try:
        c = d.client()
        mid = c.request("sbexport/open", {"path": str(MLP)})["modelId"]
        before = memory(d.proc.pid)["rss"]
        procs = [subprocess.Popen([sys.executable, "-c", LOAD_CLIENT, str(ROOT / "tests"), d.host, str(d.port), mid,
                                   str(seconds), str(k)], stdout=subprocess.PIPE, text=True) for k in range(clients)]
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=seconds + 120)
            results.append(json.loads(out.strip().splitlines()[-1]) if p.returncode == 0
                           else {"ok": 0, "errors": 1, "p50": 0, "p99": 0})
        total = sum(r["ok"] for r in results)
        figures = {"clients": clients, "seconds": seconds, "predicts": total,
                   "errors": sum(r["errors"] for r in results), "predicts_per_s": round(total / seconds),
                   "p50_ms_median_client": round(1e3 * float(np.median([r["p50"] for r in results])), 2),
                   "p99_ms_worst_client": round(1e3 * max(r["p99"] for r in results), 2),
                   "rss_growth_mib": _mib(memory(d.proc.pid)["rss"] - before)}
        figures["flood"] = _flood(d, c)
        figures["alive"] = d.alive()
        return figures
    finally:
        d.stop()


def _flood(d: Daemon, c) -> dict:
    """One connection pipelines 3,000 reference predicts of 1,024 observations; another
    opens a model and predicts meanwhile."""
    flood = d.client()
    mid = flood.request("sbexport/open", {"path": str(MLP)})["modelId"]
    batch = np.random.default_rng(3).normal(size=(1024, 4)).astype(np.float32)
    frames = b"".join(encode({"jsonrpc": "2.0", "id": i, "method": "sbexport/predict",
                              "params": {"modelId": mid, "obs": raw(batch), "backend": "numpy"}}, "msgpack")
                      for i in range(3000))
    sender = threading.Thread(target=_send_quietly, args=(flood, frames), daemon=True)
    sender.start()
    time.sleep(1.0)
    waits = {}
    t = time.perf_counter()
    other = c.request("sbexport/open", {"path": str(MLP2)})["modelId"]
    waits["open_s"] = time.perf_counter() - t
    t = time.perf_counter()
    c.request("sbexport/predict", {"modelId": other, "obs": [[0.1, 0.2, 0.3, 0.4]]})
    waits["predict_1_s"] = time.perf_counter() - t
    t = time.perf_counter()
    c.request("sbexport/predict", {"modelId": other, "obs": raw(batch), "backend": "numpy"}, "msgpack")
    waits["predict_1024_reference_s"] = time.perf_counter() - t
    in_flight = c.request("sbexport/status")["requests"]["inFlight"]
    flood.close()
    return {"pipelined": 3000, **{k: round(v, 4) for k, v in waits.items()}, "requests_in_flight": in_flight}


def _send_quietly(client, data: bytes) -> None:
    try:
        client.send_raw(data)
    except OSError:  # closed by the scenario before everything was sent
        pass


# -- slow clients ---------------------------------------------------------------------------------
def slow_clients(quick: bool = False) -> dict:
    figures = {}
    d = Daemon("--header-timeout", "2")
    try:
        figures["not_reading"] = _not_reading(d)
        figures["stalled_headers"] = _stalled(d, 200 if quick else 1000)
    finally:
        d.stop()
    figures["connection_limit"] = _connection_limit()
    return figures


def _not_reading(d: Daemon) -> dict:
    slow, other = d.client(), d.client()
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    mid = slow.request("sbexport/open", {"path": str(CNN)})["modelId"]
    other_mid = other.request("sbexport/open", {"path": str(MLP)})["modelId"]
    one = len(msgpack.packb(slow.request("sbexport/parameters", {"modelId": mid, "values": True}, "msgpack"),
                            use_bin_type=True))
    n = 400
    frames = b"".join(encode({"jsonrpc": "2.0", "id": i, "method": "sbexport/parameters",
                              "params": {"modelId": mid, "values": True}}, "msgpack") for i in range(n))
    before = memory(d.proc.pid)["rss"]
    threading.Thread(target=_send_quietly, args=(slow, frames), daemon=True).start()
    time.sleep(3.0)
    waits = []
    for _ in range(20):
        t = time.perf_counter()
        other.request("sbexport/predict", {"modelId": other_mid, "obs": [[0.1, 0.2, 0.3, 0.4]]})
        waits.append(time.perf_counter() - t)
    grown = memory(d.proc.pid)["rss"] - before
    got = 0
    t = time.perf_counter()
    while got < n:
        got += "result" in slow.receive()
    slow.close()
    other.close()
    return {"answers_unread_mib": _mib(n * one), "rss_growth_mib": _mib(grown),
            "other_client_max_wait_ms": round(1e3 * max(waits), 2), "answers_delivered_when_read": got,
            "seconds_to_read_them": round(time.perf_counter() - t, 2)}


def _stalled(d: Daemon, n: int) -> dict:
    socks = []
    for _ in range(n):
        s = socket.create_connection((d.host, d.port))
        s.sendall(b"Content-Length: 10\r\nX-Slow")
        socks.append(s)
    t = time.monotonic()
    poller = select.poll()
    waiting = {s.fileno(): s for s in socks}
    for fd in waiting:
        poller.register(fd, select.POLLIN | select.POLLHUP)
    told, got = 0, dict.fromkeys(waiting, b"")
    while waiting and time.monotonic() - t < 30:
        for fd, _ in poller.poll(500):
            try:
                data = waiting[fd].recv(4000)
            except OSError:
                data = b""
            if data:  # the answer, perhaps in pieces, then the end of the stream
                got[fd] += data
                continue
            told += b"-33032" in got[fd] and b"timeout" in got[fd]
            poller.unregister(fd)
            del waiting[fd]
    held = time.monotonic() - t
    for s in socks:
        s.close()
    return {"connections": n, "header_timeout_s": 2, "closed": n - len(waiting), "told_timeout": told,
            "all_closed_within_s": round(held, 2)}


def _connection_limit() -> dict:
    d = Daemon(max_files=1024)
    held = []
    try:
        served = d.client()
        for _ in range(1100):
            try:
                held.append(socket.create_connection((d.host, d.port), timeout=10))
            except OSError:
                break
        open_then = served.request("sbexport/status")["connections"]["open"]
        poller, waiting, refused = select.poll(), {}, 0
        for s in held[300:]:
            waiting[s.fileno()] = s
            poller.register(s.fileno(), select.POLLIN)
        end = time.monotonic() + 20
        while waiting and time.monotonic() < end:
            for fd, _ in poller.poll(500):
                refused += b"too_many_connections" in waiting[fd].recv(4000)
                poller.unregister(fd)
                del waiting[fd]
        opens_ok = 0
        for case in ("ppo2_mlp_vec_box", "dqn_mlp_vec_discrete", "sac_mlp_vec_box"):
            try:
                served.request("sbexport/open", {"path": str(ROOT / "tests" / "fixtures" / case / "model.zip")})
                opens_ok += 1
            except (RpcError, OSError):
                pass
        status = served.request("sbexport/status")["connections"]
        return {"ulimit_n": 1024, "attempted": len(held), "open_after_the_flood": open_then,
                "refused": status["refused"],
                "refusals_answered": refused, "served_client_opens_ok": f"{opens_ok}/3"}
    finally:
        for s in held:
            s.close()
        d.stop()


# -- memory amplification -----------------------------------------------------------------------
def amplification(quick: bool = False) -> dict:
    rows = 1 << (16 if quick else 20)
    obs = np.round(np.random.default_rng(1).normal(size=(rows, 4)), 6).astype(np.float32)
    cases = [("msgpack binary", "msgpack", lambda o: raw(o), None),
             ("msgpack binary, NumPy reference", "msgpack", lambda o: raw(o), "numpy"),
             ("JSON base64", "json", lambda o: b64(o), None),
             ("JSON lists", "json", lambda o: o.tolist(), None),
             ("msgpack lists", "msgpack", lambda o: o.tolist(), None)]
    out = {}
    for name, enc, form, backend in cases:
        d = Daemon()  # a fresh daemon per case: its peak is this request's
        try:
            c = Client.tcp(d.host, d.port, timeout=900)  # 84 MiB of JSON on a busy machine: minutes
            c.initialize()
            mid = c.request("sbexport/open", {"path": str(MLP)})["modelId"]
            params = {"modelId": mid} if backend is None else {"modelId": mid, "backend": backend}
            c.request("sbexport/predict", {**params, "obs": form(obs[:4096])}, enc)
            p = {**params, "obs": form(obs)}
            body = len(msgpack.packb(p, use_bin_type=True)) if enc == "msgpack" else len(json.dumps(p))
            before = memory(d.proc.pid)["rss"]
            c.request("sbexport/predict", p, enc)
            peak = memory(d.proc.pid)["peak"] - before
            out[name] = {"observations": rows, "body_mib": _mib(body), "peak_growth_mib": _mib(peak),
                         "x_body": round(peak / body, 1)}
        finally:
            d.stop()
    d = Daemon("--max-predict-values", "1000000")
    try:
        c = d.client()
        mid = c.request("sbexport/open", {"path": str(MLP)})["modelId"]
        try:
            c.request("sbexport/predict", {"modelId": mid, "obs": raw(np.zeros((250001, 4), np.float32))}, "msgpack")
            out["over --max-predict-values"] = "answered"
        except RpcError as e:
            out["over --max-predict-values"] = f"{e.code} {e.kind}"
    finally:
        d.stop()
    return out


def run(quick: bool = False) -> dict:
    """The figures, flat (bench/stress.py prints one row each): `scenario: figure`."""
    nested = {"load": load(5.0 if quick else 10.0), "slow clients": slow_clients(quick),
              "memory": amplification(quick)}
    return _flat(nested)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + ": "))
        else:
            out[name] = value
    return out


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
