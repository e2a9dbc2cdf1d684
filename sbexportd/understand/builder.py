"""Building a spec program: the blocks SB2's policies are made of.

Each helper appends nodes that compute exactly what the matching SB2 function
computes (named in its docstring), reading weights by their SB2 variable names.
Adapters compose these blocks; they never emit a raw op themselves except for
one-off heads.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import InconsistentParameters
from .spec import Box, Discrete, Layer, MultiBinary, MultiDiscrete, Node, Space


@dataclass
class Program:
    """An append-only program plus the weights it reads."""

    params: dict[str, np.ndarray]
    source: str = ""
    nodes: list[Node] = field(default_factory=list)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    consumed: set[str] = field(default_factory=set)  # SB2 parameters the program accounts for
    summary: list[Layer] = field(default_factory=list)
    _count: int = 0

    # -- plumbing ---------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}:{self._count}"

    def param(self, name: str, shape: tuple[int, ...] | None = None) -> str:
        """Reference an SB2 parameter by its variable name, checking its shape."""
        if name not in self.params:
            raise InconsistentParameters(
                f"the policy needs parameter {name!r}, which the file does not have", self.source)
        value = self.params[name]
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise InconsistentParameters(
                f"parameter {name!r} has shape {list(value.shape)}, the policy needs {list(shape)}",
                self.source)
        self.tensors[name] = value
        self.consumed.add(name)
        return name

    def const(self, name: str, value: np.ndarray) -> str:
        self.tensors[name] = np.asarray(value)
        return name

    def emit(self, op: str, inputs: tuple[str, ...] | list[str], *,
             hint: str | None = None, attrs: dict | None = None, params: dict | None = None) -> str:
        """Append a node with one output; its name."""
        return self.emit_many(op, inputs, outputs=1, hint=hint, attrs=attrs, params=params)[0]

    def emit_many(self, op: str, inputs: tuple[str, ...] | list[str], *, outputs: int | tuple[str, ...],
                  hint: str | None = None, attrs: dict | None = None, params: dict | None = None) -> tuple[str, ...]:
        """Append a node with several outputs (how many, or their names); their names,
        a tuple even for one (a MultiDiscrete of one dimension splits into one part)."""
        if isinstance(outputs, int):
            names = tuple(self.fresh(hint or op) for _ in range(outputs))
        else:
            names = outputs
        self.nodes.append(Node(op, tuple(inputs), names, dict(attrs or {}), dict(params or {})))
        return names

    def has(self, name: str) -> bool:
        return name in self.params

    # -- layers -------------------------------------------------------------------
    def dense(self, x: str, w: str, b: str, in_dim: int, label: str) -> tuple[str, int]:
        """tf_layers.linear / tf.layers.dense / contrib fully_connected: x @ w + b."""
        wv = self.params.get(w)
        if wv is None or wv.ndim != 2:
            raise InconsistentParameters(f"the policy needs a 2-D weight {w!r}", self.source)
        out_dim = int(wv.shape[1])
        self.param(w, (in_dim, out_dim))
        self.param(b, (out_dim,))
        y = self.emit("dense", (x,), hint=label, params={"w": w, "b": b})
        self.summary.append(Layer(label, "dense", f"{in_dim} -> {out_dim}", params=(w, b)))
        return y, out_dim

    def activation(self, x: str, fn: str) -> str:
        if fn == "identity":
            return x
        if self.summary:
            self.summary[-1].activation = fn
        return self.emit("activation", (x,), hint=fn, attrs={"fn": fn})

    def layer_norm(self, x: str, gamma: str, beta: str, dim: int, label: str) -> str:
        """tf.contrib.layers.layer_norm(center=True, scale=True): eps 1e-12."""
        self.param(gamma, (dim,))
        self.param(beta, (dim,))
        self.summary.append(Layer(label, "layer_norm", f"{dim}", params=(gamma, beta)))
        return self.emit("layer_norm", (x,), hint="ln", attrs={"eps": 1e-12},
                         params={"gamma": gamma, "beta": beta})

    def nature_cnn(self, x: str, prefix: str, in_shape: tuple[int, ...]) -> tuple[str, int]:
        """common.policies.nature_cnn: 3 conv (relu) + fc1 512 (relu), NHWC, VALID."""
        if len(in_shape) != 3:
            raise InconsistentParameters(
                f"a CNN policy needs image observations (H, W, C), got shape {list(in_shape)}",
                self.source)
        h, w_, c = in_shape
        for name, _k, stride in (("c1", 8, 4), ("c2", 4, 2), ("c3", 3, 1)):
            wname, bname = f"{prefix}{name}/w:0", f"{prefix}{name}/b:0"
            wv = self.params.get(wname)
            if wv is None or wv.ndim != 4:
                raise InconsistentParameters(f"the CNN needs a 4-D kernel {wname!r}", self.source)
            kh, kw, _, n = (int(d) for d in wv.shape)
            self.param(wname, (kh, kw, c, n))
            bv = self.params.get(bname)
            if bv is None or bv.size != n:
                raise InconsistentParameters(f"the CNN needs a bias {bname!r} of {n} values", self.source)
            # SB2 stores conv biases as [1, n, 1, 1] (one_dim_bias=False) and reshapes
            # them to NHWC [1, 1, 1, n]; the spec keeps a flat (n,) bias.
            flat_b = self.const(bname + "#flat", np.asarray(self.params[bname]).reshape(n))
            self.consumed.add(bname)
            x = self.emit("conv2d", (x,), hint=name, attrs={"stride": stride},
                          params={"w": wname, "b": flat_b})
            h, w_ = (h - kh) // stride + 1, (w_ - kw) // stride + 1
            if h < 1 or w_ < 1:
                raise InconsistentParameters(
                    f"observation {list(in_shape)} is too small for nature_cnn", self.source)
            self.summary.append(Layer(f"{prefix}{name}", "conv2d",
                                      f"{kh}x{kw}/{stride} {c} -> {n} ({h}x{w_})", params=(wname, bname)))
            c = n
            x = self.activation(x, "relu")
        x = self.emit("flatten", (x,))
        y, dim = self.dense(x, f"{prefix}fc1/w:0", f"{prefix}fc1/b:0", h * w_ * c, f"{prefix}fc1")
        return self.activation(y, "relu"), dim

    def lstm(self, x: str, in_dim: int, prefix: str, layer_norm: bool) -> tuple[str, str, int]:
        """common.tf_layers.lstm, one step: returns (hidden, new_state, n_hidden)."""
        wx = self.params.get(f"{prefix}wx:0")
        if wx is None or wx.ndim != 2 or wx.shape[1] % 4:
            raise InconsistentParameters(f"the LSTM needs {prefix}wx:0 of shape (in, 4n)", self.source)
        n = int(wx.shape[1]) // 4
        roles = {"wx": (in_dim, 4 * n), "wh": (n, 4 * n), "b": (4 * n,)}
        if layer_norm:
            roles.update(gx=(4 * n,), bx=(4 * n,), gh=(4 * n,), bh=(4 * n,), gc=(n,), bc=(n,))
        params = {role: self.param(f"{prefix}{role}:0", shape) for role, shape in roles.items()}
        h, state = self.emit_many("lstm", (x, "state", "mask"), outputs=(self.fresh("lstm_h"), self.fresh("state")),
                                  attrs={"n_hidden": n, "layer_norm": layer_norm}, params=params)
        self.summary.append(Layer(prefix.rstrip("/"), "lnlstm" if layer_norm else "lstm",
                                  f"{in_dim} -> {n}", params=tuple(params.values())))
        return h, state, n


# --- observation preprocessing (common.input.observation_input) ---------------------
def input_dtype(space: Space) -> str:
    """The dtype of SB2's observation placeholder: feeding casts to it first."""
    if isinstance(space, Box):
        return space.dtype
    return "int32"


def preprocess(prog: Program, space: Space, scale: bool, x: str = "obs") -> tuple[str, tuple[int, ...], list[str]]:
    """observation_input(ob_space, scale): returns (tensor, per-sample shape, description)."""
    if isinstance(space, Discrete):
        return prog.emit("one_hot", (x,), attrs={"n": space.n}), (space.n,), [f"one-hot({space.n})"]
    if isinstance(space, MultiDiscrete):
        total = int(sum(space.nvec))
        return (prog.emit("multi_one_hot", (x,), attrs={"nvec": list(space.nvec)}), (total,),
                [f"one-hot per component {list(space.nvec)}"])
    if isinstance(space, MultiBinary):
        return prog.emit("cast_float", (x,), attrs={"via": "int32"}), (space.n,), ["cast to float32"]
    if isinstance(space, Box):
        y = prog.emit("cast_float", (x,), attrs={"via": space.dtype})
        steps = ["cast to float32"] if space.dtype != "float32" else []
        low, high = space.low, space.high
        with np.errstate(over="ignore"):  # gym's +-float32 max "unbounded" overflows, as in SB2
            span = high - low  # in the space's own dtype, as SB2 computed it
        if scale and not np.any(np.isinf(low)) and not np.any(np.isinf(high)) and np.any(span != 0):
            lo = prog.const("obs_low", low.astype(np.float32))
            rng = prog.const("obs_range", span.astype(np.float32))
            y = prog.emit("scale_box", (y,), params={"low": lo, "range": rng})
            uniform = np.all(low == low.flat[0]) and np.all(high == high.flat[0])
            steps.append(f"(obs - {float(low.flat[0])}) / {float(span.flat[0])}" if uniform
                         else "(obs - low) / (high - low)")
        return y, space.shape, steps
    raise InconsistentParameters(f"unsupported observation space {space!r}", prog.source)


def flatten(prog: Program, x: str, shape: tuple[int, ...]) -> tuple[str, int]:
    dim = int(np.prod(shape)) if shape else 1
    if len(shape) == 1:
        return x, dim
    return prog.emit("flatten", (x,)), dim


def indexed(params: dict[str, np.ndarray], pattern: str) -> list[int]:
    """Sorted indices i for which params has a name matching pattern % i (as regex)."""
    rx = re.compile(pattern.replace("{i}", r"(\d+)"))
    found = {int(m.group(1)) for name in params if (m := rx.fullmatch(name))}
    return sorted(found)


def contrib_suffixes(params: dict[str, np.ndarray], scope: str, base: str) -> list[str]:
    """TF's uniquified layer scopes in creation order: base, base_1, base_2, ..."""
    rx = re.compile(re.escape(scope) + re.escape(base) + r"(_(\d+))?/")
    found = set()
    for name in params:
        m = rx.match(name)
        if m:
            found.add(int(m.group(2)) if m.group(2) else 0)
    return [base if i == 0 else f"{base}_{i}" for i in sorted(found)]
