"""Opening the files a user or a client names: regular files only, size first.

`open()` on a FIFO waits for a writer forever (a worker thread stuck for good, and
a process SIGTERM cannot stop); a character device or a socket is no better; and a
huge sparse file costs minutes of hashing before its size is even looked at. So
every file sbexportd reads is opened with O_NONBLOCK (a FIFO opens at once), its
type and size are taken with fstat on the opened descriptor (not a path a third
party could swap), and anything but a regular file under the size limit is
refused before a byte is read.

A caller that confines what may be read (`serve --root`) passes `confine`: a check
run on the path before it is opened, raising errors.PathNotAllowed for a file
outside what is allowed. The readers of sidecar files (config.yml, VecNormalize
statistics) take it and hand it here, so a file the reader finds by itself beside a
model is checked like one a client named; the reading layer knows nothing of roots."""
from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from sbexportd.errors import MemberTooLarge, ModelFileError, ModelFileNotFound, PathNotAllowed

__all__ = ["open_regular", "read_regular", "is_regular", "kind_of", "Confine"]

Confine = Callable[[Path, str], None]
"""confine(path, what): raise PathNotAllowed unless `path` (`what`, in words) may be read."""

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)


def kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | os.PathLike, max_bytes: int, *, what: str = "an SB2 .zip or .pkl model",
                 error: type[ModelFileError] = ModelFileError, confine: Confine | None = None,
                 named: str = "") -> tuple[BinaryIO, int]:
    """(binary file object, size) of a regular file of at most max_bytes. Raises
    `error` (missing (ModelFileNotFound for a model), not a regular file, unreadable)
    or MemberTooLarge; PathNotAllowed from `confine(path, named or what)`, before the
    open, and again on the file actually opened (a symlink swapped in between)."""
    source = str(path)
    if confine is not None:
        confine(Path(path), named or what)
    try:
        fd = os.open(path, _FLAGS)
    except FileNotFoundError as e:
        missing = ModelFileNotFound if error is ModelFileError else error
        raise missing(f"no such file; expected {what}", source) from e
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "invalid path"
        raise error(f"cannot open: {reason}; expected {what}", source) from e
    try:
        if confine is not None:
            _confine_opened(fd, source, named or what, confine)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"is {kind_of(st.st_mode)}, not a regular file; expected {what}", source)
        if st.st_size > max_bytes:
            raise MemberTooLarge(f"file of {st.st_size} bytes is larger than the {max_bytes}-byte limit",
                                 source)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)  # ordinary blocking reads from here on
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def _confine_opened(fd: int, source: str, what: str, confine: Confine) -> None:
    """The check once more, on the file the descriptor refers to (Linux's /proc names
    it): a path checked and then opened is two lookups, and a symlink swapped between
    them would lead the read outside. The message shows the path as given."""
    try:
        opened = Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:  # no /proc: the check before the open stands alone
        return
    try:
        confine(opened, what)
    except PathNotAllowed:
        raise PathNotAllowed(f"{what} {source[:300]!r} led outside what may be read when it was opened (it "
                             "changed after it was checked)") from None


def read_regular(path: str | os.PathLike, max_bytes: int, *, what: str,
                 error: type[ModelFileError] = ModelFileError, confine: Confine | None = None,
                 named: str = "") -> bytes:
    """The whole content of a regular file of at most max_bytes (see open_regular);
    a file that grows while it is read is cut at max_bytes + 1 and refused."""
    fp, _ = open_regular(path, max_bytes, what=what, error=error, confine=confine, named=named)
    with fp:
        try:
            raw = fp.read(max_bytes + 1)
        except OSError as e:
            raise error(f"cannot read: {e.strerror or e}", str(path)) from e
    if len(raw) > max_bytes:
        raise MemberTooLarge(f"file grew past the {max_bytes}-byte limit while it was read", str(path))
    return raw


def is_regular(path: str | os.PathLike) -> bool:
    """Path.is_file(), without raising on a NUL byte or an unreadable folder."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False
