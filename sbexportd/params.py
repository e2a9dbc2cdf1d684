"""Parameter listing and dumping (`sbexportd params`): the "manual export" of SB2's docs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidArgument


def stats(params: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    rows = []
    for name, value in params.items():
        a = np.asarray(value)
        numeric = a.size and a.dtype.kind in "fiub"
        rows.append({"name": name, "shape": list(a.shape), "dtype": a.dtype.name, "size": int(a.size),
                     "min": float(a.min()) if numeric else None, "max": float(a.max()) if numeric else None,
                     "mean": float(a.mean()) if numeric else None, "std": float(a.std()) if numeric else None})
    return rows


def encode_array(a: np.ndarray, binary: bool) -> dict[str, Any]:
    """{"dtype", "shape", "data"}: data little-endian bytes (msgpack) or a flat list (JSON)."""
    a = np.ascontiguousarray(a)
    le = a.astype(a.dtype.newbyteorder("<"))
    return {"dtype": a.dtype.name, "shape": list(a.shape),
            "data": le.tobytes() if binary else a.ravel().tolist()}


def dump(params: dict[str, np.ndarray], out: Path) -> Path:
    """Write every parameter, by its SB2 name, to .npz, .json or .msgpack."""
    suffix = out.suffix.lower()
    if suffix not in (".npz", ".json", ".msgpack"):
        raise InvalidArgument("choose a .npz, .json or .msgpack output", out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    if suffix == ".npz":
        with open(tmp, "wb") as f:
            np.savez(f, **params)
    elif suffix == ".json":
        tmp.write_text(json.dumps({k: encode_array(v, False) for k, v in params.items()}))
    else:  # .msgpack
        import msgpack
        tmp.write_bytes(msgpack.packb({k: encode_array(v, True) for k, v in params.items()}))
    tmp.replace(out)
    return out
