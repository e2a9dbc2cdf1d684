"""A sample observation for the "Predict sample" lens: zero, moved into the
observation space's bounds (a Box of [5, 9] gives 5), in the space's dtype; the goal
dict for HER. Sent as nested lists, or as base64 once it is larger than a few rows
(an image space)."""
from __future__ import annotations

import base64
from typing import Any

import numpy as np

from ...understand.spec import Box, DictSpace

INLINE_VALUES = 64


def sample_observation(spec) -> Any:
    goal = spec.goal_observation
    if isinstance(goal, DictSpace):
        return {key: _encode(_sample(space)) for key, space in goal.spaces}
    return _encode(_sample(spec.observation_space))


def _sample(space) -> np.ndarray:
    if isinstance(space, Box):
        low = np.asarray(space.low, np.float64)
        high = np.asarray(space.high, np.float64)
        return np.clip(np.zeros(low.shape), low, high).astype(space.dtype)
    return np.zeros(space.shape, np.int64)  # Discrete (a scalar), MultiDiscrete, MultiBinary


def _encode(a: np.ndarray) -> Any:
    if a.size <= INLINE_VALUES:
        return a.tolist()
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.name, "shape": list(a.shape),
            "data": base64.b64encode(a.astype(a.dtype.newbyteorder("<")).tobytes()).decode("ascii")}
