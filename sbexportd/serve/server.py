"""One pygls LanguageServer per connection, all sharing one Daemon.

pygls dispatches (structure_message / handle_message, features, commands,
$/progress); this module replaces what does not fit a multi-client daemon: the
transport loops (framing.py), the writer (_send_data: msgpack, byte-exact
Content-Length), `exit` (ends one connection, not the process, except on stdio),
$/cancelRequest (cooperative, so a cancelled export can clean up before answering),
and the lifecycle gates (token, not initialized, shut down)."""
from __future__ import annotations

import asyncio
import contextvars
import functools
import hmac
import itertools
import logging
import os
import signal
import sys
import threading
from typing import Any, Callable

import attrs
from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.protocol import (JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage,
                            LanguageServerProtocol, default_converter, lsp_method)

from .. import __version__
from . import editor, errors
from .daemon import CancelToken, Daemon, NullProgress
from .arrays import Bulky
from .errors import ServeError
from .framing import (JSON, FdWriter, FrameError, StreamTransport, WsTransport, decode_body,
                      encode_body, read_frame, skip_body, sniff_binary)

log = logging.getLogger("sbexportd.serve")

READ_LIMIT = 256 << 10  # StreamReader buffer limit (header lines are bounded separately)
LARGE_BODY = 1 << 20  # bodies parsed on a worker thread
_KIND_OF_CODE = {errors.PARSE_ERROR: "parse_error", errors.INVALID_REQUEST: "invalid_request",
                 errors.METHOD_NOT_FOUND: "method_not_found", errors.INVALID_PARAMS: "invalid_params",
                 errors.INTERNAL_ERROR: "internal", errors.REQUEST_CANCELLED: "cancelled",
                 errors.SERVER_NOT_INITIALIZED: "not_initialized"}


@functools.lru_cache(maxsize=1)
def converter():
    """pygls' converter, except that sbexport/* params stay plain dicts (pygls would
    turn them into namedtuples through a JSON round trip, which loses msgpack bytes)."""
    c = default_converter()

    def raw(cls, keys):
        return lambda obj, _: cls(**{k: obj.get(k) for k in keys})
    c.register_structure_hook(JsonRPCRequestMessage, raw(JsonRPCRequestMessage, ("id", "method", "jsonrpc", "params")))
    c.register_structure_hook(JsonRPCNotification, raw(JsonRPCNotification, ("method", "jsonrpc", "params")))
    c.register_structure_hook(JsonRPCResponseMessage, raw(JsonRPCResponseMessage, ("id", "jsonrpc", "result")))
    return c


@functools.lru_cache(maxsize=256)
def _message_type(method: str):
    return types.METHOD_TO_TYPES.get(method, (None,))[0]


class SbProtocol(LanguageServerProtocol):
    conn: "Connection"

    def get_message_type(self, method):
        return _message_type(method)  # pygls' per-instance lru_cache would pin closed connections

    def _send_data(self, data):
        self.conn.send(data)

    def handle_message(self, message):
        """pygls' dispatch without its isinstance checks against runtime-checkable
        Protocols (~10 us a message); Connection.receive has validated the shape."""
        if self._shutdown and getattr(message, "method", "") != types.EXIT:
            return
        ctx = contextvars.copy_context()
        if hasattr(message, "method"):
            if hasattr(message, "id"):
                ctx.run(self._handle_request, message.id, message.method, message.params)
            else:
                ctx.run(self._handle_notification, message.method, message.params)
        elif hasattr(message, "error"):
            ctx.run(self._handle_response, message.id, None, message.error)
        else:
            ctx.run(self._handle_response, message.id, message.result)

    def _execute_handler(self, msg_id, handler, callback, args=None, kwargs=None):
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        # pygls files a generator's sub-handlers (executeCommand -> command) under fresh
        # uuids and never removes them: drop each when done, or every call leaks its result
        # (not when cancelled: only shutdown cancels, while it iterates over the dict)
        fut = self._request_futures.get(msg_id)
        if fut is not None:
            fut.add_done_callback(
                lambda f, k=msg_id: self._request_futures.pop(k, None)
                if not f.cancelled() and self._request_futures.get(k) is f else None)

    def _handle_cancel_notification(self, msg_id):
        self.conn.cancel(msg_id)  # cooperative: the request answers -32800 once it has cleaned up

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
        result.capabilities.experimental = {"sbexportd": conn.daemon.capabilities()}
        conn.initialized = True
        return result

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args):
        self.conn.exit(0 if self._shutdown else 1)

    @lsp_method(types.WORKSPACE_EXECUTE_COMMAND)
    def lsp_workspace__execute_command(self, params: types.ExecuteCommandParams):
        """sbexport.<name> with arguments [params]: the same handler as sbexport/<name>."""
        handler = self.fm.commands.get(params.command)
        if handler is None:
            raise errors.invalid_params(f"unknown command {params.command!r}; the commands are "
                                        f"{', '.join(sorted(self.fm.commands))}", "method_not_found")
        args = list(params.arguments or [])
        if len(args) > 1 or (args and not isinstance(args[0], dict)):
            raise errors.invalid_params(f"{params.command}: arguments must be [params] (one object)")
        p = dict(args[0]) if args else {}
        if params.work_done_token is not None:
            p.setdefault("workDoneToken", params.work_done_token)
        elif "workDoneToken" not in p and editor.wants_progress(self._server, params.command):
            p["workDoneToken"] = yield editor.create_progress, (self._server,), None  # editors send none
        result = yield handler, (p,), None
        return result


class SbServer(LanguageServer):
    def __init__(self, daemon: Daemon, conn: "Connection"):
        self.daemon, self.conn = daemon, conn
        super().__init__("sbexportd", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
                         protocol_cls=SbProtocol, converter_factory=converter)
        self.protocol.conn = conn
        from .methods import register
        register(self)
        editor.register(self)

    def report_server_error(self, error, source):
        log.debug("pygls reported %r (%s)", error, getattr(source, "__name__", source))


class Request:
    """One in-flight request: its cancel token and its progress reporter."""

    def __init__(self, conn: "Connection", rid, method: str):
        self.conn, self.id, self.method = conn, rid, method
        self.token = CancelToken()

    def progress(self, params: dict) -> "Reporter | NullProgress":
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


class Connection:
    """One client: its pygls server and protocol, its encodings, its requests."""

    _ids = itertools.count(1)

    def __init__(self, daemon: Daemon, transport, kind: str, on_exit: Callable[[int], None] | None = None):
        self.id = next(self._ids)
        self.daemon, self.transport, self.kind = daemon, transport, kind
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._on_exit = on_exit
        self.initialized = False
        self.closed = False
        self.encoding = JSON  # of the last message received: notifications go out in it
        self._reply: dict[Any, str] = {}  # request id -> the encoding its answer goes out in
        self.requests: dict[Any, Request] = {}  # received, not yet answered
        self.server = SbServer(daemon, self)
        self.protocol: SbProtocol = self.server.protocol
        daemon.connection_opened(self)

    # -- in ------------------------------------------------------------------------------
    async def receive_large(self, body: bytes, encoding: str) -> None:
        """A large body is parsed on a worker thread; the connection's next message
        waits for it (order kept), other connections do not."""
        try:
            msg = await asyncio.get_running_loop().run_in_executor(self.daemon.work, decode_body, body, encoding)
        except ServeError as e:
            return self.send_error(None, e, encoding)
        self.handle(msg, encoding)

    def receive(self, body: bytes, encoding: str) -> None:
        try:
            msg = decode_body(body, encoding)
        except ServeError as e:
            return self.send_error(None, e, encoding)
        self.handle(msg, encoding)

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
            return self._dispatch(msg)  # a client's answer to a server request
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
                                                    "not_initialized"))
                return None  # notifications before initialize are dropped (LSP)
            if self.protocol._shutdown:
                if has_id:
                    self.send_error(rid, ServeError(errors.INVALID_REQUEST, f"{method}: shutdown was requested",
                                                    "shutting_down"))
                return None
        if has_id:
            self._reply[rid] = encoding
            # tracked from receipt, not from the handler's first step: a $/cancelRequest
            # in the same read can overtake the start
            self.requests[rid] = Request(self, rid, method)
        return self._dispatch(msg)

    def _dispatch(self, msg: dict) -> None:
        try:
            structured = self.protocol.structure_message(msg)
        except Exception as e:  # noqa: BLE001 - LSP params of the wrong shape
            if "id" in msg:
                self.send_error(msg.get("id"), errors.invalid_params(
                    f"{msg.get('method')}: {_structure_detail(e)}"))
            return
        try:
            self.protocol.handle_message(structured)
        except Exception as e:  # noqa: BLE001 - never let one message end the connection
            log.exception("dispatching %s failed", msg.get("method"))
            if "id" in msg and "method" in msg:
                self.send_error(msg.get("id"), errors.map_exception(e))

    # -- requests (methods.py) ------------------------------------------------------------
    def begin(self, rid, method: str) -> Request:
        """The tracked request a method handler serves (see receive)."""
        req = self.requests.get(rid) if rid is not None else None
        if req is None:
            req = Request(self, rid, method)
        req.method = method
        self.daemon.in_flight += 1
        self.daemon.by_method[method] += 1
        return req

    def end(self, req: Request) -> None:
        self.daemon.in_flight -= 1

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

    def send(self, data) -> None:
        if threading.get_ident() != self._loop_thread:
            self.loop.call_soon_threadsafe(self.send, data)
            return
        if self.closed:
            return
        msg = self._wire(data)
        encoding = self.encoding
        if "id" in msg and ("result" in msg or "error" in msg):
            encoding = self._reply.pop(msg["id"], encoding)
            self.requests.pop(msg["id"], None)
            self.daemon.count_response("error" not in msg)
        if isinstance(msg.get("result"), Bulky):  # megabytes of arrays: encode off the loop
            fut = self.loop.run_in_executor(self.daemon.work, self._encode, msg, encoding)
            fut.add_done_callback(lambda f: self.closed or self.transport.send(f.result(), encoding))
            return
        self.transport.send(self._encode(msg, encoding), encoding)

    @staticmethod
    def _encode(msg: dict, encoding: str) -> bytes:
        try:
            return encode_body(msg, encoding)
        except Exception as e:  # noqa: BLE001 - a result that cannot be encoded: answer that instead
            log.exception("cannot encode the answer")
            err = errors.map_exception(e)
            return encode_body({"jsonrpc": "2.0", "id": msg.get("id"), "error": {
                "code": err.code, "message": err.message, "data": err.data}}, encoding)

    def send_error(self, rid, err: ServeError, encoding: str | None = None) -> None:
        encoding = self._reply.pop(rid, None) or encoding or self.encoding
        self.requests.pop(rid, None)
        self.daemon.count_response(False)
        if not self.closed:
            self.transport.send(encode_body({"jsonrpc": "2.0", "id": rid, "error": err.to_dict()}, encoding),
                                encoding)

    def _wire(self, data) -> dict:
        if isinstance(data, dict):
            return data
        if isinstance(data, types.ResponseErrorMessage):
            e = data.error
            err = {"code": e.code, "message": e.message}
            kind = _KIND_OF_CODE.get(e.code, "internal")
            if isinstance(e.data, dict) and "kind" in e.data:
                err["data"] = e.data
            else:  # pygls' own errors (method not found, ...): give them sbexportd's data too
                err["data"] = {"kind": kind, "file": None, "hint": errors.HINTS.get(kind)}
            return {"jsonrpc": "2.0", "id": data.id, "error": err}
        if hasattr(data, "result") and hasattr(data, "id"):
            result = data.result
            if attrs.has(type(result)) or (isinstance(result, list) and result and attrs.has(type(result[0]))):
                result = self.protocol._converter.unstructure(result)
            return {"jsonrpc": "2.0", "id": data.id, "result": result}
        return self.protocol._converter.unstructure(data)

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


def _structure_detail(e: Exception) -> str:
    cause = e.__cause__ or e
    try:
        from cattrs import transform_error
        return "; ".join(transform_error(cause))[:500]
    except Exception:  # noqa: BLE001 - not a cattrs error
        return str(cause)[:500] or type(cause).__name__


# -- transports ----------------------------------------------------------------------------
async def serve_stream(conn: Connection, reader: asyncio.StreamReader) -> None:
    """Read frames until the stream ends; a bad frame is answered, never fatal to the daemon."""
    resync = False
    try:
        while not conn.closed:
            try:
                frame = await read_frame(reader, conn.daemon.max_message_bytes, resync)
            except FrameError as fe:
                conn.send_error(None, fe.error, conn.encoding)
                if fe.fatal or (fe.skip and not await skip_body(reader, fe.skip)):
                    break
                resync = fe.resync
                continue
            resync = False
            if frame is None:
                break
            if len(frame.body) > LARGE_BODY:
                await conn.receive_large(frame.body, frame.encoding)
            else:
                conn.receive(frame.body, frame.encoding)
    finally:
        conn.close()


class PipeWriter:
    """The writer interface StreamTransport uses, over a write-pipe transport."""

    def __init__(self, transport):
        self.transport = transport

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.transport.close()


async def _stdin_reader(loop) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=READ_LIMIT)
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    except (ValueError, OSError, NotImplementedError):  # a file or a tty: read it in a thread
        def pump():
            fd = sys.stdin.fileno()
            while True:
                try:
                    chunk = os.read(fd, 1 << 16)
                except OSError:
                    chunk = b""
                if not chunk:
                    loop.call_soon_threadsafe(reader.feed_eof)
                    return
                loop.call_soon_threadsafe(reader.feed_data, chunk)
        threading.Thread(target=pump, name="sbexportd-stdin", daemon=True).start()
    return reader


async def _stdout_writer(loop, fd: int):
    try:
        transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(fd, "wb", buffering=0))
        return PipeWriter(transport)
    except (ValueError, OSError, NotImplementedError):
        return FdWriter(fd)


async def run_stdio(daemon: Daemon, stop: asyncio.Future) -> None:
    loop = asyncio.get_running_loop()
    out_fd = os.dup(1)
    os.dup2(2, 1)  # whatever a library prints goes to stderr, not into the protocol stream
    sys.stdout = sys.stderr
    reader = await _stdin_reader(loop)
    writer = await _stdout_writer(loop, out_fd)

    def on_exit(code: int) -> None:
        if not stop.done():
            stop.set_result(code)

    conn = Connection(daemon, StreamTransport(writer, 4 * daemon.max_message_bytes), "stdio", on_exit)
    print("sbexportd: serving on stdio", file=sys.stderr, flush=True)
    await serve_stream(conn, reader)
    on_exit(0)  # end of input: the client is gone


async def run_tcp(daemon: Daemon, host: str, port: int) -> asyncio.AbstractServer:
    async def client(reader, writer):
        conn = Connection(daemon, StreamTransport(writer, 4 * daemon.max_message_bytes), "tcp")
        try:
            await serve_stream(conn, reader)
        except Exception:  # noqa: BLE001 - one client's failure is not the daemon's
            log.exception("connection %d failed", conn.id)
        finally:
            conn.close()

    server = await asyncio.start_server(client, host, port, limit=READ_LIMIT)
    _announce(server.sockets, "tcp")
    return server


async def run_ws(daemon: Daemon, host: str, port: int):
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    async def client(ws):
        conn = Connection(daemon, WsTransport(ws), "ws")
        try:
            async for message in ws:
                body, encoding = ((message.encode("utf-8"), JSON) if isinstance(message, str)
                                  else (message, sniff_binary(message)))
                if len(body) > LARGE_BODY:
                    await conn.receive_large(body, encoding)
                else:
                    conn.receive(body, encoding)
        except ConnectionClosed:
            pass
        except Exception:  # noqa: BLE001
            log.exception("connection %d failed", conn.id)
        finally:
            conn.close()
            await conn.transport.task

    # websockets refuses a message over max_size itself (close code 1009)
    server = await serve(client, host, port, max_size=daemon.max_message_bytes, compression=None)
    _announce(server.sockets, "ws")
    return server


def _announce(sockets, kind: str) -> None:
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"sbexportd: listening on {shown}:{port} ({kind})", file=sys.stderr, flush=True)


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
    elif transport == "tcp":
        server = await run_tcp(daemon, host, port)
    else:
        server = await run_ws(daemon, host, port)
    code = await stop
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
