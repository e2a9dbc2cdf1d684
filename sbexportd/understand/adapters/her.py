"""HER: the file is the wrapped model's own save (SAC, TD3, DDPG or DQN) plus
HER's keys. Its policy is the inner model's; HER only flattens the goal
observation dict (observation, achieved_goal, desired_goal, in KEY_ORDER) into
the inner model's Box before predicting."""
from __future__ import annotations

from ...errors import UnknownAlgorithm
from ..context import Context, algorithm_of_class
from ..spaces import to_space
from ..spec import DictSpace, PolicySpec


def build(ctx: Context) -> PolicySpec:
    from ..param_order import build_with
    from . import ADAPTERS

    inner = algorithm_of_class(ctx.archive.data.get("model_class")) if "model_class" in ctx.archive.data else None
    if inner is None or inner == "her":
        inner = _guess_inner(ctx)
    ctx.algo = inner
    spec = build_with(ctx, ADAPTERS[inner])
    spec.algo = "her"
    spec.notes.append(f"HER over {inner.upper()}: a dict observation is flattened in the order "
                      f"observation, achieved_goal, desired_goal")
    goal = ctx.archive.data.get("her_obs_space")
    if goal is not None:
        space = to_space(goal, ctx.source)
        if isinstance(space, DictSpace):
            spec.goal_observation = space
    return spec


def _guess_inner(ctx: Context) -> str:
    params = ctx.params
    if any(k.startswith("deepq/") for k in params):
        return "dqn"
    if "model/pi/dense_1/kernel:0" in params:
        return "sac"
    if "model/pi/dense/kernel:0" in params:
        return "td3"
    if "model/pi/pi/kernel:0" in params:
        return "ddpg"
    raise UnknownAlgorithm("a HER model whose wrapped algorithm is neither SAC, TD3, DDPG nor DQN",
                           ctx.source)
