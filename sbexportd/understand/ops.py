"""The op contract, machine-readable: what every op of a PolicySpec reads, writes,
and is parameterized by. `PolicySpec.validate` (and so the portable reader) checks
every node against it; understand/shapes.py adds each op's shape rule; every
runtime (NumPy, TensorFlow, torch, torch codegen, ONNX Runtime, the Java and Node
portable readers) implements exactly these ops and is held to the same per-op
conformance vectors (tests/conformance.py). docs/portable.md gives each op's math.

`schema_document()` is the JSON form the Java and Node suites check their ops against.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidSpec
from ..registry import Registry

VARIADIC = "..."  # a last input or output role repeated one or more times

# attribute types: a JSON-ish name -> how to recognize a value of it
ATTR_TYPES: Registry[Callable[[Any], bool]] = Registry("attribute type", entries=[
    ("int", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    ("float", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    ("bool", lambda v: isinstance(v, bool)),
    ("str", lambda v: isinstance(v, str)),
    ("int[]", lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, int) and not isinstance(x, bool)
                                                             for x in v)),
    ("str[]", lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)),
])


@dataclass(frozen=True)
class Op:
    name: str
    inputs: tuple[str, ...]                 # roles in order; VARIADIC last = one or more
    outputs: tuple[str, ...]                # roles in order; VARIADIC last = as many as attrs say
    doc: str
    params: dict[str, str] = field(default_factory=dict)   # role -> dtype the runtime holds it in
    attrs: dict[str, str] = field(default_factory=dict)    # name -> type (see ATTR_TYPES)
    optional_params: tuple[str, ...] = ()
    optional_attrs: tuple[str, ...] = ()

    def check(self, node) -> str | None:
        """What is wrong with a node of this op (arity, parameter roles, attribute
        types), or None."""
        if self.inputs[-1:] == (VARIADIC,):
            if len(node.inputs) < len(self.inputs) - 1 or not node.inputs:
                return f"takes at least {max(1, len(self.inputs) - 1)} inputs, got {len(node.inputs)}"
        elif len(node.inputs) != len(self.inputs):
            return f"takes {len(self.inputs)} inputs ({', '.join(self.inputs)}), got {len(node.inputs)}"
        if self.outputs[-1:] != (VARIADIC,) and len(node.outputs) != len(self.outputs):
            return f"writes {len(self.outputs)} outputs ({', '.join(self.outputs)}), got {len(node.outputs)}"
        roles = set(node.params)
        missing = sorted(set(self.params) - set(self.optional_params) - roles)
        unknown = sorted(roles - set(self.params))
        if missing or unknown:
            return (f"parameters {sorted(roles)}: " + (f"missing {missing} " if missing else "")
                    + (f"unknown {unknown}" if unknown else "")).strip()
        for name, kind in self.attrs.items():
            if name not in node.attrs:
                if name in self.optional_attrs:
                    continue
                return f"attribute {name!r} ({kind}) missing"
            if not ATTR_TYPES[kind](node.attrs[name]):
                return f"attribute {name!r} is {node.attrs[name]!r:.40}, expected {kind}"
        extra = sorted(set(node.attrs) - set(self.attrs))
        if extra:
            return f"unknown attributes {extra}"
        return None

    def document(self) -> dict[str, Any]:
        return {"inputs": list(self.inputs), "outputs": list(self.outputs), "params": dict(self.params),
                "attrs": dict(self.attrs), "optional_params": list(self.optional_params),
                "optional_attrs": list(self.optional_attrs), "doc": self.doc}


F32, F64 = "float32", "float64"
_LN_ROLES = ("gx", "bx", "gh", "bh", "gc", "bc")

_TABLE = (
    Op("cast_float", ("x",), ("y",), "float32(cast(x, via)): through the placeholder dtype SB2 fed, first",
       attrs={"via": "str"}, optional_attrs=("via",)),
    Op("one_hot", ("x",), ("y",), "one_hot(int(x), n), float32; out-of-range indices give zeros", attrs={"n": "int"}),
    Op("multi_one_hot", ("x",), ("y",), "concat_i one_hot(x[:, i], nvec[i])", attrs={"nvec": "int[]"}),
    Op("scale_box", ("x",), ("y",), "(x - low) / range (range = high - low in the space's dtype, as SB2)",
       params={"low": F32, "range": F32}),
    Op("vecnormalize", ("x",), ("y",), "float32(clip((x - mean) / sqrt(var + eps), -clip, clip)), in float64 "
       "like SB2's VecNormalize", params={"mean": F64, "var": F64}, attrs={"eps": "float", "clip": "float"}),
    Op("running_norm", ("x",), ("y",), "clip((x - mean) / std, lo, hi): DDPG's in-graph observation normalization",
       params={"mean": F32, "std": F32}, attrs={"lo": "float", "hi": "float"}),
    Op("concat_dict", ("x",), ("y",), "the dict observation's keys concatenated in `keys` order (HER), float32",
       attrs={"keys": "str[]"}),
    Op("flatten", ("x",), ("y",), "reshape(x, (batch, -1)) in row-major (NHWC) order"),
    Op("dense", ("x",), ("y",), "x @ w + b", params={"w": F32, "b": F32}),
    Op("conv2d", ("x",), ("y",), "conv(x NHWC, w HWIO, stride, VALID) + b", params={"w": F32, "b": F32},
       attrs={"stride": "int"}),
    Op("activation", ("x",), ("y",), "fn(x), fn one of spec.ACTIVATIONS", attrs={"fn": "str"}),
    Op("layer_norm", ("x",), ("y",), "(x - mean) * rsqrt(var + eps) * gamma + beta over the non-batch axes "
       "(tf.contrib.layers.layer_norm)", params={"gamma": F32, "beta": F32}, attrs={"eps": "float"}),
    Op("lstm", ("x", "state", "mask"), ("h", "state"), "SB2's tf_layers.lstm, one step; mask 1 resets the state "
       "first; the gx..bc parameters when layer_norm", params={"wx": F32, "wh": F32, "b": F32,
                                                                **dict.fromkeys(_LN_ROLES, F32)},
       attrs={"n_hidden": "int", "layer_norm": "bool"}, optional_params=_LN_ROLES),
    Op("frame_stack", ("x", "state", "mask"), ("stacked", "state"), "SB2's VecFrameStack, one step: the previous "
       "n - 1 frames (zeroed where mask is 1) then float32(x), on the last axis", attrs={"n": "int", "frame": "int[]"}),
    Op("concat", ("x", VARIADIC), ("y",), "concat(xs, axis=-1)"),
    Op("dueling", ("a", "v"), ("q",), "v + (a - mean(a, axis=1))"),
    Op("squeeze_last", ("x",), ("y",), "x[:, 0] of a (batch, 1) tensor"),
    Op("softmax", ("x",), ("y",), "softmax(x, axis=-1)"),
    Op("argmax", ("x",), ("y",), "argmax(x, axis=-1), int64 (the first of equal maxima)"),
    Op("split", ("x",), ("y", VARIADIC), "x split along the last axis into `sizes`", attrs={"sizes": "int[]"}),
    Op("stack_last", ("x", VARIADIC), ("y",), "stack(xs, axis=-1)"),
    Op("round", ("x",), ("y",), "round half to even (tf.round: the Bernoulli mode)"),
    Op("exp_broadcast", ("like",), ("y",), "exp(like * 0 + logstd): logstd (1, n) broadcast to the batch",
       params={"logstd": F32}),
    Op("exp", ("x",), ("y",), "exp(x)"),
    Op("clip_value", ("x",), ("y",), "clip(x, lo, hi), scalars", attrs={"lo": "float", "hi": "float"}),
    Op("clip_box", ("x",), ("y",), "clip(x, low, high), per element", params={"low": F32, "high": F32}),
    Op("unscale_box", ("x",), ("y",), "low + 0.5 * (x + 1) * (high - low): [-1, 1] to the action space",
       params={"low": F32, "high": F32}),
)

OPS: Registry[Op] = Registry("op", InvalidSpec, [(op.name, op) for op in _TABLE])

# Op parameters held in float64, as SB2 computed them (VecNormalize runs in NumPy
# float64); every other floating parameter is float32, as TensorFlow 1 held it.
FLOAT64_PARAMS: dict[str, tuple[str, ...]] = {
    op.name: tuple(r for r, dt in op.params.items() if dt == F64) for op in _TABLE
    if any(dt == F64 for dt in op.params.values())}


def schema_document() -> dict[str, Any]:
    """The contract as JSON data: {op: {inputs, outputs, params, attrs, ...}}."""
    return {name: op.document() for name, op in OPS.items()}
