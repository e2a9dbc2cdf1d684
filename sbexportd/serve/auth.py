"""Authentication on the network transports, the way Jupyter does it.

- A token is required by default on TCP and WebSocket: `serve` generates one
  (256 random bits) unless told `--no-auth`, or takes it from SBEXPORTD_TOKEN or a
  file (`--token-file`, SBEXPORTD_TOKEN_FILE), never from the command line (where
  `ps` shows it to every user). stdio needs none: only its parent can talk to it.
- The daemon writes a connection file (transport, host, port, token, pid), mode
  0600, in the runtime folder (runtime_dir()) or where `--connection-file` says;
  clients find it there by themselves, as Jupyter's find kernel connection files.
- A client presents the token as initialize's initializationOptions.token; a wrong
  or missing one is answered -33020 and the connection is closed. Wrong guesses
  are slowed daemon-wide (Throttle): a burst of BURST, then RATE per second.
"""
from __future__ import annotations

import hmac
import json
import os
import secrets
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BURST = 10  # failed attempts allowed at once (a user mistyping, a misconfigured client)
RATE = 2.0  # then at most this many attempts per second, whichever connections they come from
TOKEN_BYTES = 32
MIN_TOKEN_CHARS = 16


class TokenError(ValueError):
    """A token given to `serve` that cannot be used (empty, unreadable, too short)."""


# -- the token -----------------------------------------------------------------------------
def generate_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def resolve_token(*, no_auth: bool, token_file: str | None,
                  env: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """(token or None, where it came from). Raises TokenError."""
    environ: Mapping[str, str] = os.environ if env is None else env
    token_file = token_file or environ.get("SBEXPORTD_TOKEN_FILE") or None
    if no_auth:
        if token_file or environ.get("SBEXPORTD_TOKEN"):
            raise TokenError("--no-auth with a token (SBEXPORTD_TOKEN, --token-file): choose one")
        return None, "none (--no-auth)"
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise TokenError(f"cannot read the token file {token_file}: {getattr(e, 'strerror', None) or e}") from e
        return check_token(token, f"the token file {token_file}"), "file"
    if "SBEXPORTD_TOKEN" in environ:
        return check_token(environ["SBEXPORTD_TOKEN"].strip(), "SBEXPORTD_TOKEN"), "environment"
    return generate_token(), "generated"


def check_token(token: str, where: str) -> str:
    if not token:
        raise TokenError(f"{where} is empty: an empty token would let anyone in (use --no-auth to mean that)")
    if len(token) < MIN_TOKEN_CHARS:
        raise TokenError(f"{where} holds a token of {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
                         "(or let the daemon generate one)")
    if not token.isprintable() or any(c.isspace() for c in token):
        raise TokenError(f"{where}: the token must be printable characters without spaces")
    return token


def token_matches(given: Any, token: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                                                          token.encode("utf-8"))


# -- slowing guesses ----------------------------------------------------------------------
class Throttle:
    """Every initialize on a connection that needs a token takes a slot. Each slot
    costs a credit up front (refunded when the token was right); credits refill at
    RATE per second up to BURST. With no credit left, the next slot waits for one,
    and the attempts after it queue behind: an attacker with any number of
    connections gets RATE guesses a second, while a right token, with no failures
    around, is never delayed."""

    def __init__(self, burst: int = BURST, rate: float = RATE, clock=time.monotonic):
        self.burst, self.rate, self.clock = burst, rate, clock
        self.credits = float(burst)
        self.at = clock()  # when `credits` was counted
        self.failures = 0

    def reserve(self) -> float:
        """Seconds from now until this attempt may be checked."""
        now = self.clock()
        t = max(now, self.at)
        self.credits = min(self.burst, self.credits + (t - self.at) * self.rate)
        if self.credits < 1:
            t += (1 - self.credits) / self.rate
            self.credits = 1.0
        self.credits -= 1
        self.at = t
        return t - now

    def settle(self, ok: bool) -> None:
        if ok:
            self.credits = min(self.burst, self.credits + 1)
        else:
            self.failures += 1


# -- connection files ----------------------------------------------------------------------
def runtime_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where connection files go: $SBEXPORTD_RUNTIME_DIR, else $XDG_RUNTIME_DIR/sbexportd,
    else ~/.local/share/sbexportd/runtime (as Jupyter's runtime folder)."""
    environ: Mapping[str, str] = os.environ if env is None else env
    if environ.get("SBEXPORTD_RUNTIME_DIR"):
        return Path(environ["SBEXPORTD_RUNTIME_DIR"])
    if environ.get("XDG_RUNTIME_DIR"):
        return Path(environ["XDG_RUNTIME_DIR"]) / "sbexportd"
    return Path.home() / ".local" / "share" / "sbexportd" / "runtime"


def write_connection_file(info: dict[str, Any], path: str | None = None) -> Path:
    """Write `info` as JSON, mode 0600 from its creation (never readable by others,
    not even for a moment), atomically; the runtime folder is made 0700."""
    if path is None:
        folder = runtime_dir()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        sweep_connection_files(folder)
        target = folder / f"sbexportd-{os.getpid()}.json"
    else:
        target = Path(path).expanduser().absolute()
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(info, f, indent=2)
            f.write("\n")
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return target


def sweep_connection_files(folder: Path) -> None:
    """Remove the connection files of daemons that are gone (killed, crashed)."""
    from ..export.transaction import process_alive
    for p in folder.glob("sbexportd-*.json"):
        try:
            pid = int(p.stem.split("-", 1)[1])
        except ValueError:
            continue
        if not process_alive(pid, None):
            try:
                p.unlink()
            except OSError:
                pass


def remove_connection_file(path: Path | None) -> None:
    if path is None:
        return
    try:
        info = json.loads(path.read_text())
        if info.get("pid") == os.getpid():  # a newer daemon may have taken the name (--connection-file)
            path.unlink()
    except (OSError, ValueError):
        pass


def connection_info(transport: str, host: str, port: int, token: str | None) -> dict[str, Any]:
    from .. import __version__
    from .daemon import PROTOCOL_VERSION
    shown = f"[{host}]" if ":" in host else host
    info = {"transport": transport, "host": host, "port": port, "token": token, "pid": os.getpid(),
            "version": __version__, "protocolVersion": PROTOCOL_VERSION,
            "argv0": os.path.basename(sys.argv[0] or "sbexportd")}
    if transport == "ws":
        info["url"] = f"ws://{shown}:{port}"
    return info


def find_connection_file(host: str | None = None, port: int | None = None, transport: str | None = None,
                         folder: Path | None = None) -> dict[str, Any] | None:
    """The connection info of a running daemon (its process alive) in the runtime
    folder: the one at host:port if given, else the newest. What the clients do."""
    from ..export.transaction import process_alive
    folder = folder or runtime_dir()
    found = []
    try:
        paths = sorted(folder.glob("sbexportd-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return None
    for p in paths:
        try:
            info = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(info, dict) or not process_alive(info.get("pid"), None):
            continue
        if transport is not None and info.get("transport") != transport:
            continue
        if port is not None and (info.get("port") != port or (host not in (None, info.get("host"))
                                                             and not _both_loopback(host, info.get("host")))):
            continue
        info["connectionFile"] = str(p)
        found.append(info)
    return found[0] if found else None


def _both_loopback(a: str | None, b: str | None) -> bool:
    loop = {"127.0.0.1", "localhost", "::1"}
    return a in loop and b in loop
