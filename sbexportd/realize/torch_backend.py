"""The PyTorch backend: the spec as a `torch.nn.Module` (`SpecModule`).

Weights are registered buffers named after their SB2 variables, sanitized
("model/pi_fc0/w:0" -> "model__pi_fc0__w"); `SpecModule.sb2_names` maps each
buffer back to its SB2 name. Convolution kernels are stored once as OIHW
(SB2 keeps HWIO): a conv stack runs in NCHW and is permuted back to NHWC before
it is flattened (layout.py), so the flattened features are in SB2's order.

`SpecModule.forward(obs[, state, mask])` returns a tuple of the spec's public
outputs in the order of `SpecModule.output_names`; the program is straight-line,
so `torch.jit.trace` records it as is, with a free batch dimension (the
TorchScript exporter relies on that). `torch.jit.script` does not apply: forward
interprets the spec with Python callables; trace it.

Every op has one converter in `CONVERTERS`. Math is float32 except
`vecnormalize` (float64, as SB2's VecNormalize). tanh is PyTorch's own.
PyTorch is imported here only, lazily; `torch.set_num_threads` is left alone.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BackendUnavailable
from ..registry import Registry
from ..understand.spec import FLOAT64_PARAMS, Node, PolicySpec
from .backends import Backend
from .layout import TO_NHWC, Layout

Converter = Callable[[Any, Node, list, dict], tuple]
CONVERTERS: Registry[Converter] = Registry("torch converter", BackendUnavailable)
converter = CONVERTERS.register

if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F
else:
    torch = None  # bound by _import_torch()
    F = None


def _import_torch():
    global torch, F
    if torch is None:
        import torch as _torch
        import torch.nn.functional as _F
        torch, F = _torch, _F
    return torch


_TORCH_DTYPES = ("float16", "float32", "float64", "uint8", "int8", "int16", "int32", "int64", "bool")


def _dtype(name: str):
    return getattr(torch, name) if name in _TORCH_DTYPES else None


# --- converters: (module, node, input tensors, {role: parameter}) -> outputs ----------
def _f32(x):
    return x if x.dtype == torch.float32 else x.to(torch.float32)


@converter("cast_float")
def _cast_float(m, node, xs, p):
    x = xs[0]
    via = _dtype(node.attrs.get("via", "float32"))
    if via is not None and x.dtype != via:
        x = x.to(via)
    return (_f32(x),)


def _one_hot_of(idx, n: int):
    # Zeros for an index out of [0, n), as tf.one_hot (F.one_hot would raise).
    return (idx.unsqueeze(-1) == torch.arange(n, dtype=idx.dtype, device=idx.device)).to(torch.float32)


@converter("one_hot")
def _one_hot(m, node, xs, p):
    return (_one_hot_of(xs[0].to(torch.int64).reshape(-1), int(node.attrs["n"])),)


@converter("multi_one_hot")
def _multi_one_hot(m, node, xs, p):
    nvec = [int(n) for n in node.attrs["nvec"]]
    x = xs[0].to(torch.int64).reshape(-1, len(nvec))
    return (torch.cat([_one_hot_of(x[:, i], n) for i, n in enumerate(nvec)], dim=-1),)


@converter("scale_box")
def _scale_box(m, node, xs, p):
    return ((_f32(xs[0]) - p["low"]) / p["range"],)


@converter("vecnormalize")
def _vecnormalize(m, node, xs, p):
    x = xs[0].to(torch.float64)
    clip = float(node.attrs["clip"])
    y = (x - p["mean"]) / torch.sqrt(p["var"] + float(node.attrs["eps"]))
    return (torch.clamp(y, -clip, clip).to(torch.float32),)


@converter("running_norm")
def _running_norm(m, node, xs, p):
    y = (xs[0] - p["mean"]) / p["std"]
    return (torch.clamp(y, float(node.attrs["lo"]), float(node.attrs["hi"])),)


@converter("concat_dict")
def _concat_dict(m, node, xs, p):
    obs = xs[0]
    return (torch.cat([_f32(obs[k]) for k in node.attrs["keys"]], dim=-1),)


@converter("flatten")
def _flatten(m, node, xs, p):
    return (torch.flatten(xs[0], 1),)


@converter("dense")
def _dense(m, node, xs, p):
    return (torch.matmul(xs[0], p["w"]) + p["b"],)


@converter("conv2d")
def _conv2d(m, node, xs, p):
    # NCHW in, NCHW out; the kernel buffer is OIHW (see SpecModule).
    return (F.conv2d(xs[0], p["w"], p["b"], stride=int(node.attrs["stride"])),)


def _swish(x):
    return x * torch.sigmoid(x)


ACTIVATIONS: Registry[Callable] = Registry("torch activation", BackendUnavailable, [
    ("identity", lambda x: x),
    ("relu", lambda x: torch.relu(x)),
    ("tanh", lambda x: torch.tanh(x)),
    ("sigmoid", lambda x: torch.sigmoid(x)),
    ("elu", lambda x: F.elu(x)),
    ("softplus", lambda x: F.softplus(x)),
    ("softsign", lambda x: x / (1.0 + torch.abs(x))),
    ("relu6", lambda x: torch.clamp(x, 0.0, 6.0)),
    ("selu", lambda x: F.selu(x)),
    ("leaky_relu", lambda x: F.leaky_relu(x, 0.2)),
    ("swish", _swish),
])


@converter("activation")
def _activation(m, node, xs, p):
    return (ACTIVATIONS[node.attrs["fn"]](xs[0]),)


@converter("exp")
def _exp(m, node, xs, p):
    return (torch.exp(xs[0]),)


def _moments(x, dims: list[int]):
    mean = x.mean(dim=dims, keepdim=True)
    var = torch.square(x - mean).mean(dim=dims, keepdim=True)
    return mean, var


@converter("layer_norm")
def _layer_norm(m, node, xs, p):
    # tf.contrib.layers.layer_norm -> nn.batch_normalization's arithmetic.
    x = xs[0]
    mean, var = _moments(x, list(range(1, x.dim())))
    inv = torch.rsqrt(var + float(node.attrs["eps"])) * p["gamma"]
    return (x * inv + (p["beta"] - mean * inv),)


def _ln(x, gain, bias, eps: float = 1e-5):
    """tf_layers._ln: SB2's own layer norm inside LN-LSTMs."""
    mean, var = _moments(x, [1])
    return (x - mean) / torch.sqrt(var + eps) * gain + bias


@converter("lstm")
def _lstm(m, node, xs, p):
    x, state, mask = xs
    n = int(node.attrs["n_hidden"])
    keep = 1.0 - _f32(mask).reshape(-1, 1)
    c, h = state[:, :n] * keep, state[:, n:] * keep
    if node.attrs["layer_norm"]:
        gates = (_ln(torch.matmul(x, p["wx"]), p["gx"], p["bx"])
                 + _ln(torch.matmul(h, p["wh"]), p["gh"], p["bh"]) + p["b"])
    else:
        gates = torch.matmul(x, p["wx"]) + torch.matmul(h, p["wh"]) + p["b"]
    i, f, o, u = torch.split(gates, n, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(u)
    hc = _ln(c, p["gc"], p["bc"]) if node.attrs["layer_norm"] else c
    h = torch.sigmoid(o) * torch.tanh(hc)
    return h, torch.cat([c, h], dim=1)


@converter("frame_stack")
def _frame_stack(m, node, xs, p):
    x, state, mask = xs
    n, frame = int(node.attrs["n"]), [int(d) for d in node.attrs["frame"]]
    keep = (1.0 - _f32(mask)).reshape([-1] + [1] * len(frame))
    prev = state.reshape([-1, *frame[:-1], frame[-1] * (n - 1)]) * keep
    stacked = torch.cat([prev, _f32(x)], dim=-1)
    return stacked, stacked[..., frame[-1]:].reshape(-1, (n - 1) * int(np.prod(frame)))


@converter("concat")
def _concat(m, node, xs, p):
    return (torch.cat(list(xs), dim=-1),)


@converter("dueling")
def _dueling(m, node, xs, p):
    a, v = xs
    return (v + (a - a.mean(dim=1, keepdim=True)),)


@converter("squeeze_last")
def _squeeze_last(m, node, xs, p):
    return (xs[0][:, 0],)


@converter("softmax")
def _softmax(m, node, xs, p):
    return (torch.softmax(xs[0], dim=-1),)


@converter("argmax")
def _argmax(m, node, xs, p):
    return (torch.argmax(xs[0], dim=-1),)


@converter("split")
def _split(m, node, xs, p):
    return tuple(torch.split(xs[0], [int(s) for s in node.attrs["sizes"]], dim=-1))


@converter("stack_last")
def _stack_last(m, node, xs, p):
    return (torch.stack(list(xs), dim=-1),)


@converter("round")
def _round(m, node, xs, p):
    return (torch.round(xs[0]),)  # half to even, as tf.round


@converter("exp_broadcast")
def _exp_broadcast(m, node, xs, p):
    return (torch.exp(xs[0] * 0.0 + p["logstd"]),)


@converter("clip_value")
def _clip_value(m, node, xs, p):
    return (torch.clamp(xs[0], float(node.attrs["lo"]), float(node.attrs["hi"])),)


@converter("clip_box")
def _clip_box(m, node, xs, p):
    return (torch.minimum(torch.maximum(xs[0], p["low"]), p["high"]),)


@converter("unscale_box")
def _unscale_box(m, node, xs, p):
    low, high = p["low"], p["high"]
    return (low + (0.5 * (xs[0] + 1.0) * (high - low)),)


# --- the module ----------------------------------------------------------------------
def buffer_name(sb2_name: str) -> str:
    """An SB2 tensor name as a valid buffer name: '/' -> '__', ':0' dropped, others '_'."""
    name = re.sub(r":0(?=$|#)", "", sb2_name).replace("/", "__")
    name = re.sub(r"\W", "_", name)
    return name if re.match(r"[A-Za-z_]", name) else "t_" + name


def _make_module_class():
    nn = torch.nn

    class SpecModule(nn.Module):
        """The spec's program as a module: forward(obs[, state, mask]) -> tuple of
        the public outputs in `output_names` order."""

        def __init__(self, spec: PolicySpec):
            super().__init__()
            CONVERTERS.require(n.op for n in spec.nodes)
            self.spec = spec
            self.output_names: list[str] = list(spec.outputs)
            self.sb2_names: dict[str, str] = {}      # buffer name -> SB2 tensor name
            self.layouts: dict[str, str] = {}        # buffer name -> layout note when not SB2's
            self._params_of: list[dict[str, str]] = []  # per node: role -> buffer name
            made: dict[tuple[str, str], str] = {}       # (SB2 name, how it is used) -> buffer
            for node in spec.nodes:
                roles = {}
                for role, key in node.params.items():
                    value = np.asarray(spec.tensors[key])
                    use = _use(node, role, value)
                    if (key, use) not in made:
                        name = buffer_name(key)
                        while name in self.sb2_names or hasattr(self, name):
                            name += "_"
                        if use == "oihw":
                            data = value.astype(np.float32).transpose(3, 2, 0, 1)
                            self.layouts[name] = "OIHW (SB2: HWIO)"
                        else:
                            data = value.astype(use)
                        self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(data)))
                        self.sb2_names[name] = key
                        made[(key, use)] = name
                    roles[role] = made[(key, use)]
                self._params_of.append(roles)

        def _run(self, obs, state, mask) -> tuple[dict[str, Any], set[str]]:
            env: dict[str, Any] = {"obs": obs}
            if self.spec.stateful:
                env["state"], env["mask"] = state, mask
            layout = Layout()  # conv stacks run NCHW (layout.py)
            buffers = dict(self.named_buffers())
            for node, pnames in zip(self.spec.nodes, self._params_of, strict=True):
                xs = [env[i] for i in node.inputs]
                for j, name in enumerate(node.inputs):
                    perm = layout.permutation(node.op, name)
                    if perm is not None:
                        xs[j] = xs[j].permute(*perm)
                params = {role: buffers[name] for role, name in pnames.items()}
                results = CONVERTERS[node.op](self, node, xs, params)
                env.update(zip(node.outputs, results, strict=True))
                layout.record(node.op, node.inputs, node.outputs)
            return env, layout.nchw

        def evaluate(self, obs, state=None, mask=None) -> dict[str, Any]:
            """Every tensor of the program, by name, in the spec's (NHWC) layout."""
            env, nchw = self._run(obs, state, mask)
            for name in nchw:
                env[name] = env[name].permute(*TO_NHWC)
            return env

        def forward(self, obs, state=None, mask=None):
            env, nchw = self._run(obs, state, mask)
            names = [self.spec.outputs[k] for k in self.output_names]
            return tuple(env[t].permute(*TO_NHWC) if t in nchw else env[t] for t in names)

    return SpecModule


def _use(node: Node, role: str, value: np.ndarray) -> str:
    """How a parameter is held: 'oihw' for conv kernels, float64 where the op computes
    in float64, float32 for other floats, else its own dtype."""
    if value.dtype.kind != "f":
        return value.dtype.name
    if node.op == "conv2d" and role == "w":
        return "oihw"
    return "float64" if role in FLOAT64_PARAMS.get(node.op, ()) else "float32"


_SpecModule = None


def spec_module_class():
    """The `SpecModule` class (a torch.nn.Module subclass), made on first use so that
    importing this file does not import torch."""
    global _SpecModule
    _import_torch()
    if _SpecModule is None:
        _SpecModule = _make_module_class()
    return _SpecModule


def __getattr__(name: str):
    # `from sbexportd.realize.torch_backend import SpecModule` gives the real class.
    if name == "SpecModule":
        return spec_module_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class TorchPolicy(Backend):
    """Runs a PolicySpec with PyTorch: `module`, the traceable SpecModule."""

    name = "torch"

    def __init__(self, spec: PolicySpec):
        _import_torch()
        self.spec = spec
        self.module = spec_module_class()(spec).eval()

    def inputs(self, obs, state=None, mask=None) -> tuple:
        """numpy inputs -> the module's tensors (obs cast to SB2's placeholder dtype)."""
        def tensor(a, dtype):
            a = np.asarray(a).astype(dtype)
            if _dtype(a.dtype.name) is None:  # e.g. uint16: widen, the values are kept
                a = a.astype(np.float64 if a.dtype.kind == "f" else np.int64)
            return torch.from_numpy(np.ascontiguousarray(a))
        if isinstance(obs, dict):
            x = {k: tensor(v, np.asarray(v).dtype) for k, v in obs.items()}
        else:
            x = tensor(obs, self.spec.input_dtype)
        if not self.spec.stateful:
            return (x,)
        return (x, tensor(state, np.float32), tensor(np.asarray(mask).reshape(-1), np.float32))

    def forward(self, obs, state=None, mask=None) -> dict[str, np.ndarray]:
        """Every tensor of the program, by name, as NumPy arrays."""
        with torch.inference_mode():
            env = self.module.evaluate(*self.inputs(obs, state, mask))
            return {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in env.items()
                    if k != "obs"}

    def run(self, obs, state=None, mask=None, outputs: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            got = dict(zip(self.module.output_names, self.module(*self.inputs(obs, state, mask)), strict=True))
            return {k: got[k].numpy() for k in self.wanted(outputs)}
