"""`serve --root DIR` (repeatable): the folders a client may touch.

Without it a client can open any file the daemon's user can read (only regular
files, parsed as SB2 models, never echoed) and export into any folder that user
can write (creating out/<target>, and with force replacing what is there under a
target's name). With roots, every path a client names (a model, VecNormalize
statistics, an output folder) must lie inside one of them once symlinks are
resolved; anything else is refused with -33021 before it is opened or created.

So is every file the daemon finds by itself beside a model: the zoo's config.yml
(read for `normalize` / `frame_stack` "auto", for inspect's account of them and by
the sb3 / rl-zoo3 exports) and the VecNormalize statistics "auto" (or a folder a
client names) picks. `check` is handed to sbexportd.load as its `confine`, which
the readers run before they open a sidecar (sbexportd.read.files). A sidecar that
leads out of the roots is refused, not skipped: skipping it would run the agent
without its normalization or frame stack, i.e. change its actions. Editor documents
(serve/editor) are held to `allows`: a path outside the roots is neither looked up
nor read."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import PathNotAllowed
from ..export.transaction import resolved


class Roots:
    def __init__(self, roots=()):
        self.dirs = [Path(os.path.realpath(os.path.expanduser(str(r)))) for r in roots]
        for d in self.dirs:
            if not d.is_dir():
                raise ValueError(f"--root {d}: not a folder")

    def __bool__(self) -> bool:
        return bool(self.dirs)

    def allows(self, path: str | os.PathLike) -> bool:
        """Whether `path`, symlinks resolved, is inside a root (always, without roots)."""
        if not self.dirs:
            return True
        real = resolved(Path(os.path.abspath(os.path.expanduser(str(path)))))
        return any(real == d or d in real.parents for d in self.dirs)

    def check(self, path: str | os.PathLike, what: str) -> None:
        """Raise PathNotAllowed (-33021 path_not_allowed) unless `path` (resolved) is
        inside a root. The message shows the path as given, never where it leads."""
        if not self.allows(path):
            raise self.refusal(path, what)

    @staticmethod
    def refusal(path: str | os.PathLike, what: str) -> PathNotAllowed:
        return PathNotAllowed(f"{what} {str(path)[:300]!r} is outside the folders this daemon serves (--root)")

    @property
    def confine(self):
        """sbexportd.load's confine: this check, or None without roots (nothing confined)."""
        return self.check if self.dirs else None

    def describe(self) -> list[str]:
        return [str(d) for d in self.dirs]
