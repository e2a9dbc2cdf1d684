"""The LSP base protocol on byte streams, and message bodies in JSON or msgpack.

pygls' own loop (pygls.io_.run_async) ignores Content-Type, has no size limit,
never answers a parse error, and its writer counts Content-Length in characters;
this one reads headers byte-exactly, bounds every frame, answers what it cannot
parse (id null) and resynchronizes on the next Content-Length header.

`FrameParser` is incremental and pull-based: bytes are fed as they arrive, frames
are taken one at a time by the connection, which stops taking them (and stops
reading its socket) while it is paused: too many requests in flight, a client that
does not read its answers, or another connection's turn. A body larger than
`DIRECT_BODY` is received straight into one buffer of its final size (no growing
buffer, no copy when it is complete); a body over the limit is dropped as it
arrives, never held."""
from __future__ import annotations

import base64
import functools
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import msgpack

from . import errors
from .arrays import encode_json, msgpack_default
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
DIRECT_BODY = 1 << 16  # bodies from this size get a buffer of their own
_COMPACT = 1 << 16

_HEADER, _BODY, _LARGE, _SKIP, _DISCARD_LINE = range(5)


class FrameError(Exception):
    """A frame that cannot be read. `resync`: its length is unknown, so the reader
    must look for the next Content-Length header; `fatal`: the stream is unusable."""

    def __init__(self, error: ServeError, *, resync: bool = False, fatal: bool = False, skip: int = 0):
        super().__init__(error.message)
        self.error, self.resync, self.fatal, self.skip = error, resync, fatal, skip


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


# What nearly every client sends: Content-Length, perhaps a Content-Type, nothing else.
_COMMON_HEADER = re.compile(rb"Content-Length: *([0-9]{1,18}) *\r\n(?:Content-Type: *([^\r\n:]{1,200})\r\n)?\r\n",
                            re.IGNORECASE)


@functools.lru_cache(maxsize=64)
def _encoding_of(content_type: bytes | None) -> str | None:
    return content_encoding(None if content_type is None else content_type.decode("latin-1").strip())


@dataclass
class Frame:
    encoding: str
    body: bytes | bytearray


class FrameParser:
    """Content-Length frames from fed bytes. `next()` gives the next Frame, a
    FrameError (answer it; the parser has already resynchronized or skipped), or None
    (more bytes needed). `eof()` says what an end of stream here means."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._pos = 0
        self._state = _HEADER
        self._resync = False
        self._headers: dict[str, str] = {}
        self._problems: list[str] = []
        self._lines = 0
        self._need = 0
        self._body: bytearray | None = None
        self._got = 0
        self._skip = 0
        self.frame_started: float | None = None  # monotonic: the first byte of the frame being read
        self.last_byte = time.monotonic()

    # -- in ---------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self.last_byte = time.monotonic()
        if self._state == _LARGE and self._pos >= len(self._buf):
            take = min(len(data), self._need - self._got)
            assert self._body is not None  # allocated when the frame turned large
            self._body[self._got:self._got + take] = memoryview(data)[:take]
            self._got += take
            data = data[take:]
        elif self._state == _SKIP and self._pos >= len(self._buf):
            take = min(len(data), self._skip)
            self._skip -= take
            data = data[take:]
            if not self._skip:
                self._state = _HEADER
        if data:
            if self._pos and self._pos >= len(self._buf):
                self._buf.clear()
                self._pos = 0
            self._buf += data
            if self.frame_started is None and self._state == _HEADER and data.strip():
                self.frame_started = self.last_byte

    def touch(self) -> None:
        """Restart the clocks of the frame being read (reading was paused meanwhile)."""
        self.last_byte = time.monotonic()
        if self.frame_started is not None:
            self.frame_started = self.last_byte

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    @property
    def in_header(self) -> bool:
        return self._state in (_HEADER, _DISCARD_LINE) and self.frame_started is not None

    @property
    def in_body(self) -> bool:
        return self._state in (_BODY, _LARGE, _SKIP)

    # -- out --------------------------------------------------------------------------------
    def next(self) -> Frame | FrameError | None:
        while True:
            state = self._state
            if state == _DISCARD_LINE:  # the rest of a line too long to hold
                if self._take_line() is None:
                    self._pos = len(self._buf)
                    self._compact()
                    return None
                self._state = _HEADER
            elif state == _HEADER:
                if not self._resync and not self._lines and not self._problems:
                    event = self._whole_header()
                    if event is True:
                        continue
                    if event is not None:
                        return event
                line = self._take_line()
                if line is None:
                    return self._partial_line()
                event = self._on_line(line)
                if event is not None:
                    return event
            elif state == _BODY:
                return self._small_body()
            elif state == _LARGE:
                return self._large_body()
            elif not self._drop():  # _SKIP
                return None

    def _whole_header(self):
        """The common case at once: `Content-Length: N` (and a Content-Type) already
        buffered, usually with the body. Returns the Frame, True when the header was
        taken and the body is still coming, or None to read line by line (anything
        else, including every malformed header)."""
        m = _COMMON_HEADER.match(self._buf, self._pos)
        if m is None:
            return None
        n = int(m.group(1))
        encoding = _encoding_of(m.group(2))
        if n > self.max_bytes or encoding is None:
            return None
        start = m.end()
        buf = self._buf
        if len(buf) - start >= n:
            body = bytes(buf[start:start + n])
            self._pos = start + n
            self._compact()
            if not self.buffered:
                self.frame_started = None
            return Frame(encoding, body)
        self._pos = start
        self._headers = {"content-length": m.group(1).decode()}
        if m.group(2) is not None:
            self._headers["content-type"] = m.group(2).decode("latin-1").strip()
        self._lines = len(self._headers)
        return self._end_of_headers() or True

    def _take_line(self) -> bytes | None:
        buf, pos = self._buf, self._pos
        at = buf.find(b"\n", pos)
        if at < 0:
            return None
        line = bytes(buf[pos:at + 1])
        self._pos = at + 1
        return line

    def _partial_line(self) -> FrameError | None:
        """No newline in what is buffered: wait for more, unless it is too long already."""
        if self.buffered > MAX_HEADER_LINE:
            self._pos = len(self._buf)
            self._compact()
            self._state = _DISCARD_LINE
            if not self._resync:
                return self._resync_error(f"a header line is longer than {MAX_HEADER_LINE} bytes")
            return None
        self._compact()
        if self.frame_started is None and self.buffered and self._buf[self._pos:].strip():
            self.frame_started = time.monotonic()
        return None

    def _on_line(self, line: bytes) -> FrameError | None:
        if self._resync:  # garbage until a Content-Length header, possibly glued to the end of a body
            at = line.lower().find(b"content-length:")
            if at < 0:
                return None
            line, self._resync = line[at:], False
        if len(line) > MAX_HEADER_LINE:
            return self._resync_error(f"a header line is longer than {MAX_HEADER_LINE} bytes")
        if line in (b"\r\n", b"\n"):
            if not self._headers and not self._problems:
                if not self.buffered:
                    self.frame_started = None
                return None  # blank lines between messages are harmless
            return self._end_of_headers()
        if self.frame_started is None:
            self.frame_started = time.monotonic()
        self._lines += 1
        if self._lines > MAX_HEADER_LINES:
            return self._resync_error(f"more than {MAX_HEADER_LINES} header lines")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not name.strip() or name != name.strip():
            self._problems.append(f"malformed header line {line[:60]!r}")
            return None
        self._headers[name.lower()] = value.strip()
        return None

    def _resync_error(self, message: str) -> FrameError:
        self._reset_headers()
        self._resync = True
        return FrameError(_bad(message), resync=True)

    def _reset_headers(self) -> None:
        self._headers, self._problems, self._lines = {}, [], 0

    def _end_of_headers(self) -> FrameError | None:
        length = self._headers.get("content-length")
        if length is None:
            detail = f" ({self._problems[0]})" if self._problems else ""
            return self._resync_error("a header block without Content-Length" + detail)
        if not (length.isascii() and length.isdigit()) or len(length) > 18:
            return self._resync_error(f"Content-Length {length[:40]!r} is not a number of bytes")
        n = int(length)
        self.frame_started = None
        if n > self.max_bytes:  # answered at once; the body is dropped as it arrives, never held
            self._reset_headers()
            self._state, self._skip = _SKIP, n
            return FrameError(ServeError(errors.MESSAGE_TOO_LARGE,
                                         f"message of {n} bytes exceeds the {self.max_bytes}-byte limit "
                                         "(--max-message-bytes)", "message_too_large"), skip=n)
        self._need = n
        if n >= DIRECT_BODY and self.buffered < n:
            self._body, self._got = bytearray(n), 0
            have = self._buf[self._pos:]
            self._body[:len(have)] = have
            self._got = len(have)
            self._pos = len(self._buf)
            self._compact()
            self._state = _LARGE
        else:
            self._state = _BODY
        return None

    def _small_body(self) -> Frame | FrameError | None:
        n = self._need
        if self.buffered < n:
            return None
        body = bytes(self._buf[self._pos:self._pos + n])
        self._pos += n
        self._compact()
        return self._finish(body)

    def _large_body(self) -> Frame | FrameError | None:
        if self.buffered:  # bytes that came while the frame was being set up
            take = min(self.buffered, self._need - self._got)
            assert self._body is not None  # allocated when the frame turned large
            self._body[self._got:self._got + take] = self._buf[self._pos:self._pos + take]
            self._got += take
            self._pos += take
            self._compact()
        if self._got < self._need:
            return None
        body, self._body = self._body, None
        return self._finish(body)

    def _finish(self, body) -> Frame | FrameError:
        headers, problems = self._headers, self._problems
        self._reset_headers()
        self._state = _HEADER
        if problems:
            return FrameError(_bad("; ".join(problems)))
        encoding = content_encoding(headers.get("content-type"))
        if encoding is None:
            return FrameError(_bad(f"unsupported Content-Type {headers['content-type'][:80]!r}",
                                   "unsupported_content_type"))
        return Frame(encoding, body)

    def _drop(self) -> bool:
        take = min(self.buffered, self._skip)
        self._pos += take
        self._skip -= take
        self._compact()
        if self._skip:
            return False
        self._state = _HEADER
        return True

    def _compact(self) -> None:
        if self._pos >= len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif self._pos > _COMPACT and self._pos * 2 > len(self._buf):
            del self._buf[:self._pos]
            self._pos = 0

    def eof(self) -> FrameError | None:
        """The stream ended: an error to answer if it ended inside a frame."""
        if self._state in (_HEADER, _DISCARD_LINE):
            rest = self._buf[self._pos:]
            if self._headers or self._problems or rest.strip():
                return FrameError(_bad("the stream ended inside a header"), fatal=True)
            return None
        if self._state in (_BODY, _LARGE):
            have = self.buffered if self._state == _BODY else self._got + self.buffered
            return FrameError(_bad(f"the stream ended {self._need - have} bytes short of Content-Length "
                                   f"{self._need}"), fatal=True)
        return None


# -- bodies ----------------------------------------------------------------------------
def decode_body(body: bytes | bytearray, encoding: str) -> Any:
    """Raises ServeError(parse error)."""
    try:
        if encoding == MSGPACK:
            return msgpack.unpackb(body, raw=False)
        return json.loads(body)
    except Exception as e:  # noqa: BLE001 - any decoder failure is a parse error
        what = "msgpack" if encoding == MSGPACK else "JSON"
        raise ServeError(errors.PARSE_ERROR, f"the body is not valid {what}: {type(e).__name__}: {str(e)[:200]}",
                         "parse_error") from None


_packer = threading.local()


def encode_body(message: dict, encoding: str) -> bytes | bytearray:
    if encoding == MSGPACK:
        packer = getattr(_packer, "p", None)
        if packer is None:
            packer = _packer.p = msgpack.Packer(default=msgpack_default, use_bin_type=True)
        return packer.pack(message)
    return encode_json(message)


def sniff_binary(data: bytes) -> str:
    """A binary WebSocket message: JSON if it starts like a JSON object (pygls' own
    clients send JSON as bytes), msgpack otherwise."""
    head = data[:1]
    return JSON if head in (b"{", b"[", b" ", b"\n", b"\r", b"\t") else MSGPACK


def frame_header(body_len: int, encoding: str) -> bytes:
    if encoding == MSGPACK:
        return b"Content-Length: %d\r\nContent-Type: application/msgpack\r\n\r\n" % body_len
    return b"Content-Length: %d\r\n\r\n" % body_len


# -- transports ---------------------------------------------------------------------------
class StreamTransport:
    """Frames outgoing bodies onto an asyncio transport (TCP, a pipe) or an FdWriter."""

    def __init__(self, transport):
        self.transport = transport

    def send(self, body: bytes, encoding: str) -> None:
        if self.closing():
            return
        header = frame_header(len(body), encoding)
        if len(body) <= 1 << 16:  # one write, one segment: a split header costs the reader a wakeup
            self.transport.write(header + body)
        else:
            self.transport.write(header)
            self.transport.write(body)

    def buffered(self) -> int:
        get = getattr(self.transport, "get_write_buffer_size", None)
        return get() if get is not None else 0

    def closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


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
    Sends go through a queue so they leave in order; `buffered` counts what waits."""

    def __init__(self, ws):
        import asyncio
        self.ws = ws
        self.queue: asyncio.Queue = asyncio.Queue()
        self._closing = False
        self._waiting = 0
        self.drained = asyncio.Event()
        self.drained.set()
        self.task = asyncio.ensure_future(self._pump())

    def send(self, body: bytes, encoding: str) -> None:
        if not self._closing:
            self._waiting += len(body)
            self.drained.clear()
            self.queue.put_nowait(body.decode("utf-8") if encoding == JSON else body)

    async def _pump(self) -> None:
        from websockets.exceptions import ConnectionClosed
        try:
            while True:
                item = await self.queue.get()
                if item is None:
                    break
                await self.ws.send(item)
                self._waiting -= len(item)
                if self.queue.empty():
                    self.drained.set()
        except ConnectionClosed:
            pass
        finally:
            self.drained.set()
            await self.ws.close()

    def buffered(self) -> int:
        return self._waiting

    def closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self.queue.put_nowait(None)


def b64(data) -> str:
    return base64.b64encode(data).decode("ascii")
