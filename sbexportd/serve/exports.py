"""Exports in the daemon: the export transaction of sbexportd.export, fed from a cache.

Every target is first made and verified (export.core.build_target) in the daemon's
private cache folder, keyed by what the export depends on: the model's bytes and
options (Entry.identity), the target, verify and the sbexportd version. A request
then copies each target it asks for into the staging folder of an export
transaction on `out` (export/transaction.py, the one the CLI uses), which installs
them: each on its own, or all or nothing. A repeated export of the same model is a
copy of files already made and verified (its result says `cached: true`).

The cache lives in <tmp>/sbexportd-<uid>/exports-<pid>-..., removed when the daemon
stops; the folders of daemons that died (kill -9) are removed by the next start."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..errors import ExportError, SbExportError
from ..export.transaction import Transaction, process_alive, start_time

_CACHE_NAME = re.compile(r"^exports-(\d+)-(\d+|x)-")


class ExportCache:
    def __init__(self, max_entries: int = 32):
        self.max = max(0, max_entries)
        self.root = cache_root()
        self._entries: OrderedDict[str, Path] = OrderedDict()  # key -> folder of one finished target
        self._key_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def status(self) -> dict[str, Any]:
        return {"entries": len(self._entries), "maxEntries": self.max, "hits": self.hits, "misses": self.misses}

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # -- one request ---------------------------------------------------------------
    def export(self, entry, names: list[str], out: str, force: bool, verify: bool, all_or_nothing: bool,
               progress, token) -> tuple[list[dict], list[tuple[str, SbExportError]]]:
        """(export thread) The targets of `names` into out/<target>/. Returns the
        results of the targets written and the (target, error) of those that failed."""
        txn = Transaction(out, names, force=force, all_or_nothing=all_or_nothing, forbidden=[self.root])
        names = txn.names
        progress.begin(f"exporting {entry.model.archive.path.name} to {', '.join(names)}")
        made: dict[str, tuple[Path, bool, float]] = {}
        try:
            with txn:
                # first every target in the cache (minutes for some), then into `out` at once
                for i, name in enumerate(names):
                    token.check("export")
                    with txn.attempt(name):
                        made[name] = self._make_or_find(entry, name, i, len(names), txn, verify, progress, token)
                token.check("export")
                infos = {}
                for name, (folder, hit, seconds) in made.items():
                    try:
                        with txn.attempt(name):
                            infos[name] = self._copy(name, folder, hit, seconds, txn)
                    finally:
                        if self.max == 0:
                            shutil.rmtree(folder.parent, ignore_errors=True)
                    if name not in txn.errors:
                        txn.ready(name)
                token.check("export")
                installed = txn.commit()
        except BaseException:
            if self.max == 0:
                for folder, _, _ in made.values():
                    shutil.rmtree(folder.parent, ignore_errors=True)
            progress.end("cancelled" if token.cancelled() else "failed")
            raise
        progress.end("done" if not txn.errors else f"failed: {', '.join(txn.errors)}")
        self._evict()
        results = []
        for name in names:
            if name in installed:
                info = infos[name]
                info["path"] = str(installed[name])
                results.append(info)
        return results, [(n, txn.errors[n]) for n in names if n in txn.errors]

    def _make_or_find(self, entry, name, i, n, txn: Transaction, verify, progress, token) -> tuple[Path, bool, float]:
        """(folder in the cache, found there, seconds) of one target: made if not cached."""
        start = time.perf_counter()

        def step(target: str, stage: str, fraction: float) -> None:
            token.check("export")  # build_target calls this between its stages: a cancel stops it there
            progress.report(f"{target}: {stage}", 100.0 * (i + fraction) / n)

        key = hashlib.sha256(json.dumps([entry.identity, name, bool(verify)]).encode()).hexdigest()[:32]
        with self._key_lock(key):  # two requests for the same export: one makes it, the other finds it
            folder, hit = self._get(key), True
            if folder is None:
                hit = False
                folder = self._make(entry, name, key, verify, step, token, txn.out / name)
        if hit:
            progress.report(f"{name}: cached", 100.0 * (i + 1) / n)
        return folder, hit, time.perf_counter() - start

    def _copy(self, name: str, folder: Path, hit: bool, seconds: float, txn: Transaction) -> dict:
        """Copy a made target into the transaction; its result."""
        start = time.perf_counter()
        try:
            stage = txn.stage(name)
            shutil.copytree(folder, stage, dirs_exist_ok=True)
            manifest = json.loads((stage / "manifest.json").read_text())
        except OSError as e:  # (shutil.Error too) the output's disk is full, the cache entry was evicted, ...
            raise ExportError(f"cannot write the export: {getattr(e, 'strerror', None) or 'copy failed'}",
                              txn.out / name) from e
        files = manifest.get("files", [])
        return {"target": name, "ok": True, "path": None, "files": files,
                "bytes": sum(f.get("bytes", 0) for f in files), "parity": manifest.get("parity"),
                "manifest": manifest, "cached": hit, "seconds": round(seconds + time.perf_counter() - start, 4)}

    def _make(self, entry, name, key, verify, step, token, shown_as: Path) -> Path:
        from ..export.core import build_target
        parent = self.root / key
        shutil.rmtree(parent, ignore_errors=True)
        try:
            parent.mkdir()
            (parent / name).mkdir()
            build_target(entry.model, name, parent / name, verify=verify, progress=step,
                         cancelled=token.cancelled, shown_as=shown_as)
        except OSError as e:  # the cache's disk is full, ...: said without the cache's (private) path
            shutil.rmtree(parent, ignore_errors=True)
            raise ExportError(f"the daemon cannot write its export cache: {e.strerror or 'error'}", shown_as) from e
        except BaseException:
            shutil.rmtree(parent, ignore_errors=True)
            raise
        with self._lock:
            self.misses += 1
            if self.max:
                self._entries[key] = parent / name
        return parent / name

    def _get(self, key: str) -> Path | None:
        with self._lock:
            folder = self._entries.get(key)
            if folder is None or not (folder / "manifest.json").is_file():
                self._entries.pop(key, None)
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return folder

    def _key_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def _evict(self) -> None:
        """Drop the least recently used exports beyond the bound, one lock at a time."""
        while True:
            with self._lock:
                if len(self._entries) <= self.max:
                    return
                key, folder = next(iter(self._entries.items()))
            with self._key_lock(key):
                with self._lock:
                    if self._entries.get(key) is folder:
                        del self._entries[key]
                shutil.rmtree(folder.parent, ignore_errors=True)


def cache_root() -> Path:
    """A fresh private folder for this daemon's export cache, in <tmp>/sbexportd-<uid>/
    (0700, ours), after removing the folders of daemons that are gone."""
    base = Path(tempfile.gettempdir()) / f"sbexportd-{os.getuid()}"
    try:
        base.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(base)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise PermissionError("not a private folder")  # someone else's, or a symlink: do not use it
    except OSError:
        return Path(tempfile.mkdtemp(prefix="sbexportd-exports-"))
    for entry in os.scandir(base):
        m = _CACHE_NAME.match(entry.name)
        if m and not process_alive(int(m.group(1)), None if m.group(2) == "x" else int(m.group(2))):
            shutil.rmtree(entry.path, ignore_errors=True)
    started = start_time(os.getpid())
    return Path(tempfile.mkdtemp(prefix=f"exports-{os.getpid()}-{'x' if started is None else started}-", dir=base))
