"""VecNormalize statistics saved beside an agent.

Two layouts:
- SB2 >= 2.10: `vecnormalize.pkl`, a pickled VecNormalize (obs_rms, epsilon,
  clip_obs, norm_obs, ...);
- older zoo agents: `obs_rms.pkl` (and ret_rms.pkl), a pickled RunningMeanStd
  (mean, var, count). epsilon / clip_obs / norm_obs then come from the zoo's
  config.yml `normalize` entry when it gives them (else 1e-8, 10.0, True).

Besides what predict applies, the counts and the return statistics (ret_rms) are read
too: a conversion that continues training (sb3, rl-zoo3) needs them.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import numpy as np

from sbexportd.errors import SbExportError, VecNormalizeError, ZooConfigError, reason, shown
from sbexportd.read.archive import RunningMoments, VecNormalizeStats
from sbexportd.read.files import Confine, is_regular, read_regular
from sbexportd.read.safe_pickle import safe_loads
from sbexportd.read.standins import StandIn
from sbexportd.read.zoo_config import read_zoo_config

__all__ = ["read_vecnormalize", "find_vecnormalize", "vecnormalize_kwargs", "statistics_candidates",
           "statistics_sidecars"]

MAX_VECNORMALIZE_BYTES = 64 << 20
NAMES = ("vecnormalize.pkl", "obs_rms.pkl")
RET_RMS = "ret_rms.pkl"  # beside obs_rms.pkl: the return statistics of the same run


def statistics_candidates(model_path: str | os.PathLike) -> tuple[Path, ...]:
    """Where the zoo convention looks for a model's statistics, first found wins:
    <dir>/<model stem>/vecnormalize.pkl or obs_rms.pkl, else <dir>/vecnormalize.pkl."""
    p = Path(model_path)
    folder = p.parent / p.stem
    return folder / NAMES[0], folder / NAMES[1], p.parent / NAMES[0]


def find_vecnormalize(model_path: str | os.PathLike) -> Path | None:
    """The first of statistics_candidates(model_path) that is a regular file, or None."""
    return next((c for c in statistics_candidates(model_path) if is_regular(c)), None)


def statistics_sidecars(path: str | os.PathLike) -> tuple[Path, ...]:
    """The files beside a statistics file that read_vecnormalize(path) reads when they
    exist (for an obs_rms.pkl: the config.yml giving epsilon / clip_obs, and ret_rms.pkl),
    present or not: one appearing, changing or going can change what it returns."""
    p = Path(path)
    return p.parent / "config.yml", p.parent / RET_RMS


def _literal_kwargs(text: str) -> dict | None:
    """"{'norm_obs': True}" or "dict(norm_obs=True)" -> dict, without eval."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
        if isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) \
                and tree.func.id == "dict" and not tree.args:
            return {kw.arg: ast.literal_eval(kw.value) for kw in tree.keywords if kw.arg}
        value = ast.literal_eval(tree)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def vecnormalize_kwargs(config: dict[str, Any]) -> dict[str, Any] | None:
    """The VecNormalize keyword arguments a zoo config asks for: None when it does
    not normalize, {} for `normalize: true`, the parsed dict for a string such as
    "{'norm_obs': True, 'norm_reward': False}"."""
    value = config.get("normalize")
    if value in (None, False):
        return None
    if value is True:
        return {}
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str):
        parsed = _literal_kwargs(value)
        if parsed is not None:
            return parsed
        if value.strip().lower() in ("true", "1"):
            return {}
    raise ValueError(f"normalize: {shown(value)} is not understood")


def _array(value: Any, what: str, source: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise VecNormalizeError(f"{what} is a {type(value).__name__}, expected numbers",
                                source) from e
    if not np.all(np.isfinite(arr)):
        raise VecNormalizeError(f"{what} has non-finite values", source)
    return arr


def _number(value: Any, default: float, what: str, source: str) -> float:
    if value is None:
        return default
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    raise VecNormalizeError(f"{what} is {shown(value, 40)}, expected a number", source)


def read_vecnormalize(path: str | os.PathLike, *, config: dict[str, Any] | None = None,
                      confine: Confine | None = None) -> VecNormalizeStats:
    """Read vecnormalize.pkl, obs_rms.pkl, or a folder holding either.

    `config` (a zoo config dict) overrides looking for config.yml beside an obs_rms.pkl.
    confine: checks the statistics file (the one found in a folder too) and the
    config.yml beside it before they are opened (sbexportd.read.files)."""
    p = Path(path)
    if p.is_dir():
        found = next((p / n for n in NAMES if is_regular(p / n)), None)
        if found is None:
            raise VecNormalizeError("folder has neither vecnormalize.pkl nor obs_rms.pkl",
                                    str(p))
        p = found
    source = str(p)
    try:
        obj = _unpickle(p, confine, "the VecNormalize statistics (their mean and variance normalize every observation)")
        return _stats(obj, p, source, config, confine)
    except SbExportError:
        raise
    except Exception as e:
        raise VecNormalizeError(f"cannot read VecNormalize statistics: {reason(e)}", source) from e


def _unpickle(p: Path, confine: Confine | None, named: str) -> Any:
    raw = read_regular(p, MAX_VECNORMALIZE_BYTES, what="VecNormalize statistics (vecnormalize.pkl, "
                       "obs_rms.pkl, ret_rms.pkl or their folder)", error=VecNormalizeError, confine=confine,
                       named=named)
    if not raw:
        raise VecNormalizeError("empty file; expected a pickled VecNormalize or RunningMeanStd", str(p))
    return safe_loads(raw, str(p), MAX_VECNORMALIZE_BYTES)


def _count(rms: Any, what: str, source: str) -> float | None:
    """rms.count: the samples behind the statistics (SB2 starts it at 1e-4); None if absent."""
    value = rms.sb_get("count")
    if value is None:
        return None
    count = _number(value, 0.0, f"{what}.count", source)
    if not (np.isfinite(count) and count > 0):
        raise VecNormalizeError(f"{what}.count is {count}, expected a positive number", source)
    return count


def _moments(rms: Any, what: str, source: str) -> RunningMoments | None:
    """A RunningMeanStd (ret_rms) as RunningMoments; None when it has no count."""
    if not isinstance(rms, StandIn) or "mean" not in rms.__dict__ or "var" not in rms.__dict__:
        raise VecNormalizeError(f"{what} is not a RunningMeanStd (mean, var, count)", source)
    mean = _array(rms.sb_get("mean"), f"{what}.mean", source)
    var = _array(rms.sb_get("var"), f"{what}.var", source)
    if mean.shape != var.shape or np.any(var < 0):
        raise VecNormalizeError(f"{what}: mean {mean.shape} and var {var.shape} must have equal shapes and "
                                "var no negative values", source)
    count = _count(rms, what, source)
    return None if count is None else RunningMoments(mean=mean, var=var, count=count)


def _stats(obj: Any, p: Path, source: str, config: dict | None, confine: Confine | None) -> VecNormalizeStats:
    if not isinstance(obj, StandIn):
        raise VecNormalizeError(f"pickle holds a {type(obj).__name__}, expected a pickled "
                                "VecNormalize or RunningMeanStd", source)
    name = type(obj).sb_name
    if "obs_rms" in obj.__dict__:  # VecNormalize (any release)
        rms = obj.sb_get("obs_rms")
        if not isinstance(rms, StandIn):
            raise VecNormalizeError("VecNormalize.obs_rms is not a RunningMeanStd", source)
        epsilon = _number(obj.sb_get("epsilon"), 1e-8, "VecNormalize.epsilon", source)
        clip_obs = _number(obj.sb_get("clip_obs"), 10.0, "VecNormalize.clip_obs", source)
        norm_obs = obj.sb_get("norm_obs", True)
        if not isinstance(norm_obs, (bool, np.bool_)):
            raise VecNormalizeError("VecNormalize.norm_obs is not a bool", source)
        norm_obs = bool(norm_obs)
        ret = obj.sb_get("ret_rms")
        returns = None if ret is None else _moments(ret, "VecNormalize.ret_rms", source)
    elif "mean" in obj.__dict__ and "var" in obj.__dict__:  # RunningMeanStd (obs_rms.pkl)
        rms = obj
        kwargs: dict[str, Any] = {}
        if config is None and is_regular(p.parent / "config.yml"):
            try:
                config = read_zoo_config(p.parent / "config.yml", confine=confine)
            except ZooConfigError:
                config = None
        if config is not None:
            try:
                kwargs = vecnormalize_kwargs(config) or {}
            except ValueError as e:
                raise VecNormalizeError(f"config.yml beside it: {e}", source) from e
        epsilon = _number(kwargs.get("epsilon"), 1e-8, "config normalize epsilon", source)
        clip_obs = _number(kwargs.get("clip_obs"), 10.0, "config normalize clip_obs", source)
        norm_obs = bool(kwargs.get("norm_obs", True))
        returns = None
        if is_regular(p.parent / RET_RMS):
            ret_path = p.parent / RET_RMS
            returns = _moments(_unpickle(ret_path, confine, "the VecNormalize return statistics (ret_rms.pkl)"),
                               "ret_rms", str(ret_path))
    else:
        raise VecNormalizeError(f"pickle holds {type(obj).sb_module}.{name}, expected a "
                                "VecNormalize or a RunningMeanStd (mean, var)", source)
    mean = _array(rms.sb_get("mean"), "obs_rms.mean", source)
    var = _array(rms.sb_get("var"), "obs_rms.var", source)
    if mean.shape != var.shape:
        raise VecNormalizeError(f"obs_rms.mean has shape {mean.shape} but obs_rms.var "
                                f"{var.shape}; expected equal shapes", source)
    if np.any(var < 0):
        raise VecNormalizeError("obs_rms.var has negative values", source)
    if epsilon < 0 or clip_obs <= 0:
        raise VecNormalizeError(f"epsilon={epsilon}, clip_obs={clip_obs}: expected "
                                "epsilon >= 0 and clip_obs > 0", source)
    return VecNormalizeStats(mean=mean, var=var, epsilon=epsilon, clip_obs=clip_obs,
                             norm_obs=norm_obs, source=source, count=_count(rms, "obs_rms", source),
                             returns=returns)
