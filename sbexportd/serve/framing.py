"""The LSP base protocol on byte streams, and message bodies in JSON or msgpack.

pygls' own loop (pygls.io_.run_async) ignores Content-Type, has no size limit,
never answers a parse error, and its writer counts Content-Length in characters;
this one reads headers byte-exactly, bounds every frame, answers what it cannot
parse (id null) and resynchronizes on the next Content-Length header."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import Any

import msgpack

from . import errors
from .arrays import json_default, msgpack_default
from .errors import ServeError

log = logging.getLogger("sbexportd.serve")

JSON = "json"
MSGPACK = "msgpack"
JSON_TYPE = "application/vscode-jsonrpc; charset=utf-8"
MSGPACK_TYPE = "application/msgpack"
_JSON_MEDIA = {"application/vscode-jsonrpc", "application/json"}
_MSGPACK_MEDIA = {"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"}

MAX_HEADER_LINE = 8192
MAX_HEADER_LINES = 32
SKIP_CHUNK = 1 << 20


class FrameError(Exception):
    """A frame that cannot be read. `resync`: its length is unknown, so the reader
    must look for the next Content-Length header; `fatal`: the stream is unusable;
    `error` None: close without an answer."""

    def __init__(self, error: ServeError | None, *, resync: bool = False, fatal: bool = False, skip: int = 0):
        super().__init__(error.message if error is not None else "refused")
        self.error, self.resync, self.fatal, self.skip = error, resync, fatal, skip


# A web page can make a browser send an HTTP request to any host and port, and an
# HTTP request carries a body the page chose: with Content-Length headers of its own
# making, that body would be read as our frame. No LSP client sends a request line
# or a Host / Origin header, so a connection that does is closed unanswered (as
# Redis does against cross-protocol scripting).
_HTTP_REQUEST_LINE = re.compile(rb"^[A-Z]{3,10} \S+ HTTP/\d", re.I)
_HTTP_ONLY_HEADERS = (b"host:", b"origin:")


def looks_like_http(line: bytes) -> bool:
    head = line.lstrip()[:16].lower()
    return bool(_HTTP_REQUEST_LINE.match(line.lstrip())) or head.startswith(_HTTP_ONLY_HEADERS)


def _bad(message: str, kind: str = "bad_frame", code: int = errors.PARSE_ERROR) -> ServeError:
    return ServeError(code, message, kind)


def content_encoding(value: str | None) -> str | None:
    """JSON / MSGPACK for a Content-Type header value, None if unsupported."""
    if value is None:
        return JSON
    media, *params = [p.strip().lower() for p in value.split(";")]
    charset = next((p.split("=", 1)[1].strip().strip('"') for p in params if p.startswith("charset=")), None)
    if media in _JSON_MEDIA and charset in (None, "utf-8", "utf8"):
        return JSON
    if media in _MSGPACK_MEDIA:
        return MSGPACK
    return None


@dataclass
class Frame:
    encoding: str
    body: bytes


async def read_frame(reader: asyncio.StreamReader, max_bytes: int, resync: bool = False) -> Frame | None:
    """The next frame; None at a clean end of stream. Raises FrameError."""
    headers: dict[str, str] = {}
    problems: list[str] = []
    lines = 0
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as e:
            if headers or e.partial.strip():
                raise FrameError(_bad("the stream ended inside a header"), fatal=True) from None
            return None
        except asyncio.LimitOverrunError:  # no newline in the reader's whole buffer
            await _discard_line(reader)
            if resync:
                continue
            raise FrameError(_bad(f"a header line is longer than {MAX_HEADER_LINE} bytes"), resync=True) from None
        if looks_like_http(line):
            raise FrameError(None, fatal=True)
        if resync:  # garbage until a Content-Length header, possibly glued to the end of a body
            at = line.lower().find(b"content-length:")
            if at < 0:
                continue
            line, resync = line[at:], False
        if len(line) > MAX_HEADER_LINE:
            raise FrameError(_bad(f"a header line is longer than {MAX_HEADER_LINE} bytes"), resync=True)
        if line in (b"\r\n", b"\n"):
            if not headers and not problems:
                continue  # blank lines between messages are harmless
            break
        lines += 1
        if lines > MAX_HEADER_LINES:
            raise FrameError(_bad(f"more than {MAX_HEADER_LINES} header lines"), resync=True)
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not name.strip() or name != name.strip():
            problems.append(f"malformed header line {line[:60]!r}")
            continue
        headers[name.lower()] = value.strip()

    length = headers.get("content-length")
    if length is None:
        raise FrameError(_bad("a header block without Content-Length" +
                              (f" ({problems[0]})" if problems else "")), resync=True)
    if not (length.isascii() and length.isdigit()) or len(length) > 18:
        raise FrameError(_bad(f"Content-Length {length[:40]!r} is not a number of bytes"), resync=True)
    n = int(length)
    if n > max_bytes:  # refused unread: the caller answers, then drops the body in chunks (skip_body)
        raise FrameError(ServeError(errors.MESSAGE_TOO_LARGE,
                                    f"message of {n} bytes exceeds the {max_bytes}-byte limit (--max-message-bytes)",
                                    "message_too_large"), skip=n)
    try:
        body = await reader.readexactly(n)
    except asyncio.IncompleteReadError as e:
        raise FrameError(_bad(f"the stream ended {n - len(e.partial)} bytes short of Content-Length {n}"),
                         fatal=True) from None
    if problems:
        raise FrameError(_bad("; ".join(problems)))
    encoding = content_encoding(headers.get("content-type"))
    if encoding is None:
        raise FrameError(_bad(f"unsupported Content-Type {headers['content-type'][:80]!r}",
                              "unsupported_content_type"))
    return Frame(encoding, body)


async def _discard_line(reader: asyncio.StreamReader) -> None:
    while True:
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as e:
            await reader.readexactly(e.consumed)
        except asyncio.IncompleteReadError:
            return


async def skip_body(reader: asyncio.StreamReader, n: int) -> bool:
    """Read and drop n bytes; False if the stream ended first."""
    while n > 0:
        chunk = await reader.read(min(n, SKIP_CHUNK))
        if not chunk:
            return False
        n -= len(chunk)
    return True


# -- bodies ----------------------------------------------------------------------------
def decode_body(body: bytes, encoding: str) -> Any:
    """Raises ServeError(parse error)."""
    try:
        if encoding == MSGPACK:
            return msgpack.unpackb(body, raw=False)
        return json.loads(body.decode("utf-8"))
    except Exception as e:  # noqa: BLE001 - any decoder failure is a parse error
        what = "msgpack" if encoding == MSGPACK else "JSON"
        raise ServeError(errors.PARSE_ERROR, f"the body is not valid {what}: {type(e).__name__}: {str(e)[:200]}",
                         "parse_error") from None


def encode_body(message: dict, encoding: str) -> bytes:
    if encoding == MSGPACK:
        return msgpack.packb(message, default=msgpack_default, use_bin_type=True)
    try:
        return json.dumps(message, default=json_default, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (an id sent as "\ud800"): give it back as the same escape
        return json.dumps(message, default=json_default, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sniff_binary(data: bytes) -> str:
    """A binary WebSocket message: JSON if it starts like a JSON object (pygls' own
    clients send JSON as bytes), msgpack otherwise."""
    head = data[:1]
    return JSON if head in (b"{", b"[", b" ", b"\n", b"\r", b"\t") else MSGPACK


# -- transports ---------------------------------------------------------------------------
class StreamTransport:
    """Frames outgoing bodies onto an asyncio.StreamWriter (or anything with write)."""

    def __init__(self, writer, max_buffer: int):
        self.writer = writer
        self.max_buffer = max_buffer

    def send(self, body: bytes, encoding: str) -> None:
        if self.closing():
            return
        header = b"Content-Length: %d\r\n" % len(body)
        if encoding == MSGPACK:
            header += b"Content-Type: " + MSGPACK_TYPE.encode() + b"\r\n"
        if len(body) <= 1 << 16:  # one write, one segment: a split header costs the reader a wakeup
            self.writer.write(header + b"\r\n" + body)
        else:
            self.writer.write(header + b"\r\n")
            self.writer.write(body)
        buffered = self._buffered()
        if buffered > self.max_buffer:  # a client that does not read its answers
            log.warning("client is not reading (%d bytes buffered): closing its connection", buffered)
            self.close()

    def _buffered(self) -> int:
        transport = getattr(self.writer, "transport", None)
        return transport.get_write_buffer_size() if transport is not None else 0

    def closing(self) -> bool:
        return self.writer.is_closing()

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


class FdWriter:
    """Blocking writes to a file descriptor that is not a pipe (a file, a tty)."""

    def __init__(self, fd: int):
        self.fd, self._closed, self._lock = fd, False, threading.Lock()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        with self._lock:
            while view:
                view = view[os.write(self.fd, view):]

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True


class WsTransport:
    """One WebSocket message per JSON-RPC message: text for JSON, binary for msgpack.
    Sends go through a queue so they leave in order."""

    def __init__(self, ws):
        self.ws = ws
        self.queue: asyncio.Queue = asyncio.Queue()
        self._closing = False
        self.task = asyncio.ensure_future(self._pump())

    def send(self, body: bytes, encoding: str) -> None:
        if not self._closing:
            self.queue.put_nowait(body.decode("utf-8") if encoding == JSON else body)

    async def _pump(self) -> None:
        from websockets.exceptions import ConnectionClosed
        try:
            while True:
                item = await self.queue.get()
                if item is None:
                    break
                await self.ws.send(item)
        except ConnectionClosed:
            pass
        finally:
            await self.ws.close()

    def closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self.queue.put_nowait(None)
