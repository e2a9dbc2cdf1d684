"""`sbexportd serve`: a long-lived daemon that keeps models warm and answers
JSON-RPC over the LSP base protocol (stdio, TCP, WebSocket). protocol.md at the
repository root is the specification.

    server.py   one pygls LanguageServer per connection, the transport loops
    framing.py  Content-Length frames, JSON / msgpack bodies
    methods.py  the sbexport/* methods (thin: params in, daemon call, result out)
    daemon.py   state shared by every connection: models, cache, executors, counters
    exports.py  all-or-nothing, cached exports
    arrays.py   array encodings
    errors.py   error codes and the mapping of sbexportd's typed errors
"""
from __future__ import annotations

import logging
import os
import sys


def parse_address(value: str) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT, :PORT or PORT; the host defaults to loopback."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "", value
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: expected HOST:PORT (port 0 picks a free one)")
    return host, int(port)


def main(args) -> int:
    """The `serve` subcommand (see sbexportd.cli)."""
    level = getattr(logging, args.log_level.upper(), logging.WARNING)
    logging.basicConfig(level=level, stream=sys.stderr, format="sbexportd: %(levelname)s %(name)s: %(message)s")
    # pygls logs every error response with a traceback; the client already has the answer
    logging.getLogger("pygls").setLevel(level if level <= logging.DEBUG else logging.CRITICAL)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow, if an export or backend imports it
    # NumPy's OpenBLAS spins a thread per core for every matmul; with requests already
    # running in parallel (and other processes on the machine) that oversubscribes the
    # CPUs: batch-1024 predicts ran 7-10x slower on a busy 2-cpu machine. Set before
    # NumPy is imported; the environment can still say otherwise.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    token = args.token if args.token is not None else os.environ.get("SBEXPORTD_TOKEN") or None
    if args.stdio:
        transport, host, port = "stdio", None, None
    else:
        transport = "tcp" if args.tcp else "ws"
        host, port = parse_address(args.tcp or args.ws)
        if host not in ("127.0.0.1", "::1", "localhost") and token is None:
            print(f"sbexportd: warning: listening on {host} without --token: anyone who can reach it can read "
                  "and write files as this user", file=sys.stderr)
    from .server import serve
    _raise_fd_limit()
    return serve(transport, host, port, max_models=args.max_models, token=token,
                 max_message_bytes=args.max_message_bytes, workers=args.workers,
                 export_workers=args.export_workers, export_cache=args.export_cache,
                 max_predict_values=args.max_predict_values, max_in_flight=args.max_in_flight,
                 max_connections=args.max_connections, header_timeout=args.header_timeout,
                 idle_timeout=args.idle_timeout)


def _raise_fd_limit() -> None:
    """Let the process open as many files as its hard limit allows (as servers do):
    --max-connections, not the soft file-descriptor limit, bounds the clients, and
    opens and exports keep descriptors to spare."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 1 << 16
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, 1 << 20), hard))
    except (ImportError, ValueError, OSError):
        pass
