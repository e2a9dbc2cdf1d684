"""Small random PolicySpecs, built with the adapters' own Program builder, that
together use every op of spec.OPS (checked by `covered_ops`).

Each case is (name, spec, obs) where obs(rng, batch) makes a batch of raw
observations of the spec's input dtype (a dict for the goal-observation case).
Weights are seeded and scaled by 1/sqrt(fan_in) so activations stay mostly out of
saturation; a few biases are set on purpose to exercise clipping.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

import conformance
from sbexportd.export.conventions import stack_state
from sbexportd.understand.builder import Program, flatten, input_dtype, preprocess
from sbexportd.understand.spec import (
    ACTIVATIONS,
    OPS,
    Box,
    DictSpace,
    Discrete,
    Distribution,
    MultiBinary,
    MultiDiscrete,
    PolicySpec,
)

F32 = np.float32
ObsFn = Callable[[np.random.Generator, int], object]


class Case(NamedTuple):
    name: str
    spec: PolicySpec
    obs: ObsFn


class Net:
    """A Program plus the random parameters it reads (SB2-style names)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.params: dict[str, np.ndarray] = {}
        self.prog = Program(params=self.params, source="synthetic")

    def weight(self, name: str, shape: tuple[int, ...], scale: float = 1.0, shift: float = 0.0) -> str:
        fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        self.params[name] = (self.rng.standard_normal(shape) * scale / np.sqrt(fan_in) + shift).astype(F32)
        return name

    def dense(self, x: str, in_dim: int, out_dim: int, scope: str, scale: float = 1.0,
              bias: float = 0.0) -> tuple[str, int]:
        self.weight(f"{scope}/w:0", (in_dim, out_dim), scale)
        self.params[f"{scope}/b:0"] = (self.rng.standard_normal(out_dim) * 0.1 + bias).astype(F32)
        return self.prog.dense(x, f"{scope}/w:0", f"{scope}/b:0", in_dim, scope)

    def mlp(self, x: str, dim: int, sizes: tuple[int, ...], scope: str, act: str,
            layer_norm: bool = False) -> tuple[str, int]:
        for i, n in enumerate(sizes):
            x, dim = self.dense(x, dim, n, f"{scope}fc{i}")
            if layer_norm:
                self.params[f"{scope}LayerNorm_{i}/gamma:0"] = (1 + 0.2 * self.rng.standard_normal(n)).astype(F32)
                self.params[f"{scope}LayerNorm_{i}/beta:0"] = (0.1 * self.rng.standard_normal(n)).astype(F32)
                x = self.prog.layer_norm(x, f"{scope}LayerNorm_{i}/gamma:0", f"{scope}LayerNorm_{i}/beta:0",
                                         dim, f"{scope}LayerNorm_{i}")
            x = self.prog.activation(x, act)
        return x, dim

    def nature_cnn(self, x: str, shape: tuple[int, ...], prefix: str) -> tuple[str, int]:
        h, w, c = shape
        for name, k, stride, n in (("c1", 8, 4, 8), ("c2", 4, 2, 16), ("c3", 3, 1, 16)):
            # gain sqrt(2) per layer keeps relu activations O(1)
            self.weight(f"{prefix}{name}/w:0", (k, k, c, n), scale=np.sqrt(2.0))
            # SB2 stores conv biases as (1, n, 1, 1)
            self.params[f"{prefix}{name}/b:0"] = (0.05 * self.rng.standard_normal((1, n, 1, 1))).astype(F32)
            h, w, c = (h - k) // stride + 1, (w - k) // stride + 1, n
        self.weight(f"{prefix}fc1/w:0", (h * w * c, 32), scale=np.sqrt(2.0))
        self.params[f"{prefix}fc1/b:0"] = (0.05 * self.rng.standard_normal(32)).astype(F32)
        return self.prog.nature_cnn(x, prefix, shape)

    def lstm(self, x: str, in_dim: int, n: int, prefix: str, layer_norm: bool) -> tuple[str, str, int]:
        self.weight(f"{prefix}wx:0", (in_dim, 4 * n))
        self.weight(f"{prefix}wh:0", (n, 4 * n))
        self.params[f"{prefix}b:0"] = (0.1 * self.rng.standard_normal(4 * n)).astype(F32)
        if layer_norm:
            for g, b, size in (("gx", "bx", 4 * n), ("gh", "bh", 4 * n), ("gc", "bc", n)):
                self.params[f"{prefix}{g}:0"] = (1 + 0.2 * self.rng.standard_normal(size)).astype(F32)
                self.params[f"{prefix}{b}:0"] = (0.1 * self.rng.standard_normal(size)).astype(F32)
        return self.prog.lstm(x, in_dim, prefix, layer_norm)

    def spec(self, algo: str, obs_space, act_space, outputs: dict[str, str], dist: Distribution,
             recurrent: int = 0, dtype: str | None = None, **kw) -> PolicySpec:
        spec = PolicySpec(algo=algo, policy="Synthetic", observation_space=obs_space, action_space=act_space,
                          nodes=self.prog.nodes, outputs=outputs, tensors=self.prog.tensors,
                          distribution=dist, input_dtype=dtype or input_dtype(obs_space),
                          recurrent=recurrent, summary=self.prog.summary, sb2_params=list(self.params), **kw)
        spec.validate()
        return spec


# --- heads (as understand.heads builds them) ----------------------------------------------
def categorical_head(net: Net, latent: str, dim: int, n: int, prefix: str = "model/"):
    logits, _ = net.dense(latent, dim, n, f"{prefix}pi", scale=2.0)
    outputs = {"actions": net.prog.emit("argmax", (logits,)), "probs": net.prog.emit("softmax", (logits,))}
    return outputs, Distribution("categorical", {"logits": logits})


def gaussian_head(net: Net, latent: str, dim: int, space: Box, prefix: str = "model/"):
    n = int(np.prod(space.shape))
    mean, _ = net.dense(latent, dim, n, f"{prefix}pi")
    net.params[f"{prefix}pi/logstd:0"] = (net.rng.standard_normal((1, n)) * 0.2 - 0.5).astype(F32)
    logstd = net.prog.param(f"{prefix}pi/logstd:0", (1, n))
    std = net.prog.emit("exp_broadcast", (mean,), params={"logstd": logstd})
    low = net.prog.const("action_low", space.low.astype(F32))
    high = net.prog.const("action_high", space.high.astype(F32))
    actions = net.prog.emit("clip_box", (mean,), params={"low": low, "high": high})
    return {"actions": actions, "mean": mean, "std": std}, Distribution("diag_gaussian", {"mean": mean, "std": std})


def value_head(net: Net, latent: str, dim: int, prefix: str = "model/") -> str:
    v, _ = net.dense(latent, dim, 1, f"{prefix}vf", scale=3.0)
    return net.prog.emit("squeeze_last", (v,))


def unscale(net: Net, x: str, space: Box) -> str:
    low = net.prog.const("action_low", space.low.astype(F32))
    high = net.prog.const("action_high", space.high.astype(F32))
    return net.prog.emit("unscale_box", (x,), params={"low": low, "high": high})


def box(shape, low, high, dtype="float32") -> Box:
    return Box(np.broadcast_to(np.asarray(low, dtype), shape).copy(),
               np.broadcast_to(np.asarray(high, dtype), shape).copy(), dtype)


def normal_obs(shape, scale=1.0, loc=0.0, dtype=F32) -> ObsFn:
    return lambda rng, b: (loc + scale * rng.standard_normal((b, *shape))).astype(dtype)


# --- the cases -------------------------------------------------------------------------------
def mlp_discrete() -> Case:
    """A2C MlpPolicy: tanh MLP, Discrete actions, value."""
    net = Net(1)
    space = box((4,), -np.inf, np.inf)
    x, shape, _ = preprocess(net.prog, space, scale=False)
    x, dim = flatten(net.prog, x, shape)
    x, dim = net.mlp(x, dim, (16, 16), "model/shared_", "tanh")
    outputs, dist = categorical_head(net, x, dim, 5)
    outputs["values"] = value_head(net, x, dim)
    return Case("mlp_tanh_discrete", net.spec("a2c", space, Discrete(5), outputs, dist), normal_obs((4,)))


def all_activations() -> Case:
    """Every activation (identity included) on its own branch, concatenated, Gaussian head."""
    net = Net(2)
    space = box((6,), -10, 10)
    act_space = box((3,), -10, 10)
    x, _, _ = preprocess(net.prog, space, scale=False)
    branches = []
    for fn in ACTIVATIONS:
        # scale 4: pre-activations reach beyond relu6's 6 and into every nonlinearity's tails
        y, _ = net.dense(x, 6, 4, f"model/{fn}_fc0", scale=4.0)
        branches.append(net.prog.emit("activation", (y,), attrs={"fn": fn}))
    h = net.prog.emit("concat", tuple(branches))
    dim = 4 * len(ACTIVATIONS)
    outputs, dist = gaussian_head(net, h, dim, act_space)
    outputs["values"] = value_head(net, h, dim)
    return Case("all_activations_gaussian", net.spec("ppo2", space, act_space, outputs, dist),
                normal_obs((6,), scale=2.0))


def discrete_obs_dueling() -> Case:
    """DQN with a Discrete observation (one_hot) and a dueling head."""
    net = Net(3)
    space, n = Discrete(7), 4
    x, _shape, _ = preprocess(net.prog, space, scale=False)
    h, dim = net.mlp(x, 7, (16,), "deepq/model/action_value/", "relu")
    scores, _ = net.dense(h, dim, n, "deepq/model/action_value/out", scale=2.0)
    hv, dimv = net.mlp(x, 7, (16,), "deepq/model/state_value/", "relu")
    value, _ = net.dense(hv, dimv, 1, "deepq/model/state_value/out", scale=2.0)
    q = net.prog.emit("dueling", (scores, value))
    outputs = {"actions": net.prog.emit("argmax", (q,)), "probs": net.prog.emit("softmax", (q,)), "q_values": q}
    return Case("discrete_obs_dueling_dqn", net.spec("dqn", space, Discrete(n), outputs,
                                                     Distribution("softmax_q", {"q": q})),
                lambda rng, b: rng.integers(0, 7, size=(b,)).astype(np.int32))


def multidiscrete() -> Case:
    """MultiDiscrete observation (multi_one_hot) and actions (split/softmax/argmax/stack_last)."""
    net = Net(4)
    space, act = MultiDiscrete((3, 4, 2)), MultiDiscrete((3, 2, 4))
    x, shape, _ = preprocess(net.prog, space, scale=False)
    h, dim = net.mlp(x, shape[0], (16, 16), "model/pi_", "elu")
    logits, _ = net.dense(h, dim, sum(act.nvec), "model/pi", scale=2.0)
    parts = net.prog.emit_many("split", (logits,), outputs=len(act.nvec), attrs={"sizes": list(act.nvec)})
    outputs = {f"probs_{i}": net.prog.emit("softmax", (p,)) for i, p in enumerate(parts)}
    outputs["actions"] = net.prog.emit("stack_last", tuple(net.prog.emit("argmax", (p,)) for p in parts))
    outputs["values"] = value_head(net, h, dim)
    nvec = np.array(space.nvec)
    return Case("multidiscrete_obs_actions",
                net.spec("ppo2", space, act, outputs, Distribution("multi_categorical", {"logits": logits},
                                                                   act.nvec)),
                lambda rng, b: rng.integers(0, nvec, size=(b, 3)).astype(np.int32))


def multibinary() -> Case:
    """MultiBinary observation (cast_float via int32) and actions (sigmoid, round)."""
    net = Net(5)
    space, act = MultiBinary(6), MultiBinary(5)
    x, _shape, _ = preprocess(net.prog, space, scale=False)
    h, dim = net.mlp(x, 6, (16,), "model/pi_", "selu")
    logits, _ = net.dense(h, dim, 5, "model/pi", scale=2.0)
    probs = net.prog.activation(logits, "sigmoid")
    outputs = {"actions": net.prog.emit("round", (probs,)), "probs": probs, "values": value_head(net, h, dim)}
    return Case("multibinary_obs_actions",
                net.spec("ppo2", space, act, outputs, Distribution("bernoulli", {"logits": logits})),
                lambda rng, b: rng.integers(0, 2, size=(b, 6)).astype(np.int32))


def cnn(shape: tuple[int, int, int], gaussian: bool, seed: int) -> Case:
    """CnnPolicy: uint8 image, scale_box, nature_cnn (NHWC, VALID)."""
    net = Net(seed)
    space = box(shape, 0, 255, "uint8")
    x, shape_, _ = preprocess(net.prog, space, scale=True)
    h, dim = net.nature_cnn(x, shape_, "model/")
    if gaussian:
        act = box((2,), -0.3, 0.3)  # narrow: clip_box bites
        outputs, dist = gaussian_head(net, h, dim, act)
    else:
        act = Discrete(3)
        outputs, dist = categorical_head(net, h, dim, 3)
    outputs["values"] = value_head(net, h, dim)
    name = "x".join(map(str, shape))
    return Case(f"nature_cnn_{name}_{'gaussian' if gaussian else 'discrete'}",
                net.spec("ppo2", space, act, outputs, dist),
                lambda rng, b: rng.integers(0, 256, size=(b, *shape), dtype=np.uint8))


def lstm(layer_norm: bool) -> Case:
    """LstmPolicy / LnLstmPolicy (legacy layers: pi_fc0 before the LSTM)."""
    net = Net(7 if layer_norm else 6)
    space = box((5,), -np.inf, np.inf)
    x, _, _ = preprocess(net.prog, space, scale=False)
    x, dim = net.mlp(x, 5, (12,), "model/pi_", "tanh")
    h, state, n = net.lstm(x, dim, 8, "model/lstm1/", layer_norm)
    if layer_norm:
        outputs, dist = gaussian_head(net, h, n, box((2,), -3, 3))
        act = box((2,), -3, 3)
    else:
        outputs, dist = categorical_head(net, h, n, 4)
        act = Discrete(4)
    outputs["values"] = value_head(net, h, n)
    outputs["state"] = state
    return Case("lnlstm_gaussian" if layer_norm else "lstm_discrete",
                net.spec("ppo2", space, act, outputs, dist, recurrent=n), normal_obs((5,)))


def sac_vecnormalize() -> Case:
    """SAC LnMlpPolicy over VecNormalize statistics: layer_norm, clip_value, exp, tanh, unscale."""
    net = Net(8)
    space = box((5,), -np.inf, np.inf)
    act = Box(np.array([-1.0, -2.0], F32), np.array([1.0, 3.0], F32))
    mean = np.array([3.0, -1.0, 0.5, 100.0, 0.0])
    var = np.array([4.0, 0.25, 1.0, 900.0, 1e-3])
    x = net.prog.emit("vecnormalize", ("obs",), attrs={"eps": 1e-8, "clip": 5.0}, params={
        "mean": net.prog.const("vecnormalize/mean", mean), "var": net.prog.const("vecnormalize/var", var)})
    x, _shape, _ = preprocess(net.prog, space, scale=False, x=x)
    h, dim = net.mlp(x, 5, (16, 16), "model/pi/", "relu", layer_norm=True)
    mu, _ = net.dense(h, dim, 2, "model/pi/dense", scale=2.0)
    # one log-std unit sits far below -20: clip_value bites
    log_std, _ = net.dense(h, dim, 2, "model/pi/dense_1", scale=0.5)
    net.params["model/pi/dense_1/b:0"][:] = np.array([-1.0, -25.0], F32)
    std = net.prog.emit("exp", (net.prog.emit("clip_value", (log_std,), attrs={"lo": -20.0, "hi": 2.0}),))
    outputs = {"actions": unscale(net, net.prog.activation(mu, "tanh"), act), "mean": mu, "std": std}
    hv, dimv = net.mlp(x, 5, (16,), "model/values_fn/vf/", "relu")
    v, _ = net.dense(hv, dimv, 1, "model/values_fn/vf/vf", scale=3.0)
    outputs["values"] = net.prog.emit("squeeze_last", (v,))

    def obs(rng, b):  # raw observations around the statistics; some beyond the clip
        return (mean + 4 * np.sqrt(var) * rng.standard_normal((b, 5))).astype(F32)
    return Case("sac_lnmlp_vecnormalize",
                net.spec("sac", space, act, outputs, Distribution("squashed_gaussian", {"mean": mu, "std": std}),
                         vecnormalize=True), obs)


def ddpg_running_norm() -> Case:
    """DDPG with in-graph observation normalization, float64 observations."""
    net = Net(9)
    space = box((4,), -np.inf, np.inf, "float64")
    act = box((3,), -2, 2)
    x, _, _ = preprocess(net.prog, space, scale=False)
    x = net.prog.emit("running_norm", (x,), attrs={"lo": -5.0, "hi": 5.0}, params={
        "mean": net.prog.const("obs_rms/mean#f32", np.array([1.0, -2.0, 0.0, 5.0], F32)),
        "std": net.prog.const("obs_rms/std#f32", np.array([0.5, 2.0, 1.0, 0.1], F32))})
    h, dim = net.mlp(x, 4, (16, 16), "model/pi/", "relu")
    out, _ = net.dense(h, dim, 3, "model/pi/pi")
    actions = unscale(net, net.prog.activation(out, "tanh"), act)
    return Case("ddpg_running_norm_float64_obs",
                net.spec("ddpg", space, act, {"actions": actions}, Distribution("deterministic")),
                normal_obs((4,), scale=3.0, dtype=np.float64))


def her_dict() -> Case:
    """A goal observation fed as a dict (concat_dict), TD3-style actor."""
    net = Net(10)
    goal = DictSpace((("observation", box((4,), -np.inf, np.inf)), ("achieved_goal", box((2,), -5, 5)),
                      ("desired_goal", box((2,), -5, 5))))
    space = box((8,), -np.inf, np.inf)
    act = box((2,), -1, 1)
    x = net.prog.emit("concat_dict", ("obs",), attrs={"keys": [k for k, _ in goal.spaces]})
    h, dim = net.mlp(x, 8, (16,), "model/pi/", "relu")
    out, _ = net.dense(h, dim, 2, "model/pi/dense")
    actions = unscale(net, net.prog.activation(out, "tanh"), act)

    def obs(rng, b):
        return {k: rng.standard_normal((b, *s.shape)).astype(F32) for k, s in goal.spaces}
    return Case("her_td3_dict_obs",
                net.spec("her", space, act, {"actions": actions}, Distribution("deterministic"),
                         goal_observation=goal), obs)


def round_half_even() -> Case:
    """round on exact halves (tf.round: half to even), which a sigmoid almost never hits."""
    net = Net(13)
    space = box((8,), -4, 4)
    x, _, _ = preprocess(net.prog, space, scale=False)
    outputs = {"actions": net.prog.emit("round", (x,))}
    halves = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999997, 3.5], F32)
    return Case("round_half_even", net.spec("ppo2", space, MultiBinary(8), outputs, Distribution("deterministic")),
                lambda rng, b: np.tile(halves, (b, 1)))


def frame_stack_image() -> Case:
    """VecFrameStack of 3 uint8 frames (36x36x1) in front of a CnnPolicy: the stack on
    the channel axis, scaled like SB2's image input, carried as state."""
    net = Net(14)
    n, frame = 3, (36, 36, 1)
    stacked, state = net.prog.emit_many("frame_stack", ("obs", "state", "mask"), outputs=("stacked", "stack_state"),
                                        attrs={"n": n, "frame": list(frame)})
    x, shape, _ = preprocess(net.prog, box((36, 36, 3), 0, 255, "uint8"), scale=True, x=stacked)
    h, dim = net.nature_cnn(x, shape, "model/")
    outputs, dist = categorical_head(net, h, dim, 4)
    outputs["values"], outputs["state"] = value_head(net, h, dim), state
    space = box(frame, 0, 255, "uint8")
    return Case("frame_stack_image", net.spec("ppo2", space, Discrete(4), outputs, dist, frame_stack=n),
                lambda rng, b: rng.integers(0, 256, (b, *frame)).astype(np.uint8))


def frame_stack_vecnormalize() -> Case:
    """VecNormalize of one frame, then VecFrameStack of 4 (the zoo's order), Gaussian head."""
    net = Net(15)
    space = box((6,), -np.inf, np.inf)
    mean, var = np.linspace(-2, 3, 6), np.linspace(0.5, 4, 6)
    x = net.prog.emit("vecnormalize", ("obs",), attrs={"eps": 1e-8, "clip": 5.0}, params={
        "mean": net.prog.const("vecnormalize/mean", mean), "var": net.prog.const("vecnormalize/var", var)})
    stacked, state = net.prog.emit_many("frame_stack", (x, "state", "mask"), outputs=("stacked", "stack_state"),
                                        attrs={"n": 4, "frame": [6]})
    x, _, _ = preprocess(net.prog, box((24,), -np.inf, np.inf), scale=False, x=stacked)
    h, dim = net.mlp(x, 24, (16,), "model/pi_fc", "tanh")
    outputs, dist = gaussian_head(net, h, dim, box((2,), -1, 1))
    outputs["state"] = state
    return Case("frame_stack_vecnormalize", net.spec("a2c", space, box((2,), -1, 1), outputs, dist, frame_stack=4,
                                                     vecnormalize=True),
                lambda rng, b: (mean + 3 * np.sqrt(var) * rng.standard_normal((b, 6))).astype(F32))


def cases() -> list[Case]:
    return [mlp_discrete(), all_activations(), discrete_obs_dueling(), multidiscrete(), multibinary(),
            cnn((36, 36, 1), False, 11), cnn((40, 44, 3), True, 12), lstm(False), lstm(True),
            sac_vecnormalize(), ddpg_running_norm(), her_dict(), round_half_even(), frame_stack_image(),
            frame_stack_vecnormalize()] + conformance.cases()


def state(case: Case, rng: np.random.Generator, batch: int, draw=None) -> np.ndarray:
    """A state a caller could really hold: a frame stack's previous observations (of the
    case's own distribution), or an LSTM's state drawn by `draw` (default N(0, 1))."""
    spec = case.spec
    if spec.frame_stack:
        return stack_state([case.obs(rng, batch) for _ in range(spec.frame_stack - 1)])
    draw = draw or (lambda size: rng.standard_normal(size))
    return draw((batch, spec.state_size)).astype(F32)


def reference_runs(case: Case, runs) -> list[tuple[dict, dict]]:
    """The NumPy reference on a case, for the runtimes' suites (clients/java, clients/node):
    for each (batch, seed), the inputs (obs, and a state a caller could hold with resets
    on about a quarter of the rows) and the outputs under the export names."""
    from sbexportd.export.conventions import export_name
    from sbexportd.realize.numpy_backend import NumpyPolicy
    policy = NumpyPolicy(case.spec)
    out = []
    for n, seed in runs:
        rng = np.random.default_rng(seed)
        inputs = {"obs": case.obs(rng, n)}
        if case.spec.stateful:
            inputs["state"] = state(case, rng, n, lambda size, rng=rng: rng.uniform(-1, 1, size=size))
            inputs["mask"] = (rng.uniform(size=n) < 0.25).astype(F32)
        got = policy.run(inputs["obs"], inputs.get("state"), inputs.get("mask"))
        out.append((inputs, {export_name(k): np.asarray(v) for k, v in got.items()}))
    return out


def covered_ops(specs: list[PolicySpec]) -> set[str]:
    return {node.op for spec in specs for node in spec.nodes}


if __name__ == "__main__":  # a quick look: which ops each case uses
    for case in cases():
        print(f"{case.name:34s} {sorted(covered_ops([case.spec]))}")
    print("uncovered:", sorted(set(OPS) - covered_ops([c.spec for c in cases()])))
