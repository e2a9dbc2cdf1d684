"""The export transaction: how target folders get into `out`, for the CLI and
Python API (export/core.py) and the daemon (serve/exports.py) alike.

    with Transaction(out, ["onnx", "tfjs"], force=False) as txn:
        folder = txn.stage("onnx")      # an empty folder: write and verify the target there
        txn.ready("onnx")               # or txn.failed("onnx", error)
        with txn.attempt("tfjs"):       # or: a typed error fails this target only
            ...
        ...
        installed = txn.commit()        # {name: out/name} of the targets now in place

Everything is staged in one hidden folder inside `out`,
`out/.sbexportd-<pid>-<random>.txn/` (`new/<target>` staged, `old/<target>` what a
target replaces, `journal.json`), so installing is a rename on one filesystem and
nothing appears under a target's own name before it is complete and verified.

- all_or_nothing=False (the default): each ready target is installed on its own
  (its old folder or file moved aside, the new one renamed in, the old one deleted;
  if the second rename fails the old one is put back). Failed targets leave nothing.
- all_or_nothing=True: the first failure aborts; if installing one target fails,
  the targets installed before it are taken out again and what they replaced put back.
- A crash (kill -9, power cut) leaves only the hidden .txn folder. The next
  transaction on the same `out` sweeps the .txn folders of processes that are gone,
  using their journal: targets caught half-installed are put back as they were;
  in all-or-nothing mode every target of that transaction is taken out again.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import Cancelled, ExportError, OutputExists, SbExportError

PREFIX = ".sbexportd-"
SUFFIX = ".txn"
JOURNAL = "journal.json"


class Transaction:
    def __init__(self, out: str | os.PathLike, names: Iterable[str], *, force: bool = False,
                 all_or_nothing: bool = False, forbidden: Iterable[str | os.PathLike] = ()):
        self.out = check_out(out, forbidden)
        self.names = list(dict.fromkeys(names))  # a target named twice is made once
        self.force, self.all_or_nothing = force, all_or_nothing
        self._ready: list[str] = []
        self.errors: dict[str, SbExportError] = {}
        self.installed: dict[str, Path] = {}
        self.txn: Path | None = None
        self._made_out = False
        if not force:
            taken = [n for n in self.names if os.path.lexists(self.out / n)]
            if taken:
                shown = ", ".join(str(self.out / n) for n in taken)
                raise OutputExists(f"{shown} already {'exists' if len(taken) == 1 else 'exist'}; pass --force "
                                   "(force=true) to replace", self.out)

    # -- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> Transaction:
        return self  # (opened by the first stage(): nothing appears in `out` before there is something to stage)

    def __exit__(self, kind, value, tb) -> None:
        self.close()

    def open(self) -> Path:
        """The staging folder, made on first use."""
        if self.txn is not None:
            return self.txn
        if self.out.exists():
            sweep(self.out)
        else:
            self.out.mkdir(parents=True)
            self._made_out = True
        self.txn = self.out / f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
        self.txn.mkdir(mode=0o700)
        (self.txn / "new").mkdir()
        (self.txn / "old").mkdir()
        self._journal("staging")
        return self.txn

    def close(self) -> None:
        """Remove the staging folder (whatever is left in it: failed or unused stages,
        replaced targets) and an `out` this transaction made and left empty."""
        if self.txn is not None:
            _remove(self.txn)
            self.txn = None
        if self._made_out and not self.installed:
            try:
                self.out.rmdir()
            except OSError:  # not empty: someone else wrote there meanwhile
                pass

    # -- staging ------------------------------------------------------------------------
    def stage(self, name: str) -> Path:
        """An empty folder (with the umask's permissions) to make target `name` in."""
        folder = self.open() / "new" / name
        if folder.exists():
            _remove(folder)
        folder.mkdir()
        return folder

    def ready(self, name: str) -> None:
        self._ready.append(name)

    def failed(self, name: str, error: SbExportError) -> None:
        self.errors[name] = error
        if self.txn is not None and os.path.lexists(self.txn / "new" / name):
            _remove(self.txn / "new" / name)

    @contextmanager
    def attempt(self, name: str) -> Iterator[None]:
        """A step of one target (writing, verifying, copying it): a typed error fails
        that target only (`failed`, then `name in errors`), unless all_or_nothing,
        where it fails the whole export; a cancellation always does."""
        try:
            yield
        except Cancelled:
            raise
        except SbExportError as e:
            if self.all_or_nothing:
                raise
            self.failed(name, e)

    # -- installing ---------------------------------------------------------------------
    def commit(self) -> dict[str, Path]:
        if not self._ready:
            return {}
        self._journal("installing")
        for name in self._ready:
            try:
                self.installed[name] = self._install(name)
            except SbExportError as e:
                if self.all_or_nothing:
                    self._roll_back()
                    raise
                self.errors[name] = e
            except BaseException:
                if self.all_or_nothing:
                    self._roll_back()
                raise
        return dict(self.installed)

    def _install(self, name: str) -> Path:
        txn = self.open()
        final, new, old = self.out / name, txn / "new" / name, txn / "old" / name
        try:
            if os.path.lexists(final):
                if not self.force:
                    raise OutputExists(f"{final} appeared while exporting; pass --force (force=true) to replace",
                                       final)
                os.rename(final, old)  # a folder, a file or a symlink: moved, never followed
            try:
                os.rename(new, final)
            except BaseException:
                if os.path.lexists(old):
                    os.rename(old, final)
                raise
        except OSError as e:
            raise ExportError(f"cannot install the export: {e.strerror or e}", final) from e
        return final

    def _roll_back(self) -> None:
        """(all or nothing) Take out what this transaction installed; put back what it replaced."""
        for name in reversed(list(self.installed)):
            txn = self.open()
            final, old = self.out / name, txn / "old" / name
            trash = txn / "new" / f"{name}.rolled-back"
            os.rename(final, trash)
            if os.path.lexists(old):
                os.rename(old, final)
            del self.installed[name]

    def _journal(self, state: str) -> None:
        record = {"pid": os.getpid(), "start": start_time(os.getpid()), "host": socket.gethostname(),
                  "state": state, "all_or_nothing": self.all_or_nothing, "ready": self._ready,
                  "made_out": self._made_out, "time": time.time()}
        assert self.txn is not None  # (written by open() and after it)
        tmp = self.txn / (JOURNAL + ".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.txn / JOURNAL)


def check_out(out: str | os.PathLike | None, forbidden: Iterable[str | os.PathLike] = ()) -> Path:
    """`out` as an absolute path, refused when empty, a file, or inside a forbidden
    folder (the daemon's own export cache)."""
    if out is None or not str(out).strip():
        raise ExportError("the output folder is empty: name the folder to write the targets into")
    if "\x00" in str(out):
        raise ExportError("the output folder name holds a NUL byte")
    path = Path(os.path.abspath(os.path.expanduser(str(out))))
    if path.exists() and not path.is_dir():
        raise ExportError("is not a folder; the output must be a folder (one subfolder per target)", path)
    real = resolved(path)
    for f in forbidden:
        f_real = resolved(Path(f))
        if real == f_real or f_real in real.parents:
            raise ExportError("is inside sbexportd's own export cache; choose another output folder", path)
    return path


def resolved(path: Path) -> Path:
    """realpath of the longest existing prefix, then the rest as written (a folder
    an export will create does not exist yet)."""
    rest: list[str] = []
    p = path
    while not os.path.lexists(p) and p != p.parent:
        rest.append(p.name)
        p = p.parent
    return Path(os.path.realpath(p)).joinpath(*reversed(rest))


# -- crash recovery -----------------------------------------------------------------------
def sweep(out: Path) -> list[Path]:
    """Clean up the .txn folders in `out` left by processes that are gone. Returns them."""
    swept: list[Path] = []
    try:
        entries = [e for e in os.scandir(out) if e.name.startswith(PREFIX) and e.name.endswith(SUFFIX)]
    except OSError:
        return swept
    for entry in entries:
        txn = Path(entry.path)
        try:
            record = json.loads((txn / JOURNAL).read_text())
        except (OSError, ValueError):
            record = None
        if record is not None:
            if record.get("host") != socket.gethostname() or process_alive(record.get("pid"), record.get("start")):
                continue
            if record.get("state") == "installing":
                _recover(out, txn, record)
        elif (process_alive(_pid_of(entry.name), None)
              or time.time() - entry.stat(follow_symlinks=False).st_mtime < 3600):
            continue  # no journal yet: being made right now, unless old and its process gone
        _remove(txn)
        swept.append(txn)
    return swept


def _recover(out: Path, txn: Path, record: dict) -> None:
    """A process died while installing: put `out` back in a state it would have left."""
    for name in record.get("ready", []):
        final, new, old = out / name, txn / "new" / name, txn / "old" / name
        new_there, old_there = os.path.lexists(new), os.path.lexists(old)
        if new_there and old_there:  # the old one was moved aside, the new one not yet in
            if not os.path.lexists(final):
                os.rename(old, final)
        elif not new_there and record.get("all_or_nothing"):  # installed: take it out again
            if os.path.lexists(final):
                os.rename(final, txn / "new" / f"{name}.rolled-back")
            if old_there:
                os.rename(old, final)
        # else: installed on its own (kept), or never installed (nothing to do)


def process_alive(pid, start) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return start is None or start_time(pid) in (None, start)  # a reused pid is another process


def _pid_of(name: str) -> int | None:
    try:
        return int(name[len(PREFIX):].split("-", 1)[0])
    except ValueError:
        return None


def start_time(pid: int) -> int | None:
    """The process' start time (clock ticks since boot) from /proc, to tell a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _remove(path: Path) -> None:
    """Remove a folder, a file or a symlink (never what a symlink points to)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
