"""SB2's legacy save format (before 2.6, and `model.save(..., cloudpickle=True)`):
one cloudpickle of the tuple `(data, params)`.

`params` is an OrderedDict name -> array in the 2.x releases that already
named their variables, and a plain list of arrays in older ones. A list keeps
its order under the keys "#0", "#1", ... and the archive's data gets
`_params_unnamed = True`, so the understanding layer maps them by position
(SB2 itself zips them with its parameter list, ignoring any surplus).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sbexportd.errors import MemberTooLarge, ModelFileError, NotAModelFile
from sbexportd.read.archive import Archive
from sbexportd.read.safe_pickle import safe_loads
from sbexportd.read.sb2zip import Limits

__all__ = ["read_pkl", "params_from_pickle"]


def _as_array(value: Any, name: str, source: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, np.generic):  # a 0-d variable pickled as a numpy scalar
        return np.asarray(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return np.asarray(value)
    raise ModelFileError(f"parameter {name!r} is a {type(value).__name__}, expected a numpy "
                         "array", source)


def params_from_pickle(params: Any, data: dict, source: str) -> dict[str, np.ndarray]:
    if params is None:
        raise NotAModelFile("pickle holds (data, None): the model was saved without "
                            "parameters", source)
    if isinstance(params, dict):
        out = {}
        for name, value in params.items():
            if not isinstance(name, str):
                raise ModelFileError(f"parameter name {name!r} is not a str", source)
            out[name] = _as_array(value, name, source)
        return out
    if isinstance(params, (list, tuple)):
        data["_params_unnamed"] = True
        return {f"#{i}": _as_array(v, f"#{i}", source) for i, v in enumerate(params)}
    raise NotAModelFile(f"pickle holds parameters of type {type(params).__name__}, expected "
                        "an OrderedDict of arrays or a list of arrays", source)


def read_pkl(path: Path, raw: bytes, sha256: str, limits: Limits) -> Archive:
    source = str(path)
    if len(raw) > limits.max_pickle_bytes:
        raise MemberTooLarge(f"pickle of {len(raw)} bytes is larger than the "
                             f"{limits.max_pickle_bytes}-byte limit", source)
    obj = safe_loads(raw, source, limits.max_pickle_bytes)
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2 and isinstance(obj[0], dict)):
        what = type(obj).__name__
        if isinstance(obj, (tuple, list)):
            what += f" of {len(obj)} items"
        raise NotAModelFile(f"pickle holds a {what}, expected a Stable Baselines 2 model: the "
                            "tuple (data dict, parameters)", source)
    data = dict(obj[0])
    if not all(isinstance(k, str) for k in data):
        raise NotAModelFile("pickle's data dict has non-str keys, expected SB2's class "
                            "attributes", source)
    params = params_from_pickle(obj[1], data, source)
    return Archive(path=path, format="pkl", sha256=sha256, data=data, params=params)
