"""Observations from files, for the command line: .npy, .npz, .json and .csv, one
observation or a batch, and HER goal dicts (observation, achieved_goal, desired_goal).

    .npy    an array (allow_pickle=False)
    .npz    the array `obs` (or the only array), or the goal keys as arrays
    .json   a (nested) list of numbers, {"obs": ...}, or a goal dict of lists
    .csv    one observation per row (flattened), comma-separated; a header row is skipped
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ObservationFileError

MAX_BYTES = 256 << 20
GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")


def _numbers(value: Any, what: str, source: str) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64 if not isinstance(value, np.ndarray) else None)
    except (ValueError, TypeError) as exc:
        raise ObservationFileError(f"{what} is not an array of numbers (ragged lists or text?)", source) from exc
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise ObservationFileError(f"{what} holds {a.dtype} values; expected numbers", source)
    return a


def read_observations(path: str | os.PathLike, shape: tuple[int, ...] | None = None):
    """An array (or a goal dict of arrays). shape: one observation's shape, to unflatten
    CSV rows."""
    p = Path(path)
    source = str(p)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ObservationFileError(f"cannot read the observations: {exc.strerror or exc}", source) from exc
    if size > MAX_BYTES:
        raise ObservationFileError(f"{size} bytes of observations is more than {MAX_BYTES}", source)
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            return _numbers(np.load(p, allow_pickle=False), "the array", source)
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.keys())
                if all(k in keys for k in GOAL_KEYS):
                    return {k: _numbers(z[k], k, source) for k in GOAL_KEYS}
                if "obs" in keys:
                    return _numbers(z["obs"], "obs", source)
                if len(keys) == 1:
                    return _numbers(z[keys[0]], keys[0], source)
                raise ObservationFileError(f"the .npz holds {keys}; expected an array named obs, a single "
                                           f"array, or the goal keys {list(GOAL_KEYS)}", source)
        if suffix == ".json":
            doc = json.loads(p.read_text(encoding="utf-8"))
            if isinstance(doc, dict):
                if all(k in doc for k in GOAL_KEYS):
                    return {k: _numbers(doc[k], k, source) for k in GOAL_KEYS}
                if "obs" in doc:
                    return _numbers(doc["obs"], "obs", source)
                raise ObservationFileError(f"the JSON object has keys {sorted(doc)[:6]}; expected obs or the goal "
                                           f"keys {list(GOAL_KEYS)}", source)
            return _numbers(doc, "the JSON value", source)
        if suffix == ".csv":
            return _csv(p, shape, source)
    except ObservationFileError:
        raise
    except (ValueError, OSError, UnicodeDecodeError, EOFError) as exc:
        raise ObservationFileError(f"not a valid {suffix or 'observations'} file: {str(exc)[:200]}", source) from exc
    raise ObservationFileError(f"unknown observations format {suffix!r}; expected .npy, .npz, .json or .csv", source)


def _csv(p: Path, shape, source: str) -> np.ndarray:
    lines = [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise ObservationFileError("the CSV file has no rows", source)
    rows = []
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.split(",")]
        try:
            rows.append([float(c) for c in cells])
        except ValueError:
            if i == 0:
                continue  # a header
            raise ObservationFileError(f"row {i + 1} of the CSV is not all numbers", source) from None
    if not rows or len({len(r) for r in rows}) != 1:
        raise ObservationFileError("the CSV rows have different numbers of columns", source)
    a = np.asarray(rows, np.float64)
    if shape is not None and len(shape) != 1 and a.shape[1] == int(np.prod(shape)):
        a = a.reshape((len(a), *shape))
    elif shape == () and a.shape[1] == 1:
        a = a[:, 0]
    return a
