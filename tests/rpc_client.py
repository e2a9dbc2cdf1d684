"""An independent client for `sbexportd serve`, written from protocol.md alone:
raw sockets / pipes, its own Content-Length framing, JSON or msgpack bodies, and a
`websockets` client for WebSocket. Also starts and stops real daemon processes."""
from __future__ import annotations

import base64
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
JSON_TYPE = b"application/vscode-jsonrpc; charset=utf-8"
MSGPACK_TYPE = b"application/msgpack"


class RpcError(Exception):
    def __init__(self, error: dict):
        self.error = error
        self.code = error.get("code")
        self.data = error.get("data") or {}
        self.kind = self.data.get("kind")
        super().__init__(f"{self.code} {error.get('message')} {self.data}")


# -- arrays ---------------------------------------------------------------------------------
def to_array(value: Any) -> np.ndarray:
    """Any array encoding the daemon answers with -> ndarray."""
    if isinstance(value, dict) and set(value) == {"dtype", "shape", "data"}:
        data = value["data"]
        if isinstance(data, str):
            data = base64.b64decode(data)
        dt = np.dtype(value["dtype"]).newbyteorder("<")
        return np.frombuffer(data, dt).reshape(value["shape"])
    return np.asarray(value)


def b64(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.name, "shape": list(a.shape),
            "data": base64.b64encode(a.astype(a.dtype.newbyteorder("<")).tobytes()).decode()}


def raw(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.name, "shape": list(a.shape), "data": a.astype(a.dtype.newbyteorder("<")).tobytes()}


# -- framing -------------------------------------------------------------------------------
def frame(body: bytes, content_type: bytes | None = None) -> bytes:
    head = b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    if content_type:
        head += b"Content-Type: " + content_type + b"\r\n"
    return head + b"\r\n" + body


def encode(msg: dict, encoding: str) -> bytes:
    if encoding == "msgpack":
        return frame(msgpack.packb(msg, use_bin_type=True), MSGPACK_TYPE)
    return frame(json.dumps(msg).encode("utf-8"))


class _Stream:
    """Reads LSP frames from a recv(n) callable."""

    def __init__(self, recv):
        self._recv = recv
        self._buf = bytearray()

    def _fill(self) -> None:
        chunk = self._recv(1 << 16)
        if not chunk:
            raise ConnectionError("the daemon closed the connection")
        self._buf += chunk

    def read_frame(self) -> tuple[dict, bytes]:
        while b"\r\n\r\n" not in self._buf:
            self._fill()
        end = self._buf.index(b"\r\n\r\n")
        headers = {}
        for line in bytes(self._buf[:end]).split(b"\r\n"):
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode()] = value.strip().decode()
        del self._buf[:end + 4]
        n = int(headers["content-length"])
        while len(self._buf) < n:
            self._fill()
        body = bytes(self._buf[:n])
        del self._buf[:n]
        return headers, body


class Client:
    """One connection. request() returns the result or raises RpcError; notifications
    that arrive meanwhile are kept in .notifications."""

    def __init__(self, send, recv=None, close=None, ws=None):
        self._send, self._close, self._ws = send, close, ws
        self.stream = _Stream(recv) if recv else None
        self.ids = itertools.count(1)
        self.notifications: list[dict] = []
        self.responses: dict[Any, dict] = {}
        self.last_content_type: str | None = None
        self.last_body_size = 0

    # transports
    @classmethod
    def tcp(cls, host: str, port: int, timeout: float = 60) -> Client:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = cls(sock.sendall, sock.recv, sock.close)
        c.sock = sock
        return c

    @classmethod
    def pipes(cls, proc: subprocess.Popen) -> Client:
        def send(data):
            proc.stdin.write(data)
            proc.stdin.flush()
        return cls(send, lambda n: os.read(proc.stdout.fileno(), n), lambda: proc.stdin.close())

    @classmethod
    def websocket(cls, url: str, timeout: float = 60) -> Client:
        from websockets.sync.client import connect
        ws = connect(url, open_timeout=timeout, max_size=None)
        c = cls(None, None, ws.close, ws=ws)
        c.timeout = timeout
        return c

    # messages
    def send_raw(self, data: bytes) -> None:
        self._send(data)

    def send(self, msg: dict, encoding: str = "json") -> None:
        if self._ws is not None:
            self._ws.send(msgpack.packb(msg, use_bin_type=True) if encoding == "msgpack" else json.dumps(msg))
        else:
            self._send(encode(msg, encoding))

    def receive(self) -> dict:
        if self._ws is not None:
            data = self._ws.recv(timeout=self.timeout)
            self.last_content_type = "json" if isinstance(data, str) else "msgpack"
            self.last_body_size = len(data)
            return json.loads(data) if isinstance(data, str) else msgpack.unpackb(data, raw=False)
        headers, body = self.stream.read_frame()
        ctype = headers.get("content-type", JSON_TYPE.decode())
        self.last_content_type = "msgpack" if ctype.startswith("application/msgpack") else "json"
        self.last_body_size = len(body)
        return msgpack.unpackb(body, raw=False) if self.last_content_type == "msgpack" else json.loads(body)

    def wait(self, rid) -> dict:
        """The response to rid (error or result), keeping anything else that arrives."""
        while rid not in self.responses:
            msg = self.receive()
            if "method" in msg and "id" not in msg:
                self.notifications.append(msg)
            elif "id" in msg:
                self.responses[msg["id"]] = msg
        return self.responses.pop(rid)

    def start(self, method: str, params: Any = None, encoding: str = "json") -> int:
        rid = next(self.ids)
        msg = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg, encoding)
        return rid

    def result(self, rid) -> Any:
        msg = self.wait(rid)
        if "error" in msg:
            raise RpcError(msg["error"])
        return msg["result"]

    def request(self, method: str, params: Any = None, encoding: str = "json") -> Any:
        return self.result(self.start(method, params, encoding))

    def notify(self, method: str, params: Any = None, encoding: str = "json") -> None:
        msg = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg, encoding)

    def initialize(self, token: str | None = None, encoding: str = "json") -> dict:
        opts = {"token": token} if token is not None else None
        result = self.request("initialize", {"processId": os.getpid(), "capabilities": {},
                                             "initializationOptions": opts}, encoding)
        self.notify("initialized", {}, encoding)
        return result

    def close(self) -> None:
        if self._close:
            try:
                self._close()
            except OSError:
                pass


# -- daemon processes ---------------------------------------------------------------------
class Daemon:
    """A real `python -m sbexportd.cli serve ...` process. stderr is drained in a thread
    (a full pipe would block the daemon) and kept for assertions."""

    def __init__(self, *args: str, transport: str = "tcp", env: dict | None = None, max_files: int | None = None):
        """max_files: the daemon's file-descriptor limit (soft and hard), as on a
        machine whose `ulimit -n` is that low."""
        self.transport = transport
        where = {"tcp": ["--tcp", "127.0.0.1:0"], "ws": ["--ws", "127.0.0.1:0"], "stdio": ["--stdio"]}[transport]

        def limit():
            import resource
            resource.setrlimit(resource.RLIMIT_NOFILE, (max_files, max_files))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sbexportd.cli", "serve", *where, *args], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE if transport == "stdio" else subprocess.DEVNULL,
            stderr=subprocess.PIPE, env={**os.environ, **(env or {})},
            preexec_fn=limit if max_files else None)
        self.stderr_lines: list[str] = []
        self._ready = threading.Event()
        self.host = self.port = None
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._ready.wait(60):
            self.stop()
            raise RuntimeError("daemon did not start:\n" + "".join(self.stderr_lines))
        if self.proc.poll() is not None:
            raise RuntimeError("daemon exited:\n" + "".join(self.stderr_lines))

    def _drain(self) -> None:
        for raw_line in iter(self.proc.stderr.readline, b""):
            line = raw_line.decode(errors="replace")
            self.stderr_lines.append(line)
            m = re.search(r"listening on \[?([^\]\s]+?)\]?:(\d+)", line)
            if m and self.port is None:
                self.host, self.port = m.group(1), int(m.group(2))
                self._ready.set()
            elif "serving on stdio" in line:
                self._ready.set()
        self._ready.set()

    def client(self, initialize: bool = True, token: str | None = None) -> Client:
        if self.transport == "tcp":
            c = Client.tcp(self.host, self.port)
        elif self.transport == "ws":
            c = Client.websocket(f"ws://{self.host}:{self.port}")
        else:
            c = Client.pipes(self.proc)
        if initialize:
            c.initialize(token)
        return c

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f:
                try:
                    f.close()
                except OSError:
                    pass
        return self.proc.returncode


def memory(pid: int) -> dict[str, int]:
    """A process's resident memory now (VmRSS) and at its peak (VmHWM), in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":")
            out[key] = int(value.split()[0]) * 1024
    return {"rss": out["VmRSS"], "peak": out["VmHWM"]}


def wait_until(predicate, timeout: float = 30, interval: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return False
