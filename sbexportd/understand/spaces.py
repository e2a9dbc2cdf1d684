"""gym spaces, as the reader's inert stand-ins, to the spec's own space types."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UnsupportedModel
from .spec import Box, DictSpace, Discrete, MultiBinary, MultiDiscrete, Space

# SB2's her.utils.KEY_ORDER: how HERGoalEnvWrapper flattens a goal observation.
HER_KEY_ORDER = ("observation", "achieved_goal", "desired_goal")


def class_name(obj: Any) -> str:
    """The original class name of a stand-in (or of a real object)."""
    cls = obj if isinstance(obj, type) else type(obj)
    return getattr(cls, "sb_name", None) or cls.__name__


def attr(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def to_space(obj: Any, source: str = "") -> Space:
    kind = class_name(obj).rsplit(".", 1)[-1]
    if kind == "Box":
        low = np.asarray(attr(obj, "low"))
        high = np.asarray(attr(obj, "high"))
        dtype = attr(obj, "dtype", None)
        dtype = np.dtype(dtype if dtype is not None else low.dtype)
        shape = tuple(attr(obj, "shape", None) or low.shape)
        low = np.broadcast_to(low, shape).astype(dtype)
        high = np.broadcast_to(high, shape).astype(dtype)
        return Box(low=low, high=high, dtype=dtype.name)
    if kind == "Discrete":
        return Discrete(int(attr(obj, "n")))
    if kind == "MultiDiscrete":
        return MultiDiscrete(tuple(int(v) for v in np.asarray(attr(obj, "nvec")).ravel()))
    if kind == "MultiBinary":
        n = attr(obj, "n")
        return MultiBinary(int(np.prod(n)) if np.ndim(n) else int(n))
    if kind == "Dict":
        spaces = attr(obj, "spaces") or {}
        items = dict(spaces.items() if hasattr(spaces, "items") else spaces)
        keys = [k for k in HER_KEY_ORDER if k in items] + [k for k in items if k not in HER_KEY_ORDER]
        return DictSpace(tuple((k, to_space(items[k], source)) for k in keys))
    raise UnsupportedModel(f"unsupported gym space {kind!r} (expected Box, Discrete, MultiDiscrete, "
                           f"MultiBinary or a goal Dict)", source)
