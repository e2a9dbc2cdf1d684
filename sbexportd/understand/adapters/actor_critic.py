"""A2C, ACER, ACKTR, PPO1, PPO2, TRPO and GAIL: common.policies' actor-critic policies.

FeedForwardPolicy (MlpPolicy, CnnPolicy, custom net_arch / layers) and LstmPolicy
(Mlp/Cnn, Ln, legacy `layers` mode and `net_arch` mode). The architecture is read
from the parameters themselves (their names and shapes), so a custom subclass whose
code is absent still rebuilds; policy_kwargs settle the rare ambiguous case.
"""
from __future__ import annotations

from ...errors import InconsistentParameters, UnknownPolicy
from ..builder import Program, flatten, indexed
from ..context import Context
from ..heads import observation_front, probability_head
from ..spec import PolicySpec

# Parameters of the policy that predict does not use (ActorCriticPolicy's `q` head,
# only trained by ACER's loss).
_UNUSED_HEADS = ("q/w:0", "q/b:0")


def find_prefix(params: dict, source: str) -> str:
    """The policy's variable scope: "model/" for every SB2 release and algorithm;
    TRPO/PPO1/GAIL keep a copy under "oldpi/model/" that predict never reads."""
    for prefix in ("model/", "pi/model/", ""):
        if f"{prefix}pi/b:0" in params and f"{prefix}vf/b:0" in params:
            return prefix
    raise InconsistentParameters("no actor-critic policy parameters (expected model/pi/w:0 and "
                                 "model/vf/w:0, as every SB2 actor-critic policy saves)", source)


def _mlp(prog: Program, x: str, dim: int, prefix: str, kind: str, indices: list[int], act: str) \
        -> tuple[str, int]:
    for i in indices:
        y, dim = prog.dense(x, f"{prefix}{kind}_fc{i}/w:0", f"{prefix}{kind}_fc{i}/b:0", dim,
                            f"{prefix}{kind}_fc{i}")
        x = prog.activation(y, act)
    return x, dim


def _lstm_layout(ctx: Context, prefix: str, in_dim: int) -> tuple[str, int | None]:
    """("legacy", None) when the MLP before the LSTM is `layers` (pi_fc*), else
    ("net_arch", index of 'lstm' in net_arch; shared_fc{idx} below it come first)."""
    net_arch = ctx.policy_kwargs.get("net_arch")
    if isinstance(net_arch, (list, tuple)) and "lstm" in net_arch:
        return "net_arch", list(net_arch).index("lstm")
    params = ctx.params
    shared = indexed(params, prefix + "shared_fc{i}/w:0")
    if shared or indexed(params, prefix + "vf_fc{i}/w:0"):
        # 'lstm' takes an index of net_arch too: the first gap among shared_fc{idx}.
        return "net_arch", next(i for i in range(len(shared) + 1) if i not in shared)
    pi = indexed(params, prefix + "pi_fc{i}/w:0")
    if pi and params[f"{prefix}pi_fc{pi[0]}/w:0"].shape[0] != in_dim:
        return "net_arch", 0  # net_arch=['lstm', dict(pi=[...])]: pi layers follow the LSTM
    return "legacy", None


def build(ctx: Context) -> PolicySpec:
    params = ctx.params
    prefix = find_prefix(params, ctx.source)
    prog = Program(params=params, source=ctx.source)
    act = ctx.activation("tanh")
    cnn = f"{prefix}c1/w:0" in params
    recurrent = f"{prefix}lstm1/wx:0" in params
    x, shape, steps = observation_front(prog, ctx, scale=cnn)
    state_out = None
    n_lstm = 0

    if cnn:
        x, dim = prog.nature_cnn(x, prefix, shape)
    else:
        x, dim = flatten(prog, x, shape)

    def branch(kind: str, x: str, dim: int, keep=lambda i: True) -> tuple[str, int]:
        return _mlp(prog, x, dim, prefix, kind,
                    [i for i in indexed(params, prefix + kind + "_fc{i}/w:0") if keep(i)], act)

    if not recurrent and cnn:
        pi_latent = vf_latent = x  # nature_cnn feeds both heads; net_arch is ignored
        vf_dim = dim
    elif not recurrent:
        # mlp_extractor: shared_fc{idx} (idx = position in net_arch), then pi_fc / vf_fc.
        x, shared_dim = branch("shared", x, dim)
        pi_latent, dim = branch("pi", x, shared_dim)
        vf_latent, vf_dim = branch("vf", x, shared_dim)
    else:
        layer_norm = f"{prefix}lstm1/gx:0" in params
        layout, lstm_at = _lstm_layout(ctx, prefix, dim)
        if layout == "legacy":
            if not cnn:
                x, dim = branch("pi", x, dim)
            x, state_out, n_lstm = prog.lstm(x, dim, prefix + "lstm1/", layer_norm)
            pi_latent = vf_latent = x
            dim = vf_dim = n_lstm
        else:
            x, dim = branch("shared", x, dim, lambda i: i < lstm_at)
            x, state_out, n_lstm = prog.lstm(x, dim, prefix + "lstm1/", layer_norm)
            x, shared_dim = branch("shared", x, n_lstm, lambda i: i > lstm_at)
            pi_latent, dim = branch("pi", x, shared_dim)
            vf_latent, vf_dim = branch("vf", x, shared_dim)

    value, _ = prog.dense(vf_latent, f"{prefix}vf/w:0", f"{prefix}vf/b:0", vf_dim, f"{prefix}vf")
    outputs, distribution, post = probability_head(prog, ctx, pi_latent, dim, prefix)
    if distribution.kind == "diag_gaussian" and "policy_kwargs" not in ctx.archive.data:
        ctx.notes.append("saved by SB2 <= 2.3 (no policy_kwargs), whose predict returned the Gaussian mean "
                         "without clipping it to the action space; SB2 >= 2.4, 2.10.2 loading this file "
                         "included, clips, and so does `actions` here (`mean` is the unclipped value)")
    outputs["values"] = prog.emit("squeeze_last", (value,))
    if state_out is not None:
        outputs["state"] = state_out

    _check_all_used(ctx, prog, prefix)
    return PolicySpec(
        algo=ctx.algo, policy=ctx.policy.name, observation_space=ctx.observation_space,
        action_space=ctx.action_space, nodes=prog.nodes, outputs=outputs, tensors=prog.tensors,
        distribution=distribution, recurrent=n_lstm, summary=prog.summary, notes=ctx.notes,
        preprocessing=steps, postprocessing=post, sb2_params=list(params))


def _check_all_used(ctx: Context, prog: Program, prefix: str) -> None:
    """A parameter of the policy that no op reads means a layer we did not
    understand: refuse rather than compute something else than SB2 did."""
    unused = [name for name in ctx.params
              if name.startswith(prefix) and name not in prog.consumed
              and not any(name == prefix + h for h in _UNUSED_HEADS)]
    if unused:
        raise UnknownPolicy(
            f"policy {ctx.policy.name!r} has parameters sbexportd cannot place in an SB2 actor-critic "
            f"network: {', '.join(unused[:6])}{' ...' if len(unused) > 6 else ''} (a custom "
            f"feature extractor?)", ctx.source)

