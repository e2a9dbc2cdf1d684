"""Connections: one pygls LanguageServer each, all sharing one Daemon.

Who does what:
- sbexportd dispatches its own methods (sbexport/*, and the sbexport.* commands of
  workspace/executeCommand) straight from the decoded message to methods.py, and
  encodes each answer once: a predict pays for no generic machinery.
- pygls keeps the LSP lifecycle (initialize, shutdown, exit), $/progress, editor
  features and any other command, through its public API (structure_message,
  handle_message, a writer set with set_writer).
- The transports are sbexportd's: byte-exact frames (framing.py), msgpack or JSON
  per message, and the defences every connection gets: a bounded number of requests
  in flight, reading paused while the client does not read its answers, frames taken
  in turns so that no connection starves the others, header and idle timeouts, and
  a limit on connections that refuses the extra ones with an answer, then closes.
"""
from __future__ import annotations

import asyncio
import functools
import hmac
import inspect
import itertools
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeGuard

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, lsp_method

from .. import __version__
from . import editor, errors
from .arrays import Bulky
from .daemon import CancelToken, Daemon, NullProgress, current_connection
from .errors import ServeError
from .framing import (
    JSON,
    FdWriter,
    FrameError,
    FrameParser,
    StreamTransport,
    WsTransport,
    decode_body,
    encode_body,
    frame_header,
    sniff_binary,
)

log = logging.getLogger("sbexportd.serve")

LARGE_BODY = 1 << 20  # bodies parsed on a worker thread
FRAMES_PER_TURN = 16  # frames one connection handles before the event loop serves the others
WRITE_HIGH = 4 << 20  # answers waiting in the socket's buffer: above this, stop reading the client
WRITE_LOW = 1 << 20
_KIND_OF_CODE = {errors.PARSE_ERROR: "parse_error", errors.INVALID_REQUEST: "invalid_request",
                 errors.METHOD_NOT_FOUND: "method_not_found", errors.INVALID_PARAMS: "invalid_params",
                 errors.INTERNAL_ERROR: "internal", errors.REQUEST_CANCELLED: "cancelled",
                 errors.SERVER_NOT_INITIALIZED: "not_initialized"}


@functools.lru_cache(maxsize=256)
def _message_type(method: str):
    return types.METHOD_TO_TYPES.get(method, (None,))[0]


class SbProtocol(LanguageServerProtocol):
    conn: Connection

    def get_message_type(self, method):  # type: ignore[override]  # pygls' is an lru_cache wrapper
        return _message_type(method)  # pygls' per-instance lru_cache would pin closed connections

    def _execute_handler(self, msg_id, handler, callback, args=None, kwargs=None):
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        # pygls (2.1) files each notification to a generator or async handler (didOpen,
        # didChange: every keystroke of an editor) under a fresh uuid and never removes
        # it: drop each once done. Not when cancelled: shutdown cancels while it iterates.
        fut = self._request_futures.get(msg_id)
        if fut is not None:
            def drop(f, k=msg_id):
                if not f.cancelled() and self._request_futures.get(k) is f:
                    self._request_futures.pop(k)
            fut.add_done_callback(drop)

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams):
        conn = self.conn
        if conn.initialized:
            raise ServeError(errors.INVALID_REQUEST, "already initialized", "already_initialized")
        token = conn.daemon.token
        if token is not None:
            opts = params.initialization_options
            got = opts.get("token") if isinstance(opts, dict) else None
            if not isinstance(got, str) or not hmac.compare_digest(got.encode(), token.encode()):
                raise ServeError(errors.UNAUTHORIZED, "missing or wrong token in initializationOptions.token",
                                 "unauthorized")
        result = yield from super().lsp_initialize(params)
        caps = result.capabilities
        from .methods import COMMANDS
        known = list(caps.execute_command_provider.commands) if caps.execute_command_provider else []
        caps.execute_command_provider = types.ExecuteCommandOptions(commands=known + [c for c in COMMANDS
                                                                                     if c not in known])
        caps.experimental = {"sbexportd": conn.daemon.capabilities()}
        conn.initialized = True
        return result

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args):
        self.conn.exit(0 if self.conn.shutting_down else 1)


class SbServer(LanguageServer):
    protocol: SbProtocol  # protocol_cls below

    def __init__(self, daemon: Daemon, conn: Connection):
        self.daemon, self.conn = daemon, conn
        super().__init__("sbexportd", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
                         protocol_cls=SbProtocol)
        self.protocol.conn = conn
        self.protocol.set_writer(_PyglsWriter(conn), include_headers=False)
        editor.register(self)  # hover, links, lenses, diagnostics: pygls features (serve/editor)

    def report_server_error(self, error, source):
        log.debug("pygls reported %r (%s)", error, getattr(source, "__name__", source))


class _PyglsWriter:
    """What pygls sends (its answers, $/progress): one JSON message per write."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def write(self, data: bytes) -> None:
        self.conn.send_message(json.loads(data))

    def close(self) -> None:
        self.conn.close()


class Request:
    """One in-flight request: its cancel token, its task if it awaits, its progress."""

    __slots__ = ("conn", "id", "method", "token", "task", "encoding")

    def __init__(self, conn: Connection, rid, method: str, encoding: str):
        self.conn, self.id, self.method, self.encoding = conn, rid, method, encoding
        self.token = CancelToken()
        self.task: asyncio.Future | None = None

    def progress(self, params: dict) -> Reporter | NullProgress:
        wdt = params.get("workDoneToken")
        if wdt is None:
            return NullProgress()
        if not isinstance(wdt, (int, str)) or isinstance(wdt, bool):
            raise errors.invalid_params("workDoneToken must be an integer or a string")
        return Reporter(self, wdt)


class Reporter:
    """$/progress begin/report/end for a client-given workDoneToken; callable from any thread."""

    def __init__(self, request: Request, wdt):
        self.request, self.wdt = request, wdt
        self.protocol = request.conn.protocol
        self._last: tuple | None = None

    def begin(self, title: str | None = None) -> None:
        def go():
            self.protocol.progress.begin(self.wdt, types.WorkDoneProgressBegin(
                title=title or self.request.method, cancellable=True, percentage=0))
            fut = self.protocol.progress.tokens.get(self.wdt)  # window/workDoneProgress/cancel cancels it
            if fut is not None:
                self.request.token.watch(fut.cancelled)
        self.request.conn.call(go)

    def report(self, message: str | None = None, percentage: float | None = None) -> None:
        pct = None if percentage is None else max(0, min(100, int(percentage)))
        if (message, pct) == self._last:
            return
        self._last = (message, pct)
        self.request.conn.call(self.protocol.progress.report, self.wdt,
                               types.WorkDoneProgressReport(message=message, percentage=pct, cancellable=True))

    def end(self, message: str | None = None) -> None:
        def go():
            self.protocol.progress.end(self.wdt, types.WorkDoneProgressEnd(message=message))
            self.protocol.progress.tokens.pop(self.wdt, None)
        self.request.conn.call(go)


class _NoFlow:
    """Flow control of a transport that cannot pause (the stdin reader thread)."""

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class Connection:
    """One client: its requests, its encodings, its flow control, and a pygls server
    for the LSP lifecycle and editor features."""

    _ids = itertools.count(1)

    def __init__(self, daemon: Daemon, transport, kind: str, on_exit: Callable[[int], None] | None = None,
                 flow=None):
        self.id = next(self._ids)
        self.daemon, self.transport, self.kind = daemon, transport, kind
        self.flow = flow or _NoFlow()
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._on_exit = on_exit
        self.initialized = False
        self.shutting_down = False
        self.closed = False
        self.encoding = JSON  # of the last message received: notifications go out in it
        self.requests: dict[Any, Request] = {}  # received, not yet answered
        self.paused: set[str] = set()  # why reading is paused: in_flight, writing, turn, decoding
        self.opened_at = self.last_activity = time.monotonic()
        self.write_paused_at: float | None = None
        self.parser: FrameParser | None = None  # stream transports: for the header timeout
        self.decoding: asyncio.Future | None = None  # a large body's parse (held: the loop holds tasks weakly)
        self.server = SbServer(daemon, self)
        self.protocol: SbProtocol = self.server.protocol
        daemon.connection_opened(self)

    # -- flow control ---------------------------------------------------------------------
    def pause(self, reason: str) -> None:
        if not self.paused:
            self.flow.pause_reading()
        self.paused.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self.paused:
            self.paused.discard(reason)
            if not self.paused and not self.closed:
                if self.parser is not None:
                    self.parser.touch()  # the frame's clock stopped while the daemon did not read
                self.flow.resume_reading()

    def writing_paused(self, paused: bool) -> None:
        if paused:
            self.write_paused_at = time.monotonic()
            self.pause("writing")
        else:
            self.write_paused_at = None
            self.resume("writing")

    # -- in ------------------------------------------------------------------------------
    async def receive_large(self, body, encoding: str) -> None:
        """A large body is parsed on a worker thread; the connection's next message
        waits for it (order kept), other connections do not."""
        self.pause("decoding")
        try:
            msg = await asyncio.get_running_loop().run_in_executor(self.daemon.work, decode_body, body, encoding)
        except ServeError as e:
            self.send_error(None, e, encoding)
        else:
            del body
            self.handle(msg, encoding)
        finally:
            self.resume("decoding")

    def receive(self, body, encoding: str) -> None:
        self.last_activity = time.monotonic()
        try:
            msg = decode_body(body, encoding)
        except ServeError as e:
            return self.send_error(None, e, encoding)
        self.handle(msg, encoding)
        return None

    def handle(self, msg: Any, encoding: str) -> None:
        self.encoding = encoding
        if not isinstance(msg, dict):
            what = "batches are not supported" if isinstance(msg, list) else "a message must be an object"
            return self.send_error(None, _invalid(what), encoding)
        has_id, rid = "id" in msg, msg.get("id")
        if has_id and rid is not None and (isinstance(rid, bool) or not isinstance(rid, (int, str))):
            return self.send_error(None, _invalid("id must be an integer or a string"), encoding)
        if msg.get("jsonrpc") != "2.0":
            return self.send_error(rid, _invalid('"jsonrpc" must be "2.0"'), encoding)
        method = msg.get("method")
        if method is None and has_id and ("result" in msg or "error" in msg):
            return self._to_pygls(msg)  # a client's answer to a server request
        if not isinstance(method, str):
            return self.send_error(rid, _invalid('"method" must be a string'), encoding)
        params = msg.get("params")
        if params is not None and not isinstance(params, (dict, list)):
            return self.send_error(rid, _invalid('"params" must be an object or an array'), encoding)
        if method != "exit":
            if not self.initialized and method != "initialize":
                if has_id:
                    self.send_error(rid, ServeError(errors.SERVER_NOT_INITIALIZED,
                                                    f"{method}: the connection is not initialized",
                                                    "not_initialized"), encoding)
                return None  # notifications before initialize are dropped (LSP)
            if self.shutting_down:
                if has_id:
                    self.send_error(rid, ServeError(errors.INVALID_REQUEST, f"{method}: shutdown was requested",
                                                    "shutting_down"), encoding)
                return None
        if not has_id:
            if method == "$/cancelRequest" and isinstance(params, dict) and params.get("id") in self.requests:
                return self.cancel(params["id"])  # cooperative: it answers -32800 once it has cleaned up
            return self._to_pygls(msg)
        if rid in self.requests:
            return self.send_error(None, _invalid(f"id {rid!r} is already in use by a request in flight"),
                                   encoding)
        from .methods import METHODS
        handler, p = METHODS.get(method), params
        if handler is None and method == "workspace/executeCommand" and _is_ours(params):
            handler, name, p = _command(params)
            if handler is None:
                return self.send_error(rid, errors.invalid_params(
                    f"unknown command {name!r}; the commands are {', '.join(_commands())}", "method_not_found"),
                    encoding)
            method = name.replace(".", "/")
            if p is not None and "workDoneToken" not in p and editor.wants_progress(self.server, name):
                handler = editor.with_created_progress(handler)  # editors send no token: make one
        req = self._track(rid, method, encoding)
        if handler is None:
            if method == "shutdown":
                self._shutdown(rid)
            return self._to_pygls(msg)
        self._serve(req, handler, p)
        return None

    def _track(self, rid, method: str, encoding: str) -> Request:
        """Tracked from receipt: a $/cancelRequest in the same read can overtake the start."""
        req = self.requests[rid] = Request(self, rid, method, encoding)
        if len(self.requests) >= self.daemon.max_in_flight:
            self.pause("in_flight")  # the client's next requests wait in its socket
        return req

    def _serve(self, req: Request, handler, params) -> None:
        """sbexport/*: call the method; answer now if it finished, else when it does."""
        daemon = self.daemon
        daemon.in_flight += 1
        daemon.by_method[req.method] += 1
        token = current_connection.set(self.id)  # the work pools serve connections in turns
        try:
            result = handler(self, _params(params, req.method), req)
            if inspect.isawaitable(result):
                req.task = asyncio.ensure_future(self._finish(req, result))
                return None
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON-RPC error
            daemon.in_flight -= 1
            return self.send_error(req.id, errors.map_exception(exc))
        finally:
            current_connection.reset(token)
        daemon.in_flight -= 1
        self.reply(req.id, result)
        return None

    async def _finish(self, req: Request, awaitable) -> None:
        try:
            result = await awaitable
        except asyncio.CancelledError:  # shutdown or a lost client cancelled it (its threads were told)
            self.send_error(req.id, errors.cancelled(req.method))
        except Exception as exc:  # noqa: BLE001
            self.send_error(req.id, errors.map_exception(exc))
        else:
            self.reply(req.id, result)
        finally:
            self.daemon.in_flight -= 1

    def _to_pygls(self, msg: dict) -> None:
        """Everything that is not sbexportd's own: pygls structures and dispatches it."""
        try:
            structured = self.protocol.structure_message(msg)
        except Exception as e:  # noqa: BLE001 - LSP params of the wrong shape
            if "id" in msg and "method" in msg:
                self.send_error(msg.get("id"), errors.invalid_params(f"{msg.get('method')}: {_structure_detail(e)}"))
            return
        token = current_connection.set(self.id)  # the tasks pygls starts (editor features) too take turns
        try:
            self.protocol.handle_message(structured)
        except Exception as e:  # never let one message end the connection
            log.exception("dispatching %s failed", msg.get("method"))
            if "id" in msg and "method" in msg:
                self.send_error(msg.get("id"), errors.map_exception(e))
        finally:
            current_connection.reset(token)

    def _shutdown(self, rid) -> None:
        """LSP shutdown: later requests are refused; unfinished ones are cancelled."""
        self.shutting_down = True
        for req in list(self.requests.values()):
            if req.id != rid:
                req.token.cancel()
                if req.task is not None:
                    req.task.cancel()

    def cancel(self, rid) -> None:
        req = self.requests.get(rid)
        if req is not None:  # else it has answered already: nothing to do
            req.token.cancel()

    # -- out -------------------------------------------------------------------------------
    def call(self, fn, *args) -> None:
        """fn(*args) on the event loop thread (progress from export threads)."""
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        elif not self.closed:
            self.loop.call_soon_threadsafe(fn, *args)

    def _answered(self, rid) -> str | None:
        """Forget an answered request; its encoding (None if it was not tracked)."""
        req = self.requests.pop(rid, None)
        if "in_flight" in self.paused and len(self.requests) < self.daemon.max_in_flight:
            self.resume("in_flight")
        return None if req is None else req.encoding

    def reply(self, rid, result) -> None:
        encoding = self._answered(rid) or self.encoding
        self.daemon.count_response(True)
        if self.closed:
            return
        self.last_activity = time.monotonic()
        msg = {"jsonrpc": "2.0", "id": rid, "result": result}
        if isinstance(result, Bulky):  # megabytes of arrays: encode off the loop
            fut = self.loop.run_in_executor(self.daemon.work, self._encode, msg, encoding)
            fut.add_done_callback(lambda f: self.closed or self.transport.send(f.result(), encoding))
            return
        self.transport.send(self._encode(msg, encoding), encoding)

    def send_error(self, rid, err: JsonRpcException, encoding: str | None = None) -> None:
        encoding = self._answered(rid) or encoding or self.encoding
        self.daemon.count_response(False)
        if not self.closed:
            error = {"code": err.code, "message": err.message, "data": err.data}  # pygls' own errors too
            self.transport.send(encode_body({"jsonrpc": "2.0", "id": rid, "error": error}, encoding), encoding)

    def send_message(self, msg: dict) -> None:
        """A message pygls made (JSON), out in the encoding its request came in."""
        if threading.get_ident() != self._loop_thread:
            self.loop.call_soon_threadsafe(self.send_message, msg)
            return
        encoding = self.encoding
        if "id" in msg and ("result" in msg or "error" in msg):
            encoding = self._answered(msg["id"]) or encoding
            self.daemon.count_response("error" not in msg)
            err = msg.get("error")
            if err is not None and not (isinstance(err.get("data"), dict) and "kind" in err["data"]):
                kind = _KIND_OF_CODE.get(err.get("code"), "internal")  # pygls' own errors get sbexportd's data
                err["data"] = {"kind": kind, "file": None, "hint": errors.HINTS.get(kind)}
        if not self.closed:
            self.transport.send(self._encode(msg, encoding), encoding)

    @staticmethod
    def _encode(msg: dict, encoding: str) -> bytes | bytearray:
        try:
            return encode_body(msg, encoding)
        except Exception as e:  # a result that cannot be encoded: answer that instead
            log.exception("cannot encode the answer")
            err = errors.map_exception(e)
            return encode_body({"jsonrpc": "2.0", "id": msg.get("id"), "error": {
                "code": err.code, "message": err.message, "data": err.data}}, encoding)

    # -- timeouts ------------------------------------------------------------------------
    def timed_out(self, now: float) -> str | None:
        """Why this connection should be closed now, if it should (TCP and WebSocket)."""
        d = self.daemon
        parser = self.parser
        if d.header_timeout and parser is not None and not self.paused:  # not while the daemon does not read
            started = parser.frame_started  # set while in_header
            if parser.in_header and started is not None and now - started > d.header_timeout:
                return f"a frame's header was not complete within {d.header_timeout:g} s"
            if parser.in_body and now - parser.last_byte > d.header_timeout:
                return f"a frame's body stalled for more than {d.header_timeout:g} s"
        if d.header_timeout and not self.initialized and not self.requests \
                and now - max(self.opened_at, self.last_activity) > d.header_timeout:
            return f"not initialized within {d.header_timeout:g} s"
        if d.idle_timeout:
            if self.write_paused_at is not None and now - self.write_paused_at > d.idle_timeout:
                return f"the client did not read its answers for {d.idle_timeout:g} s"
            if not self.requests and now - self.last_activity > d.idle_timeout:
                return f"idle for {d.idle_timeout:g} s"
        return None

    def expire(self, why: str) -> None:
        log.info("closing connection %d: %s", self.id, why)
        if not self.closed and self.parser is not None and self.parser.in_header:
            self.send_error(None, ServeError(errors.TIMEOUT, f"{why}; closing the connection", "timeout"))
        self.close()

    # -- end -------------------------------------------------------------------------------
    def exit(self, code: int) -> None:
        if self._on_exit is not None:
            self._on_exit(code)
        else:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for req in list(self.requests.values()):
            req.token.cancel()  # nobody is left to receive the answer: stop exports early
        self.daemon.connection_closed(self)
        self.transport.close()


def _invalid(message: str) -> ServeError:
    return ServeError(errors.INVALID_REQUEST, message, "invalid_request")


def _params(raw, method: str):
    from .methods import Params
    return Params(raw, method)


def _is_ours(params) -> TypeGuard[dict]:
    return isinstance(params, dict) and isinstance(params.get("command"), str) \
        and params["command"].startswith("sbexport.")


def _commands() -> list[str]:
    from .methods import COMMANDS
    return sorted(COMMANDS)


def _command(params: dict):
    """workspace/executeCommand sbexport.<name> with arguments [params] -> (handler,
    name, params); the workDoneToken of the ExecuteCommandParams is passed on."""
    from .methods import METHODS
    name = params["command"]
    handler = METHODS.get(name.replace(".", "/"))
    if handler is None:
        return None, name, None
    args = params.get("arguments")
    args = [] if args is None else args
    if not isinstance(args, list) or len(args) > 1 or (args and not isinstance(args[0], dict)):
        def bad(conn, p, req):
            raise errors.invalid_params(f"{name}: arguments must be [params] (one object)")
        return bad, name, None
    p = dict(args[0]) if args else {}
    wdt = params.get("workDoneToken")
    if wdt is not None:
        p.setdefault("workDoneToken", wdt)
    return handler, name, p


def _structure_detail(e: Exception) -> str:
    cause = e.__cause__ or e
    try:
        from cattrs import transform_error
        return "; ".join(transform_error(cause))[:500]
    except Exception:  # noqa: BLE001 - not a cattrs error
        return str(cause)[:500] or type(cause).__name__


# -- stream transports (TCP, stdio) --------------------------------------------------------------
class StreamProtocol(asyncio.Protocol):
    """Frames in from a byte stream, handled in turns and paused when the connection
    says so; answers out through StreamTransport."""

    def __init__(self, daemon: Daemon, kind: str, on_exit: Callable[[int], None] | None = None, out=None):
        self.daemon, self.kind, self.on_exit, self.out = daemon, kind, on_exit, out
        self.conn: Connection | None = None
        self.transport: Any = None  # asyncio's, or _SplitPipes over stdin and stdout
        self.parser = FrameParser(daemon.max_message_bytes)
        self._reading = True
        self._pumping = False
        self.done = asyncio.get_event_loop().create_future()

    def connection_made(self, transport) -> None:
        if self.out is not None:  # stdio: read from stdin's transport, write to stdout's
            transport = _SplitPipes(self.out, transport)
        self.transport = transport
        if self.kind == "tcp" and len(self.daemon.connections) >= self.daemon.max_connections:
            self.daemon.counters["refused_connections"] += 1
            err = ServeError(errors.TOO_MANY_CONNECTIONS,
                             f"the daemon serves at most {self.daemon.max_connections} connections "
                             "(--max-connections); try again later", "too_many_connections")
            body = encode_body({"jsonrpc": "2.0", "id": None, "error": err.to_dict()}, JSON)
            transport.write(frame_header(len(body), JSON) + body)
            transport.close()
            return
        if hasattr(transport, "set_write_buffer_limits"):
            transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        self.conn = Connection(self.daemon, StreamTransport(transport), self.kind, self.on_exit, flow=self)
        self.conn.parser = self.parser

    # asyncio calls these
    def data_received(self, data: bytes) -> None:
        if self.conn is None or self.conn.closed:
            return
        self.parser.feed(data)
        self.conn.last_activity = self.parser.last_byte
        self.pump()

    def eof_received(self):
        conn = self.conn
        if conn is not None and not conn.closed:
            fe = self.parser.eof()
            if fe is not None:
                conn.send_error(None, fe.error)
            conn.close()
        return False

    def connection_lost(self, exc) -> None:
        if self.conn is not None:
            self.conn.close()
        if not self.done.done():
            self.done.set_result(None)

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn.writing_paused(True)

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.conn.writing_paused(False)

    # the connection calls these
    def pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            try:
                self.transport.pause_reading()
            except (AttributeError, RuntimeError, NotImplementedError):
                pass

    def resume_reading(self) -> None:
        if not self._reading:
            self._reading = True
            try:
                self.transport.resume_reading()
            except (AttributeError, RuntimeError, NotImplementedError):
                pass
        asyncio.get_event_loop().call_soon(self.pump)  # frames already buffered

    def pump(self) -> None:
        """Handle buffered frames until the connection pauses, or its turn is over."""
        conn = self.conn
        if conn is None or self._pumping:
            return
        self._pumping = True
        try:
            for _ in range(FRAMES_PER_TURN):
                if conn.paused or conn.closed:
                    return
                event = self.parser.next()
                if event is None:
                    return
                if isinstance(event, FrameError):
                    conn.send_error(None, event.error, conn.encoding)
                    if event.fatal:
                        conn.close()
                        return
                    continue
                if len(event.body) > LARGE_BODY:
                    conn.decoding = asyncio.ensure_future(conn.receive_large(event.body, event.encoding))
                else:
                    conn.receive(event.body, event.encoding)
            if self.parser.buffered and not conn.closed:  # more frames: after the others' turn
                conn.pause("turn")
                asyncio.get_event_loop().call_soon(conn.resume, "turn")
        finally:
            self._pumping = False


class PipeWriter:
    """The writer interface FdWriter has, over a write-pipe transport."""

    def __init__(self, transport):
        self.transport = transport

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.transport.close()


class _SplitPipes:
    """One transport made of the stdin read pipe and the stdout writer."""

    def __init__(self, writer, read_transport=None):
        self.writer, self.read_transport = writer, read_transport

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def get_write_buffer_size(self) -> int:
        t = getattr(self.writer, "transport", None)
        return t.get_write_buffer_size() if t is not None else 0

    def is_closing(self) -> bool:
        return self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()
        if self.read_transport is not None:
            self.read_transport.close()

    def pause_reading(self) -> None:
        if self.read_transport is not None:
            self.read_transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_transport is not None:
            self.read_transport.resume_reading()


class _WritePipeProtocol(asyncio.Protocol):
    """stdout's flow control goes to the stdio connection."""

    def __init__(self):
        self.target: StreamProtocol | None = None

    def pause_writing(self) -> None:
        if self.target is not None:
            self.target.pause_writing()

    def resume_writing(self) -> None:
        if self.target is not None:
            self.target.resume_writing()


async def run_stdio(daemon: Daemon, stop: asyncio.Future) -> None:
    loop = asyncio.get_running_loop()
    out_fd = os.dup(1)
    os.dup2(2, 1)  # whatever a library prints goes to stderr, not into the protocol stream
    sys.stdout = sys.stderr

    def on_exit(code: int) -> None:
        if not stop.done():
            stop.set_result(code)

    out_proto = _WritePipeProtocol()
    writer: PipeWriter | FdWriter
    try:
        wt, _ = await loop.connect_write_pipe(lambda: out_proto, os.fdopen(out_fd, "wb", buffering=0))
        writer = PipeWriter(wt)
    except (ValueError, OSError, NotImplementedError):
        writer = FdWriter(out_fd)
    proto = StreamProtocol(daemon, "stdio", on_exit, out=writer)
    out_proto.target = proto
    try:
        await loop.connect_read_pipe(lambda: proto, sys.stdin.buffer)
    except (ValueError, OSError, NotImplementedError):  # a file or a tty: read it in a thread
        proto.out = None
        proto.connection_made(_SplitPipes(writer))

        def pump():
            fd = sys.stdin.fileno()
            while True:
                try:
                    chunk = os.read(fd, 1 << 16)
                except OSError:
                    chunk = b""
                if not chunk:
                    loop.call_soon_threadsafe(proto.eof_received)
                    loop.call_soon_threadsafe(proto.connection_lost, None)
                    return
                loop.call_soon_threadsafe(proto.data_received, chunk)
        threading.Thread(target=pump, name="sbexportd-stdin", daemon=True).start()
    print("sbexportd: serving on stdio", file=sys.stderr, flush=True)
    await proto.done
    on_exit(0)  # end of input: the client is gone


async def run_tcp(daemon: Daemon, host: str, port: int) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: StreamProtocol(daemon, "tcp"), host, port)
    _announce(server.sockets, "tcp")
    return server


async def run_ws(daemon: Daemon, host: str, port: int):
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    async def client(ws):
        if len(daemon.connections) >= daemon.max_connections:
            daemon.counters["refused_connections"] += 1
            await ws.close(1013, f"too many connections (--max-connections {daemon.max_connections})")
            return
        flow = _WsFlow()
        conn = Connection(daemon, WsTransport(ws), "ws", flow=flow)
        try:
            async for message in ws:
                conn.last_activity = time.monotonic()
                body, encoding = ((message.encode("utf-8"), JSON) if isinstance(message, str)
                                  else (message, sniff_binary(message)))
                if len(body) > LARGE_BODY:
                    await conn.receive_large(body, encoding)
                else:
                    conn.receive(body, encoding)
                # backpressure: the next message waits while too much is in flight or unsent
                while not conn.closed and (conn.paused or conn.transport.buffered() > WRITE_HIGH):
                    if conn.transport.buffered() > WRITE_HIGH:
                        conn.writing_paused(True)
                        await conn.transport.drained.wait()
                        conn.writing_paused(False)
                    else:
                        await flow.wait()
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("connection %d failed", conn.id)
        finally:
            conn.close()
            await conn.transport.task

    # websockets refuses a message over max_size itself (close code 1009)
    server = await serve(client, host, port, max_size=daemon.max_message_bytes, compression=None,
                         open_timeout=daemon.header_timeout or None)
    _announce(server.sockets, "ws")
    return server


class _WsFlow:
    """A WebSocket connection reads its next message only when not paused."""

    def __init__(self):
        self._event = asyncio.Event()
        self._event.set()

    def pause_reading(self) -> None:
        self._event.clear()

    def resume_reading(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


def _announce(sockets, kind: str) -> None:
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"sbexportd: listening on {shown}:{port} ({kind})", file=sys.stderr, flush=True)


async def _sweep(daemon: Daemon) -> None:
    """Close connections past their header or idle timeout."""
    timeouts = [t for t in (daemon.header_timeout, daemon.idle_timeout) if t]
    if not timeouts:
        return
    tick = max(0.05, min(1.0, min(timeouts) / 4))
    while True:
        await asyncio.sleep(tick)
        now = time.monotonic()
        for conn in list(daemon.connections):
            if conn.kind == "stdio" or conn.closed:
                continue
            why = conn.timed_out(now)
            if why is not None:
                conn.expire(why)


async def serve_async(daemon: Daemon, transport: str, host: str | None = None, port: int | None = None) -> int:
    loop = asyncio.get_running_loop()
    stop: asyncio.Future = loop.create_future()

    def on_signal():
        if not stop.done():
            stop.set_result(0)
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
        except (NotImplementedError, RuntimeError):
            pass
    server = task = None
    if transport == "stdio":
        task = asyncio.ensure_future(run_stdio(daemon, stop))
        task.add_done_callback(lambda t: t.cancelled() or t.exception() is None or on_signal())
    else:
        assert host is not None and port is not None  # main() parses them from --tcp / --ws HOST:PORT
        server = await (run_tcp if transport == "tcp" else run_ws)(daemon, host, port)
    sweeper = asyncio.ensure_future(_sweep(daemon))
    code = await stop
    sweeper.cancel()
    if server is not None:
        server.close()
    for conn in list(daemon.connections):
        conn.close()
    if task is not None:
        task.cancel()
    await asyncio.sleep(0.05)  # let closing transports flush their last answers
    return code


def serve(transport: str, host: str | None = None, port: int | None = None, **daemon_options) -> int:
    daemon = Daemon(**daemon_options)
    try:
        try:
            import uvloop
            return uvloop.run(serve_async(daemon, transport, host, port))
        except ImportError:
            return asyncio.run(serve_async(daemon, transport, host, port))
    finally:
        daemon.close_all()
