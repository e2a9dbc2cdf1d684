"""SAC, TD3 and DDPG: their FeedForwardPolicy actors (Mlp, LnMlp, Cnn, LnCnn).

All three build the actor under model/pi/: an optional nature_cnn, then
tf_layers.mlp-style hidden layers fc0, fc1, ... (tf.layers.dense: kernel/bias), each
followed by an optional contrib LayerNorm (scopes LayerNorm, LayerNorm_1, ...) and
the activation (relu by default). They differ in the output layer and in what
predict does with it.
"""
from __future__ import annotations

import numpy as np

from ...errors import InconsistentParameters, UnknownPolicy
from ..builder import Program, contrib_suffixes, flatten, indexed
from ..context import Context
from ..heads import observation_front, unscale_head
from ..spec import Box, Distribution, PolicySpec

ACTOR = "model/pi/"


def _dense(prog: Program, x: str, dim: int, scope: str, label: str | None = None) -> tuple[str, int]:
    return prog.dense(x, f"{scope}kernel:0", f"{scope}bias:0", dim, label or scope.rstrip("/"))


def front(prog: Program, ctx: Context) -> tuple[str, tuple[int, ...], list[str]]:
    """Observation -> processed_obs (scaled when the policy is a CNN), once per program."""
    x, shape, steps = observation_front(prog, ctx, scale=f"{ACTOR}c1/w:0" in prog.params)
    return ddpg_obs_normalization(prog, ctx, x, steps), shape, steps


def trunk(prog: Program, x: str, shape: tuple[int, ...], scope: str, hidden: str, act: str,
          joins: tuple[str, int] | None = None) -> tuple[str, int]:
    """processed_obs -> the last hidden layer: nature_cnn under `scope` if present, then
    tf_layers.mlp's fc{i} [+ LayerNorm] + activation under `scope + hidden`.

    joins=(tensor, width): concatenated after the first hidden layer (DDPG's critic
    takes the action there)."""
    params = prog.params
    if f"{scope}c1/w:0" in params:
        x, dim = prog.nature_cnn(x, scope, shape)
    else:
        x, dim = flatten(prog, x, shape)
    scope += hidden
    layers = indexed(params, scope + "fc{i}/kernel:0")
    if not layers:
        raise InconsistentParameters(f"no hidden layers {scope}fc0/kernel:0 ... in the file", prog.source)
    norms = contrib_suffixes(params, scope, "LayerNorm")
    if norms and len(norms) != len(layers):
        raise InconsistentParameters(f"{scope}: {len(norms)} LayerNorm for {len(layers)} hidden layers",
                                     prog.source)
    for i, idx in enumerate(layers):
        x, dim = _dense(prog, x, dim, f"{scope}fc{idx}/")
        if norms:
            x = prog.layer_norm(x, f"{scope}{norms[i]}/gamma:0", f"{scope}{norms[i]}/beta:0", dim,
                                f"{scope}{norms[i]}")
        x = prog.activation(x, act)
        if i == 0 and joins is not None:
            x, dim = prog.emit("concat", (x, joins[0])), dim + joins[1]
    return x, dim


def ddpg_obs_normalization(prog: Program, ctx: Context, x: str, steps: list[str]) -> str:
    """DDPG feeds its actor clip(normalize(obs), *observation_range) (ddpg.py
    `normalized_obs`): the clip applies even without normalize_observations. The
    statistics are mpi_running_mean_std.RunningMeanStd's float64 sum/sumsq/count,
    cast to float32 exactly as its TF ops do."""
    if ctx.algo != "ddpg":
        return x
    lo, hi = (float(v) for v in (ctx.archive.data.get("observation_range") or (-5.0, 5.0)))
    if not ctx.archive.data.get("normalize_observations"):
        steps.append(f"DDPG observation_range: clip(obs, {lo:g}, {hi:g})")
        return prog.emit("clip_value", (x,), attrs={"lo": lo, "hi": hi})
    p = ctx.params
    found = [next((k for k in p if k.endswith(f"obs_rms/{v}:0")), None)
             for v in ("runningsum", "runningsumsq", "count")]
    names = [k for k in found if k is not None]
    if len(names) == len(found):
        total, sumsq, count = (np.asarray(p[k], np.float64) for k in names)
        shape = tuple(ctx.observation_space.shape)
        for name, value, want in zip(names, (total, sumsq, count), (shape, shape, ()), strict=True):
            if value.shape != want:
                raise InconsistentParameters(f"DDPG observation statistic {name!r} has shape {list(value.shape)}, "
                                             f"expected {list(want)}", ctx.source)
        prog.consumed.update(names)
    elif ctx.archive.data.get("_params_unnamed"):
        # SB2 <= 2.4 saved no statistics: loading leaves RunningMeanStd at its
        # initial values (sum 0, sumsq and count epsilon=1e-2): mean 0, std 1.
        count = np.asarray(1e-2, np.float64)
        total = np.zeros(ctx.observation_space.shape)
        sumsq = np.full(ctx.observation_space.shape, 1e-2)
        ctx.notes.append("normalize_observations=True, but this release of SB2 did not save the "
                         "observation statistics: as when SB2 loads the file, they are the initial "
                         "ones (mean 0, std 1)")
    else:
        raise InconsistentParameters("normalize_observations=True but the obs_rms/runningsum, "
                                     "runningsumsq and count parameters are missing", ctx.source)
    mean = (total / count).astype(np.float32)
    std = np.sqrt(np.maximum((sumsq / count).astype(np.float32) - np.square(mean), np.float32(1e-2)))
    steps.append(f"DDPG observation normalization: clip((obs - mean) / std, {lo:g}, {hi:g})")
    return prog.emit("running_norm", (x,), attrs={"lo": lo, "hi": hi}, params={
        "mean": prog.const("obs_rms/mean#f32", mean), "std": prog.const("obs_rms/std#f32", std.astype(np.float32))})


def _spec(ctx: Context, prog: Program, outputs: dict[str, str], distribution: Distribution,
          steps: list[str], post: str) -> PolicySpec:
    unused = [k for k in ctx.params if k.startswith(ACTOR) and k not in prog.consumed]
    if unused:
        raise UnknownPolicy(f"{ctx.algo.upper()} policy {ctx.policy.name!r} has actor parameters "
                            f"sbexportd cannot place: {', '.join(unused[:6])}", ctx.source)
    return PolicySpec(
        algo=ctx.algo, policy=ctx.policy.name, observation_space=ctx.observation_space,
        action_space=ctx.action_space, nodes=prog.nodes, outputs=outputs, tensors=prog.tensors,
        distribution=distribution, summary=prog.summary, notes=ctx.notes, preprocessing=steps,
        postprocessing=post, sb2_params=list(ctx.params))


def _need_box(ctx: Context) -> int:
    if not isinstance(ctx.action_space, Box):
        raise UnknownPolicy(f"{ctx.algo.upper()} needs a Box action space, the file has "
                            f"{ctx.action_space!r}", ctx.source)
    return int(np.prod(ctx.action_space.shape))


def build_sac(ctx: Context) -> PolicySpec:
    """sac.policies.FeedForwardPolicy: mu = dense, log_std = dense_1 clipped to [-20, 2];
    predict: unscale(tanh(mu)); proba_step: (mu, exp(log_std))."""
    n = _need_box(ctx)
    prog = Program(params=ctx.params, source=ctx.source)
    act = ctx.activation("relu")
    obs, shape, steps = front(prog, ctx)
    h, dim = trunk(prog, obs, shape, ACTOR, "", act)
    mu, k = _dense(prog, h, dim, ACTOR + "dense/", ACTOR + "dense (mean)")
    if k != n:
        raise InconsistentParameters(f"the actor has {k} outputs, the action space {n}", ctx.source)
    log_std, _ = _dense(prog, h, dim, ACTOR + "dense_1/", ACTOR + "dense_1 (log std)")
    std = prog.emit("exp", (prog.emit("clip_value", (log_std,), attrs={"lo": -20.0, "hi": 2.0}),))
    outputs = {"actions": unscale_head(prog, ctx, prog.activation(mu, "tanh")), "mean": mu, "std": std}
    if "model/values_fn/vf/vf/kernel:0" in ctx.params:
        # The state-value network V(s): model/values_fn/[c1..fc1/]vf/fc{i}, output vf/vf.
        h, dim = trunk(prog, obs, shape, "model/values_fn/", "vf/", act)
        v, _ = _dense(prog, h, dim, "model/values_fn/vf/vf/")
        outputs["values"] = prog.emit("squeeze_last", (v,))
    return _spec(ctx, prog, outputs, Distribution("squashed_gaussian", {"mean": mu, "std": std}),
                 steps, "unscale(tanh(mean)) from [-1, 1] to [low, high]")


def build_td3(ctx: Context) -> PolicySpec:
    """td3.policies.FeedForwardPolicy: dense(tanh); predict: unscale."""
    n = _need_box(ctx)
    prog = Program(params=ctx.params, source=ctx.source)
    obs, shape, steps = front(prog, ctx)
    h, dim = trunk(prog, obs, shape, ACTOR, "", ctx.activation("relu"))
    out, k = _dense(prog, h, dim, ACTOR + "dense/")
    if k != n:
        raise InconsistentParameters(f"the actor has {k} outputs, the action space {n}", ctx.source)
    squashed = prog.activation(out, "tanh")
    return _spec(ctx, prog, {"actions": unscale_head(prog, ctx, squashed)}, Distribution("deterministic"),
                 steps, "unscale(tanh(actor)) from [-1, 1] to [low, high]")


def build_ddpg(ctx: Context) -> PolicySpec:
    """ddpg.policies.FeedForwardPolicy: tanh(dense 'pi'); predict: clip to [-1, 1]
    (a no-op after tanh), then unscale. values: critic_with_actor_tf, Q(s, actor(s))."""
    n = _need_box(ctx)
    prog = Program(params=ctx.params, source=ctx.source)
    act = ctx.activation("relu")
    obs, shape, steps = front(prog, ctx)
    h, dim = trunk(prog, obs, shape, ACTOR, "", act)
    out, k = _dense(prog, h, dim, ACTOR + "pi/")
    if k != n:
        raise InconsistentParameters(f"the actor has {k} outputs, the action space {n}", ctx.source)
    squashed = prog.activation(out, "tanh")
    outputs = {"actions": unscale_head(prog, ctx, squashed)}
    if critic_output(ctx.params, "model/qf/"):
        if ctx.archive.data.get("normalize_returns"):
            ctx.notes.append("normalize_returns=True: the critic's values are not exported")
        else:
            outputs["values"] = _ddpg_critic(prog, ctx, obs, shape, squashed, n, act)
    return _spec(ctx, prog, outputs, Distribution("deterministic"),
                 steps, "unscale(tanh(actor)) from [-1, 1] to [low, high]")


def critic_output(params: dict, scope: str) -> str | None:
    """The critic's output layer scope: qf_output since SB2 2.5.1, qf before."""
    return next((f"{scope}{name}/" for name in ("qf_output", "qf") if f"{scope}{name}/kernel:0" in params), None)


def _ddpg_critic(prog: Program, ctx: Context, obs: str, shape: tuple[int, ...], action: str, n: int,
                 act: str) -> str:
    """ddpg.policies.FeedForwardPolicy.make_critic on the actor's own action: fc0
    [+ LayerNorm] + activation, then the action joins (concat) before fc1, ...,
    qf_output; clipped to return_range."""
    scope = "model/qf/"
    x, dim = trunk(prog, obs, shape, scope, "", act, joins=(action, n))
    out = critic_output(ctx.params, scope)
    if out is None:
        raise InconsistentParameters(f"the DDPG critic has no output layer ({scope}qf_output/ or {scope}qf/)",
                                     ctx.source)
    q, _ = _dense(prog, x, dim, out)
    lo, hi = (float(v) for v in (ctx.archive.data.get("return_range") or (-np.inf, np.inf)))
    if np.isfinite(lo) or np.isfinite(hi):
        q = prog.emit("clip_value", (q,), attrs={"lo": lo, "hi": hi})
    return prog.emit("squeeze_last", (q,))
