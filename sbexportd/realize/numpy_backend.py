"""The reference backend: the spec evaluated with NumPy alone, in float32 the way
TensorFlow 1 computed it. Every other backend and every export is checked
against this one."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..understand.spec import FLOAT64_PARAMS, Node, PolicySpec, require_ops

F32 = np.float32
Impl = Callable[[Node, list, dict], tuple]
OP_IMPLS: dict[str, Impl] = {}


def op(name: str):
    def register(fn: Impl) -> Impl:
        OP_IMPLS[name] = fn
        return fn
    return register


# TensorFlow 1.15 computes float32 tanh with Eigen's rational approximation
# (generic_fast_tanh_float), not a correctly rounded tanh. The difference is a few
# ulps, but a value head with large weights after saturated tanh units amplifies it
# ~10x (zoo acktr/Pendulum values: 2e-4 with np.tanh, 1.5e-5 with this). The
# reference backend reproduces TF1 rather than the exact function.
_TANH_P = tuple(F32(c) for c in (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
                                 5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
                                 4.89352455891786e-03))
_TANH_Q = tuple(F32(c) for c in (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
                                 4.89352518554385e-03))


def tf1_tanh(a):
    x = np.clip(np.asarray(a, F32), F32(-9), F32(9))
    x2 = x * x
    p = x2 * _TANH_P[0] + _TANH_P[1]
    for c in _TANH_P[2:]:
        p = p * x2 + c
    q = x2 * _TANH_Q[0] + _TANH_Q[1]
    for c in _TANH_Q[2:]:
        q = q * x2 + c
    return ((p * x) / q).astype(F32)


def _sigmoid(x):
    return (F32(1) / (F32(1) + np.exp(-x))).astype(F32)


def _softplus(x):
    return (np.maximum(x, F32(0)) + np.log1p(np.exp(-np.abs(x)))).astype(F32)


ACTIVATION_FNS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda x: x,
    "relu": lambda x: np.maximum(x, F32(0)),
    "tanh": tf1_tanh,
    "sigmoid": _sigmoid,
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, F32(0)))).astype(F32),
    "softplus": _softplus,
    "softsign": lambda x: (x / (F32(1) + np.abs(x))).astype(F32),
    "relu6": lambda x: np.clip(x, F32(0), F32(6)),
    "selu": lambda x: (F32(1.0507009873554805) * np.where(
        x > 0, x, F32(1.6732632423543772) * np.expm1(np.minimum(x, F32(0))))).astype(F32),
    "leaky_relu": lambda x: np.where(x > 0, x, F32(0.2) * x).astype(F32),
    "swish": lambda x: (x * _sigmoid(x)).astype(F32),
}


@op("cast_float")
def _cast_float(node, xs, t):
    return (np.asarray(xs[0]).astype(node.attrs.get("via", "float32")).astype(F32),)


@op("one_hot")
def _one_hot(node, xs, t):
    idx = np.asarray(xs[0]).astype(np.int64).reshape(-1)
    n = node.attrs["n"]
    out = np.zeros((idx.shape[0], n), F32)
    valid = (idx >= 0) & (idx < n)  # tf.one_hot gives all zeros out of range
    out[np.nonzero(valid)[0], idx[valid]] = 1
    return (out,)


@op("multi_one_hot")
def _multi_one_hot(node, xs, t):
    x = np.asarray(xs[0]).astype(np.int64).reshape(-1, len(node.attrs["nvec"]))
    parts = [_one_hot(type(node)("one_hot", (), (), {"n": n}), [x[:, i]], t)[0]
             for i, n in enumerate(node.attrs["nvec"])]
    return (np.concatenate(parts, axis=-1),)


@op("scale_box")
def _scale_box(node, xs, t):
    return (((xs[0] - t[node.params["low"]]) / t[node.params["range"]]).astype(F32),)


@op("vecnormalize")
def _vecnormalize(node, xs, t):
    x = np.asarray(xs[0], np.float64)
    mean, var = t[node.params["mean"]], t[node.params["var"]]
    clip = node.attrs["clip"]
    return (np.clip((x - mean) / np.sqrt(var + node.attrs["eps"]), -clip, clip).astype(F32),)


@op("running_norm")
def _running_norm(node, xs, t):
    y = (xs[0] - t[node.params["mean"]]) / t[node.params["std"]]
    return (np.clip(y, F32(node.attrs["lo"]), F32(node.attrs["hi"])).astype(F32),)


@op("concat_dict")
def _concat_dict(node, xs, t):
    return (np.concatenate([np.asarray(xs[0][k], F32) for k in node.attrs["keys"]], axis=-1),)


@op("flatten")
def _flatten(node, xs, t):
    return (xs[0].reshape(xs[0].shape[0], -1),)


@op("dense")
def _dense(node, xs, t):
    return ((xs[0] @ t[node.params["w"]] + t[node.params["b"]]).astype(F32),)


@op("conv2d")
def _conv2d(node, xs, t):
    x, w, b = xs[0], t[node.params["w"]], t[node.params["b"]]
    s = node.attrs["stride"]
    kh, kw, _, _ = w.shape
    n, h, wd, c = x.shape
    oh, ow = (h - kh) // s + 1, (wd - kw) // s + 1
    # im2col with strided views: (n, oh, ow, kh, kw, c) @ (kh*kw*c, out)
    sn, sh, sw, sc = x.strides
    cols = np.lib.stride_tricks.as_strided(
        x, (n, oh, ow, kh, kw, c), (sn, sh * s, sw * s, sh, sw, sc), writeable=False)
    y = cols.reshape(n * oh * ow, kh * kw * c) @ w.reshape(kh * kw * c, -1)
    return ((y.reshape(n, oh, ow, -1) + b).astype(F32),)


@op("activation")
def _activation(node, xs, t):
    return (ACTIVATION_FNS[node.attrs["fn"]](xs[0]).astype(F32),)


@op("exp")
def _exp(node, xs, t):
    return (np.exp(xs[0]).astype(F32),)


@op("layer_norm")
def _layer_norm(node, xs, t):
    x = xs[0]
    axes = tuple(range(1, x.ndim))
    mean = x.mean(axis=axes, keepdims=True, dtype=F32)
    var = np.square(x - mean).mean(axis=axes, keepdims=True, dtype=F32)
    inv = (F32(1) / np.sqrt(var + F32(node.attrs["eps"]))) * t[node.params["gamma"]]
    return ((x * inv + (t[node.params["beta"]] - mean * inv)).astype(F32),)


def _ln(x, gain, bias, eps=F32(1e-5)):
    """tf_layers._ln: SB2's own layer norm inside LN-LSTMs (eps 1e-5)."""
    mean = x.mean(axis=1, keepdims=True, dtype=F32)
    var = np.square(x - mean).mean(axis=1, keepdims=True, dtype=F32)
    return ((x - mean) / np.sqrt(var + eps) * gain + bias).astype(F32)


@op("lstm")
def _lstm(node, xs, t):
    x, state, mask = xs
    p = {role: t[name] for role, name in node.params.items()}
    n = node.attrs["n_hidden"]
    keep = (F32(1) - np.asarray(mask, F32).reshape(-1, 1))
    c, h = state[:, :n] * keep, state[:, n:] * keep
    if node.attrs["layer_norm"]:
        gates = _ln(x @ p["wx"], p["gx"], p["bx"]) + _ln(h @ p["wh"], p["gh"], p["bh"]) + p["b"]
    else:
        gates = x @ p["wx"] + h @ p["wh"] + p["b"]
    i, f, o, u = np.split(gates.astype(F32), 4, axis=1)
    c = _sigmoid(f) * c + _sigmoid(i) * tf1_tanh(u)
    hc = _ln(c, p["gc"], p["bc"]) if node.attrs["layer_norm"] else c
    h = _sigmoid(o) * tf1_tanh(hc)
    return h.astype(F32), np.concatenate([c, h], axis=1).astype(F32)


@op("concat")
def _concat(node, xs, t):
    return (np.concatenate(xs, axis=-1),)


@op("dueling")
def _dueling(node, xs, t):
    a, v = xs
    return ((v + (a - a.mean(axis=1, keepdims=True, dtype=F32))).astype(F32),)


@op("squeeze_last")
def _squeeze_last(node, xs, t):
    return (xs[0][:, 0],)


@op("softmax")
def _softmax(node, xs, t):
    z = xs[0] - xs[0].max(axis=-1, keepdims=True)
    e = np.exp(z)
    return ((e / e.sum(axis=-1, keepdims=True)).astype(F32),)


@op("argmax")
def _argmax(node, xs, t):
    return (np.argmax(xs[0], axis=-1).astype(np.int64),)


@op("split")
def _split(node, xs, t):
    return tuple(np.split(xs[0], np.cumsum(node.attrs["sizes"])[:-1], axis=-1))


@op("stack_last")
def _stack_last(node, xs, t):
    return (np.stack(xs, axis=-1),)


@op("round")
def _round(node, xs, t):
    return (np.round(xs[0]).astype(xs[0].dtype),)  # NumPy rounds half to even, as tf.round


@op("exp_broadcast")
def _exp_broadcast(node, xs, t):
    return (np.exp(xs[0] * F32(0) + t[node.params["logstd"]]).astype(F32),)


@op("clip_value")
def _clip_value(node, xs, t):
    return (np.clip(xs[0], F32(node.attrs["lo"]), F32(node.attrs["hi"])),)


@op("clip_box")
def _clip_box(node, xs, t):
    return (np.clip(xs[0], t[node.params["low"]], t[node.params["high"]]),)


@op("unscale_box")
def _unscale_box(node, xs, t):
    low, high = t[node.params["low"]], t[node.params["high"]]
    return ((low + (F32(0.5) * (xs[0] + F32(1.0)) * (high - low))).astype(F32),)


class NumpyPolicy:
    """Runs a PolicySpec; `run` returns every tensor the outputs name."""

    name = "numpy"

    def __init__(self, spec: PolicySpec):
        require_ops(spec, OP_IMPLS, "numpy")
        self.spec = spec
        # float32 like TF1, except the statistics SB2's VecNormalize applies in float64.
        keep64 = {key for n in spec.nodes for role, key in n.params.items()
                  if role in FLOAT64_PARAMS.get(n.op, ())}
        self.tensors = {k: (np.asarray(v, np.float64) if k in keep64 else
                            np.asarray(v, F32) if v.dtype.kind == "f" else v)
                        for k, v in spec.tensors.items()}

    def forward(self, obs, state=None, mask=None) -> dict[str, object]:
        """Every tensor of the program, by name."""
        env: dict[str, object] = {"obs": obs}
        if self.spec.recurrent:
            env["state"], env["mask"] = np.asarray(state, F32), np.asarray(mask, F32)
        for node in self.spec.nodes:
            results = OP_IMPLS[node.op](node, [env[i] for i in node.inputs], self.tensors)
            env.update(zip(node.outputs, results))
        return env

    def run(self, obs: np.ndarray, state: np.ndarray | None = None, mask: np.ndarray | None = None,
            outputs: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        env = self.forward(obs, state, mask)
        wanted = outputs or tuple(self.spec.outputs)
        return {k: env[self.spec.outputs[k]] for k in wanted if k in self.spec.outputs}

    def sample(self, obs, state=None, mask=None, rng: np.random.Generator | None = None) -> np.ndarray:
        """A stochastic action, drawn the way SB2's distributions draw it."""
        from .sampling import sample
        env = self.forward(obs, state, mask)
        return sample(self.spec, lambda name: env[name], rng or np.random.default_rng())
