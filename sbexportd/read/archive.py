"""What reading a save file produces: the raw contents, nothing interpreted yet."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np


@dataclass
class Archive:
    """The contents of one SB2 save file.

    `data` is SB2's class-attribute dict (gamma, policy, observation_space, ...).
    Pickled objects in it are inert stand-ins from `sbexportd.read.standins`:
    nothing from the file was imported or executed to build them.
    """

    path: Path
    format: Literal["zip", "pkl"]
    sha256: str
    data: dict[str, Any]
    params: dict[str, np.ndarray]  # insertion order = SB2's parameter_list order
    members: dict[str, int] = field(default_factory=dict)  # zip member -> size (zip only)
    # zip only: SB2's JSON `data` as written, where each cloudpickled entry keeps its
    # human-readable side fields (":type:", first-level attributes as str) but not
    # the ":serialized:" blob. Empty for .pkl files.
    data_json: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunningMoments:
    """One SB2 RunningMeanStd: mean, var and the number of samples behind them. The count
    matters only to training: a new batch moves the statistics by batch / (count + batch)."""

    mean: np.ndarray
    var: np.ndarray
    count: float


@dataclass
class VecNormalizeStats:
    """VecNormalize running statistics as SB2 applies them at predict time:
    obs' = clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs).

    `count` (obs_rms.count) and `returns` (ret_rms, the statistics SB2 scaled rewards
    by) are what continuing training needs; None where the file did not hold them."""

    mean: np.ndarray
    var: np.ndarray
    epsilon: float = 1e-8
    clip_obs: float = 10.0
    norm_obs: bool = True
    source: str = ""
    count: float | None = None
    returns: RunningMoments | None = None
