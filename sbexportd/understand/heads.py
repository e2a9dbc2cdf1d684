"""Observation front and action heads shared by the adapters."""
from __future__ import annotations

import numpy as np

from ..errors import InconsistentParameters, UnsupportedModel
from .builder import Program, preprocess
from .context import Context
from .spec import Box, Discrete, Distribution, MultiBinary, MultiDiscrete


def observation_front(prog: Program, ctx: Context, scale: bool) -> tuple[str, tuple[int, ...], list[str]]:
    """Raw env observation -> the policy's processed_obs: VecNormalize, then
    VecFrameStack (the order the zoo wrapped them in, both before SB2's predict saw
    the observation), then the policy's own observation_input."""
    x, steps = "obs", []
    vn = ctx.vecnormalize
    frame = ctx.input_space
    if vn is not None and vn.norm_obs:
        if not isinstance(frame, Box):
            raise UnsupportedModel("VecNormalize statistics only apply to Box observations", ctx.source)
        mean, var = np.asarray(vn.mean, np.float64), np.asarray(vn.var, np.float64)
        if mean.shape != frame.shape or var.shape != frame.shape:
            stacked = (f" ({ctx.frame_stack} stacked frames of {list(frame.shape)})" if ctx.frame_stack else "")
            hint = ("; the zoo's config may stack frames: pass frame_stack" if not ctx.frame_stack and
                    frame.shape and mean.shape and frame.shape[-1] % max(1, mean.shape[-1]) == 0 else "")
            raise InconsistentParameters(
                f"VecNormalize statistics have shape {list(mean.shape)}, one observation "
                f"{list(frame.shape)}{stacked}{hint}", vn.source or ctx.source)
        x = prog.emit("vecnormalize", (x,), params={
            "mean": prog.const("vecnormalize/mean", mean), "var": prog.const("vecnormalize/var", var)},
            attrs={"eps": float(vn.epsilon), "clip": float(vn.clip_obs)})
        steps.append(f"VecNormalize: clip((obs - mean) / sqrt(var + {vn.epsilon:g}), "
                     f"-{vn.clip_obs:g}, {vn.clip_obs:g})")
    if ctx.frame_stack:
        x, ctx.stack_state = prog.emit_many("frame_stack", (x, "state", "mask"),
                                            outputs=(prog.fresh("stacked"), prog.fresh("stack_state")),
                                            attrs={"n": ctx.frame_stack, "frame": list(frame.shape)})
        steps.append(f"VecFrameStack: the last {ctx.frame_stack} observations on the last axis, oldest "
                     f"first (state carries the previous {ctx.frame_stack - 1}; zeros at the start, reset "
                     f"by mask)")
    y, shape, more = preprocess(prog, ctx.observation_space, scale, x)
    return y, shape, steps + more


def probability_head(prog: Program, ctx: Context, latent: str, dim: int, prefix: str) \
        -> tuple[dict[str, str], Distribution, str]:
    """common.distributions.*ProbabilityDistributionType.proba_distribution_from_latent
    plus what BaseRLModel.predict / action_probability do with it.

    Returns (outputs, distribution, post-processing description)."""
    space = ctx.action_space
    logits, _ = prog.dense(latent, f"{prefix}pi/w:0", f"{prefix}pi/b:0", dim, f"{prefix}pi")
    if isinstance(space, Discrete):
        if prog.tensors[f"{prefix}pi/w:0"].shape[1] != space.n:
            raise InconsistentParameters(f"{prefix}pi/w:0 has {prog.tensors[f'{prefix}pi/w:0'].shape[1]} "
                                         f"outputs, the action space has {space.n} actions", ctx.source)
        probs = prog.emit("softmax", (logits,))
        return ({"actions": prog.emit("argmax", (logits,)), "probs": probs},
                Distribution("categorical", {"logits": logits}), "argmax of the logits")
    if isinstance(space, MultiDiscrete):
        parts = prog.emit_many("split", (logits,), outputs=len(space.nvec), attrs={"sizes": list(space.nvec)})
        outputs = {f"probs_{i}": prog.emit("softmax", (p,)) for i, p in enumerate(parts)}
        modes = [prog.emit("argmax", (p,)) for p in parts]
        outputs["actions"] = prog.emit("stack_last", tuple(modes))
        return (outputs, Distribution("multi_categorical", {"logits": logits}, tuple(space.nvec)),
                "argmax per sub-action")
    if isinstance(space, MultiBinary):
        probs = prog.activation(logits, "sigmoid")
        return ({"actions": prog.emit("round", (probs,)), "probs": probs},
                Distribution("bernoulli", {"logits": logits}), "round(sigmoid(logits))")
    if isinstance(space, Box):
        n = int(np.prod(space.shape))
        logstd = prog.param(f"{prefix}pi/logstd:0", (1, n))
        std = prog.emit("exp_broadcast", (logits,), params={"logstd": logstd})
        low = prog.const("action_low", space.low.astype(np.float32))
        high = prog.const("action_high", space.high.astype(np.float32))
        actions = prog.emit("clip_box", (logits,), params={"low": low, "high": high})
        return ({"actions": actions, "mean": logits, "std": std},
                Distribution("diag_gaussian", {"mean": logits, "std": std}),
                "clip(mean, action_space.low, action_space.high)")
    raise UnsupportedModel(f"unsupported action space {space!r}", ctx.source)


def unscale_head(prog: Program, ctx: Context, squashed: str) -> str:
    """common.math_util.unscale_action: [-1, 1] -> [low, high] (SAC, TD3, DDPG)."""
    space = ctx.action_space
    if not isinstance(space, Box):
        raise UnsupportedModel(f"{ctx.algo.upper()} needs a Box action space, the file has {space!r}",
                               ctx.source)
    low = prog.const("action_low", space.low.astype(np.float32))
    high = prog.const("action_high", space.high.astype(np.float32))
    return prog.emit("unscale_box", (squashed,), params={"low": low, "high": high})
