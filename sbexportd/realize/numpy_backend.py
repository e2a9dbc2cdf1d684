"""The reference backend: the spec evaluated with NumPy alone. Every other backend
and every export is checked against this one.

It evaluates a spec in one of two arithmetics:

- TF1 (the default): float32 the way TensorFlow 1.15 computed it, its fast tanh and
  its order of summation in matrix products included (tf1_arith.py). This is the
  judge's answer, and the NumPy backend's.
- EXACT: the same function in float64 with exact elementwise functions, an estimate
  of the real-number result. The distance between the two is how far TF1's own
  float32 evaluation strayed from the exact answer, which bounds what a correct
  float32 export may differ by (parity.py).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BackendUnavailable
from ..registry import Registry
from ..understand.spec import FLOAT64_PARAMS, Node, PolicySpec
from . import tf1_arith
from .backends import Backend

F32, F64 = np.float32, np.float64


@dataclass(frozen=True)
class Arithmetic:
    name: str
    dtype: type                                      # every floating tensor is held in this type
    matmul: Callable[[np.ndarray, np.ndarray], np.ndarray]
    tanh: Callable[[np.ndarray], np.ndarray]


TF1 = Arithmetic("tf1", F32, tf1_arith.matmul, tf1_arith.tanh)
EXACT = Arithmetic("exact", F64, lambda x, w: np.asarray(x, F64) @ np.asarray(w, F64), np.tanh)

Impl = Callable[[Node, list, dict, Arithmetic], tuple]
OP_IMPLS: Registry[Impl] = Registry("numpy op", BackendUnavailable)
op = OP_IMPLS.register


def _sigmoid(x, d):
    return (d(1) / (d(1) + np.exp(-x))).astype(d)


def _activations(ar: Arithmetic) -> Registry[Callable[[np.ndarray], np.ndarray]]:
    d = ar.dtype

    def elu(x):
        return np.where(x > 0, x, np.expm1(np.minimum(x, d(0)))).astype(d)
    return Registry(f"numpy activation ({ar.name})", BackendUnavailable, [
        ("identity", lambda x: x),
        ("relu", lambda x: np.maximum(x, d(0))),
        ("tanh", ar.tanh),
        ("sigmoid", lambda x: _sigmoid(x, d)),
        ("elu", elu),
        ("softplus", lambda x: (np.maximum(x, d(0)) + np.log1p(np.exp(-np.abs(x)))).astype(d)),
        ("softsign", lambda x: (x / (d(1) + np.abs(x))).astype(d)),
        ("relu6", lambda x: np.clip(x, d(0), d(6))),
        ("selu", lambda x: (d(1.0507009873554805) * np.where(
            x > 0, x, d(1.6732632423543772) * np.expm1(np.minimum(x, d(0))))).astype(d)),
        ("leaky_relu", lambda x: np.where(x > 0, x, d(0.2) * x).astype(d)),
        ("swish", lambda x: (x * _sigmoid(x, d)).astype(d)),
    ])


ACTIVATION_FNS = {TF1.name: _activations(TF1), EXACT.name: _activations(EXACT)}


@op("cast_float")
def _cast_float(node, xs, t, ar):
    return (np.asarray(xs[0]).astype(node.attrs.get("via", "float32")).astype(ar.dtype),)


@op("one_hot")
def _one_hot(node, xs, t, ar):
    idx = np.asarray(xs[0]).astype(np.int64).reshape(-1)
    n = node.attrs["n"]
    out = np.zeros((idx.shape[0], n), ar.dtype)
    valid = (idx >= 0) & (idx < n)  # tf.one_hot gives all zeros out of range
    out[np.nonzero(valid)[0], idx[valid]] = 1
    return (out,)


@op("multi_one_hot")
def _multi_one_hot(node, xs, t, ar):
    x = np.asarray(xs[0]).astype(np.int64).reshape(-1, len(node.attrs["nvec"]))
    parts = [_one_hot(type(node)("one_hot", (), (), {"n": n}), [x[:, i]], t, ar)[0]
             for i, n in enumerate(node.attrs["nvec"])]
    return (np.concatenate(parts, axis=-1),)


@op("scale_box")
def _scale_box(node, xs, t, ar):
    return (((xs[0] - t[node.params["low"]]) / t[node.params["range"]]).astype(ar.dtype),)


@op("vecnormalize")
def _vecnormalize(node, xs, t, ar):
    # SB2's VecNormalize runs in NumPy float64 whatever the arithmetic; its result is
    # what the policy's float32 placeholder was fed.
    x = np.asarray(xs[0], np.float64)
    mean, var = t[node.params["mean"]], t[node.params["var"]]
    clip = node.attrs["clip"]
    y = np.clip((x - mean) / np.sqrt(var + node.attrs["eps"]), -clip, clip)
    return (y.astype(F32).astype(ar.dtype),)


@op("running_norm")
def _running_norm(node, xs, t, ar):
    y = (xs[0] - t[node.params["mean"]]) / t[node.params["std"]]
    return (np.clip(y, ar.dtype(node.attrs["lo"]), ar.dtype(node.attrs["hi"])).astype(ar.dtype),)


@op("concat_dict")
def _concat_dict(node, xs, t, ar):
    return (np.concatenate([np.asarray(xs[0][k], F32).astype(ar.dtype) for k in node.attrs["keys"]], axis=-1),)


@op("flatten")
def _flatten(node, xs, t, ar):
    return (xs[0].reshape(xs[0].shape[0], -1),)


@op("dense")
def _dense(node, xs, t, ar):
    return ((ar.matmul(xs[0], t[node.params["w"]]) + t[node.params["b"]]).astype(ar.dtype),)


@op("conv2d")
def _conv2d(node, xs, t, ar):
    x, w, b = xs[0], t[node.params["w"]], t[node.params["b"]]
    s = node.attrs["stride"]
    kh, kw, _, _ = w.shape
    n, h, wd, c = x.shape
    oh, ow = (h - kh) // s + 1, (wd - kw) // s + 1
    # im2col with strided views: (n, oh, ow, kh, kw, c) @ (kh*kw*c, out)
    sn, sh, sw, sc = x.strides
    cols = np.lib.stride_tricks.as_strided(
        x, (n, oh, ow, kh, kw, c), (sn, sh * s, sw * s, sh, sw, sc), writeable=False)
    y = ar.matmul(cols.reshape(n * oh * ow, kh * kw * c), w.reshape(kh * kw * c, -1))
    return ((y.reshape(n, oh, ow, -1) + b).astype(ar.dtype),)


@op("activation")
def _activation(node, xs, t, ar):
    return (ACTIVATION_FNS[ar.name][node.attrs["fn"]](xs[0]).astype(ar.dtype),)


@op("exp")
def _exp(node, xs, t, ar):
    return (np.exp(xs[0]).astype(ar.dtype),)


@op("layer_norm")
def _layer_norm(node, xs, t, ar):
    x, d = xs[0], ar.dtype
    axes = tuple(range(1, x.ndim))
    mean = x.mean(axis=axes, keepdims=True, dtype=d)
    var = np.square(x - mean).mean(axis=axes, keepdims=True, dtype=d)
    inv = (d(1) / np.sqrt(var + d(node.attrs["eps"]))) * t[node.params["gamma"]]
    return ((x * inv + (t[node.params["beta"]] - mean * inv)).astype(d),)


def _ln(x, gain, bias, d):
    """tf_layers._ln: SB2's own layer norm inside LN-LSTMs (eps 1e-5)."""
    mean = x.mean(axis=1, keepdims=True, dtype=d)
    var = np.square(x - mean).mean(axis=1, keepdims=True, dtype=d)
    return ((x - mean) / np.sqrt(var + d(1e-5)) * gain + bias).astype(d)


@op("lstm")
def _lstm(node, xs, t, ar):
    x, state, mask = xs
    d = ar.dtype
    p = {role: t[name] for role, name in node.params.items()}
    n = node.attrs["n_hidden"]
    keep = (d(1) - np.asarray(mask, d).reshape(-1, 1))
    c, h = state[:, :n] * keep, state[:, n:] * keep
    if node.attrs["layer_norm"]:
        gates = _ln(ar.matmul(x, p["wx"]), p["gx"], p["bx"], d) + _ln(ar.matmul(h, p["wh"]), p["gh"], p["bh"], d) \
            + p["b"]
    else:
        gates = ar.matmul(x, p["wx"]) + ar.matmul(h, p["wh"]) + p["b"]
    i, f, o, u = np.split(gates.astype(d), 4, axis=1)
    c = _sigmoid(f, d) * c + _sigmoid(i, d) * ar.tanh(u)
    hc = _ln(c, p["gc"], p["bc"], d) if node.attrs["layer_norm"] else c
    h = _sigmoid(o, d) * ar.tanh(hc)
    return h.astype(d), np.concatenate([c, h], axis=1).astype(d)


@op("frame_stack")
def _frame_stack(node, xs, t, ar):
    x, state, mask = xs
    n, frame = node.attrs["n"], tuple(node.attrs["frame"])
    b = np.shape(x)[0]
    keep = (F32(1) - np.asarray(mask, F32)).reshape((b,) + (1,) * len(frame))
    prev = np.asarray(state, F32).reshape((b, *frame[:-1], frame[-1] * (n - 1))) * keep
    stacked = np.concatenate([prev, np.asarray(x).astype(F32)], axis=-1)
    return stacked.astype(ar.dtype), stacked[..., frame[-1]:].reshape(b, -1).astype(ar.dtype)


@op("concat")
def _concat(node, xs, t, ar):
    return (np.concatenate(xs, axis=-1),)


@op("dueling")
def _dueling(node, xs, t, ar):
    a, v = xs
    return ((v + (a - a.mean(axis=1, keepdims=True, dtype=ar.dtype))).astype(ar.dtype),)


@op("squeeze_last")
def _squeeze_last(node, xs, t, ar):
    return (xs[0][:, 0],)


@op("softmax")
def _softmax(node, xs, t, ar):
    z = xs[0] - xs[0].max(axis=-1, keepdims=True)
    e = np.exp(z)
    return ((e / e.sum(axis=-1, keepdims=True)).astype(ar.dtype),)


@op("argmax")
def _argmax(node, xs, t, ar):
    return (np.argmax(xs[0], axis=-1).astype(np.int64),)


@op("split")
def _split(node, xs, t, ar):
    return tuple(np.split(xs[0], np.cumsum(node.attrs["sizes"])[:-1], axis=-1))


@op("stack_last")
def _stack_last(node, xs, t, ar):
    return (np.stack(xs, axis=-1),)


@op("round")
def _round(node, xs, t, ar):
    return (np.round(xs[0]).astype(xs[0].dtype),)  # NumPy rounds half to even, as tf.round


@op("exp_broadcast")
def _exp_broadcast(node, xs, t, ar):
    return (np.exp(xs[0] * ar.dtype(0) + t[node.params["logstd"]]).astype(ar.dtype),)


@op("clip_value")
def _clip_value(node, xs, t, ar):
    return (np.clip(xs[0], ar.dtype(node.attrs["lo"]), ar.dtype(node.attrs["hi"])),)


@op("clip_box")
def _clip_box(node, xs, t, ar):
    return (np.clip(xs[0], t[node.params["low"]], t[node.params["high"]]),)


@op("unscale_box")
def _unscale_box(node, xs, t, ar):
    low, high = t[node.params["low"]], t[node.params["high"]]
    d = ar.dtype
    return ((low + (d(0.5) * (xs[0] + d(1.0)) * (high - low))).astype(d),)


class NumpyPolicy(Backend):
    """Runs a PolicySpec; `forward` gives every tensor of the program."""

    name = "numpy"

    def __init__(self, spec: PolicySpec, arithmetic: Arithmetic = TF1):
        OP_IMPLS.require(n.op for n in spec.nodes)
        self.spec = spec
        self.arithmetic = arithmetic
        # The arithmetic's type (float32 like TF1), except the statistics SB2's
        # VecNormalize applies in float64.
        keep64 = {key for n in spec.nodes for role, key in n.params.items()
                  if role in FLOAT64_PARAMS.get(n.op, ())}
        self.tensors = {k: (np.asarray(v, np.float64) if k in keep64 else
                            np.asarray(v, F32).astype(arithmetic.dtype) if v.dtype.kind == "f" else v)
                        for k, v in spec.tensors.items()}

    def forward(self, obs, state=None, mask=None) -> dict[str, Any]:
        """Every tensor of the program, by name (a goal observation's obs: a dict of arrays)."""
        d = self.arithmetic.dtype
        env: dict[str, Any] = {"obs": obs}
        if self.spec.stateful:
            env["state"], env["mask"] = np.asarray(state, F32).astype(d), np.asarray(mask, F32).astype(d)
        for node in self.spec.nodes:
            results = OP_IMPLS[node.op](node, [env[i] for i in node.inputs], self.tensors, self.arithmetic)
            env.update(zip(node.outputs, results, strict=True))
        return env

