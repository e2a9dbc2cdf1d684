"""What rl-baselines-zoo's enjoy.py wrapped around an agent: VecNormalize and frame
stacking, decided the way it decided them (utils.get_saved_hyperparams and
create_test_env), from the folder it keeps beside the agent file:

    <dir>/<env>.pkl                  the agent
    <dir>/<env>/config.yml           the training hyperparameters
    <dir>/<env>/obs_rms.pkl          VecNormalize's observation statistics (or SB2 2.10's
                                     vecnormalize.pkl, there or beside the agent)

- with a config.yml, its `normalize` decides: absent or false, no statistics; true,
  VecNormalize(norm_obs=True); a string, the VecNormalize kwargs it spells (enjoy.py
  eval()s it; here it is parsed as a literal only). Its `frame_stack` (absent = 0)
  is VecFrameStack's n_stack, applied after VecNormalize.
- without one, statistics are applied when obs_rms.pkl exists, and nothing is stacked.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sbexportd.errors import VecNormalizeError, ZooConfigError
from sbexportd.read.files import Confine
from sbexportd.read.vecnormalize import find_vecnormalize, statistics_candidates, vecnormalize_kwargs
from sbexportd.read.zoo_config import read_zoo_config

__all__ = ["ZooSettings", "zoo_settings", "config_of", "zoo_sidecars"]


@dataclass(frozen=True)
class ZooSettings:
    config: Path | None                  # the config.yml read, if any
    statistics: Path | None              # the statistics file beside the agent, if any
    normalize: bool                      # enjoy.py would apply VecNormalize's observation statistics
    normalize_kwargs: dict[str, Any] = field(default_factory=dict)
    frame_stack: int = 0                 # VecFrameStack's n_stack (0: none)
    reason: str = ""                     # why `auto` normalizes or not, citing the file


def _config_path(model_path: Path) -> Path:
    return model_path.parent / model_path.stem / "config.yml"


def config_of(model_path: str | os.PathLike) -> Path | None:
    """The zoo's <dir>/<model stem>/config.yml, if it exists."""
    cand = _config_path(Path(model_path))
    return cand if cand.is_file() else None


def zoo_sidecars(model_path: str | os.PathLike) -> tuple[Path, ...]:
    """Every file zoo_settings(model_path) looks at, present or not: its config.yml and
    the statistics candidates. One appearing, changing or going can change what "auto"
    VecNormalize and frame stacking decide (a cache of loaded models watches these)."""
    p = Path(model_path)
    return (_config_path(p), *statistics_candidates(p))


def zoo_settings(model_path: str | os.PathLike, *, confine: Confine | None = None) -> ZooSettings:
    """confine: checks the config.yml before it is read (sbexportd.read.files); the
    statistics are only located here, and checked by whoever reads them."""
    p = Path(model_path)
    stats = find_vecnormalize(p)
    config = config_of(p)
    if config is None:
        if stats is None:
            return ZooSettings(None, None, False, reason="no config.yml and no statistics beside the agent")
        return ZooSettings(None, stats, True, {}, 0,
                           f"{stats} exists and there is no config.yml to say otherwise (the zoo's rule)")
    hyper = read_zoo_config(config, confine=confine)
    try:
        kwargs = vecnormalize_kwargs(hyper)
    except ValueError as exc:
        raise VecNormalizeError(f"config.yml: {exc}; expected normalize: true, false or a dict of "
                                "VecNormalize arguments", config) from exc
    frames = hyper.get("frame_stack", 0) or 0
    if isinstance(frames, bool) or not isinstance(frames, int) or not 0 <= frames <= 64:
        raise ZooConfigError(f"frame_stack: {frames!r:.40} is not a number of frames (0 to 64)", config)
    if kwargs is None:
        why = (f"{config} does not ask for VecNormalize (no `normalize`), so {stats} is NOT applied: the "
               "agent was not trained on normalized observations" if stats else
               f"{config} does not ask for VecNormalize")
        return ZooSettings(config, stats, False, {}, frames, why)
    if not kwargs.get("norm_obs", True):
        return ZooSettings(config, stats, False, kwargs, frames,
                           f"{config} asks for VecNormalize without observation normalization (norm_obs: False)")
    if stats is None:
        raise VecNormalizeError(
            f"{config} asks for VecNormalize (normalize: {hyper.get('normalize')!r:.60}) but neither "
            f"obs_rms.pkl nor vecnormalize.pkl is beside the agent; pass --vecnormalize PATH", p)
    return ZooSettings(config, stats, True, kwargs, frames,
                       f"{config} asks for VecNormalize (normalize: {hyper.get('normalize')!r:.60}): applying {stats}")
