"""How an SB2 policy becomes a Stable-Baselines3 (or sb3-contrib) one, decided from
the spec: the SB3 algorithm and policy class, its policy_kwargs, every tensor of its
state_dict, and the training hyperparameters SB2 saved that mean the same in SB3.

Exact or refused: `plan(model)` returns an `Sb3Plan` whose SB3 network computes what
SB2's did (the sb3 target then proves it in SB3 itself), or raises `NotRepresentable`
saying why and what would be closest. Nothing here imports torch or SB3.

The spec is SB2's inference program; SB3 also needs what trains, which the spec does
not describe: the SAC / TD3 critics and the target networks. Those are read from the
archive by SB2's variable names (sac/policies.py and td3/policies.py make_critics,
deepq's target_q_func), built with the same hidden layers as the actor (SB2 gave
both the same `layers`), each shape checked.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import numpy as np

from ..errors import NotRepresentable
from ..understand.spec import Box, DictSpace, Discrete, MultiBinary, MultiDiscrete, Node, PolicySpec, Space

# SB2 activation name -> torch.nn class name (SB3's activation_fn).
TORCH_ACTIVATIONS = {"tanh": "Tanh", "relu": "ReLU", "sigmoid": "Sigmoid", "elu": "ELU", "softplus": "Softplus",
                     "softsign": "Softsign", "relu6": "ReLU6", "selu": "SELU", "leaky_relu": "LeakyReLU",
                     "swish": "SiLU"}
# tf.nn.leaky_relu's default slope is 0.2, torch's LeakyReLU 0.01: not the same function.
_INEXACT_ACTIVATIONS = {"leaky_relu": "tf.nn.leaky_relu has slope 0.2, torch.nn.LeakyReLU 0.01"}

ON_POLICY = {"a2c": "A2C", "acktr": "A2C", "ppo1": "PPO", "ppo2": "PPO", "trpo": "TRPO", "gail": "TRPO"}
SB3_MODULE = {"A2C": "stable_baselines3", "PPO": "stable_baselines3", "SAC": "stable_baselines3",
              "TD3": "stable_baselines3", "DQN": "stable_baselines3", "TRPO": "sb3_contrib",
              "RecurrentPPO": "sb3_contrib"}
HER_STRATEGIES = {0: "future", 1: "final", 2: "episode"}  # SB2's GoalSelectionStrategy enum values


@dataclass
class Sb3Plan:
    algo: str                                # SB3 class name: PPO, A2C, TRPO, RecurrentPPO, SAC, TD3, DQN
    policy: str                              # MlpPolicy, CnnPolicy, MultiInputPolicy, MlpLstmPolicy, CnnLstmPolicy
    observation_space: Space                 # as SB3 holds it (images channel-first, HER as a Dict)
    action_space: Space
    policy_kwargs: dict[str, Any]            # JSON-able; "activation_fn" is a torch.nn class name
    state_dict: dict[str, np.ndarray]        # policy.state_dict() key -> value (torch layout)
    hyperparameters: dict[str, Any]          # constructor keyword arguments besides policy_kwargs
    outputs: tuple[str, ...]                 # export outputs SB3 computes (and the target verifies)
    extra: dict[str, Any] = field(default_factory=dict)   # log_ent_coef, her settings
    notes: list[str] = field(default_factory=list)
    transpose_image: bool = False            # SB3 sees images channel-first (VecTransposeImage)

    @property
    def module(self) -> str:
        return SB3_MODULE[self.algo]


def refuse(spec: PolicySpec, why: str, closest: str) -> NotRepresentable:
    return NotRepresentable(f"{spec.algo.upper()} {spec.policy} cannot be carried into Stable-Baselines3 "
                            f"exactly: {why}. Closest: {closest}", why=why, closest=closest)


# --- reading the spec's program ------------------------------------------------------
class Graph:
    def __init__(self, spec: PolicySpec):
        self.spec = spec
        self.producer: dict[str, Node] = {o: n for n in spec.nodes for o in n.outputs}

    def find(self, tensor: str) -> Node | None:
        return self.producer.get(tensor)

    def node(self, tensor: str) -> Node:
        """The node making `tensor`, which the caller knows is a node's output (op() said so)."""
        return self.producer[tensor]

    def op(self, tensor: str) -> str | None:
        n = self.find(tensor)
        return n.op if n else None

    def tensor(self, key: str) -> np.ndarray:
        return np.asarray(self.spec.tensors[key])

    def chain(self, tensor: str) -> tuple[list[tuple[Node, str]], str]:
        """Walk back over dense [+ activation] layers: ([(dense node, fn)] in forward
        order, the tensor they start from)."""
        layers: list[tuple[Node, str]] = []
        t = tensor
        while True:
            n = self.find(t)
            if n is None:
                break
            if n.op == "activation" and self.op(n.inputs[0]) == "dense":
                layers.append((self.node(n.inputs[0]), n.attrs["fn"]))
                t = self.node(n.inputs[0]).inputs[0]
            elif n.op == "dense":
                layers.append((n, "identity"))
                t = n.inputs[0]
            else:
                break
        return layers[::-1], t


@dataclass
class Front:
    """From the raw observation to the features the first hidden layer reads."""
    convs: list[Node]
    scale: Node | None
    flatten: bool
    vecnormalize: Node | None
    frame_stack: Node | None


def read_front(g: Graph, features: str) -> Front:
    spec = g.spec
    t, convs, flat = features, list[Node](), False
    if g.op(t) == "flatten":
        flat, t = True, g.node(t).inputs[0]
    while g.op(t) == "activation" and g.op(g.node(t).inputs[0]) == "conv2d":
        conv = g.node(g.node(t).inputs[0])
        if g.node(t).attrs["fn"] != "relu":
            raise refuse(spec, "its CNN is not nature_cnn (an activation other than relu)", "a custom "
                         "features extractor in SB3 (code sbexportd does not write)")
        convs.insert(0, conv)
        t = conv.inputs[0]
    scale = None
    if g.op(t) == "scale_box":
        scale = g.node(t)
        t = scale.inputs[0]
    n = g.find(t)
    if n is None or n.op not in ("cast_float", "one_hot", "multi_one_hot"):
        raise refuse(spec, f"its observation passes through {n.op if n else t!r} before the network, which "
                     "SB3's policies do not do", "a wrapper computing that step in front of an SB3 policy")
    t = n.inputs[0]
    stack = vn = None
    if g.op(t) == "frame_stack":
        stack = g.node(t)
        t = stack.inputs[0]
    if g.op(t) == "vecnormalize":
        vn = g.node(t)
        t = vn.inputs[0]
    if t != "obs":
        raise refuse(spec, f"its observation passes through {g.op(t)!r} before the network", "none")
    return Front(convs, scale, flat, vn, stack)


# --- spaces and layouts --------------------------------------------------------------------
def is_sb3_image(space: Space) -> TypeGuard[Box]:
    """stable_baselines3.common.preprocessing.is_image_space(check_channels=False)."""
    return (isinstance(space, Box) and len(space.shape) == 3 and space.dtype == "uint8"
            and bool(np.all(space.low == 0)) and bool(np.all(space.high == 255)))


def sb3_transposes(space: Space) -> TypeGuard[Box]:
    """SB3 wraps such an env in VecTransposeImage: (H, W, C) -> (C, H, W)."""
    return is_sb3_image(space) and int(np.argmin(space.shape)) != 0


def channel_first(space: Box) -> Box:
    return Box(low=np.transpose(space.low, (2, 0, 1)).copy(), high=np.transpose(space.high, (2, 0, 1)).copy(),
               dtype=space.dtype)


def hwc_rows_to_chw(w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A dense kernel (h*w*c, out) reading an (H, W, C) flatten -> rows in (C, H, W) order."""
    h, w_, c = shape
    return w.reshape(h, w_, c, -1).transpose(2, 0, 1, 3).reshape(h * w_ * c, -1)


def linear(w: np.ndarray, b: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    """TF dense (in, out) -> torch Linear weight (out, in)."""
    return {f"{prefix}.weight": np.ascontiguousarray(np.asarray(w, np.float32).T),
            f"{prefix}.bias": np.asarray(b, np.float32).reshape(-1)}


def one_activation(spec: PolicySpec, layers: list[tuple[Node, str]], what: str) -> str:
    fns = {fn for _, fn in layers}
    if len(fns) > 1:
        raise refuse(spec, f"its {what} mixes activations {sorted(fns)}; SB3 uses one activation_fn",
                     "a custom policy class")
    fn = fns.pop() if fns else "tanh"
    if fn == "identity":
        raise refuse(spec, f"its {what} has no activation; SB3's MLPs always apply activation_fn",
                     "a custom policy class")
    if fn in _INEXACT_ACTIVATIONS:
        raise refuse(spec, f"its activation is {fn}: {_INEXACT_ACTIVATIONS[fn]}", "activation_fn=LeakyReLU "
                     "with negative_slope=0.2 in a custom policy class")
    if fn not in TORCH_ACTIVATIONS:
        raise refuse(spec, f"activation {fn!r} has no torch.nn counterpart", "none")
    return fn


def hidden_kernels(g: Graph, layers: list[tuple[Node, str]], prefix: str, first_rows=None,
                   step: int = 2) -> dict[str, np.ndarray]:
    """dense layers -> nn.Sequential(Linear, act, Linear, act, ...) entries under prefix."""
    out = {}
    for i, (node, _) in enumerate(layers):
        w = g.tensor(node.params["w"])
        if i == 0 and first_rows is not None:
            w = first_rows(w)
        out.update(linear(w, g.tensor(node.params["b"]), f"{prefix}.{step * i}"))
    return out


def widths(g: Graph, layers: list[tuple[Node, str]]) -> list[int]:
    return [int(g.tensor(n.params["w"]).shape[1]) for n, _ in layers]


# --- the observation side, shared by every family ---------------------------------------
@dataclass
class Features:
    """What SB3's features extractor must be, and how SB2's first layer maps onto it."""
    policy_suffix: str                   # "Mlp" | "Cnn" | "MultiInput"
    observation_space: Space             # as the SB3 model holds it
    kwargs: dict[str, Any]               # policy_kwargs for the extractor
    cnn: dict[str, np.ndarray]           # NatureCNN tensors (no prefix): cnn.0 ... linear.0
    first_rows: Any                      # how to reorder the first dense layer's input rows
    transpose: bool
    front: Front
    head_layers: list[tuple[Node, str]]  # the chain after the CNN's fc1 (hidden layers)


def policy_space(spec: PolicySpec) -> Space:
    """The observation space the policy itself reads: with a frame stack in front, the
    stacked space as VecFrameStack builds it (bounds repeated along the last axis)."""
    space = spec.observation_space
    if not spec.frame_stack:
        return space
    if not isinstance(space, Box):
        raise refuse(spec, f"it stacks frames of a {type(space).__name__} observation", "none")
    n = spec.frame_stack
    return Box(low=np.repeat(space.low, n, axis=-1), high=np.repeat(space.high, n, axis=-1), dtype=space.dtype)


def features(g: Graph, spec: PolicySpec, chain: list[tuple[Node, str]], start: str) -> Features:
    front = read_front(g, start)
    space = policy_space(spec)
    kwargs: dict[str, Any] = {}
    transpose = sb3_transposes(space)
    sb3_space: Space = channel_first(space) if sb3_transposes(space) else space
    cnn: dict[str, np.ndarray] = {}
    first_rows = None
    if spec.goal_observation is not None:
        return _goal_features(g, spec, spec.goal_observation, chain, front)
    if front.convs:
        return _cnn_features(g, spec, chain, front)
    if front.scale is not None:  # only CNN policies scale in SB2
        raise refuse(spec, "it scales observations without a CNN", "none")
    if is_sb3_image(space):
        # SB2's MLP reads raw pixel values; SB3 would divide an image by 255.
        kwargs["normalize_images"] = False
        if transpose:
            size = int(np.prod(space.shape))
            first_rows = lambda w: np.concatenate([hwc_rows_to_chw(w[:size], space.shape), w[size:]])  # noqa: E731
    return Features("Mlp", sb3_space, kwargs, cnn, first_rows, transpose, front, chain)


def _cnn_features(g: Graph, spec: PolicySpec, chain: list[tuple[Node, str]], front: Front) -> Features:
    space = policy_space(spec)
    shapes = [(tuple(g.tensor(c.params["w"]).shape), c.attrs["stride"]) for c in front.convs]
    nature = [((8, 8), 32, 4), ((4, 4), 64, 2), ((3, 3), 64, 1)]
    if len(shapes) != 3 or any(s[0][:2] != k or s[0][3] != n or st != stride
                               for s, (k, n, stride) in zip(shapes, nature, strict=True) for st in [s[1]]):
        raise refuse(spec, f"its CNN {shapes} is not nature_cnn", "a custom features extractor")
    if not front.flatten or not chain or chain[0][1] != "relu":
        raise refuse(spec, "its CNN is not followed by nature_cnn's fc1 + relu", "a custom features extractor")
    fc1, rest = chain[0][0], chain[1:]
    kwargs: dict[str, Any] = {"features_extractor_kwargs": {"features_dim": int(g.tensor(fc1.params["w"]).shape[1])}}
    transpose = sb3_transposes(space)
    if is_sb3_image(space):
        if not transpose:
            raise refuse(spec, f"its images {list(space.shape)} are already channel-first to SB3, which would "
                         "not transpose them as SB2's NHWC convolutions read them", "none")
        lo = g.tensor(front.scale.params["low"]) if front.scale else None
        rng = g.tensor(front.scale.params["range"]) if front.scale else None
        if front.scale is None or not (np.all(lo == 0) and np.all(rng == 255)):
            raise refuse(spec, "its uint8 images are not scaled by 1/255 as SB3 scales them", "none")
        sb3_space = channel_first(space)
    else:
        raise refuse(spec, f"its CNN reads {space.describe()['dtype']} observations of shape "
                     f"{list(getattr(space, 'shape', ()))} scaled by (obs - low) / (high - low); SB3's NatureCNN "
                     "takes channel-first images and scales only uint8 ones (by 1/255)",
                     "an observation wrapper giving uint8 images, then CnnPolicy (retraining)")
    cnn: dict[str, np.ndarray] = {}
    for i, conv in enumerate(front.convs):
        w = g.tensor(conv.params["w"])  # HWIO -> OIHW
        cnn[f"cnn.{2 * i}.weight"] = np.ascontiguousarray(w.transpose(3, 2, 0, 1).astype(np.float32))
        cnn[f"cnn.{2 * i}.bias"] = g.tensor(conv.params["b"]).astype(np.float32).reshape(-1)
    # the flatten before fc1: SB2 flattened NHWC (h, w, c), SB3 flattens NCHW (c, h, w)
    h, w_, c = _conv_out(space.shape, shapes)
    fc1_w = hwc_rows_to_chw(g.tensor(fc1.params["w"]), (h, w_, c))
    cnn.update(linear(fc1_w, g.tensor(fc1.params["b"]), "linear.0"))
    return Features("Cnn", sb3_space, kwargs, cnn, None, True, front, rest)


def _conv_out(shape, shapes) -> tuple[int, int, int]:
    h, w = shape[0], shape[1]
    c = shape[2]
    for (kh, kw, _, n), stride in shapes:
        h, w, c = (h - kh) // stride + 1, (w - kw) // stride + 1, n
    return h, w, c


def _goal_features(g: Graph, spec: PolicySpec, goal: DictSpace, chain, front: Front) -> Features:
    """HER: SB2 concatenated observation, achieved_goal, desired_goal (KEY_ORDER);
    SB3's CombinedExtractor concatenates the Dict's keys in sorted order."""
    if front.convs or front.scale is not None or front.vecnormalize is not None or front.frame_stack is not None:
        raise refuse(spec, "a goal-conditioned policy with image, normalized or stacked observations", "none")
    sizes = {k: int(np.prod(s.shape or (1,))) if not isinstance(s, Discrete) else s.n for k, s in goal.spaces}
    offsets, at = {}, 0
    for k, _ in goal.spaces:
        offsets[k] = at
        at += sizes[k]
    order = np.concatenate([np.arange(offsets[k], offsets[k] + sizes[k]) for k in sorted(sizes)])

    def rows(w: np.ndarray) -> np.ndarray:
        return np.concatenate([w[order], w[at:]], axis=0)  # the critic's action rows stay last
    return Features("MultiInput", goal, {}, {}, rows, False, front, chain)


# --- families ------------------------------------------------------------------------------------
def plan(model) -> Sb3Plan:
    spec: PolicySpec = model.spec
    algo = spec.algo
    inner = _her_inner(model) if algo == "her" else algo
    if spec.recurrent and any(n.op == "lstm" and n.attrs.get("layer_norm") for n in spec.nodes):
        raise refuse(spec, "its LSTM is layer-normalized (LnLstm); sb3-contrib's RecurrentPPO uses torch's "
                     "nn.LSTM", "RecurrentPPO MlpLstmPolicy (an LSTM without layer normalization), retrained")
    if any(n.op == "layer_norm" for n in spec.nodes):
        raise refuse(spec, "its layers are layer-normalized (Ln* policy); SB3's policies have no LayerNorm",
                     f"SB3 {_closest_class(inner)} with the same layers without LayerNorm, retrained")
    if inner == "acer":
        raise refuse(spec, "ACER has no Stable-Baselines3 implementation (its Q head and trust region with "
                     "Retrace have no counterpart)", f"SB3 A2C or PPO with the same {spec.policy}: SB2's policy "
                     "and value heads would predict the same, but trained by another algorithm (not offered)")
    if inner == "ddpg":
        raise refuse(spec, "DDPG's critic takes the action after its first hidden layer; SB3's critics take "
                     "it with the observation at the input", "SB3 TD3 or DDPG with the actor converted and a "
                     "new critic, retrained (not offered)")
    if inner in ON_POLICY:
        p = _actor_critic(model, spec)
    elif inner in ("sac", "td3"):
        p = _sac_td3(model, spec, inner)
    elif inner == "dqn":
        p = _dqn(model, spec)
    else:
        raise refuse(spec, f"algorithm {inner!r} has no Stable-Baselines3 counterpart", "none")
    if algo == "her":
        _her(model, p)
    return p


def _closest_class(algo: str) -> str:
    return {"ddpg": "TD3", "dqn": "DQN", "sac": "SAC", "td3": "TD3"}.get(algo, ON_POLICY.get(algo, "PPO"))


def _her_inner(model) -> str:
    from ..understand.context import algorithm_of_class
    data = model.archive.data
    inner = algorithm_of_class(data.get("model_class")) if "model_class" in data else None
    if inner is None:
        p = model.archive.params
        inner = ("dqn" if any(k.startswith("deepq/") for k in p) else "sac" if "model/pi/dense_1/kernel:0" in p
                 else "ddpg" if "model/pi/pi/kernel:0" in p else "td3")
    return inner


# --- A2C, ACKTR, PPO1, PPO2, TRPO, GAIL --------------------------------------------------------------
def _actor_critic(model, spec: PolicySpec) -> Sb3Plan:
    g = Graph(spec)
    space = spec.action_space
    pi_dense, heads = _policy_head(g, spec)
    vf_dense = g.node(g.node(spec.outputs["values"]).inputs[0])
    pi_chain, pi_start = g.chain(pi_dense.inputs[0])
    vf_chain, vf_start = g.chain(vf_dense.inputs[0])
    k = 0
    while k < min(len(pi_chain), len(vf_chain)) and pi_chain[k][0] is vf_chain[k][0]:
        k += 1
    if pi_start != vf_start:
        raise refuse(spec, "its policy and value networks read different features", "none")
    common, pi_chain, vf_chain = pi_chain[:k], pi_chain[k:], vf_chain[k:]
    lstm = None
    if spec.recurrent:
        if spec.frame_stack:
            raise refuse(spec, "it stacks frames in front of an LSTM", "RecurrentPPO without frame stacking")
        if common:
            raise refuse(spec, f"it has {len(common)} layer(s) after its LSTM shared by the policy and the value "
                         "function; sb3-contrib's RecurrentPPO has separate pi / vf layers after the LSTM",
                         "RecurrentPPO with net_arch=dict(pi=shared+pi, vf=shared+vf): the same predictions, "
                         "two separately trained copies (not offered)")
        lstm = g.find(pi_start)
        if lstm is None or lstm.op != "lstm":
            raise refuse(spec, "its recurrent layer is not SB2's LSTM", "none")
        before, start = g.chain(lstm.inputs[0])
        if before and not (before[0][1] == "relu" and _after_cnn(g, start)):
            raise refuse(spec, f"it has {len(before)} dense layer(s) in front of its LSTM (SB2's `layers`); "
                         "sb3-contrib's RecurrentPPO feeds the features extractor's output to the LSTM directly",
                         "RecurrentPPO with those layers after the LSTM instead (net_arch), retrained")
        feats = features(g, spec, before, start)
        if feats.head_layers:
            raise refuse(spec, "it has dense layers between its CNN and its LSTM", "none")
    else:
        feats = features(g, spec, common, pi_start)
        if feats.head_layers:
            raise refuse(spec, f"it has {len(feats.head_layers)} hidden layer(s) shared by the policy and the "
                         "value function (net_arch=[..., dict(pi=..., vf=...)]); SB3 (since 1.8) has no shared "
                         "layers in its mlp_extractor", "SB3 with net_arch=dict(pi=shared+pi, vf=shared+vf): the "
                         "same predictions, but two separately trained copies of the shared layers (not offered)")
    act = one_activation(spec, pi_chain + vf_chain, "policy and value networks") if pi_chain or vf_chain else "tanh"
    sb3_algo = "RecurrentPPO" if lstm is not None else {"a2c": "A2C", "acktr": "A2C", "ppo1": "PPO", "ppo2": "PPO",
                                                       "trpo": "TRPO", "gail": "TRPO"}[spec.algo]
    if lstm is not None and sb3_algo != "RecurrentPPO":
        raise refuse(spec, "recurrent", "RecurrentPPO")
    sd: dict[str, np.ndarray] = {}
    rows = feats.first_rows
    first_pi = rows if not feats.cnn and lstm is None else None
    sd.update(hidden_kernels(g, pi_chain, "mlp_extractor.policy_net", first_pi))
    sd.update(hidden_kernels(g, vf_chain, "mlp_extractor.value_net", first_pi))
    if not pi_chain and first_pi is not None:
        pi_dense_rows = first_pi
    else:
        pi_dense_rows = None
    sd.update(_head_tensors(g, spec, pi_dense, heads, pi_dense_rows))
    vf_w = g.tensor(vf_dense.params["w"])
    if not vf_chain and first_pi is not None:
        vf_w = first_pi(vf_w)
    sd.update(linear(vf_w, g.tensor(vf_dense.params["b"]), "value_net"))
    for name, v in feats.cnn.items():
        sd[f"features_extractor.{name}"] = v
    kwargs: dict[str, Any] = dict(feats.kwargs)
    kwargs["net_arch"] = {"pi": widths(g, pi_chain), "vf": widths(g, vf_chain)}
    kwargs["activation_fn"] = TORCH_ACTIVATIONS[act]
    kwargs["ortho_init"] = False  # the weights are SB2's; nothing to initialise
    notes: list[str] = []
    if feats.cnn:
        kwargs["share_features_extractor"] = True
    if lstm is not None:
        n = int(lstm.attrs["n_hidden"])
        wx, wh, b = (g.tensor(lstm.params[r]) for r in ("wx", "wh", "b"))
        if rows is not None and not feats.cnn:
            wx = rows(wx)
        # SB2 splits the gates i, f, o, u (cell candidate); torch's nn.LSTM orders them i, f, g, o.
        perm = np.concatenate([np.arange(0, n), np.arange(n, 2 * n), np.arange(3 * n, 4 * n), np.arange(2 * n, 3 * n)])
        sd["lstm_actor.weight_ih_l0"] = np.ascontiguousarray(wx[:, perm].T.astype(np.float32))
        sd["lstm_actor.weight_hh_l0"] = np.ascontiguousarray(wh[:, perm].T.astype(np.float32))
        sd["lstm_actor.bias_ih_l0"] = b[perm].astype(np.float32)
        sd["lstm_actor.bias_hh_l0"] = np.zeros(4 * n, np.float32)
        kwargs.update(lstm_hidden_size=n, n_lstm_layers=1, shared_lstm=True, enable_critic_lstm=False)
        notes.append("one LSTM shared by the policy and the value function as in SB2 (shared_lstm=True); "
                     "sb3-contrib trains it from the policy loss only (the value loss does not reach it)")
    hyper, hnotes = on_policy_hyperparameters(model, spec.algo, sb3_algo)
    notes += hnotes
    optimizer = hyper.pop("policy_kwargs_optimizer", None)
    if optimizer is not None and sb3_algo == "A2C":
        kwargs["optimizer_class"] = "RMSpropTFLike"
        kwargs["optimizer_kwargs"] = optimizer
    if lstm is not None and spec.algo != "ppo2":
        notes.append(f"recurrent {spec.algo.upper()} -> RecurrentPPO: sb3-contrib's only recurrent algorithm")
    outputs = tuple(heads) + ("values",) + (("state",) if lstm is not None else ())
    policy = feats.policy_suffix + ("LstmPolicy" if lstm is not None else "Policy")
    return Sb3Plan(sb3_algo, policy, feats.observation_space, space, kwargs, sd, hyper, outputs, {},
                   notes, feats.transpose)


def _after_cnn(g: Graph, start: str) -> bool:
    return g.op(start) == "flatten"


def _policy_head(g: Graph, spec: PolicySpec) -> tuple[Node, tuple[str, ...]]:
    """The dense layer giving the distribution's parameters, and the outputs SB3 computes."""
    space, out = spec.action_space, spec.outputs
    if isinstance(space, Box):
        return g.node(out["mean"]), ("action", "mean", "std")
    if isinstance(space, Discrete):
        return g.node(g.node(out["probs"]).inputs[0]), ("action", "probs")
    if isinstance(space, MultiBinary):
        return g.node(g.node(out["probs"]).inputs[0]), ("action", "probs")
    if isinstance(space, MultiDiscrete):
        split = g.node(g.node(out["probs_0"]).inputs[0])
        return g.node(split.inputs[0]), ("action",) + tuple(f"probs_{i}" for i in range(len(space.nvec)))
    raise refuse(spec, f"action space {space!r}", "none")


def _head_tensors(g: Graph, spec: PolicySpec, pi_dense: Node, heads, rows) -> dict[str, np.ndarray]:
    w = g.tensor(pi_dense.params["w"])
    if rows is not None:
        w = rows(w)
    sd = linear(w, g.tensor(pi_dense.params["b"]), "action_net")
    if isinstance(spec.action_space, Box):
        std_node = g.node(spec.outputs["std"])
        sd["log_std"] = g.tensor(std_node.params["logstd"]).astype(np.float32).reshape(-1)
    return sd


def _num(v) -> float | int | None:
    if isinstance(v, bool) or not isinstance(v, (numbers.Real, np.generic)):
        return None
    v = v.item() if isinstance(v, np.generic) else v
    return v if math.isfinite(v) else None


def _carry(data: dict, pairs, hyper: dict, notes: list[str], algo: str) -> None:
    """(sb3 name, sb2 name, transform) -> hyper[sb3] = transform(data[sb2]) for numbers."""
    for sb3, sb2, fn in pairs:
        if sb2 not in data:
            continue
        v = data[sb2]
        n = _num(v)
        if n is None:
            if v is not None:
                notes.append(f"{sb2}: SB2 saved a {type(v).__name__.replace('Inert', '').lower() or 'value'} "
                             f"(a schedule or an object), not a number: {algo} keeps SB3's default {sb3}")
            continue
        hyper[sb3] = fn(n)


def on_policy_hyperparameters(model, sb2: str, sb3: str) -> tuple[dict[str, Any], list[str]]:
    d = model.archive.data
    h: dict[str, Any] = {}
    notes: list[str] = []
    ident = lambda v: v  # noqa: E731
    n_envs = int(_num(d.get("n_envs")) or 1)
    if sb2 in ("ppo2", "a2c", "acktr"):
        _carry(d, [("gamma", "gamma", ident), ("n_steps", "n_steps", int), ("ent_coef", "ent_coef", ident),
                   ("vf_coef", "vf_coef", ident), ("max_grad_norm", "max_grad_norm", ident)]
               + ([("learning_rate", "learning_rate", ident)] if sb2 != "acktr" else []), h, notes, sb3)
        if sb2 == "acktr" and "learning_rate" in d:
            notes.append(f"learning_rate={d['learning_rate']!r:.20}: ACKTR's is the K-FAC natural-gradient step, "
                         "not an RMSProp rate; SB3's A2C keeps its default learning_rate")
    if sb2 == "ppo2":
        _carry(d, [("gae_lambda", "lam", ident), ("n_epochs", "noptepochs", int), ("clip_range", "cliprange", ident)],
               h, notes, sb3)
        vf = _num(d.get("cliprange_vf"))
        if vf is not None and vf > 0:
            h["clip_range_vf"] = vf
        if "n_steps" in h and _num(d.get("nminibatches")):
            h["batch_size"] = max(1, h["n_steps"] * n_envs // int(d["nminibatches"]))
    elif sb2 == "ppo1":
        _carry(d, [("gamma", "gamma", ident), ("n_steps", "timesteps_per_actorbatch", int),
                   ("clip_range", "clip_param", ident), ("ent_coef", "entcoeff", ident),
                   ("n_epochs", "optim_epochs", int), ("learning_rate", "optim_stepsize", ident),
                   ("batch_size", "optim_batchsize", int), ("gae_lambda", "lam", ident)], h, notes, sb3)
        h["vf_coef"] = 1.0  # PPO1's loss adds the value loss with weight 1
        notes.append("PPO1 -> PPO: one process's rollout of timesteps_per_actorbatch steps, Adam, clip_param; "
                     "PPO1's MPI averaging is not carried")
    elif sb2 in ("a2c", "acktr"):
        h["gae_lambda"] = _num(d.get("gae_lambda")) or 1.0
        if sb2 == "a2c":
            alpha, eps = _num(d.get("alpha")), _num(d.get("epsilon"))
            h["policy_kwargs_optimizer"] = {"alpha": alpha if alpha is not None else 0.99,
                                            "eps": eps if eps is not None else 1e-5}
            notes.append("A2C's RMSProp as TensorFlow computed it: optimizer_class=RMSpropTFLike "
                         "(stable_baselines3.common.sb2_compat)")
        else:
            notes.append("ACKTR -> A2C: SB3 has no K-FAC optimizer; A2C with its RMSProp is the closest "
                         "(same n_steps, gamma, coefficients)")
        if d.get("lr_schedule") not in (None, "constant"):
            notes.append(f"lr_schedule {d.get('lr_schedule')!r}: SB3's model keeps the constant learning_rate")
    elif sb2 in ("trpo", "gail"):
        _carry(d, [("gamma", "gamma", ident), ("n_steps", "timesteps_per_batch", int), ("target_kl", "max_kl", ident),
                   ("cg_max_steps", "cg_iters", int), ("gae_lambda", "lam", ident), ("cg_damping", "cg_damping", ident),
                   ("learning_rate", "vf_stepsize", ident), ("n_critic_updates", "vf_iters", int)], h, notes, sb3)
        if _num(d.get("entcoeff")):
            notes.append(f"entcoeff={d['entcoeff']}: sb3-contrib's TRPO has no entropy bonus")
        if sb2 == "gail":
            notes.append("GAIL -> TRPO: the policy and value function are carried; the discriminator and the "
                         "expert data are not (SB3 has no GAIL; the `imitation` library builds on SB3)")
    if "n_steps" in h and "batch_size" not in h and sb3 in ("PPO", "RecurrentPPO"):
        h["batch_size"] = max(1, min(64, h["n_steps"] * n_envs))
    return h, notes


# --- SAC and TD3 (and HER over them) ----------------------------------------------------------------
def _sac_td3(model, spec: PolicySpec, inner: str) -> Sb3Plan:
    g = Graph(spec)
    params = model.archive.params
    unscale = g.node(spec.outputs["actions"])
    tanh = g.node(unscale.inputs[0])
    mu = g.node(tanh.inputs[0])
    chain, start = g.chain(mu.inputs[0])
    feats = features(g, spec, chain, start)
    if feats.front.vecnormalize is None and feats.front.frame_stack is None and feats.cnn and spec.goal_observation:
        pass
    hidden = feats.head_layers
    act = one_activation(spec, hidden, "actor")
    rows = feats.first_rows if not feats.cnn else None
    sd: dict[str, np.ndarray] = {}
    layers = widths(g, hidden)
    if inner == "sac":
        sd.update(hidden_kernels(g, hidden, "actor.latent_pi", rows))
        mu_w = g.tensor(mu.params["w"])
        std = g.node(spec.outputs["std"])                          # exp(clip(dense_1))
        log_std = g.node(g.node(std.inputs[0]).inputs[0])
        ls_w = g.tensor(log_std.params["w"])
        if not hidden and rows is not None:
            mu_w, ls_w = rows(mu_w), rows(ls_w)
        sd.update(linear(mu_w, g.tensor(mu.params["b"]), "actor.mu"))
        sd.update(linear(ls_w, g.tensor(log_std.params["b"]), "actor.log_std"))
        for k, v in feats.cnn.items():
            sd[f"actor.features_extractor.{k}"] = v
        outputs: tuple[str, ...] = ("action", "mean", "std")
    else:
        all_layers = hidden + [(mu, "tanh")]
        sd.update(hidden_kernels(g, all_layers, "actor.mu", rows))
        for k, v in feats.cnn.items():
            sd[f"actor.features_extractor.{k}"] = v
        outputs = ("action",)
    notes: list[str] = []
    critic = _sb2_critics(model, spec, "model/", layers, feats, rows)
    assert critic is not None  # without missing_ok a missing critic raises
    sd.update({f"critic.{k}": v for k, v in critic.items()})
    if inner == "td3":
        target_actor = _sb2_td3_target_actor(model, spec, layers, feats, rows)
        target_critic = _sb2_critics(model, spec, "target/", layers, feats, rows, missing_ok=True)
        if target_actor is None or target_critic is None:
            target_actor = {k[len("actor."):]: v for k, v in sd.items() if k.startswith("actor.")}
            target_critic = critic
            notes.append("the file has no target networks: SB3's targets start as copies of the actor and critics")
        sd.update({f"actor_target.{k}": v for k, v in target_actor.items()})
        sd.update({f"critic_target.{k}": v for k, v in target_critic.items()})
    else:
        sd.update({f"critic_target.{k}": v for k, v in critic.items()})
        notes.append("SB2's SAC kept a target of its state-value network V(s), which SB3's SAC does not have "
                     "(its targets are of the two Q networks): SB3's critic_target starts as a copy of the "
                     "converted critics, and V(s) (SB2's `values`) is not carried")
    kwargs: dict[str, Any] = dict(feats.kwargs)
    kwargs["net_arch"] = {"pi": layers, "qf": layers}
    kwargs["activation_fn"] = TORCH_ACTIVATIONS[act]
    if feats.cnn:
        kwargs["share_features_extractor"] = False
    extra: dict[str, Any] = {}
    if inner == "sac" and "model/log_ent_coef:0" in params:
        extra["log_ent_coef"] = float(np.asarray(params["model/log_ent_coef:0"]).reshape(()))
    hyper, hnotes = off_policy_hyperparameters(model, inner)
    if inner == "sac" and "log_ent_coef" in extra:
        hyper["ent_coef"] = "auto"
    return Sb3Plan(inner.upper(), feats.policy_suffix + "Policy", feats.observation_space, spec.action_space,
                   kwargs, sd, hyper, outputs, extra, notes + hnotes, feats.transpose)


def _sb2_critics(model, spec: PolicySpec, scope: str, layers: list[int], feats: Features, rows,
                 missing_ok: bool = False) -> dict[str, np.ndarray] | None:
    """SB2's qf1, qf2 under <scope>values_fn/ (concat(features, action) -> layers -> 1) as SB3's
    ContinuousCritic qf0, qf1 (and its own features extractor for a CNN)."""
    params = dict(model.archive.params)
    if scope == "model/" and f"{scope}values_fn/qf1/{q_out('qf1', 0, layers)}kernel:0" not in params:
        params.update(_unnamed_critics(model, layers))
    out: dict[str, np.ndarray] = {}
    for q in ("qf1", "qf2"):
        base = f"{scope}values_fn/{q}/"
        names = [f"{base}fc{j}/" for j in range(len(layers))] + [f"{base}{q}/"]
        if any(n + "kernel:0" not in params for n in names):
            if missing_ok:
                return None
            raise refuse(spec, f"the file lacks the critic {base} SB3 needs to train", "none")
        for j, n in enumerate(names):
            w, b = np.asarray(params[n + "kernel:0"]), np.asarray(params[n + "bias:0"])
            want_out = layers[j] if j < len(layers) else 1
            if w.ndim != 2 or w.shape[1] != want_out:
                raise refuse(spec, f"its critic {n} has shape {list(w.shape)}, not the actor's layers {layers}",
                             "none")
            if j == 0 and rows is not None:
                w = rows(w)
            out.update(linear(w, b, f"{q.replace('qf1', 'qf0').replace('qf2', 'qf1')}.{2 * j}"))
    if feats.cnn:
        cnn = _sb2_cnn(model, spec, f"{scope}values_fn/", feats)
        if cnn is None:
            if missing_ok:
                return None
            raise refuse(spec, f"the file lacks the critics' CNN under {scope}values_fn/", "none")
        out.update({f"features_extractor.{k}": v for k, v in cnn.items()})
    return out


def q_out(q: str, j: int, layers: list[int]) -> str:
    return f"fc{j}/" if j < len(layers) else f"{q}/"


def _unnamed_critics(model, layers: list[int]) -> dict[str, np.ndarray]:
    """Old SB2 releases saved a bare list, of which sbexportd names what predict needs
    (understand/param_order.py: the actor, then values_fn/vf). make_critics created
    qf1 then qf2 right after vf, so the next unnamed entries, in order, are theirs; each
    is shape-checked by the caller (kernels (obs + action -> layers -> 1))."""
    params = model.archive.params
    named = [i for i, k in enumerate(params) if not k.startswith("#")]
    rest = [k for i, k in enumerate(params) if k.startswith("#") and named and i > max(named)]
    names = [f"model/values_fn/{q}/{q_out(q, j, layers)}{part}:0" for q in ("qf1", "qf2")
             for j in range(len(layers) + 1) for part in ("kernel", "bias")]
    if len(rest) < len(names) or any(k != f"#{max(named) + 1 + i}" for i, k in enumerate(rest[:len(names)])):
        return {}
    return {n: params[k] for n, k in zip(names, rest, strict=False)}


def _sb2_cnn(model, spec: PolicySpec, scope: str, feats: Features) -> dict[str, np.ndarray] | None:
    params = model.archive.params
    out: dict[str, np.ndarray] = {}
    shapes = []
    for i, name in enumerate(("c1", "c2", "c3")):
        if f"{scope}{name}/w:0" not in params:
            return None
        w = np.asarray(params[f"{scope}{name}/w:0"], np.float32)
        out[f"cnn.{2 * i}.weight"] = np.ascontiguousarray(w.transpose(3, 2, 0, 1))
        out[f"cnn.{2 * i}.bias"] = np.asarray(params[f"{scope}{name}/b:0"], np.float32).reshape(-1)
        shapes.append((w.shape, (4, 2, 1)[i]))
    h, w_, c = _conv_out(policy_space(spec).shape, shapes)
    fc1 = hwc_rows_to_chw(np.asarray(params[f"{scope}fc1/w:0"], np.float32), (h, w_, c))
    out.update(linear(fc1, params[f"{scope}fc1/b:0"], "linear.0"))
    return out


def _sb2_td3_target_actor(model, spec, layers, feats: Features, rows) -> dict[str, np.ndarray] | None:
    params = model.archive.params
    names = [f"target/pi/fc{j}/" for j in range(len(layers))] + ["target/pi/dense/"]
    if any(n + "kernel:0" not in params for n in names):
        return None
    out = {}
    for j, n in enumerate(names):
        w = np.asarray(params[n + "kernel:0"])
        if j == 0 and rows is not None:
            w = rows(w)
        out.update(linear(w, params[n + "bias:0"], f"mu.{2 * j}"))
    if feats.cnn:
        cnn = _sb2_cnn(model, spec, "target/pi/", feats)
        if cnn is None:
            return None
        out.update({f"features_extractor.{k}": v for k, v in cnn.items()})
    return out


def off_policy_hyperparameters(model, algo: str) -> tuple[dict[str, Any], list[str]]:
    d = model.archive.data
    h: dict[str, Any] = {}
    notes: list[str] = []
    ident = lambda v: v  # noqa: E731
    common = [("gamma", "gamma", ident), ("learning_rate", "learning_rate", ident), ("buffer_size", "buffer_size", int),
              ("learning_starts", "learning_starts", int), ("batch_size", "batch_size", int),
              ("train_freq", "train_freq", int)]
    if algo in ("sac", "td3"):
        _carry(d, common + [("tau", "tau", ident), ("gradient_steps", "gradient_steps", int)], h, notes, algo.upper())
    if algo == "sac":
        _carry(d, [("target_update_interval", "target_update_interval", int)], h, notes, "SAC")
        te = _num(d.get("target_entropy"))
        if te is not None:
            h["target_entropy"] = te
        ec = d.get("ent_coef")
        if _num(ec) is not None:
            h["ent_coef"] = _num(ec)
        if _num(d.get("random_exploration")):
            notes.append(f"random_exploration={d['random_exploration']}: SB3's SAC has no such setting")
    if algo == "td3":
        _carry(d, [("policy_delay", "policy_delay", int), ("target_policy_noise", "target_policy_noise", ident),
                   ("target_noise_clip", "target_noise_clip", ident)], h, notes, "TD3")
    if algo in ("sac", "td3") and d.get("action_noise") is not None:
        notes.append("action_noise: SB2's noise object is not carried (pass action_noise= to SB3 to train with it)")
    if algo == "dqn":
        _carry(d, common + [("exploration_fraction", "exploration_fraction", ident),
                            ("exploration_final_eps", "exploration_final_eps", ident),
                            ("exploration_initial_eps", "exploration_initial_eps", ident),
                            ("target_update_interval", "target_network_update_freq", int)], h, notes, "DQN")
        if d.get("double_q", True):
            notes.append("double_q: SB2 trained with double Q-learning; SB3's DQN has none (its targets are "
                         "max_a Q_target)")
        if d.get("prioritized_replay"):
            notes.append("prioritized_replay: SB3's DQN samples its replay buffer uniformly")
        if d.get("param_noise"):
            notes.append("param_noise: SB3's DQN explores epsilon-greedily only")
    if "batch_size" in h and "learning_starts" in h:
        pass
    return h, notes


# --- DQN ------------------------------------------------------------------------------------------------
def _dqn(model, spec: PolicySpec) -> Sb3Plan:
    g = Graph(spec)
    q = spec.outputs["q_values"]
    if g.op(q) == "dueling":
        raise refuse(spec, "it is a dueling DQN (Q = V + A - mean A, SB2's default); SB3's DQN has a single "
                     "Q head", "SB3 DQN (non-dueling) with the same layers, retrained; or sb3-contrib's QRDQN "
                     "(not dueling either)")
    chain, start = g.chain(q)
    feats = features(g, spec, chain, start)
    hidden, out = feats.head_layers[:-1], feats.head_layers[-1]
    if out[1] != "identity":
        raise refuse(spec, "its Q head has an activation", "none")
    act = one_activation(spec, hidden, "Q network") if hidden else "relu"
    rows = feats.first_rows if not feats.cnn else None
    sd = hidden_kernels(g, hidden + [out], "q_net.q_net", rows)
    for k, v in feats.cnn.items():
        sd[f"q_net.features_extractor.{k}"] = v
    target = _sb2_dqn_target(model, spec, g, hidden + [out], rows, feats)
    notes: list[str] = []
    if target is None:
        target = {k[len("q_net."):]: v for k, v in sd.items()}
        notes.append("the file has no target Q network: SB3's q_net_target starts as a copy of q_net")
    sd.update({f"q_net_target.{k}": v for k, v in target.items()})
    kwargs: dict[str, Any] = dict(feats.kwargs)
    kwargs["net_arch"] = widths(g, hidden)
    kwargs["activation_fn"] = TORCH_ACTIVATIONS[act]
    hyper, hnotes = off_policy_hyperparameters(model, "dqn")
    return Sb3Plan("DQN", feats.policy_suffix + "Policy", feats.observation_space, spec.action_space, kwargs, sd,
                   hyper, ("action", "q_values"), {}, notes + hnotes, feats.transpose)


def _sb2_dqn_target(model, spec, g: Graph, layers, rows, feats: Features) -> dict[str, np.ndarray] | None:
    """deepq/target_q_func/model/...: the online network's parameter names under the target scope."""
    params = model.archive.params
    out: dict[str, np.ndarray] = {}
    for i, (node, _) in enumerate(layers):
        wname = node.params["w"].replace("deepq/model/", "deepq/target_q_func/model/", 1)
        bname = node.params["b"].replace("deepq/model/", "deepq/target_q_func/model/", 1)
        if wname not in params or bname not in params:
            return None
        w = np.asarray(params[wname])
        if i == 0 and rows is not None:
            w = rows(w)
        out.update(linear(w, params[bname], f"q_net.{2 * i}"))
    if feats.cnn:
        cnn = _sb2_cnn(model, spec, "deepq/target_q_func/model/action_value/", feats)
        if cnn is None:
            return None
        out.update({f"features_extractor.{k}": v for k, v in cnn.items()})
    return out


# --- HER ----------------------------------------------------------------------------------------------------
def _her(model, p: Sb3Plan) -> None:
    d = model.archive.data
    strategy = d.get("goal_selection_strategy")
    value = getattr(strategy, "sb_args", None) or (strategy,)
    name = HER_STRATEGIES.get(value[0] if isinstance(value[0], int) else -1)
    if name is None:
        p.notes.append(f"goal_selection_strategy {strategy!r:.40}: not one SB3 has; SB3's HER uses 'future'")
        name = "future"
    n_goal = int(_num(d.get("n_sampled_goal")) or 4)
    p.extra["her"] = {"n_sampled_goal": n_goal, "goal_selection_strategy": name}
    p.notes.append("HER: replay_buffer_class=HerReplayBuffer; the goal dict's keys are read in SB3's "
                   "(sorted) order, the first layer's inputs reordered to match")
