"""Issue 10, "Harden the daemon": each finding of the review, reproduced on a real
`sbexportd serve` process over its socket (hostile files built here), and what the
daemon does now. (Per-request memory and connection fairness are tested with the
request path.) The reader's side of findings 2, 4 and 8 is in test_harden_read.py,
the export transaction's crash recovery in test_export_transaction.py."""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import sbexportd
from conftest import FIXTURES, ROOT
from rpc_client import Client, Daemon, RpcError, b64, find_connection, frame, to_array
from tests.hostile import bombs as B
from tests.hostile import make

MLP = FIXTURES / "ppo2_mlp_vec_discrete" / "model.zip"
OBS = [[0.1, -0.2, 0.03, 0.4]]
FAKES = ROOT / "tests" / "fakes"


@pytest.fixture(scope="module")
def daemon():
    d = Daemon("--workers", "2")
    yield d
    d.stop()


@pytest.fixture
def client(daemon):
    c = daemon.client()
    yield c
    c.close()


def faulty_daemon(*faults: str, args: tuple = ()) -> Daemon:
    """A daemon whose export targets misbehave (tests/fakes/sitecustomize.py)."""
    return Daemon(*args, env={"PYTHONPATH": os.pathsep.join([str(FAKES), str(ROOT)]),
                              "SBEXPORTD_TEST_FAULTS": ",".join(faults)})


def error_of(c: Client, method: str, params: dict) -> RpcError:
    with pytest.raises(RpcError) as e:
        c.request(method, params)
    return e.value


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.exists() else []


# -- 1. browsers ---------------------------------------------------------------------------------
def ws_connect(d: Daemon, origin: str | None):
    from websockets.sync.client import connect
    kwargs = {"origin": origin} if origin is not None else {}
    return connect(f"ws://{d.host}:{d.port}", open_timeout=20, **kwargs)


def test_web_pages_cannot_open_a_websocket_to_the_daemon(tmp_path):
    """The review's page (Origin http://evil.example, or null from a sandboxed frame)
    initialized, opened a model and exported over an existing folder with force.
    Even without a token (--no-auth), its handshake is now refused with 403."""
    from websockets.exceptions import InvalidStatus
    victim = tmp_path / "victim"
    (victim / "portable").mkdir(parents=True)
    (victim / "portable" / "notes.txt").write_text("mine")
    d = Daemon("--no-auth", "--allow-origin", "http://localhost:3000", transport="ws")
    try:
        for origin in ("http://evil.example", "null", "https://localhost:3000", "http://localhost:3000.evil.example"):
            with pytest.raises(InvalidStatus) as e:
                ws_connect(d, origin)
            assert e.value.response.status_code == 403
        for origin in (None, "http://localhost:3000"):  # a program (no Origin), the allowed page
            ws = ws_connect(d, origin)
            ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                "params": {"processId": None, "capabilities": {}}}))
            assert "result" in json.loads(ws.recv(timeout=20))
            ws.close()
        status = d.client().request("sbexport/status")
        assert status["security"]["refused"]["origin"] == 4
        assert status["security"]["allowedOrigins"] == ["http://localhost:3000"]
    finally:
        d.stop()
    assert (victim / "portable" / "notes.txt").read_text() == "mine"


def test_an_http_request_on_the_tcp_port_is_closed_unanswered(tmp_path):
    """A page can POST to 127.0.0.1:<port> (no CORS preflight for text/plain): its
    body, framed by headers of its own, was read and executed. Now the first request
    line or Host/Origin header closes the connection, before any body is read."""
    d = Daemon("--no-auth")
    try:
        calls = [{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}},
                 {"jsonrpc": "2.0", "id": 2, "method": "sbexport/open", "params": {"path": str(MLP)}}]
        body = b"".join(frame(json.dumps(m).encode()) for m in calls)
        requests = [
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body,
            b"Content-Length: 2\r\nHost: evil.example\r\n\r\n{}",  # a header smuggled after a valid one
            b"GET /ws HTTP/1.1\r\nOrigin: http://evil.example\r\n\r\n",
        ]
        for raw in requests:
            with socket.create_connection((d.host, d.port), timeout=20) as s:
                s.sendall(raw)
                assert s.recv(4096) == b""  # closed, nothing answered
        status = d.client().request("sbexport/status")
        assert status["security"]["refused"]["http"] == 3
        assert status["models"] == [] and "sbexport/open" not in status["requests"]["byMethod"]
    finally:
        d.stop()


# -- 2. bounded unpickling ------------------------------------------------------------------------
def test_a_pickle_bomb_does_not_freeze_the_daemon(daemon, tmp_path):
    """A 425-byte pickle (nested lists of shared references as a numpy shape) stalled
    every connection and grew the daemon until it was killed. Now it is refused in
    milliseconds while another client's requests go on."""
    bomb_pkl = tmp_path / "bomb.pkl"
    bomb_pkl.write_bytes(B.in_model(B.reconstruct(B.shared_lists(40))))
    assert bomb_pkl.stat().st_size < 500
    bomb_zip = tmp_path / "bomb.zip"
    bomb_zip.write_bytes(make.sb2_zip(data={"policy": make.serialized_entry(B.alone(B.reconstruct(
        B.shared_lists(40))))}))
    keys_zip = tmp_path / "keys.zip"
    keys_zip.write_bytes(make.sb2_zip(data={"policy": make.serialized_entry(B.alone(B.dict_keyed_by(
        B.shared_tuples(40))))}))
    attacker, other = daemon.client(), daemon.client()
    mid = other.request("sbexport/open", {"path": str(MLP)})["modelId"]
    rss = other.request("sbexport/status")["rssBytes"]
    for path in (bomb_pkl, bomb_zip, keys_zip):
        rid = attacker.start("sbexport/open", {"path": str(path)})
        t = time.monotonic()
        for _ in range(5):  # meanwhile another client is served as usual
            other.request("sbexport/predict", {"modelId": mid, "obs": OBS})
        assert time.monotonic() - t < 5
        with pytest.raises(RpcError) as e:
            attacker.result(rid)
        assert e.value.code == -33002 and time.monotonic() - t < 10
        assert len(e.value.error["message"]) < 600
    assert other.request("sbexport/status")["rssBytes"] - rss < 100 << 20
    attacker.close()
    other.close()


# -- 4. only regular files ------------------------------------------------------------------------
def test_fifos_do_not_wedge_the_daemon_and_sigterm_stops_it(tmp_path):
    """A FIFO passed to open blocked a worker thread for good (SIGTERM no longer
    stopped the process). Four of them, with two workers, now fail at once."""
    d = Daemon("--workers", "2")
    try:
        c = d.client()
        fifos = []
        for i in range(4):
            os.mkfifo(tmp_path / f"fifo{i}.zip")
            fifos.append(tmp_path / f"fifo{i}.zip")
        ids = [c.start("sbexport/open", {"path": str(f)}) for f in fifos]
        ids.append(c.start("sbexport/open", {"path": "/dev/zero"}))
        t = time.monotonic()
        for rid in ids:
            with pytest.raises(RpcError) as e:
                c.result(rid)
            assert e.value.code == -33002 and e.value.kind == "bad_model_file"
            assert "regular file" in e.value.error["message"]
        assert time.monotonic() - t < 10
        assert c.request("sbexport/open", {"path": str(MLP)})["modelId"]  # the workers are free
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(20)
    finally:
        d.stop()


def test_sigterm_stops_the_daemon_even_with_work_stuck_in_a_thread(tmp_path):
    """Whatever a worker is stuck in (a device, a converter: here a writer that sleeps
    120 s), SIGTERM ends the process within its 10 s grace."""
    d = faulty_daemon("slow-write=120")
    try:
        c = d.client()
        mid = c.request("sbexport/open", {"path": str(MLP)})["modelId"]
        c.start("sbexport/export", {"modelId": mid, "to": "params", "out": str(tmp_path / "out"),
                                    "workDoneToken": "w"})
        while not any(n["params"]["value"].get("message") == "params: writing" for n in c.notifications):
            c.notifications.append(c.receive())
        t = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(30)
        assert time.monotonic() - t < 20
        assert any("exiting anyway" in line for line in d.stderr_lines)
        assert _cache_folders(d.proc.pid) == []  # its cache was removed on the way out
    finally:
        d.stop()
    assert visible(tmp_path / "out") == [] if (tmp_path / "out").exists() else True


def test_a_huge_sparse_file_is_refused_before_it_is_hashed(client, tmp_path):
    path = tmp_path / "big.zip"
    with open(path, "wb") as f:
        f.write(b"PK\x03\x04")
        f.truncate(4 << 30)
    t = time.monotonic()
    e = error_of(client, "sbexport/open", {"path": str(path)})
    assert e.code == -33002 and e.kind == "member_too_large" and time.monotonic() - t < 3


# -- 6 and 9. exports: atomic under kill -9, checked targets ---------------------------------------
def _cache_folders(pid: int) -> list[Path]:
    base = Path(tempfile.gettempdir()) / f"sbexportd-{os.getuid()}"
    return sorted(base.glob(f"exports-{pid}-*")) if base.is_dir() else []


def test_kill_9_during_an_export_leaves_nothing_visible_and_the_next_start_sweeps(tmp_path):
    """kill -9 mid-export left out/.pytorch.partial-* and the cache folder behind.
    Now out shows nothing, and the leftovers of the dead daemon (its cache folder,
    the hidden staging folder in out) are removed by the next daemon and export."""
    out = tmp_path / "out"
    d = faulty_daemon("slow-write=60")
    try:
        c = d.client()
        mid = c.request("sbexport/open", {"path": str(MLP)})["modelId"]
        c.start("sbexport/export", {"modelId": mid, "to": ["params", "portable"], "out": str(out),
                                    "workDoneToken": "w"})
        while not any(n["params"]["value"].get("message") == "params: writing" for n in c.notifications):
            c.notifications.append(c.receive())
        assert _cache_folders(d.proc.pid)
        d.proc.kill()
        d.proc.wait(20)
        dead = d.proc.pid
    finally:
        d.stop()
    assert visible(out) == []  # nothing a user would see (or mistake for an export)
    d = Daemon()
    try:
        assert _cache_folders(dead) == []  # swept at start
        c = d.client()
        mid = c.request("sbexport/open", {"path": str(MLP)})["modelId"]
        c.request("sbexport/export", {"modelId": mid, "to": ["params", "portable"], "out": str(out)})
        assert visible(out) == ["params", "portable"] and hidden(out) == []  # the dead staging swept too
    finally:
        d.stop()


def test_duplicate_targets_are_made_once(client, tmp_path):
    """to: ["portable", "params", "portable"] left portable and params in out while
    answering -33012."""
    mid = client.request("sbexport/open", {"path": str(MLP)})["modelId"]
    r = client.request("sbexport/export", {"modelId": mid, "to": ["portable", "params", "portable"],
                                           "out": str(tmp_path / "out")})
    assert [x["target"] for x in r["results"]] == ["portable", "params"] and r["complete"] is True
    assert visible(tmp_path / "out") == ["params", "portable"] and hidden(tmp_path / "out") == []


def test_export_targets_are_checked(daemon, client, tmp_path):
    """`out` inside the export cache poisoned the cache; `out: ""` wrote into the
    daemon's working directory; force over a regular file left .portable.old-*."""
    mid = client.request("sbexport/open", {"path": str(MLP)})["modelId"]
    cache = _cache_folders(daemon.proc.pid)
    assert len(cache) == 1
    for out in (str(cache[0]), str(cache[0] / "sub" / "dir"), "", "   ", "a\x00b"):
        e = error_of(client, "sbexport/export", {"modelId": mid, "to": "portable", "out": out})
        assert e.code == -32602, (out, e)
    out = tmp_path / "out"
    out.mkdir()
    (out / "portable").write_text("a file where the export goes")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "keep.txt").write_text("keep")
    (out / "params").symlink_to(tmp_path / "elsewhere")
    e = error_of(client, "sbexport/export", {"modelId": mid, "to": "portable", "out": str(out)})
    assert e.code == -33012
    client.request("sbexport/export", {"modelId": mid, "to": ["portable", "params"], "out": str(out), "force": True})
    assert (out / "portable").is_dir() and (out / "params").is_dir() and not (out / "params").is_symlink()
    assert (tmp_path / "elsewhere" / "keep.txt").read_text() == "keep"  # a replaced symlink's target is untouched
    assert hidden(out) == [] and visible(out) == ["params", "portable"]
    file_out = tmp_path / "file"
    file_out.write_text("x")
    e = error_of(client, "sbexport/export", {"modelId": mid, "to": "portable", "out": str(file_out)})
    assert e.code == -32602 and "folder" in e.error["message"]


def test_a_failed_target_is_reported_and_the_others_kept(tmp_path):
    """Issue 8 through the daemon: a target whose parity check fails is listed in
    `failed` with its error (naming out/<target>, never the private cache) and
    nothing is written under its name; the others are complete. allOrNothing keeps
    the old behaviour; a request none of whose targets worked is an error."""
    d = faulty_daemon("portable-parity")
    try:
        c = d.client()
        mid = c.request("sbexport/open", {"path": str(MLP)})["modelId"]
        out = tmp_path / "out"
        r = c.request("sbexport/export", {"modelId": mid, "to": ["params", "portable"], "out": str(out)})
        assert [x["target"] for x in r["results"]] == ["params"] and r["complete"] is False
        (failed,) = r["failed"]
        assert failed["target"] == "portable" and failed["ok"] is False
        assert failed["error"]["code"] == -33011 and failed["error"]["data"]["kind"] == "parity_failed"
        assert failed["error"]["data"]["file"] == str(out / "portable")
        assert "sbexportd-" not in failed["error"]["message"]  # no private cache or staging path
        assert visible(out) == ["params"] and hidden(out) == []
        e = error_of(c, "sbexport/export", {"modelId": mid, "to": ["params", "portable"], "out": str(tmp_path / "b"),
                                            "allOrNothing": True})
        assert e.code == -33011 and not (tmp_path / "b").exists()
        e = error_of(c, "sbexport/export", {"modelId": mid, "to": "portable", "out": str(tmp_path / "c")})
        assert e.code == -33011 and [f["target"] for f in e.data["failed"]] == ["portable"]
        assert not (tmp_path / "c").exists()
    finally:
        d.stop()


def test_to_all_keeps_what_verified(tmp_path):
    """Issue 8's `--to all` through the daemon: every target of `all` is made and
    verified; the one whose parity check fails is reported in `failed`, and every
    other is written, complete, with its passed parity check in its manifest."""
    from sbexportd.export.targets import TARGETS
    d = faulty_daemon("portable-parity")
    try:
        c = Client.tcp(d.host, d.port, timeout=1200)  # every target: TensorFlow, tf2onnx, tfjs, LiteRT, torch
        c.token = d.token
        c.initialize()
        mid = c.request("sbexport/open", {"path": str(MLP)})["modelId"]
        out = tmp_path / "out"
        r = c.request("sbexport/export", {"modelId": mid, "to": "all", "out": str(out)})
        others = sorted(n for n, t in TARGETS.items() if t.in_all and n != "portable")
        assert len(others) >= 6 and sorted(x["target"] for x in r["results"]) == others
        assert all(x["ok"] and x["parity"]["passed"] for x in r["results"]), r["results"]
        assert [(f["target"], f["error"]["code"]) for f in r["failed"]] == [("portable", -33011)]
        assert r["complete"] is False
        assert visible(out) == others and hidden(out) == []
        for name in others:
            assert json.loads((out / name / "manifest.json").read_text())["parity"]["passed"] is True
        c.close()
    finally:
        d.stop()


# -- 7. authentication ------------------------------------------------------------------------------
def test_a_token_is_generated_and_written_to_a_private_connection_file():
    d = Daemon()
    try:
        info = d.connection
        assert info["transport"] == "tcp" and info["port"] == d.port and info["pid"] == d.proc.pid
        assert len(info["token"]) >= 40
        path = Path(d.env["SBEXPORTD_RUNTIME_DIR"]) / f"sbexportd-{d.proc.pid}.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        cmdline = Path(f"/proc/{d.proc.pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{d.proc.pid}/environ").read_bytes()
        assert info["token"].encode() not in cmdline and info["token"].encode() not in environ
        assert info["token"] not in "".join(d.stderr_lines)
        c = d.client(initialize=False, token=None)
        e = error_of(c, "initialize", {"processId": None, "capabilities": {}})
        assert e.code == -33020
        with pytest.raises(ConnectionError):  # failed auth closes the connection
            c.request("sbexport/status")
        d.client().close()  # with the token from the file
    finally:
        d.stop()
    assert not path.exists()  # removed when the daemon stops


def test_the_token_never_comes_from_argv_and_is_never_empty(tmp_path):
    def serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sbexportd.cli", "serve", "--tcp", "127.0.0.1:0", *args],
                              capture_output=True, text=True, timeout=60, cwd=ROOT,
                              env={**os.environ, "SBEXPORTD_RUNTIME_DIR": str(tmp_path), **(env or {})})
    r = serve("--token", "s3cret-on-the-command-line")
    assert r.returncode == 2 and "ps" in r.stderr
    for value in ("", "   ", "short"):
        r = serve(env={"SBEXPORTD_TOKEN": value})
        assert r.returncode == 2 and "token" in r.stderr, r.stderr
    (tmp_path / "empty").write_text("\n")
    r = serve("--token-file", str(tmp_path / "empty"))
    assert r.returncode == 2 and "empty" in r.stderr
    token_file = tmp_path / "token"
    token_file.write_text("a-token-from-a-file-0123456789\n")
    d = Daemon("--token-file", str(token_file))
    try:
        assert d.token == "a-token-from-a-file-0123456789"
        d.client().close()
    finally:
        d.stop()


def test_no_auth_is_explicit_and_warned():
    d = Daemon("--no-auth")
    try:
        assert d.token is None and d.connection["token"] is None
        assert any("--no-auth" in line for line in d.stderr_lines)
        d.client(token=None).close()
    finally:
        d.stop()


def test_wrong_guesses_are_slowed_daemon_wide():
    """6,283 guesses a second were possible; now, whatever the number of
    connections, a burst of 10 and then 2 a second, while a right token still gets in."""
    from sbexportd.serve.auth import BURST, RATE
    d = Daemon()
    try:
        n = BURST + 8
        done: list[float] = []
        t0 = time.monotonic()

        def guess(i: int) -> None:
            c = Client.tcp(d.host, d.port)
            with pytest.raises(RpcError):
                c.initialize(f"guess-{i:04d}-0123456789")
            done.append(time.monotonic() - t0)
            c.close()
        threads = [threading.Thread(target=guess, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(done) == n
        took = max(done)
        assert took >= (n - BURST) / RATE * 0.9, done  # the guesses beyond the burst came RATE a second
        c = d.client()  # the right token is let in (it waited its turn at most)
        assert c.request("sbexport/status")["security"]["refused"]["auth"] == n
        c.close()
    finally:
        d.stop()


def test_stdio_needs_no_token():
    d = Daemon(transport="stdio", env={"SBEXPORTD_TOKEN": "ignored-on-stdio-0123456789"})
    try:
        c = d.client(token=None)
        assert c.request("sbexport/status")["security"]["auth"] is False
    finally:
        d.stop()


def test_connection_files_of_dead_daemons_are_swept(tmp_path):
    stale = tmp_path / "sbexportd-999999999.json"
    stale.write_text(json.dumps({"transport": "tcp", "host": "127.0.0.1", "port": 1, "token": "x" * 20,
                                 "pid": 999999999}))
    assert find_connection(None, {"SBEXPORTD_RUNTIME_DIR": str(tmp_path)}) is None  # clients skip it
    d = Daemon(env={"SBEXPORTD_RUNTIME_DIR": str(tmp_path)})
    try:
        assert not stale.exists()
        assert find_connection(None, {"SBEXPORTD_RUNTIME_DIR": str(tmp_path)})["port"] == d.port
        from sbexportd.serve.auth import find_connection_file  # the library's own finder agrees
        info = find_connection_file("localhost", d.port, folder=tmp_path)
        assert info["token"] == d.token and info["connectionFile"] == str(tmp_path / f"sbexportd-{d.proc.pid}.json")
        assert find_connection_file(port=d.port + 1, folder=tmp_path) is None
    finally:
        d.stop()


# -- --root ----------------------------------------------------------------------------------------
def test_root_confines_what_clients_open_and_where_they_write(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "agent").mkdir(parents=True)
    outside.mkdir()
    shutil.copy(MLP, root / "agent" / "model.zip")
    shutil.copy(MLP, outside / "model.zip")
    shutil.copy(FIXTURES / "ppo2_mlp_vecnormalize" / "vecnormalize.pkl", outside / "vecnormalize.pkl")
    (root / "escape.zip").symlink_to(outside / "model.zip")
    (root / "out-link").symlink_to(outside)
    # "auto" finds <dir>/<stem>/vecnormalize.pkl: here a symlink leading out of the root
    (root / "agent" / "model").mkdir()
    (root / "agent" / "model" / "vecnormalize.pkl").symlink_to(outside / "vecnormalize.pkl")
    d = Daemon("--root", str(root))
    try:
        c = d.client()
        assert c.request("sbexport/status")["security"]["roots"] == [str(root)]
        for params in ({"path": str(outside / "model.zip")}, {"path": str(root / "escape.zip")},
                       {"path": str(root / ".." / "outside" / "model.zip")},
                       {"path": str(root / "agent" / "model.zip"), "vecnormalize": str(outside / "vecnormalize.pkl")},
                       {"path": str(root / "agent" / "model.zip"), "vecnormalize": "auto"}):
            e = error_of(c, "sbexport/open", params)
            assert e.code == -33021 and e.kind == "path_not_allowed", params
        mid = c.request("sbexport/open", {"path": str(root / "agent" / "model.zip")})["modelId"]
        for out in (outside / "x", root / "out-link" / "x", root / ".." / "outside" / "y"):
            e = error_of(c, "sbexport/export", {"modelId": mid, "to": "params", "out": str(out)})
            assert e.code == -33021, out
        assert sorted(p.name for p in outside.iterdir()) == ["model.zip", "vecnormalize.pkl"]
        r = c.request("sbexport/export", {"modelId": mid, "to": "params", "out": str(root / "exports")})
        assert r["complete"] and (root / "exports" / "params" / "manifest.json").is_file()
    finally:
        d.stop()


def _zoo_layout(folder: Path, config: Path, stats: Path) -> Path:
    """zoo-more's a2c BipedalWalkerHardcore (config.yml: normalize true, frame_stack 4;
    obs_rms.pkl) in `folder`, its config.yml and obs_rms.pkl symlinks to `config`, `stats`."""
    from zoo import ZOO_MORE
    src = ZOO_MORE / "agents" / "a2c" / "BipedalWalkerHardcore-v2.pkl"
    if not src.is_file():
        pytest.skip(f"{src} not found (set SBEXPORTD_ZOO_MORE): sidecar confinement NOT tested")
    (folder / src.stem).mkdir(parents=True)
    shutil.copy(src, folder / src.name)
    for name, target in (("config.yml", config), ("obs_rms.pkl", stats)):
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src.parent / src.stem / name, target)
        (folder / src.stem / name).symlink_to(target)
    return folder / src.name


@pytest.mark.zoo
def test_root_confines_the_sidecars_found_beside_a_model(client, tmp_path):
    """serve --root: the zoo's config.yml and the VecNormalize statistics the daemon
    finds by itself beside a model are held to the roots like a path a client names:
    a symlink leading out is refused with -33021 naming the sidecar, before it is read
    (not skipped: the agent would run without its normalization / frame stack), and
    the daemon carries on. The same layout with the targets inside the root opens as
    it does without roots: same frame stack, same normalization, same actions."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    cfg_out = _zoo_layout(root / "cfg-out", outside / "config.yml", root / "store" / "obs_rms.pkl")
    stats_out = _zoo_layout(root / "stats-out", root / "store" / "config.yml", outside / "obs_rms.pkl")
    inside = _zoo_layout(root / "inside", root / "store" / "config.yml", root / "store" / "obs_rms.pkl")
    # ret_rms.pkl (read for the counts an sb3 export carries) is a sidecar like the others
    ret_out = _zoo_layout(root / "ret-out", root / "store" / "config.yml", root / "store" / "obs_rms.pkl")
    (ret_out.parent / ret_out.stem / "ret_rms.pkl").symlink_to(outside / "ret_rms.pkl")
    from zoo import ZOO_MORE
    shutil.copy(ZOO_MORE / "agents" / "a2c" / ret_out.stem / "ret_rms.pkl", outside / "ret_rms.pkl")
    # SB2 >= 2.10's vecnormalize.pkl beside the model, and a folder a client names holding one
    (root / "vn").mkdir()
    shutil.copy(MLP, root / "vn" / "model.zip")
    (root / "vn" / "vecnormalize.pkl").symlink_to(outside / "vecnormalize.pkl")
    shutil.copy(FIXTURES / "ppo2_mlp_vecnormalize" / "vecnormalize.pkl", outside / "vecnormalize.pkl")
    auto = {"vecnormalize": "auto", "frameStack": "auto"}
    d = Daemon("--root", str(root))
    try:
        c = d.client()
        refused = [({"path": str(cfg_out), "frameStack": "auto"}, "config.yml"),
                   ({"path": str(cfg_out), "vecnormalize": "auto"}, "config.yml"),
                   ({"path": str(stats_out), **auto}, "obs_rms.pkl"),
                   ({"path": str(ret_out), **auto}, "ret_rms.pkl"),
                   ({"path": str(root / "vn" / "model.zip"), "vecnormalize": "auto"}, "vecnormalize.pkl"),
                   ({"path": str(root / "vn" / "model.zip"), "vecnormalize": str(root / "vn")}, "vecnormalize.pkl")]
        for params, sidecar in refused:
            e = error_of(c, "sbexport/open", params)
            assert (e.code, e.kind) == (-33021, "path_not_allowed"), params
            assert sidecar in e.error["message"] and "--root" in e.error["message"], e.error["message"]
            assert str(outside) not in e.error["message"]  # where the symlink leads is not told
        # the model itself is inside: opened without "auto", nothing beside it is read...
        plain = c.request("sbexport/open", {"path": str(cfg_out)})
        assert plain["summary"]["frame_stack"] is None and not plain["summary"]["vecnormalize"]
        # ...and inspect's account of what "auto" would do does not read the config either
        said = c.request("sbexport/inspect", {"modelId": plain["modelId"]})["auto"]
        assert said["frame_stack"] == 0 and "config.yml" in said["reason"] and "--root" in said["reason"]
        # the daemon carries on: the same agent, its sidecars inside the root
        ok = c.request("sbexport/open", {"path": str(inside), **auto})
        stacked = c.request("sbexport/open", {"path": str(stats_out), "frameStack": "auto"})  # stats not read
        # without roots (the module's daemon) the same layouts open, the outside ones included
        free = {name: client.request("sbexport/open", {"path": str(path), **auto})
                for name, path in (("inside", inside), ("cfg_out", cfg_out), ("stats_out", stats_out))}
        from zoo import ZOO_MORE
        zoo = client.request("sbexport/open", {"path": str(ZOO_MORE / "agents" / "a2c" / cfg_out.name), **auto})
        for r in (ok, *free.values(), zoo):
            assert r["summary"]["frame_stack"] == {"n": 4, "state_shape": [None, 72]}
            assert r["summary"]["vecnormalize"] is True and r["summary"]["input"]["shape"] == [None, 24]
        assert stacked["summary"]["frame_stack"] == ok["summary"]["frame_stack"]
        assert not stacked["summary"]["vecnormalize"]
        g = np.load(ZOO_MORE / "goldens" / "a2c" / "BipedalWalkerHardcore-v2.npz")
        obs = np.ascontiguousarray(g["obs"].reshape(len(g["obs"]), 4, 24)[:, -1], np.float32)
        want = sbexportd.load(ZOO_MORE / "agents" / "a2c" / cfg_out.name, "auto", frame_stack="auto").predict(
            obs, backend="numpy")
        answers = [(c, ok), *((client, r) for r in (*free.values(), zoo))]
        for conn, r in answers:
            got = conn.request("sbexport/predict", {"modelId": r["modelId"], "obs": b64(obs), "encoding": "base64",
                                                    "backend": "numpy"})
            assert np.array_equal(to_array(got["outputs"]["actions"]), want["actions"]), r["summary"]["file"]
            assert np.array_equal(to_array(got["outputs"]["state"]), want["state"]), r["summary"]["file"]
        assert c.request("sbexport/status")["security"]["roots"] == [str(root)]
    finally:
        d.stop()


def test_root_confines_what_evaluate_reads_beside_a_model(tmp_path):
    """sbexport/evaluate loads the agent as sbexport/open does: under --root, a config.yml
    beside it leading out of the root is refused before it is read (its normalize,
    frame_stack and env_wrapper decide how the agent runs); inside, the episodes run."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    cfg_out = _zoo_layout(root / "cfg-out", outside / "config.yml", root / "store" / "obs_rms.pkl")
    inside = _zoo_layout(root / "inside", root / "store" / "config.yml", root / "store" / "obs_rms.pkl")
    d = Daemon("--root", str(root))
    try:
        c = d.client()
        e = error_of(c, "sbexport/evaluate", {"path": str(cfg_out), "episodes": 1})
        assert (e.code, e.kind) == (-33021, "path_not_allowed") and "config.yml" in e.error["message"], e.error
        assert str(outside) not in e.error["message"]
        ran = c.request("sbexport/evaluate", {"path": str(inside), "episodes": 1, "backend": "onnxruntime"})
        assert len(ran["returns"]) == 1 and any("frames stacked" in n for n in ran["notes"]), ran
    finally:
        d.stop()


def test_sidecars_read_after_load_keep_the_confinement(tmp_path):
    """The model keeps load's confine for the sidecars read later: inspect's account
    of "auto", and the sb3 / rl-zoo3 exports' reading of config.yml (refused, not
    guessed: their normalize and env_wrapper shape the export)."""
    from sbexportd.errors import PathNotAllowed
    from sbexportd.export.targets.sb3 import _zoo_normalize_kwargs
    from sbexportd.serve.roots import Roots
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "model").mkdir(parents=True)
    outside.mkdir()
    shutil.copy(MLP, root / "model.zip")
    (outside / "config.yml").write_text("normalize: false\nframe_stack: 2\nn_timesteps: 1000\n")
    (root / "model" / "config.yml").symlink_to(outside / "config.yml")
    confined = sbexportd.load(root / "model.zip", confine=Roots([root]).confine)
    for read in (confined.zoo_config, confined.zoo_settings, lambda: _zoo_normalize_kwargs(confined)):
        with pytest.raises(PathNotAllowed, match=r"config\.yml"):
            read()
    assert "--root" in confined.inspect()["auto"]["reason"]
    free = sbexportd.load(root / "model.zip")  # no confine: as before
    assert free.zoo_config()["n_timesteps"] == 1000 and free.zoo_settings().frame_stack == 2
    assert sbexportd.load(root / "model.zip", confine=Roots([tmp_path]).confine).zoo_config() == free.zoo_config()


def test_a_symlink_swapped_between_check_and_open_is_caught(tmp_path):
    """--root's check and the open are two lookups: a link swapped between them (a
    process writing inside a root) would lead the read outside. The file actually
    opened is checked again, for the model and for its sidecars; without a swap the
    same files are read."""
    from sbexportd.errors import PathNotAllowed
    from sbexportd.serve.roots import Roots
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    (root / "model").mkdir(parents=True)
    outside.mkdir()
    for folder in (root, outside):
        shutil.copy(MLP, folder / "real.zip")
        (folder / "real.yml").write_text("normalize: false\nn_timesteps: 1000\n")
    (root / "model.zip").symlink_to(root / "real.zip")
    (root / "model" / "config.yml").symlink_to(root / "real.yml")
    roots = Roots([root])

    def racing(victim: Path):
        def confine(path: Path, what: str) -> None:
            roots.check(path, what)
            real = victim.resolve()
            if Path(path) == victim and real.parent == root:  # checked: now swap it
                victim.unlink()
                victim.symlink_to(outside / real.name)
        return confine

    assert sbexportd.load(root / "model.zip", confine=roots.confine).zoo_config()["n_timesteps"] == 1000
    for victim, read in [(root / "model.zip", lambda c: sbexportd.load(root / "model.zip", confine=c)),
                         (root / "model" / "config.yml",
                          lambda c: sbexportd.load(root / "model.zip", confine=c).zoo_config())]:
        target = victim.resolve()
        with pytest.raises(PathNotAllowed, match="changed after it was checked") as e:
            read(racing(victim))
        assert str(outside) not in str(e.value)  # the path as given, never where it led
        victim.unlink()
        victim.symlink_to(target)


# -- 8. errors leak nothing ------------------------------------------------------------------------
def test_errors_tell_no_file_content_and_no_resolved_path(client, tmp_path):
    secret = tmp_path / "shadow"
    secret.write_bytes(b"root:$6$saltsalt$0123456789abcdef:19000:0:99999:7:::\n")
    e = error_of(client, "sbexport/open", {"path": str(secret)})
    assert e.code == -33002 and "root" not in e.error["message"].replace(str(secret), "")
    private = tmp_path / "private.zip"
    with zipfile.ZipFile(private, "w") as zf:
        zf.writestr("salaries-2024.xlsx", b"x")
    e = error_of(client, "sbexport/open", {"path": str(private)})
    assert "salaries" not in e.error["message"]
    hidden_dir = tmp_path / "hidden-target-folder"
    hidden_dir.mkdir()
    shutil.copy(MLP, hidden_dir / "model.zip")
    link = tmp_path / "link.zip"
    link.symlink_to(hidden_dir / "model.zip")
    r = client.request("sbexport/open", {"path": str(link)})
    assert r["summary"]["file"] == str(link)
    assert "hidden-target-folder" not in json.dumps(client.request("sbexport/status"))


# -- 10. every documented code, an answer for every id, ctime ---------------------------------------
def test_an_id_with_a_lone_surrogate_is_answered(daemon):
    c = Client.tcp(daemon.host, daemon.port)
    c.initialize(daemon.token)
    c.send_raw(frame(b'{"jsonrpc": "2.0", "id": "\\ud800", "method": "sbexport/status"}'))
    answer = c.receive()
    assert answer["id"] == "\ud800" and "result" in answer
    c.send_raw(frame(b'{"jsonrpc": "2.0", "id": 7, "method": "sbexport/open", "params": {"path": "\\udc80.zip"}}'))
    answer = c.receive()
    assert answer["id"] == 7 and answer["error"]["code"] == -32602
    c.close()


@pytest.mark.parametrize("params, code", [
    ({"path": "model\x00.zip"}, -32602),
    ({"path": str(MLP), "vecnormalize": "/tmp/x\x00y"}, -32602),
    ({"path": str(MLP), "activation": "not-an-activation"}, -32602),
    ({"path": ""}, -32602),
])
def test_bad_open_params_have_their_documented_codes(client, params, code):
    assert error_of(client, "sbexport/open", params).code == code


@pytest.mark.parametrize("extra, code", [
    ({"seed": -1, "deterministic": False}, -32602),
    ({"seed": 1.5, "deterministic": False}, -32602),  # (any non-negative integer seeds NumPy: 2**200 too)
    ({"obs": {"dtype": "float32", "shape": [1, 4], "data": ["a", "b", "c", "d"]}}, -33005),
    ({"obs": {"dtype": "int8", "shape": [1, 4], "data": [1000, 0, 0, 0]}}, -33005),
    # a shape over --max-predict-values is refused from the shape alone, before the data
    # is looked at (test_serve_limits.py): batch_too_large, a documented code
    ({"obs": {"dtype": "float32", "shape": [2**40, 2**40], "data": ""}}, -33030),
    ({"obs": {"dtype": "float32", "shape": [2**20, 4], "data": ""}}, -33005),
    ({"obs": {"dtype": "float32", "shape": [-1, 4], "data": ""}}, -33005),
    ({"obs": [[1, 2], [3]]}, -33005),
])
def test_bad_predict_params_have_their_documented_codes(client, extra, code):
    mid = client.request("sbexport/open", {"path": str(MLP)})["modelId"]
    e = error_of(client, "sbexport/predict", {"modelId": mid, "obs": OBS, **extra})
    assert e.code == code, e


def _stored_copy(src: Path, dst: Path, scale: float = 1.0) -> None:
    """The SB2 zip rewritten uncompressed, its first parameter scaled: two such
    copies have the same size whatever the scale."""
    with zipfile.ZipFile(src) as zin:
        members = {n: zin.read(n) for n in zin.namelist()}
    with zipfile.ZipFile(io.BytesIO(members["parameters"])) as npz:
        arrays = {n: np.load(io.BytesIO(npz.read(n))) for n in npz.namelist()}
    first = next(iter(arrays))
    arrays[first] = (arrays[first] * scale).astype(arrays[first].dtype)
    members["parameters"] = make.npz_bytes({n[:-4]: a for n, a in arrays.items()})
    data = make.zip_bytes(list(members.items()))
    with open(dst, "r+b" if dst.exists() else "wb") as f:  # in place: the same inode
        f.write(data)
        f.truncate()


def test_an_in_place_edit_with_the_mtime_restored_is_reloaded(client, tmp_path):
    """(mtime, size, inode) were the same after an in-place edit with its mtime put
    back, so stale answers were served. The ctime cannot be put back."""
    path = tmp_path / "agent.zip"
    _stored_copy(MLP, path)
    st = path.stat()
    mid = client.request("sbexport/open", {"path": str(path)})["modelId"]
    before = client.request("sbexport/predict", {"modelId": mid, "obs": OBS})["outputs"]
    time.sleep(0.05)
    _stored_copy(MLP, path, scale=-3.0)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after_st = path.stat()
    assert (after_st.st_mtime_ns, after_st.st_size, after_st.st_ino) == (st.st_mtime_ns, st.st_size, st.st_ino)
    after = client.request("sbexport/predict", {"modelId": mid, "obs": OBS})["outputs"]
    assert after["probs"] != before["probs"]
