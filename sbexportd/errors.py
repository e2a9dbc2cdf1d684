"""Typed errors. Every message names the file and says what was expected, so a
user (or a daemon client) can act on it without a traceback."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any


class SbExportError(Exception):
    """Base class of every error sbexportd raises on purpose."""

    code = "error"  # stable machine-readable name (the daemon maps it to a JSON-RPC code)

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = str(path) if path is not None else None
        self.detail = message  # the message without the path
        super().__init__(f"{self.path}: {message}" if self.path else message)


def shown(value: Any, limit: int = 80) -> str:
    """A repr of data read from a file, bounded in length and in the work it takes.

    `repr()` of what a file holds can be unbounded: nested lists that share
    references print exponentially, a string can be megabytes. Messages show
    at most 4 items per container, 3 levels deep, and `limit` characters."""
    budget = [64]  # values looked at, whatever the nesting

    def walk(v: Any, depth: int) -> str:
        budget[0] -= 1
        if budget[0] < 0:
            return "..."
        if v is None or isinstance(v, (bool, int, float, complex)):
            text = repr(v)
            return text if len(text) <= 24 else text[:20] + "..."
        if isinstance(v, (str, bytes, bytearray)):
            text = repr(v[:limit])
            return text + ("..." if len(v) > limit else "")
        if isinstance(v, dict):
            if depth >= 3:
                return "{...}"
            parts = [f"{walk(k, depth + 1)}: {walk(x, depth + 1)}" for k, x in list(v.items())[:4]]
            return "{" + _items(parts, len(v)) + "}"
        if isinstance(v, (list, tuple, set, frozenset)):
            brackets = "[]" if isinstance(v, list) else "()" if isinstance(v, tuple) else "{}"
            if depth >= 3:
                return f"{brackets[0]}...{brackets[1]}"
            parts = [walk(x, depth + 1) for x, _ in zip(v, range(4), strict=False)]  # the first 4
            tail = "," if isinstance(v, tuple) and len(v) == 1 else ""
            return f"{brackets[0]}{_items(parts, len(v))}{tail}{brackets[1]}"
        if isinstance(v, type):
            name = getattr(v, "sb_name", None) or getattr(v, "__qualname__", "?")
            module = getattr(v, "sb_module", None) or getattr(v, "__module__", "?")
            return f"<class {str(module)[:60]}.{str(name)[:60]}>"
        shape, dtype = getattr(v, "shape", None), getattr(v, "dtype", None)
        if isinstance(shape, tuple) and dtype is not None and type(v).__module__ == "numpy":
            return f"<array shape={list(shape)[:8]} dtype={str(dtype)[:24]}>"
        return f"<{type(v).__name__[:40]}>"

    text = walk(value, 0)
    return text if len(text) <= limit else text[:limit - 3] + "..."


_QUOTED = re.compile(r"b?'(?:[^'\\]|\\.)*'" + r'|b?"(?:[^"\\]|\\.)*"|\b0x[0-9a-fA-F]+\b')


def reason(exc: BaseException, limit: int = 160) -> str:
    """`Type: message` of a library's exception, for a message about a file: quoted
    parts (where parsers echo the bytes they choked on) are left out, the length
    is bounded."""
    text = _QUOTED.sub("...", str(exc))
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _items(parts: list[str], n: int) -> str:
    return ", ".join(parts + ([f"... ({n} items)"] if n > len(parts) else []))


# --- reading: file -> archive -------------------------------------------------
class ModelFileError(SbExportError):
    """The file cannot be read as a Stable Baselines 2 save file."""
    code = "bad_model_file"


class ModelFileNotFound(ModelFileError):
    code = "file_not_found"


class NotAModelFile(ModelFileError):
    code = "not_a_model_file"


class TruncatedFile(ModelFileError):
    code = "truncated_file"


class MissingMember(ModelFileError):
    code = "missing_member"


class MemberTooLarge(ModelFileError):
    code = "member_too_large"


class UnsafeArchiveMember(ModelFileError):
    code = "unsafe_archive_member"


class ForbiddenPickleGlobal(ModelFileError):
    """The pickle asks to import or call something outside the allow-list."""
    code = "forbidden_pickle_global"


class ObjectArrayInParameters(ModelFileError):
    code = "object_array_in_parameters"


class VecNormalizeError(ModelFileError):
    code = "bad_vecnormalize_file"


class ZooConfigError(ModelFileError):
    """An rl-baselines-zoo config.yml that cannot be read safely."""
    code = "bad_zoo_config"


# --- understanding: archive -> spec -----------------------------------------
class UnsupportedModel(SbExportError):
    """The file is an SB2 model, but its algorithm or policy is not understood."""
    code = "unsupported_policy"


class UnknownAlgorithm(UnsupportedModel):
    code = "unknown_algorithm"


class UnknownPolicy(UnsupportedModel):
    code = "unknown_policy"


class InconsistentParameters(UnsupportedModel):
    """Parameter names or shapes do not fit the policy the file describes."""
    code = "inconsistent_parameters"


class InvalidSpec(UnsupportedModel):
    """A program that breaks the op contract (understand/ops.py): an unknown op or
    activation, a node of the wrong arity, a tensor read before it is written."""
    code = "invalid_spec"


# --- using a model ------------------------------------------------------------
class BadObservation(SbExportError):
    code = "bad_observation"


class InvalidArgument(SbExportError):
    """An argument outside what it accepts (the message names what it accepts): a
    request's parameter, a command-line option, a keyword of the Python API."""
    code = "invalid_argument"


class UnknownActivation(InvalidArgument):
    code = "unknown_activation"


class PathNotAllowed(SbExportError):
    """A file or folder outside what the caller confined reading and writing to
    (`serve --root`): one a client named, or a sidecar (config.yml, VecNormalize
    statistics) found beside a model that leads out of the roots."""
    code = "path_not_allowed"


class ObservationFileError(SbExportError):
    """A file of observations that cannot be read (format, syntax, not numbers)."""
    code = "bad_observation_file"


class BackendUnavailable(SbExportError):
    code = "backend_unavailable"


# --- exporting ---------------------------------------------------------------------
class ExportError(SbExportError):
    code = "export_failed"


class OutputExists(ExportError):
    code = "output_exists"


class ParityFailed(ExportError):
    """An export, loaded back in its own runtime, does not reproduce the reference."""
    code = "parity_failed"


class TargetUnavailable(ExportError):
    code = "target_unavailable"


class ExportFolderError(ExportError):
    """A folder given as an export that is not one `sbexportd export` wrote, or that
    its target's runtime cannot load."""
    code = "bad_export_folder"


class NotRepresentable(ExportError):
    """The target cannot represent this policy exactly (e.g. a dueling DQN in
    Stable-Baselines3). `why` says what it lacks, `closest` what would come nearest;
    nothing approximate is written in its place."""
    code = "not_representable"

    def __init__(self, message: str, path=None, *, why: str = "", closest: str = ""):
        self.why, self.closest = why, closest
        super().__init__(message, path)


class Cancelled(SbExportError):
    code = "cancelled"
