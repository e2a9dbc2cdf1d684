"""Hostile files: work bombs, code-execution payloads, FIFOs, devices, sparse and zip bombs; another client served.

Every file is built here (tests/hostile): the 425-byte shared-reference pickle of the
review and its kin, the code-execution payloads of the reader's tests, in .pkl and
inside .zip data, plus files that are not files. Each must be refused with its
documented code in bounded time and memory; the canary file must never appear."""
from __future__ import annotations

import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

from stresslib import Probe, hwm_mib, rss_mib

from rpc_client import Daemon, RpcError
from tests.hostile import bombs as B
from tests.hostile import make

WORKERS = 2


def corpus(folder: Path, canary: Path) -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []

    def add(name: str, raw: bytes, suffix: str = ".pkl") -> None:
        path = folder / f"{name}{suffix}"
        path.write_bytes(raw)
        files.append((name, path))

    bombs = {"shape of shared lists (the review's 425 bytes)": B.reconstruct(B.shared_lists(40)),
             "dtype state of shared lists": B.dtype_with_state(B.shared_lists(40)),
             "dict key of shared tuples": B.dict_keyed_by(B.shared_tuples(40)),
             "data of shared lists": B.shared_lists(40), "nesting 100,000 deep": B.nested_lists(100_000),
             "250,001 objects": B.many_objects(250_001), "a list of 100,001 items": B.long_list(100_001)}
    for i, (name, expr) in enumerate(bombs.items()):
        add(f"bomb{i}", B.in_model(expr))
        files[-1] = (f"pkl: {name}", files[-1][1])
        add(f"bomb{i}", make.sb2_zip(data={"policy": make.serialized_entry(B.alone(expr))}), ".zip")
        files[-1] = (f"zip: {name}", files[-1][1])
    for name, payload in sorted(make.PAYLOADS.items()):
        add(f"payload-{name}", make.model_pickle(payload(canary)))
        files[-1] = (f"payload: {name}", files[-1][1])
    for i in range(4):
        os.mkfifo(folder / f"fifo{i}.zip")
        files.append((f"FIFO {i}", folder / f"fifo{i}.zip"))
    files += [("/dev/zero", Path("/dev/zero")), ("a folder", folder)]
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "socket.zip"))
    files.append(("a unix socket", folder / "socket.zip"))
    sparse = folder / "sparse.zip"
    with open(sparse, "wb") as f:
        f.write(b"PK\x03\x04")
        f.truncate(4 << 30)
    files.append(("4 GiB sparse file", sparse))
    files.append(("zip bomb: data inflating to 512 MiB", make.zero_member_zip(
        folder / "zipbomb.zip", "data", 512 << 20, [("parameters", b""), ("parameter_list", b"[]")])))
    lying = make.patch_declared_size(make.deflated_zip_bytes([("data", bytes(300 << 20)), ("parameters", b""),
                                                              ("parameter_list", b"[]")]), "data", 100)
    add("lying-header", lying, ".zip")
    files[-1] = ("zip bomb: header lying about 300 MiB", files[-1][1])
    add("shadow", b"root:$6$saltsalt$0123456789abcdef:19000:0:99999:7:::\n", "")
    files[-1] = ("a secret text file", files[-1][1])
    return files


def run(quick: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="sbexportd-stress-") as tmp:
        folder, canary = Path(tmp), Path(tmp) / "CANARY"
        files = corpus(folder, canary)
        d = Daemon("--workers", str(WORKERS))
        try:
            c = d.client()
            probe = Probe(d)
            rss0 = rss_mib(d.proc.pid)
            codes: dict[str, int] = {}
            rows, seconds, longest = [], [], ("", 0.0)
            for name, path in files:
                t = time.perf_counter()
                try:
                    c.request("sbexport/open", {"path": str(path)})
                    outcome = "ACCEPTED"
                except RpcError as e:
                    outcome = f"{e.code} {e.kind}"
                    leaked = "root:" in e.error.get("message", "").replace(str(path), "")
                    if leaked:
                        outcome += " LEAKED CONTENT"
                dt = time.perf_counter() - t
                seconds.append(dt)
                longest = max(longest, (name, dt), key=lambda x: x[1])
                codes[outcome] = codes.get(outcome, 0) + 1
                rows.append((name, outcome, dt))
            status = c.request("sbexport/status")
            figures = {"hostile files": len(files), "refused": sum(n for k, n in codes.items() if k != "ACCEPTED"),
                       "accepted": codes.get("ACCEPTED", 0), "outcomes": codes,
                       "seconds per file, median": round(statistics.median(seconds), 4),
                       "seconds per file, max": round(longest[1], 3), "slowest": longest[0],
                       "canary created (code ran)": canary.exists(),
                       "daemon still serving": status["pid"] == d.proc.pid,
                       "RSS before MiB": round(rss0, 1), "RSS after MiB": round(rss_mib(d.proc.pid), 1),
                       "RSS peak MiB": round(hwm_mib(d.proc.pid), 1),
                       "workers free after (a normal open answers)": bool(c.request(
                           "sbexport/open", {"path": str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"
                                                      / "ppo2_mlp_vec_box" / "model.zip")})["modelId"])}
            figures.update(probe.stop())
            t = time.monotonic()
            d.proc.terminate()
            d.proc.wait(60)
            figures["SIGTERM to exit, seconds"] = round(time.monotonic() - t, 2)
            figures["files"] = {name: f"{outcome} in {dt * 1e3:.1f} ms" for name, outcome, dt in rows}
            return figures
        finally:
            d.stop()
