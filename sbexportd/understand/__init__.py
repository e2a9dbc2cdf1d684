"""Understanding: Archive -> PolicySpec. Imports neither TensorFlow nor torch."""
from __future__ import annotations

from ..read.archive import Archive, VecNormalizeStats
from .adapters import ADAPTERS
from .builder import input_dtype
from .context import ALGORITHMS, detect_algorithm, make_context
from .param_order import build_with
from .spec import PolicySpec

__all__ = ["understand", "PolicySpec", "ALGORITHMS", "detect_algorithm"]


def understand(archive: Archive, *, algo: str | None = None, activation: str | None = None,
               vecnormalize: VecNormalizeStats | None = None, frame_stack: int = 0) -> PolicySpec:
    """Build the policy spec of a read file.

    algo: override the detected algorithm. activation: the hidden-layer activation of
    a custom policy class whose code is absent (relu, tanh, ...). vecnormalize:
    statistics to bake in front of the policy. frame_stack: n > 1 stacks the last n
    observations in front of it (VecFrameStack), carried as state."""
    ctx = make_context(archive, algo=algo, activation=activation, vecnormalize=vecnormalize,
                       frame_stack=frame_stack)
    spec = build_with(ctx, ADAPTERS[ctx.algo])
    spec.input_dtype = input_dtype(spec.observation_space)
    spec.vecnormalize = vecnormalize is not None and vecnormalize.norm_obs
    if spec.vecnormalize:
        spec.input_dtype = "float32"  # raw env observations, normalized in float64 then fed
    return spec
