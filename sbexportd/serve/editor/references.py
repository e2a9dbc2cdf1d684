"""Model-file references in a text document: a quoted string or a bare path ending
in .zip or .pkl, in any language (Python, YAML, JSON, Java, JavaScript, Markdown),
resolved relative to the document's folder, then to each workspace folder.

Only the text is scanned: nothing here reads a model (features.py does, through the
daemon's cache). With `serve --root`, `allowed` (Roots.allows) keeps the lookup in:
a candidate outside the roots is not even looked for (no stat: a document must not
learn which files exist elsewhere), and a reference whose only candidates lie
outside is marked `allowed=False` (its diagnostic says path_not_allowed)."""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

MAX_LINE = 4096  # longer lines (minified JSON, data) are not scanned
MAX_REFERENCES = 200  # per document: a generated file must not make the daemon load hundreds of models
VECNORMALIZE_NAMES = ("vecnormalize.pkl", "obs_rms.pkl", "ret_rms.pkl")

_EXT = r"\.(?:zip|pkl)"
# "models/agent.zip", 'a.pkl', `a.zip`: a quoted string that ends in the extension
_QUOTED = re.compile(r"""(["'`])((?:(?!\1)[^\n\\]|\\.){1,1024}?""" + _EXT + r")\1", re.IGNORECASE)
# model: agents/ppo2/CartPole-v1.zip (YAML), [agent](models/a.zip) (Markdown), a shell line
_BARE = re.compile(r"(?<![\w./~\\:@%+{}$-])(~?[\w./\\@+-]*\w" + _EXT + r")(?![\w.])", re.IGNORECASE)
# f"{log_dir}/ppo2.zip", "${DIR}/a.zip", "runs/*.pkl", "%s.zip": made at run time, not a file name
_TEMPLATE = re.compile(r"[{}$*?%<>]")


@dataclass(frozen=True)
class Reference:
    """One mention of a model file. Columns are code points within the line."""

    line: int
    start: int
    end: int
    text: str  # as written
    path: Path  # the file it resolves to (the first candidate when none exists)
    exists: bool
    tried: tuple[Path, ...]  # every place looked, in order
    allowed: bool = True  # False: every candidate lies outside serve --root (none was looked for)

    @property
    def is_vecnormalize(self) -> bool:
        return self.path.name.lower() in VECNORMALIZE_NAMES

    def contains(self, line: int, character: int) -> bool:
        return line == self.line and self.start <= character <= self.end


def find(lines: Sequence[str], doc_dir: Path | None, roots: Sequence[Path],
         allowed: Callable[[Path], bool] | None = None) -> list[Reference]:
    """Every reference in the document, in order, at most MAX_REFERENCES. `roots` are
    the workspace folders; `allowed` the daemon's --root test (None: anywhere)."""
    refs: list[Reference] = []
    for lineno, line in enumerate(lines):
        if len(line) > MAX_LINE or ("." not in line):
            continue
        for start, end, text in _spans(line):
            path, exists, tried, ok = resolve(text, doc_dir, roots, allowed)
            if path is None:
                continue
            refs.append(Reference(lineno, start, end, text, path, exists, tried, ok))
            if len(refs) >= MAX_REFERENCES:
                return refs
    return refs


def _spans(line: str) -> Iterable[tuple[int, int, str]]:
    taken: list[tuple[int, int]] = []
    for m in _QUOTED.finditer(line):
        text = m.group(2)
        taken.append((m.start(2), m.end(2)))  # nothing inside a string is a bare path either
        if "://" in text or text.strip() != text or _TEMPLATE.search(text):
            continue  # a URL, a template, or not a path
        yield m.start(2), m.end(2), _unescape(text)
    for m in _BARE.finditer(line):
        if any(s <= m.start(1) < e for s, e in taken):
            continue
        yield m.start(1), m.end(1), m.group(1)


def _unescape(text: str) -> str:
    return text.replace("\\\\", "\\").replace('\\"', '"').replace("\\'", "'") if "\\" in text else text


def resolve(text: str, doc_dir: Path | None, roots: Sequence[Path], allowed: Callable[[Path], bool] | None = None
            ) -> tuple[Path | None, bool, tuple[Path, ...], bool]:
    """(the file, whether it exists, every candidate tried, whether it is allowed):
    relative paths against the document's folder first, then each workspace folder.
    Candidates `allowed` refuses are skipped unlooked; if no other one exists and one
    was refused, that one is the answer, marked not allowed."""
    try:
        p = Path(os.path.expanduser(text))
    except (ValueError, RuntimeError):
        return None, False, (), True
    if p.is_absolute():
        candidates = [p]
    else:
        bases = ([doc_dir] if doc_dir is not None else []) + [r for r in roots if r != doc_dir]
        candidates = [b / p for b in bases]
    if not candidates:
        return None, False, (), True
    candidates = [Path(os.path.normpath(c)) for c in candidates]
    refused = None
    for c in candidates:
        try:
            if allowed is not None and not allowed(c):
                refused = refused or c
                continue
            if c.is_file():
                return c, True, tuple(candidates), True
        except (OSError, ValueError):  # a name too long, a NUL, a permission problem: not this one
            continue
    if refused is not None:
        return refused, False, tuple(candidates), False
    return candidates[0], False, tuple(candidates), True
