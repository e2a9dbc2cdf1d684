"""`serve --root DIR` (repeatable): the folders a client may touch.

Without it a client can open any file the daemon's user can read (only regular
files, parsed as SB2 models, never echoed) and export into any folder that user
can write (creating out/<target>, and with force replacing what is there under a
target's name). With roots, every path a client names (a model, VecNormalize
statistics, an output folder) must lie inside one of them once symlinks are
resolved; anything else is refused with -33021 before it is opened or created."""
from __future__ import annotations

import os
from pathlib import Path

from ..export.transaction import resolved
from . import errors


class Roots:
    def __init__(self, roots=()):
        self.dirs = [Path(os.path.realpath(os.path.expanduser(str(r)))) for r in roots]
        for d in self.dirs:
            if not d.is_dir():
                raise ValueError(f"--root {d}: not a folder")

    def __bool__(self) -> bool:
        return bool(self.dirs)

    def check(self, path: str | os.PathLike, what: str) -> None:
        """Raise path_not_allowed unless `path` (resolved) is inside a root."""
        if not self.dirs:
            return
        real = resolved(Path(os.path.abspath(os.path.expanduser(str(path)))))
        if not any(real == d or d in real.parents for d in self.dirs):
            raise errors.ServeError(errors.PATH_NOT_ALLOWED,
                                    f"{what} {str(path)[:300]!r} is outside the folders this daemon serves (--root)",
                                    "path_not_allowed")

    def describe(self) -> list[str]:
        return [str(d) for d in self.dirs]
