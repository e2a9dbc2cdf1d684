"""DQN: deepq.policies.FeedForwardPolicy (Mlp, LnMlp, Cnn, LnCnn; dueling or not).

Variables live under deepq/model/ (the online network; deepq/target_q_func/ is the
target copy). Layers are tf.contrib fully_connected / layer_norm, whose scopes TF
numbers in creation order: fully_connected, fully_connected_1, ... The last
fully_connected of a branch is its output layer.
"""
from __future__ import annotations

from ...errors import InconsistentParameters, UnknownPolicy
from ..builder import Program, contrib_suffixes, flatten
from ..context import Context
from ..heads import observation_front
from ..spec import Discrete, Distribution, PolicySpec

PREFIX = "deepq/model/"


def _branch(prog: Program, x: str, dim: int, scope: str, act: str, out_dim: int | None) -> tuple[str, int]:
    dense = contrib_suffixes(prog.params, scope, "fully_connected")
    norms = contrib_suffixes(prog.params, scope, "LayerNorm")
    if not dense:
        raise InconsistentParameters(f"no {scope}fully_connected layers in the file", prog.source)
    hidden, last = dense[:-1], dense[-1]
    if norms and len(norms) != len(hidden):
        raise InconsistentParameters(f"{scope}: {len(norms)} LayerNorm for {len(hidden)} hidden layers",
                                     prog.source)
    for i, name in enumerate(hidden):
        x, dim = prog.dense(x, f"{scope}{name}/weights:0", f"{scope}{name}/biases:0", dim, f"{scope}{name}")
        if norms:
            x = prog.layer_norm(x, f"{scope}{norms[i]}/gamma:0", f"{scope}{norms[i]}/beta:0", dim,
                                f"{scope}{norms[i]}")
        x = prog.activation(x, act)
    y, n = prog.dense(x, f"{scope}{last}/weights:0", f"{scope}{last}/biases:0", dim, f"{scope}{last}")
    if out_dim is not None and n != out_dim:
        raise InconsistentParameters(f"{scope}{last} has {n} outputs, expected {out_dim}", prog.source)
    return y, n


def build(ctx: Context) -> PolicySpec:
    if not isinstance(ctx.action_space, Discrete):
        raise UnknownPolicy(f"DQN needs a Discrete action space, the file has {ctx.action_space!r}", ctx.source)
    params = ctx.params
    prog = Program(params=params, source=ctx.source)
    act = ctx.activation("relu")
    av, sv = PREFIX + "action_value/", PREFIX + "state_value/"
    cnn = f"{av}c1/w:0" in params
    x, shape, steps = observation_front(prog, ctx, scale=cnn)
    if cnn:
        # The CNN lives in action_value's scope; its features feed both branches.
        features, dim = prog.nature_cnn(x, av, shape)
    else:
        features, dim = flatten(prog, x, shape)
    n = ctx.action_space.n
    scores, _ = _branch(prog, features, dim, av, act, n)
    dueling = any(name.startswith(sv) for name in params)
    if dueling:
        state_score, _ = _branch(prog, features, dim, sv, act, 1)
        q = prog.emit("dueling", (scores, state_score))
    else:
        q = scores
    unused = [k for k in params if k.startswith(PREFIX) and k not in prog.consumed]
    if unused:
        raise UnknownPolicy(f"DQN policy {ctx.policy.name!r} has parameters sbexportd cannot place: "
                            f"{', '.join(unused[:6])}", ctx.source)
    outputs = {"actions": prog.emit("argmax", (q,)), "probs": prog.emit("softmax", (q,)), "q_values": q}
    if dueling:
        ctx.notes.append("dueling: Q = V + (A - mean(A))")
    return PolicySpec(
        algo=ctx.algo, policy=ctx.policy.name, observation_space=ctx.observation_space,
        action_space=ctx.action_space, nodes=prog.nodes, outputs=outputs, tensors=prog.tensors,
        distribution=Distribution("softmax_q", {"q": q}), summary=prog.summary, notes=ctx.notes,
        preprocessing=steps, postprocessing="argmax of Q", sb2_params=list(params))
