"""`sbexportd serve`: a long-lived daemon that keeps models warm and answers
JSON-RPC over the LSP base protocol (stdio, TCP, WebSocket). protocol.md at the
repository root is the specification.

    server.py   one pygls LanguageServer per connection, the transport loops
    framing.py  Content-Length frames, JSON / msgpack bodies
    methods.py  the sbexport/* methods (thin: params in, daemon call, result out)
    daemon.py   state shared by every connection: models, cache, executors, counters
    exports.py  cached exports through the export transaction (export/transaction.py)
    auth.py     tokens, connection files, the guess throttle
    roots.py    --root confinement
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
    if args.token is not None:
        print("sbexportd: error: --token is gone: a token on the command line shows in `ps` to every user of "
              "the machine. Put it in SBEXPORTD_TOKEN or in a file (--token-file), or let the daemon generate "
              "one (clients read it from the connection file)", file=sys.stderr)
        return 2
    if args.stdio:
        transport, host, port, token = "stdio", None, None, None  # only the parent process can talk to it
    else:
        from .auth import TokenError, resolve_token
        transport = "tcp" if args.tcp else "ws"
        try:
            host, port = parse_address(args.tcp or args.ws)
            token, source = resolve_token(no_auth=args.no_auth, token_file=args.token_file)
        except (ValueError, TokenError) as e:
            print(f"sbexportd: error: {e}", file=sys.stderr)
            return 2
        if token is None and host not in ("127.0.0.1", "::1", "localhost"):
            print(f"sbexportd: warning: listening on {host} with --no-auth: anyone who can reach it can read "
                  "and write files as this user", file=sys.stderr)
        elif token is None:
            print("sbexportd: warning: --no-auth: any process of any user on this machine can use the daemon "
                  "(read and write files as this user)", file=sys.stderr)
        else:
            print(f"sbexportd: clients must present the token ({source}; clients read it from the connection "
                  "file)", file=sys.stderr)
    if args.allow_origin and transport != "ws":
        print("sbexportd: error: --allow-origin is for --ws (browsers reach the daemon only over WebSocket)",
              file=sys.stderr)
        return 2
    from .server import serve
    _raise_fd_limit()
    try:
        return serve(transport, host, port, max_models=args.max_models, token=token,
                     max_message_bytes=args.max_message_bytes, workers=args.workers,
                     export_workers=args.export_workers, export_cache=args.export_cache,
                     max_predict_values=args.max_predict_values, max_in_flight=args.max_in_flight,
                     max_connections=args.max_connections, header_timeout=args.header_timeout,
                     idle_timeout=args.idle_timeout,
                     allow_origins=tuple(args.allow_origin or ()), roots=tuple(args.root or ()),
                     connection_file=args.connection_file)
    except ValueError as e:  # --root that is not a folder, ...
        print(f"sbexportd: error: {e}", file=sys.stderr)
        return 2


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
