"""PolicySpec -> the source of a readable, standalone PyTorch module (`policy.py`)
and the state_dict that goes with it.

The generated file imports only torch (and the standard library). It holds one
class `Policy(nn.Module)` whose `forward(obs[, state, mask])` returns a
`Dict[str, Tensor]` keyed by the export convention's output names
(sbexportd.export.conventions), and is written so that `torch.jit.script` accepts
it (dynamic batch, dict outputs).

Every op of spec.OPS has one emitter in `EMITTERS` (a registry, like onnx2torch's
converters). An emitter declares what the op needs in `__init__` (real layers where
PyTorch has them: nn.Linear, nn.Conv2d; small written-out modules where SB2's
arithmetic differs from PyTorch's: LayerNorm, LSTMCell, LnLSTMCell) and writes its
lines of `forward`. Layout decisions:

- dense: SB2 keeps w as (in, out); nn.Linear's weight is the transpose.
- conv2d: SB2 is NHWC with HWIO kernels; nn.Conv2d is NCHW with OIHW kernels. A
  conv stack is entered with one NHWC -> NCHW permute, and any other op reading a
  conv output (flatten, above all) gets it back in NHWC first: SB2's feature order
  (realize/layout.py, the torch backend's rule too).
- vecnormalize computes in float64 (SB2's VecNormalize did), buffers in float64.
- Constants (space bounds, normalization statistics) are buffers; trained SB2
  variables are parameters. Both are in the state_dict.
"""
from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import TargetUnavailable
from ..realize.layout import Layout
from ..registry import Registry
from ..understand.spec import Box, Discrete, MultiBinary, MultiDiscrete, Node, PolicySpec
from .conventions import io, output_names

Emitter = Callable[["Gen", int, Node], None]
EMITTERS: Registry[Emitter] = Registry("PyTorch emitter", TargetUnavailable)
emitter = EMITTERS.register

TORCH_DTYPES = ("float16", "float32", "float64", "uint8", "int8", "int16", "int32", "int64", "bool")
# names the generated forward uses or that would shadow something it needs
RESERVED = {"self", "torch", "nn", "F", "Dict", "List", "Tuple", "Optional", "Path", "Policy", "LayerNorm",
            "LSTMCell", "LnLSTMCell", "one_hot", "ln", "load", "example_inputs", "obs", "state", "mask"}


@dataclass
class Generated:
    source: str                                  # policy.py
    state_dict: dict[str, np.ndarray]            # key -> array, in the layout the module holds it
    sb2_names: dict[str, str]                    # key -> SB2 tensor it comes from (and how)
    outputs: list[str]                           # forward's dict keys, in the convention's order
    dict_obs: bool = False                       # obs is a goal dict (concat_dict)


# --- helpers for the emitters -------------------------------------------------------------
def _num(v: Any) -> str:
    """A float literal the generated code (and TorchScript) reads back exactly."""
    v = float(v)
    if np.isnan(v):
        return 'float("nan")'
    if np.isinf(v):
        return 'float("inf")' if v > 0 else '-float("inf")'
    return repr(v)


def _ident(text: str) -> str:
    name = re.sub(r"\W", "_", text).strip("_") or "t"
    name = re.sub(r"_+", "_", name)
    return name if re.match(r"[A-Za-z_]", name) else "t_" + name


def _short(key: str) -> str:
    """'model/pi_fc0/w:0' -> 'model/pi_fc0/w'; 'model/c1/b:0#flat' -> 'model/c1/b'."""
    return re.sub(r":\d+$", "", key.split("#", 1)[0])


def _scope(key: str) -> str:
    """The SB2 scope of a weight: 'model/pi_fc0/w:0' -> 'model/pi_fc0'."""
    short = _short(key)
    return short.rsplit("/", 1)[0] if "/" in short else short


def _attr_hint(scope_or_key: str) -> str:
    """A readable attribute name: SB2's leading 'model/' (or 'deepq/model/') dropped."""
    s = _short(scope_or_key)
    s = re.sub(r"^(deepq/)?model/", "", s)
    return _ident(s)


def _values_comment(a: np.ndarray) -> str:
    a = np.asarray(a)
    if a.size == 0 or a.size > 8:
        return f"{a.dtype.name} {list(a.shape)}"
    flat = a.astype(np.float64).ravel()
    if np.all(flat == flat[0]):
        return f"{a.dtype.name} {list(a.shape)}, all {flat[0]:.7g}"
    return f"{a.dtype.name} [" + ", ".join(f"{v:.7g}" for v in flat) + "]"


def _infer_shapes(spec: PolicySpec) -> dict[str, tuple[int, ...]]:
    """Per-sample shape of every tensor, from one NumPy reference run (for comments)."""
    from ..realize.numpy_backend import NumpyPolicy
    from .conventions import sample_inputs
    feeds: dict[str, Any]
    try:
        if spec.goal_observation is not None and _reads_dict_obs(spec):
            feeds = {"obs": {k: np.zeros((2, *s.shape), np.float32) for k, s in spec.goal_observation.spaces}}
        else:
            feeds = sample_inputs(spec, 2, 0)
        env = NumpyPolicy(spec).forward(feeds["obs"], feeds.get("state"), feeds.get("mask"))
    except Exception:  # noqa: BLE001 - shapes only feed comments
        return {}
    return {k: tuple(np.shape(v))[1:] for k, v in env.items() if not isinstance(v, dict)}


def _reads_dict_obs(spec: PolicySpec) -> bool:
    return any(n.op == "concat_dict" and "obs" in n.inputs for n in spec.nodes)


# --- the generator state ------------------------------------------------------------------
@dataclass
class Gen:
    spec: PolicySpec
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    init: list[str] = field(default_factory=list)        # lines of __init__ (after super().__init__())
    body: list[str] = field(default_factory=list)        # lines of forward
    var: dict[str, str] = field(default_factory=dict)    # spec tensor -> local name
    taken: set[str] = field(default_factory=set)         # local names in use
    attrs: set[str] = field(default_factory=set)         # module attributes in use
    made: dict[tuple, str] = field(default_factory=dict)  # (kind, keys...) -> attribute
    state: dict[str, np.ndarray] = field(default_factory=dict)
    sb2: dict[str, str] = field(default_factory=dict)
    helpers: set[str] = field(default_factory=set)       # module-level helpers the file needs
    layout: Layout = field(default_factory=Layout)       # tensors held NCHW (the spec's are NHWC)
    skip: set[int] = field(default_factory=set)          # node indices folded into an earlier line
    consumers: dict[str, int] = field(default_factory=dict)
    public: dict[str, list[str]] = field(default_factory=dict)  # tensor -> its export names

    def __post_init__(self):
        for node in self.spec.nodes:
            for name in node.inputs:
                self.consumers[name] = self.consumers.get(name, 0) + 1
        for export, key in output_names(self.spec):
            tensor = self.spec.outputs[key]
            self.public.setdefault(tensor, []).append(export)
            self.consumers[tensor] = self.consumers.get(tensor, 0) + 1
        self.var.update(obs="obs", state="state", mask="mask")
        self.taken.update(RESERVED)

    # -- names ------------------------------------------------------------------------------
    def _free(self, hint: str, taken: set[str]) -> str:
        base = _ident(hint)
        if keyword.iskeyword(base) or hasattr(builtins, base) or base in RESERVED:
            base += "_"
        name, i = base, 1
        while name in taken:
            i += 1
            name = f"{base}_{i}"
        taken.add(name)
        return name

    def local(self, tensor: str, hint: str | None = None) -> str:
        """The local variable holding `tensor` (named after its export name when public)."""
        if tensor in self.var:
            return self.var[tensor]
        if tensor in self.public:
            name = self.public[tensor][0]
            hint = "state_out" if name == "state" else name
        elif hint is None:
            hint = tensor.rsplit(":", 1)[0].rsplit("/", 1)[-1]
        self.var[tensor] = self._free(hint, self.taken)
        return self.var[tensor]

    def attr(self, hint: str) -> str:
        taken = self.attrs | set(dir(object)) | {"training", "forward", "eval", "train", "to", "cpu",
                                                         "cuda", "float", "double", "half", "type", "state_dict",
                                                         "parameters", "buffers", "children", "modules", "apply",
                                                         "zero_grad", "register_buffer", "register_parameter",
                                                         "dump_patches", "call_super_init", "T_destination"}
        name = self._free(hint, set(taken))
        self.attrs.add(name)
        return name

    # -- reading tensors ----------------------------------------------------------------------
    def ref(self, tensor: str, op: str = "") -> str:
        """An expression for `tensor` as `op` reads it: permuted where the layout says
        (op "": in the spec's layout)."""
        name = self.var[tensor]
        perm = self.layout.permutation(op, tensor)
        return f"{name}.permute{perm}" if perm else name

    def inputs(self, node: Node) -> list[str]:
        return [self.ref(t, node.op) for t in node.inputs]

    # -- declaring state ----------------------------------------------------------------------
    def tensor(self, key: str, what: str = "", dtype: str | None = None) -> str:
        """A spec tensor as a parameter (a trained SB2 variable) or a buffer (a constant);
        returns `self.<name>`."""
        value = np.asarray(self.spec.tensors[key])
        if dtype is None:
            dtype = "float32" if value.dtype.kind == "f" else value.dtype.name
        made_key = ("tensor", key, dtype)
        if made_key not in self.made:
            name = self.attr(_attr_hint(key))
            data = value.astype(dtype)
            trained = key in self.spec.sb2_params and data.dtype.kind == "f"
            shape = "(" + ", ".join(str(d) for d in data.shape) + ("," if data.ndim == 1 else "") + ")"
            ctor = f"torch.zeros({shape})" if dtype == "float32" else f"torch.zeros({shape}, dtype=torch.{dtype})"
            if trained:
                self.init.append(f"# {what or _short(key)}: {_short(key)}")
                self.init.append(f"self.{name} = nn.Parameter({ctor})")
            else:
                self.init.append(f"# {what or _short(key)}: {_values_comment(data)}")
                self.init.append(f'self.register_buffer("{name}", {ctor})')
            self.state[name] = np.ascontiguousarray(data)
            self.sb2[name] = key
            self.made[made_key] = name
        return f"self.{self.made[made_key]}"

    def module(self, made_key: tuple, hint: str, comment: str, ctor: str,
               tensors: dict[str, tuple[np.ndarray, str]]) -> str:
        """A submodule `self.<name> = ctor`, whose state_dict entries are `tensors`
        (suffix -> (array, where it comes from in SB2))."""
        if made_key not in self.made:
            name = self.attr(hint)
            self.init.append(f"# {comment}")
            self.init.append(f"self.{name} = {ctor}")
            for suffix, (value, source) in tensors.items():
                self.state[f"{name}.{suffix}"] = np.ascontiguousarray(value)
                self.sb2[f"{name}.{suffix}"] = source
            self.made[made_key] = name
        return f"self.{self.made[made_key]}"

    # -- writing forward ------------------------------------------------------------------------
    def comment(self, text: str) -> None:
        self.body.append(f"# {text}")

    def assign(self, tensor: str, expr: str, hint: str | None = None) -> str:
        name = self.local(tensor, hint)
        self.body.append(f"{name} = {expr}")
        return name

    def alias(self, tensor: str, of: str) -> None:
        self.var[tensor] = self.var[of]

    def fused_activation(self, i: int) -> Node | None:
        """The activation right after node i when it is the only reader of node i's
        output (then both are one line)."""
        nodes = self.spec.nodes
        node = nodes[i]
        if i + 1 >= len(nodes) or len(node.outputs) != 1:
            return None
        nxt = nodes[i + 1]
        out = node.outputs[0]
        if nxt.op == "activation" and nxt.inputs == (out,) and self.consumers.get(out, 0) == 1:
            self.skip.add(i + 1)
            return nxt
        return None

    def shape(self, tensor: str) -> tuple[int, ...] | None:
        return self.shapes.get(tensor)


# --- activations -------------------------------------------------------------------------------
ACTIVATION_EXPR: Registry[str] = Registry("PyTorch activation", TargetUnavailable, [
    ("identity", "{x}"),
    ("relu", "torch.relu({x})"),
    ("tanh", "torch.tanh({x})"),
    ("sigmoid", "torch.sigmoid({x})"),
    ("elu", "F.elu({x})"),
    ("softplus", "F.softplus({x})"),
    ("softsign", "F.softsign({x})"),
    ("relu6", "F.relu6({x})"),
    ("selu", "F.selu({x})"),
    ("leaky_relu", "F.leaky_relu({x}, 0.2)"),     # tf.nn.leaky_relu's default alpha
    ("swish", "F.silu({x})"),                     # x * sigmoid(x), tf.nn.swish
])


def _act(fn: str, x: str) -> str:
    return ACTIVATION_EXPR[fn].format(x=x)


# --- emitters, one per op -----------------------------------------------------------------------
@emitter("cast_float")
def _cast_float(g: Gen, i: int, node: Node) -> None:
    (x,) = g.inputs(node)
    via = str(node.attrs.get("via", "float32"))
    if via == "float32":
        g.comment("observation as float32")
        expr = f"{x}.to(torch.float32)"
    elif via in TORCH_DTYPES:
        g.comment(f"observation through SB2's {via} placeholder, then float32")
        expr = f"{x}.to(torch.{via}).to(torch.float32)"
    else:  # torch has no such dtype; the runner widens it, values are kept
        g.comment(f"observation as float32 (SB2's placeholder was {via})")
        expr = f"{x}.to(torch.float32)"
    g.assign(node.outputs[0], expr, hint="obs_float")


@emitter("one_hot")
def _one_hot(g: Gen, i: int, node: Node) -> None:
    (x,) = g.inputs(node)
    n = int(node.attrs["n"])
    g.helpers.add("one_hot")
    g.comment(f"Discrete observation: one-hot of {n} (all zeros outside [0, {n}), as tf.one_hot)")
    g.assign(node.outputs[0], f"one_hot({x}.reshape(-1), {n})", hint="obs_onehot")


@emitter("multi_one_hot")
def _multi_one_hot(g: Gen, i: int, node: Node) -> None:
    (x,) = g.inputs(node)
    nvec = [int(n) for n in node.attrs["nvec"]]
    g.helpers.add("one_hot")
    g.comment(f"MultiDiscrete observation: one one-hot per component {nvec}, concatenated")
    idx = g.assign(node.outputs[0] + "#idx", f"{x}.reshape(-1, {len(nvec)})", hint="obs_idx")
    parts = ", ".join(f"one_hot({idx}[:, {j}], {n})" for j, n in enumerate(nvec))
    g.assign(node.outputs[0], f"torch.cat([{parts}], dim=-1)", hint="obs_onehot")


@emitter("scale_box")
def _scale_box(g: Gen, i: int, node: Node) -> None:
    (x,) = g.inputs(node)
    low = g.tensor(node.params["low"], "observation space low")
    if "range" in node.params:
        rng = g.tensor(node.params["range"], "observation space high - low")
    else:
        rng = f"({g.tensor(node.params['high'], 'observation space high')} - {low})"
    g.comment("scale the observation into [0, 1]: (obs - low) / (high - low)")
    g.assign(node.outputs[0], f"({x} - {low}) / {rng}", hint="obs_scaled")


@emitter("vecnormalize")
def _vecnormalize(g: Gen, i: int, node: Node) -> None:
    (x,) = g.inputs(node)
    mean = g.tensor(node.params["mean"], "VecNormalize mean (float64, as SB2)", "float64")
    var = g.tensor(node.params["var"], "VecNormalize variance (float64, as SB2)", "float64")
    eps, clip = _num(node.attrs["eps"]), _num(node.attrs["clip"])
    g.comment(f"VecNormalize: clip((obs - mean) / sqrt(var + {eps}), -{clip}, {clip}), in float64 as SB2 did")
    z = g.assign(node.outputs[0] + "#z", f"({x}.to(torch.float64) - {mean}) / torch.sqrt({var} + {eps})",
                 hint="z64")
    g.assign(node.outputs[0], f"torch.clamp({z}, -{clip}, {clip}).to(torch.float32)", hint="obs_norm")


@emitter("running_norm")
def _running_norm(g: Gen, i: int, node: Node) -> None:
    (x,) = g.inputs(node)
    mean = g.tensor(node.params["mean"], "DDPG observation mean")
    std = g.tensor(node.params["std"], "DDPG observation std")
    lo, hi = _num(node.attrs["lo"]), _num(node.attrs["hi"])
    g.comment(f"DDPG's observation normalization: clip((obs - mean) / std, {lo}, {hi})")
    g.assign(node.outputs[0], f"torch.clamp(({x} - {mean}) / {std}, {lo}, {hi})", hint="obs_norm")


@emitter("concat_dict")
def _concat_dict(g: Gen, i: int, node: Node) -> None:
    src = g.var[node.inputs[0]]
    keys = [str(k) for k in node.attrs["keys"]]
    g.comment(f"goal observation: the dict's {', '.join(keys)}, concatenated in that order")
    parts = ", ".join(f'{src}["{k}"].to(torch.float32)' for k in keys)
    g.assign(node.outputs[0], f"torch.cat([{parts}], dim=-1)", hint="obs_flat")


@emitter("flatten")
def _flatten(g: Gen, i: int, node: Node) -> None:
    t = node.inputs[0]
    if t in g.layout:
        g.comment("flatten in SB2's order: back from NCHW to NHWC first")
    g.assign(node.outputs[0], f"torch.flatten({g.ref(t, node.op)}, 1)", hint="flat")


@emitter("dense")
def _dense(g: Gen, i: int, node: Node) -> None:
    wkey, bkey = node.params["w"], node.params["b"]
    w, b = np.asarray(g.spec.tensors[wkey], np.float32), np.asarray(g.spec.tensors[bkey], np.float32)
    n_in, n_out = (int(d) for d in w.shape)
    scope = _scope(wkey)
    layer = g.module(("dense", wkey, bkey), _attr_hint(scope), f"{scope}: dense {n_in} -> {n_out}",
                     f"nn.Linear({n_in}, {n_out})",
                     {"weight": (w.T, f"{wkey} transposed (SB2 keeps (in, out))"), "bias": (b, bkey)})
    (x,) = g.inputs(node)
    act = g.fused_activation(i)
    expr = f"{layer}({x})"
    fn = act.attrs["fn"] if act is not None else None
    g.comment(f"{scope}: dense {n_in} -> {n_out}" + (f", {fn}" if fn and fn != "identity" else ""))
    if act is None:
        g.assign(node.outputs[0], expr, hint=_attr_hint(scope))
    else:
        g.assign(act.outputs[0], _act(act.attrs["fn"], expr), hint=_attr_hint(scope))


@emitter("conv2d")
def _conv2d(g: Gen, i: int, node: Node) -> None:
    wkey, bkey = node.params["w"], node.params["b"]
    w, b = np.asarray(g.spec.tensors[wkey], np.float32), np.asarray(g.spec.tensors[bkey], np.float32)
    kh, kw, c_in, c_out = (int(d) for d in w.shape)
    stride = int(node.attrs["stride"])
    scope = _scope(wkey)
    kernel = str(kh) if kh == kw else f"({kh}, {kw})"
    layer = g.module(("conv2d", wkey, bkey), _attr_hint(scope),
                     f"{scope}: conv {kh}x{kw}, stride {stride}, {c_in} -> {c_out} channels (VALID)",
                     f"nn.Conv2d({c_in}, {c_out}, kernel_size={kernel}, stride={stride})",
                     {"weight": (w.transpose(3, 2, 0, 1), f"{wkey} as OIHW (SB2 keeps HWIO)"),
                      "bias": (b.reshape(c_out), _short(bkey) + ":0 flattened")})
    t = node.inputs[0]
    if g.layout.permutation(node.op, t):
        g.comment("images are NHWC (SB2, TensorFlow); nn.Conv2d takes NCHW: permute once per conv stack")
        x = g.assign(t + "#nchw", g.ref(t, node.op), hint="x_nchw")
    else:
        x = g.var[t]
    act = g.fused_activation(i)
    fn = act.attrs["fn"] if act is not None else None
    shape = g.shape(t)
    sh, sw = shape[:2] if shape and len(shape) == 3 else (None, None)
    size = (f" ({sh}x{sw} -> {(sh - kh) // stride + 1}x{(sw - kw) // stride + 1})"
            if sh is not None and sw is not None else "")
    g.comment(f"{scope}: conv {kh}x{kw}, stride {stride}, {c_in} -> {c_out} channels{size}"
              + (f", {fn}" if fn and fn != "identity" else ""))
    expr = f"{layer}({x})"
    if act is None:
        g.assign(node.outputs[0], expr, hint=_attr_hint(scope))
    else:
        g.assign(act.outputs[0], _act(act.attrs["fn"], expr), hint=_attr_hint(scope))


@emitter("activation")
def _activation(g: Gen, i: int, node: Node) -> None:
    t = node.inputs[0]
    fn = str(node.attrs["fn"])
    if fn == "identity":
        g.alias(node.outputs[0], t)
        return
    g.assign(node.outputs[0], _act(fn, g.ref(t, node.op)), hint=f"{fn}_{g.var[t]}")


@emitter("layer_norm")
def _layer_norm(g: Gen, i: int, node: Node) -> None:
    gkey, bkey = node.params["gamma"], node.params["beta"]
    gamma, beta = np.asarray(g.spec.tensors[gkey], np.float32), np.asarray(g.spec.tensors[bkey], np.float32)
    eps = _num(node.attrs["eps"])
    scope = _scope(gkey)
    g.helpers.add("LayerNorm")
    size = ", ".join(str(d) for d in gamma.shape)
    layer = g.module(("layer_norm", gkey, bkey, eps), _attr_hint(scope),
                     f"{scope}: layer norm over {size} (tf.contrib.layers.layer_norm, eps {eps})",
                     f"LayerNorm({size}, eps={eps})", {"gamma": (gamma, gkey), "beta": (beta, bkey)})
    (x,) = g.inputs(node)
    act = g.fused_activation(i)
    fn = act.attrs["fn"] if act is not None else None
    g.comment(f"{scope}: layer norm" + (f", {fn}" if fn and fn != "identity" else ""))
    expr = f"{layer}({x})"
    if act is None:
        g.assign(node.outputs[0], expr, hint="ln_" + _attr_hint(scope))
    else:
        g.assign(act.outputs[0], _act(act.attrs["fn"], expr), hint="ln_" + _attr_hint(scope))


LSTM_ROLES = ("wx", "wh", "b")
LN_LSTM_ROLES = ("wx", "wh", "b", "gx", "bx", "gh", "bh", "gc", "bc")


@emitter("lstm")
def _lstm(g: Gen, i: int, node: Node) -> None:
    n = int(node.attrs["n_hidden"])
    ln = bool(node.attrs["layer_norm"])
    roles = LN_LSTM_ROLES if ln else LSTM_ROLES
    values = {r: np.asarray(g.spec.tensors[node.params[r]], np.float32) for r in roles}
    n_in = int(values["wx"].shape[0])
    scope = _scope(node.params["wx"])
    cls = "LnLSTMCell" if ln else "LSTMCell"
    g.helpers.add(cls)
    what = "layer-normalized LSTM" if ln else "LSTM"
    layer = g.module(("lstm",) + tuple(node.params[r] for r in roles), _attr_hint(scope),
                     f"{scope}: {what} {n_in} -> {n} (SB2's tf_layers.lstm, one step)",
                     f"{cls}({n_in}, {n})", {r: (values[r], node.params[r]) for r in roles})
    x, state, mask = g.inputs(node)
    g.comment(f"{scope}: {what} {n_in} -> {n}, one step; state = [c, h]; mask 1.0 resets the state first")
    h_name = g.local(node.outputs[0], hint="lstm_h")
    s_name = g.local(node.outputs[1], hint="lstm_state")
    g.body.append(f"{h_name}, {s_name} = {layer}({x}, {state}, {mask}.to(torch.float32))")


@emitter("frame_stack")
def _frame_stack(g: Gen, i: int, node: Node) -> None:
    n, frame = int(node.attrs["n"]), [int(d) for d in node.attrs["frame"]]
    x, state, mask = g.inputs(node)
    size = (n - 1) * int(np.prod(frame))
    g.comment(f"VecFrameStack of {n} frames {frame}: the {n - 1} previous ones come in as state "
              f"(zeroed where mask is 1.0), the new one goes last")
    keep = g.assign(node.outputs[0] + "#keep", f"(1.0 - {mask}.to(torch.float32)).reshape("
                    f"{[-1] + [1] * len(frame)})", hint="keep")
    prev = f"{state}.reshape({[-1, *frame[:-1], frame[-1] * (n - 1)]}) * {keep}"
    stacked = g.assign(node.outputs[0], f"torch.cat([{prev}, {x}.to(torch.float32)], dim=-1)", hint="stacked")
    g.assign(node.outputs[1], f"{stacked}[..., {frame[-1]}:].reshape(-1, {size})", hint="stack_state")


@emitter("concat")
def _concat(g: Gen, i: int, node: Node) -> None:
    g.assign(node.outputs[0], f"torch.cat([{', '.join(g.inputs(node))}], dim=-1)", hint="concat")


@emitter("dueling")
def _dueling(g: Gen, i: int, node: Node) -> None:
    a, v = g.inputs(node)
    g.comment("dueling: Q = V + (A - mean(A))")
    g.assign(node.outputs[0], f"{v} + ({a} - {a}.mean(dim=1, keepdim=True))", hint="q")


# Ops that are one expression of their single input: (expression, variable hint, comment).
UNARY: dict[str, tuple[str, str, str | None]] = {
    "squeeze_last": ("{x}[:, 0]", "squeezed", None),
    "softmax": ("torch.softmax({x}, dim=-1)", "softmax", None),
    "argmax": ("torch.argmax({x}, dim=-1)", "argmax", None),
    "round": ("torch.round({x})", "rounded", "round half to even (tf.round)"),
    "exp": ("torch.exp({x})", "exp", None),
}


def _unary(expr: str, hint: str, comment: str | None):
    def emit(g: Gen, i: int, node: Node) -> None:
        (x,) = g.inputs(node)
        if comment:
            g.comment(comment)
        g.assign(node.outputs[0], expr.format(x=x), hint=hint)
    return emit


for _op, _how in UNARY.items():
    emitter(_op)(_unary(*_how))


@emitter("split")
def _split(g: Gen, i: int, node: Node) -> None:
    (x,) = g.inputs(node)
    sizes = [int(s) for s in node.attrs["sizes"]]
    start = 0
    g.comment(f"split the last axis into {sizes}")
    for j, (out, size) in enumerate(zip(node.outputs, sizes, strict=True)):
        g.assign(out, f"{x}[..., {start}:{start + size}]", hint=f"{x.split('.')[0]}_{j}")
        start += size


@emitter("stack_last")
def _stack_last(g: Gen, i: int, node: Node) -> None:
    g.assign(node.outputs[0], f"torch.stack([{', '.join(g.inputs(node))}], dim=-1)", hint="stacked")


@emitter("exp_broadcast")
def _exp_broadcast(g: Gen, i: int, node: Node) -> None:
    (x,) = g.inputs(node)
    logstd = g.tensor(node.params["logstd"], "log of the Gaussian's std")
    g.comment("std = exp(logstd), one row per observation")
    g.assign(node.outputs[0], f"torch.exp({x} * 0.0 + {logstd})", hint="std")


@emitter("clip_value")
def _clip_value(g: Gen, i: int, node: Node) -> None:
    (x,) = g.inputs(node)
    lo, hi = _num(node.attrs["lo"]), _num(node.attrs["hi"])
    g.comment(f"clip to [{lo}, {hi}]")
    g.assign(node.outputs[0], f"torch.clamp({x}, {lo}, {hi})", hint="clipped")


@emitter("clip_box")
def _clip_box(g: Gen, i: int, node: Node) -> None:
    (x,) = g.inputs(node)
    low = g.tensor(node.params["low"], "action space low")
    high = g.tensor(node.params["high"], "action space high")
    g.comment("clip to the action space")
    g.assign(node.outputs[0], f"torch.minimum(torch.maximum({x}, {low}), {high})", hint="clipped")


@emitter("unscale_box")
def _unscale_box(g: Gen, i: int, node: Node) -> None:
    (x,) = g.inputs(node)
    low = g.tensor(node.params["low"], "action space low")
    high = g.tensor(node.params["high"], "action space high")
    g.comment("from [-1, 1] to the action space: low + 0.5 * (x + 1) * (high - low)")
    g.assign(node.outputs[0], f"{low} + 0.5 * ({x} + 1.0) * ({high} - {low})", hint="unscaled")


# --- module-level helpers of the generated file ---------------------------------------------------
HELPERS: dict[str, str] = {
    "one_hot": '''
def one_hot(x: torch.Tensor, n: int) -> torch.Tensor:
    """tf.one_hot(x, n) as float32: all zeros for an index outside [0, n)."""
    idx = x.to(torch.int64).unsqueeze(-1)
    return (idx == torch.arange(n, dtype=torch.int64, device=x.device)).to(torch.float32)
''',
    "LayerNorm": '''
class LayerNorm(nn.Module):
    """tf.contrib.layers.layer_norm(center=True, scale=True): normalize over every axis
    but the batch, in tf.nn.batch_normalization's arithmetic. Its eps is 1e-12, not
    nn.LayerNorm's 1e-5, hence written out."""

    def __init__(self, size: int, eps: float = 1e-12):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(size))
        self.beta = nn.Parameter(torch.zeros(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = [d for d in range(1, x.dim())]
        mean = x.mean(dim=dims, keepdim=True)
        var = torch.square(x - mean).mean(dim=dims, keepdim=True)
        inv = torch.rsqrt(var + self.eps) * self.gamma
        return x * inv + (self.beta - mean * inv)
''',
    "ln": '''
def ln(x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """stable_baselines.common.tf_layers._ln: the LN-LSTM's own layer norm (eps 1e-5)."""
    mean = x.mean(dim=1, keepdim=True)
    var = torch.square(x - mean).mean(dim=1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * gain + bias
''',
    "LSTMCell": '''
class LSTMCell(nn.Module):
    """One step of stable_baselines.common.tf_layers.lstm. Weights in SB2's layout:
    wx (in, 4n), wh (n, 4n), b (4n,), gates in SB2's order i, f, o, u (not nn.LSTM's
    i, f, g, o). state is [c, h] concatenated: (batch, 2n). A mask of 1.0 (episode
    start) zeroes the state before the step."""

    def __init__(self, n_in: int, n_hidden: int):
        super().__init__()
        self.n_hidden = n_hidden
        self.wx = nn.Parameter(torch.zeros(n_in, 4 * n_hidden))
        self.wh = nn.Parameter(torch.zeros(n_hidden, 4 * n_hidden))
        self.b = nn.Parameter(torch.zeros(4 * n_hidden))

    def forward(self, x: torch.Tensor, state: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        n = self.n_hidden
        keep = 1.0 - mask.reshape(-1, 1)
        c = state[:, :n] * keep
        h = state[:, n:] * keep
        gates = torch.matmul(x, self.wx) + torch.matmul(h, self.wh) + self.b
        i = torch.sigmoid(gates[:, :n])
        f = torch.sigmoid(gates[:, n:2 * n])
        o = torch.sigmoid(gates[:, 2 * n:3 * n])
        u = torch.tanh(gates[:, 3 * n:])
        c = f * c + i * u
        h = o * torch.tanh(c)
        return h, torch.cat([c, h], dim=1)
''',
    "LnLSTMCell": '''
class LnLSTMCell(nn.Module):
    """One step of stable_baselines.common.tf_layers.lstm(layer_norm=True): as
    LSTMCell, with SB2's _ln (eps 1e-5) on x @ wx (gx, bx), on h @ wh (gh, bh) and on
    the cell before its tanh (gc, bc)."""

    def __init__(self, n_in: int, n_hidden: int):
        super().__init__()
        self.n_hidden = n_hidden
        self.wx = nn.Parameter(torch.zeros(n_in, 4 * n_hidden))
        self.wh = nn.Parameter(torch.zeros(n_hidden, 4 * n_hidden))
        self.b = nn.Parameter(torch.zeros(4 * n_hidden))
        self.gx = nn.Parameter(torch.ones(4 * n_hidden))
        self.bx = nn.Parameter(torch.zeros(4 * n_hidden))
        self.gh = nn.Parameter(torch.ones(4 * n_hidden))
        self.bh = nn.Parameter(torch.zeros(4 * n_hidden))
        self.gc = nn.Parameter(torch.ones(n_hidden))
        self.bc = nn.Parameter(torch.zeros(n_hidden))

    def forward(self, x: torch.Tensor, state: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        n = self.n_hidden
        keep = 1.0 - mask.reshape(-1, 1)
        c = state[:, :n] * keep
        h = state[:, n:] * keep
        gates = (ln(torch.matmul(x, self.wx), self.gx, self.bx)
                 + ln(torch.matmul(h, self.wh), self.gh, self.bh) + self.b)
        i = torch.sigmoid(gates[:, :n])
        f = torch.sigmoid(gates[:, n:2 * n])
        o = torch.sigmoid(gates[:, 2 * n:3 * n])
        u = torch.tanh(gates[:, 3 * n:])
        c = f * c + i * u
        h = o * torch.tanh(ln(c, self.gc, self.bc))
        return h, torch.cat([c, h], dim=1)
''',
}
HELPER_ORDER = ("one_hot", "ln", "LayerNorm", "LSTMCell", "LnLSTMCell")


# --- the file --------------------------------------------------------------------------------------
OUTPUT_MEANING = {
    "action": "SB2's predict(deterministic=True)",
    "probs": "action probabilities (SB2's action_probability)",
    "mean": "the Gaussian's mean (SAC: before tanh)",
    "std": "the Gaussian's standard deviation",
    "values": "the critic's value",
    "q_values": "Q(s, a) for every action",
    "state": "the recurrent state to feed back next step",
}


def _space_text(space) -> str:
    d = space.describe()
    kind = d.pop("type")
    return f"{kind} " + ", ".join(f"{k}={v}" for k, v in d.items())


def _example_obs(spec: PolicySpec, dict_obs: bool) -> list[str]:
    """Lines of `example_inputs` that make a random batch from the observation space."""
    space = spec.observation_space
    if dict_obs and spec.goal_observation is not None:
        items = ", ".join(f'"{k}": torch.randn(batch, {", ".join(map(str, s.shape))})'
                          for k, s in spec.goal_observation.spaces)
        return [f"obs = {{{items}}}"]
    dtype = spec.input_dtype if spec.input_dtype in TORCH_DTYPES else "float32"
    if isinstance(space, Discrete):
        return [f"obs = torch.randint(0, {space.n}, (batch,), dtype=torch.{dtype})"]
    if isinstance(space, MultiDiscrete):
        parts = ", ".join(f"torch.randint(0, {k}, (batch,))" for k in space.nvec)
        return [f"obs = torch.stack([{parts}], dim=1).to(torch.{dtype})"]
    if isinstance(space, MultiBinary):
        return [f"obs = torch.randint(0, 2, (batch, {space.n}), dtype=torch.{dtype})"]
    assert isinstance(space, Box)  # the kind left (a goal observation's dict is above)
    dims = ", ".join(["batch"] + [str(d) for d in space.shape])
    low, high = (np.asarray(space.low, np.float64), np.asarray(space.high, np.float64))
    finite = low.size and np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(high - low < 1e6)
    if finite and np.all(low == low.flat[0]) and np.all(high == high.flat[0]):
        lo, hi = float(low.flat[0]), float(high.flat[0])
        if np.dtype(space.dtype).kind in "iu":
            return [f"obs = torch.randint({int(lo)}, {int(hi) + 1}, ({dims},), dtype=torch.{dtype})"]
        return [f"obs = ({_num(lo)} + ({_num(hi - lo)}) * torch.rand({dims})).to(torch.{dtype})"]
    return [f"obs = torch.randn({dims}).to(torch.{dtype})"]


def generate(spec: PolicySpec, *, title: str = "", provenance: str = "") -> Generated:
    """The source of policy.py for `spec` and its state_dict."""
    EMITTERS.require(n.op for n in spec.nodes)
    g = Gen(spec, shapes=_infer_shapes(spec))
    for i, node in enumerate(spec.nodes):
        if i not in g.skip:  # a skipped node was written with the one before it
            EMITTERS[node.op](g, i, node)
        g.layout.record(node.op, node.inputs, node.outputs)

    names = output_names(spec)
    ret = []
    for export, key in names:
        tensor = spec.outputs[key]
        ret.append(f'"{export}": {g.ref(tensor)}')
    dict_obs = _reads_dict_obs(spec)
    inputs, outputs = io(spec)

    def io_line(d: dict, meaning: str) -> str:
        dims = ["batch" if v is None else str(v) for v in d["shape"]]
        shape = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
        return f"    {d['name']:<9} {d['dtype']:<8} {shape:<18} {meaning}".rstrip()

    def out_meaning(name: str) -> str:
        if name.startswith("probs_"):
            return f"probabilities of sub-action {name.split('_')[1]}"
        return OUTPUT_MEANING.get(name, "")

    obs_doc = dict(inputs[0])
    doc = [f"{title or (spec.algo.upper() + ' ' + spec.policy)}.", "",
           "Standalone: this file needs only PyTorch. The weights are in policy.pt, a state_dict",
           "of tensors (torch.load(..., weights_only=True)):", "",
           "    from policy import load",
           "    policy = load(\"policy.pt\")   # Policy() with the weights, for inference",
           "    out = policy(obs" + (", state, mask" if spec.stateful else "") + ")"
           + f"   # {{{', '.join(repr(d['name']) for d in outputs)}}}: plain tensors, .numpy() works", "",
           "Inputs"]
    if dict_obs and spec.goal_observation is not None:
        doc.append("    obs       dict of float32 tensors: "
                   + ", ".join(f"{k} (batch, {', '.join(map(str, s.shape))})" for k, s in spec.goal_observation.spaces))
    else:
        doc.append(io_line(obs_doc, "the raw environment observation"))
    for d in inputs[1:]:
        doc.append(io_line(d, "recurrent state, zeros at the start" if d["name"] == "state"
                           else "1.0 where an episode starts (resets the state)"))
    doc.append("Outputs")
    doc += [io_line(d, out_meaning(d['name'])) for d in outputs]
    doc += ["", f"Observation space: {_space_text(spec.observation_space)}",
            f"Action space: {_space_text(spec.action_space)}"]
    if spec.preprocessing:
        doc.append(f"Preprocessing: {'; '.join(spec.preprocessing)}")
    if spec.postprocessing:
        doc.append(f"Postprocessing: {spec.postprocessing}")
    for note in spec.notes:
        doc.append(f"Note: {note}")
    if provenance:
        doc += ["", provenance]
    doc.append("")
    doc.append("The TorchScript of this module is in policy.torchscript.pt (torch.jit.load).")

    sig = "obs: Dict[str, torch.Tensor]" if dict_obs else "obs: torch.Tensor"
    if spec.stateful:
        sig += ", state: torch.Tensor, mask: torch.Tensor"
    example = _example_obs(spec, dict_obs)
    ex_ret = "obs"
    if spec.stateful:
        example += [f"state = torch.zeros(batch, {spec.state_size})",
                    "mask = torch.ones(batch)  # every row starts an episode"]
        ex_ret = "obs, state, mask"

    lines = ['"""' + doc[0]] + [(d if d else "") for d in doc[1:]] + ['"""']
    lines += ["from pathlib import Path", "from typing import Dict, List, Tuple", "",
              "import torch", "import torch.nn.functional as F", "from torch import nn", "",
              f"INPUTS = {[d['name'] for d in inputs]!r}",
              f"OUTPUTS = {[e for e, _ in names]!r}",
              "# state_dict key -> the SB2 variable it holds (and how)",
              "SB2_NAMES = {"]
    lines += [f"    {k!r}: {v!r}," for k, v in g.sb2.items()]
    lines += ["}", "", ""]
    for h in HELPER_ORDER:
        if h in g.helpers or (h == "ln" and "LnLSTMCell" in g.helpers):
            lines += HELPERS[h].strip("\n").splitlines() + ["", ""]
    args = sig.replace(": torch.Tensor", "").replace(": Dict[str, torch.Tensor]", "")
    lines += ["class Policy(nn.Module):",
              f'    """{title or (spec.algo.upper() + " " + spec.policy)}: forward({args}) -> dict of the outputs."""',
              "", "    def __init__(self):", "        super().__init__()"]
    lines += ["        " + ln for ln in g.init]
    lines += ["", f"    def forward(self, {sig}) -> Dict[str, torch.Tensor]:"]
    lines += ["        " + ln for ln in g.body]
    lines += ["        return {" + ret[0] + ","] + ["                " + r + "," for r in ret[1:]]
    lines[-1] = lines[-1].rstrip(",") + "}"
    if len(ret) == 1:
        lines[-1] = "        return {" + ret[0] + "}"
    lines += ["", "",
              'def load(path: str = "policy.pt", map_location: str = "cpu") -> Policy:',
              '    """Policy() with the weights of `path` (looked up beside this file when it is',
              '    relative and not found), for inference: eval mode, no gradients."""',
              "    p = Path(path)",
              "    if not p.is_absolute() and not p.exists():",
              "        p = Path(__file__).resolve().parent / p",
              "    policy = Policy()",
              "    policy.load_state_dict(torch.load(p, map_location=map_location, weights_only=True))",
              "    return policy.eval().requires_grad_(False)",
              "", "",
              "def example_inputs(batch: int = 3):",
              '    """A random batch of inputs in the observation space (a smoke test, not a real state)."""']
    lines += ["    " + ln for ln in example]
    lines += [f"    return {ex_ret}" if spec.stateful else "    return (obs,)"]
    lines += ["", "",
              'if __name__ == "__main__":',
              "    policy = load()",
              "    out = policy(*example_inputs(3))",
              "    for name, value in out.items():",
              '        print(f"{name:<10} {str(value.dtype):<14} {tuple(value.shape)}  {value[0].tolist()}")',
              ""]
    source = "\n".join(lines)
    compile(source, "policy.py", "exec")  # a generator bug fails here, not in the user's hands
    return Generated(source, dict(g.state), dict(g.sb2), [e for e, _ in names], dict_obs)
