"""Exports in the daemon: all-or-nothing per request, and cached.

Every target is first exported (by sbexportd.export, staged and verified) into the
daemon's private cache folder, keyed by what the export depends on: the model's
bytes and options (Entry.identity), the target, verify and the sbexportd version.
Only when every target of the request is ready are they copied into `out` (staged
beside it) and renamed into place, so a cancelled or failed request leaves nothing
in `out`, and a repeated export of the same model is a copy of files already made
and verified (its result says `cached: true`)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..errors import OutputExists


class ExportCache:
    def __init__(self, max_entries: int = 32):
        self.max = max(0, max_entries)
        self.root = Path(tempfile.mkdtemp(prefix="sbexportd-exports-"))
        self._entries: OrderedDict[str, Path] = OrderedDict()  # key -> folder of one finished target
        self._key_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def status(self) -> dict[str, Any]:
        return {"entries": len(self._entries), "maxEntries": self.max, "hits": self.hits, "misses": self.misses}

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # -- one request ---------------------------------------------------------------
    def export(self, entry, names: list[str], out: str, force: bool, verify: bool, progress, token) -> list[dict]:
        """(export thread) Every target of `names` into out/<target>/, or nothing."""
        out_dir = Path(out).expanduser().absolute()
        if not force:
            taken = [n for n in names if (out_dir / n).exists()]
            if taken:
                raise OutputExists(f"{', '.join(str(out_dir / n) for n in taken)} already exist; pass force=true "
                                   "to replace", out_dir)
        created = not out_dir.exists()
        out_dir.mkdir(parents=True, exist_ok=True)
        progress.begin(f"exporting {entry.model.archive.path.name} to {', '.join(names)}")
        staged: list[tuple[str, Path, dict]] = []
        try:
            for i, name in enumerate(names):
                token.check("export")
                staged.append(self._stage(entry, name, i, len(names), out_dir, verify, progress, token))
            token.check("export")
            results = [self._install(name, tmp, out_dir, force, info) for name, tmp, info in staged]
        except BaseException:
            for _, tmp, _ in staged:
                shutil.rmtree(tmp, ignore_errors=True)
            if created:  # leave no trace: not even the empty folder this request made
                try:
                    out_dir.rmdir()
                except OSError:
                    pass
            progress.end("cancelled" if token.cancelled() else "failed")
            raise
        progress.end("done")
        self._evict()
        return results

    def _stage(self, entry, name, i, n, out_dir: Path, verify, progress, token) -> tuple[str, Path, dict]:
        """Find or make the export of one target, and copy it beside its final place."""
        start = time.perf_counter()

        def step(target: str, stage: str, fraction: float) -> None:
            token.check("export")  # export() calls this between its stages: a cancel stops it there
            progress.report(f"{target}: {stage}", 100.0 * (i + fraction) / n)

        key = hashlib.sha256(json.dumps([entry.identity, name, bool(verify)]).encode()).hexdigest()[:32]
        with self._key_lock(key):  # two requests for the same export: one makes it, the other copies it
            folder, hit = self._get(key), True
            if folder is None:
                hit = False
                folder = self._make(entry, name, key, verify, step, token)
            token.check("export")
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=out_dir))
            try:
                shutil.copytree(folder, tmp, dirs_exist_ok=True)
                manifest = json.loads((tmp / "manifest.json").read_text())
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            finally:
                if self.max == 0:
                    shutil.rmtree(folder.parent, ignore_errors=True)
        if hit:
            progress.report(f"{name}: cached", 100.0 * (i + 1) / n)
        files = manifest.get("files", [])
        info = {"target": name, "files": files, "bytes": sum(f.get("bytes", 0) for f in files),
                "parity": manifest.get("parity"), "manifest": manifest, "cached": hit,
                "seconds": time.perf_counter() - start}
        return name, tmp, info

    def _make(self, entry, name, key, verify, step, token) -> Path:
        from ..export.core import export
        parent = self.root / key
        shutil.rmtree(parent, ignore_errors=True)
        try:
            export(entry.model, [name], parent, force=True, verify=verify, progress=step,
                   cancelled=token.cancelled)
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

    def _install(self, name: str, tmp: Path, out_dir: Path, force: bool, info: dict) -> dict:
        final = out_dir / name
        if final.exists():
            if not force:
                raise OutputExists(f"{final} appeared while exporting; pass force=true to replace", final)
            old = final.with_name(f".{name}.old-{os.getpid()}-{threading.get_ident()}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
        info["path"] = str(final)
        info["seconds"] = round(info["seconds"], 4)
        return {k: info[k] for k in ("target", "path", "files", "bytes", "parity", "manifest", "cached", "seconds")}

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
