"""Per-op conformance vectors: for every op of the contract (sbexportd/understand/ops.py),
a program around that op alone, fed the inputs where implementations part ways
(out-of-range indices, saturated tanh, exact halves, ties, resets, huge logits,
truncating casts...). They join tests/synthetic.py's cases, so every implementation
runs them the same way against the NumPy reference: the TensorFlow and torch backends
and the torch code generator (tests/test_backends.py, test_export_pytorch.py), the
Node and Java portable readers (clients/*: their suites read synthetic.cases()), and
the ONNX Runtime fast path. `covered_ops` must equal the contract: test_conformance.py.
"""
from __future__ import annotations

import numpy as np

from sbexportd.understand.shapes import check_program
from sbexportd.understand.spec import ACTIVATIONS, Discrete, Distribution, MultiDiscrete

F32 = np.float32


def _rows(values, dtype=F32):
    """An obs function that repeats fixed rows to any batch size."""
    values = np.asarray(values, dtype)
    return lambda rng, b: np.resize(values, (b, *values.shape[1:])) if values.ndim > 1 else np.resize(values, (b,))


def cases():
    from synthetic import Case, Net, box  # synthetic imports this module lazily: no cycle at import time

    def single(name, op, obs_space, obs, attrs=None, params=None, outputs=1, act=None, inputs=("obs",),
               dtype=None, **spec_kw):
        net = Net(100 + len(name))
        made = {}
        for role, value in (params or {}).items():
            made[role] = net.prog.const(f"{name}/{role}", np.asarray(value))
        outs = net.prog.emit_many(op, inputs, outputs=outputs, attrs=attrs or {}, params=made)
        # "actions" only where the op makes one (argmax: compared exactly); else plain
        # outputs, held to the relative rule
        named = {("actions" if act is not None else "y0"): outs[0], **{f"y{i}": t for i, t in enumerate(outs[1:], 1)}}
        spec = net.spec("ppo2", obs_space, act or box((1,), -1, 1), named, Distribution("deterministic"),
                        dtype=dtype, **spec_kw)
        if act is None:  # a Box the size of the output, so the spec reads true
            spec.action_space = box(check_program(spec)[outs[0]], -np.inf, np.inf)
        return Case(f"op_{name}", spec, obs)

    out = [
        # float -> int32 truncates toward zero (NumPy astype), then float32
        single("cast_float_truncates", "cast_float", box((6,), -1e7, 1e7), _rows([[-2.7, -0.5, 0.5, 2.5, 3.99, -1e6]]),
               attrs={"via": "int32"}, dtype="float32"),
        # indices out of range give a row of zeros, not an error
        single("one_hot_out_of_range", "one_hot", Discrete(4), _rows([0, 3, -1, 4, 2], np.int32), attrs={"n": 4},
               dtype="int32"),
        single("multi_one_hot_out_of_range", "multi_one_hot", MultiDiscrete((3, 2)),
               _rows([[0, 1], [2, 0], [3, -1], [-1, 2]], np.int32), attrs={"nvec": [3, 2]}, dtype="int32"),
        single("scale_box_uint8", "scale_box", box((4,), 0, 255, "uint8"), _rows([[0, 255, 128, 1]]),
               params={"low": np.zeros(4, F32), "range": np.full(4, 255, F32)}, dtype="float32"),
        # beyond the clip, a variance at epsilon's scale, float64 arithmetic
        single("vecnormalize_clips", "vecnormalize", box((4,), -np.inf, np.inf),
               _rows([[1e3, -1e3, 0.1, 3.0], [0.0, 0.0, 1e-4, -3.0]]), attrs={"eps": 1e-8, "clip": 5.0},
               params={"mean": np.array([0.0, 1.0, 0.0, 1e-3]), "var": np.array([1.0, 4.0, 1e-8, 1e-3])}),
        single("running_norm_clips", "running_norm", box((3,), -np.inf, np.inf), _rows([[100.0, -100.0, 0.3]]),
               attrs={"lo": -5.0, "hi": 5.0},
               params={"mean": np.array([1, -1, 0], F32), "std": np.array([0.5, 2, 0.1], F32)}),
        single("flatten_nhwc_order", "flatten", box((2, 3, 2), -1, 1),
               _rows(np.arange(24, dtype=F32).reshape(2, 2, 3, 2) / 10)),
        # k past TF1's slicing (400), large activations
        single("dense_k400", "dense", box((400,), -np.inf, np.inf), _rows(np.linspace(-50, 50, 800).reshape(2, 400)),
               params={"w": (np.random.default_rng(1).standard_normal((400, 3)) * 0.05).astype(F32),
                       "b": np.array([0.1, -0.2, 0.0], F32)}),
        single("conv2d_stride3", "conv2d", box((7, 7, 2), -1, 1),
               _rows(np.sin(np.arange(196, dtype=F32)).reshape(2, 7, 7, 2)), attrs={"stride": 3},
               params={"w": (np.cos(np.arange(36, dtype=F32)) / 3).reshape(3, 3, 2, 2),
                       "b": np.array([0.5, -0.5], F32)}),
        # a constant row: variance 0, epsilon decides
        single("layer_norm_constant_row", "layer_norm", box((4,), -np.inf, np.inf), _rows([[2.0, 2.0, 2.0, 2.0],
                                                                                          [1.0, -1.0, 3.0, 0.0]]),
               attrs={"eps": 1e-12},
               params={"gamma": np.array([1, 2, 0.5, -1], F32), "beta": np.array([0, 1, 0, -1], F32)}),
        single("squeeze_last", "squeeze_last", box((1,), -np.inf, np.inf), _rows([[3.0], [-1.5]])),
        # huge logits must not overflow
        single("softmax_huge_logits", "softmax", box((3,), -np.inf, np.inf),
               _rows([[1000.0, 999.0, -1000.0], [-1e4, -1e4, -1e4], [0.0, 88.0, -88.0]])),
        # ties: the first of equal maxima
        single("argmax_ties", "argmax", box((4,), -np.inf, np.inf), _rows([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]]),
               act=Discrete(4)),
        single("split_three", "split", box((6,), -np.inf, np.inf), _rows([[1, 2, 3, 4, 5, 6]]),
               attrs={"sizes": [1, 3, 2]}, outputs=3),
        single("round_half_to_even", "round", box((8,), -4, 4),
               _rows([[-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999997, -3.5]])),
        single("exp_broadcast", "exp_broadcast", box((3,), -np.inf, np.inf), _rows([[5.0, -5.0, 0.0]]),
               params={"logstd": np.array([[-20.0, 0.0, 2.0]], F32)}),
        # up to float32's range (exp(88) ~ 1.65e38), and underflow
        single("exp_range", "exp", box((4,), -np.inf, np.inf), _rows([[88.0, -110.0, 0.0, 1e-7]])),
        single("clip_value", "clip_value", box((4,), -np.inf, np.inf), _rows([[-21.0, 5.0, 2.0, -20.0]]),
               attrs={"lo": -20.0, "hi": 2.0}),
        single("clip_box", "clip_box", box((3,), -np.inf, np.inf), _rows([[-3.0, 0.5, 9.0]]),
               params={"low": np.array([-2, 0, 1], F32), "high": np.array([1, 3, 2], F32)}),
        single("unscale_box", "unscale_box", box((3,), -1, 1), _rows([[-1.0, 0.0, 1.0], [0.5, -0.5, 0.999]]),
               params={"low": np.array([-2, 0, -1e3], F32), "high": np.array([1, 3, 1e3], F32)}),
    ]
    # every activation on its tails: tanh at TF1's clip (+-9) and beyond, sigmoid and
    # softplus far out, relu6's ceiling, the negative branches
    edges = _rows([[-30.0, -9.5, -9.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 5.9, 6.0, 9.0, 9.5, 30.0]])
    for fn in ACTIVATIONS:
        out.append(single(f"activation_{fn}", "activation", box((13,), -np.inf, np.inf), edges, attrs={"fn": fn}))
    # several inputs, made from one observation: concat of three, dueling, stack_last
    out += [_multi_input(Case, Net, box, "concat_three", "concat", [2, 1, 3], _rows([[1, 2, 3, 4, 5, 6]])),
            _multi_input(Case, Net, box, "dueling", "dueling", [3, 1], _rows([[1.0, -2.0, 0.5, 10.0]])),
            _multi_input(Case, Net, box, "stack_last", "stack_last", [1, 1, 1], _rows([[7.0, -1.0, 0.0]]),
                         squeeze=True)]
    out += [_stateful(Case, Net, box, "lstm_resets"), _stateful(Case, Net, box, "frame_stack_resets")]
    return out


def _multi_input(Case, Net, box, name, op, sizes, obs, squeeze=False):
    net = Net(200 + len(name))
    parts = net.prog.emit_many("split", ("obs",), outputs=len(sizes), attrs={"sizes": sizes})
    if squeeze:
        parts = tuple(net.prog.emit("squeeze_last", (p,)) for p in parts)
    y = net.prog.emit(op, parts)
    space = box((sum(sizes),), -np.inf, np.inf)
    spec = net.spec("ppo2", space, box((1,), -1, 1), {"y0": y}, Distribution("deterministic"))
    spec.action_space = box(check_program(spec)[y], -np.inf, np.inf)
    return Case(f"op_{name}", spec, obs)


def _stateful(Case, Net, box, name):
    """A state carried in with resets on alternate rows (mask 1 must zero the old state
    before the step, whatever it held)."""
    net = Net(300 + len(name))
    if name.startswith("lstm"):
        space = box((3,), -np.inf, np.inf)
        h, state, n = net.lstm("obs", 3, 4, "model/lstm1/", layer_norm=True)
        return Case(f"op_{name}", net.spec("ppo2", space, box((4,), -np.inf, np.inf), {"y0": h, "state": state},
                                           Distribution("deterministic"), recurrent=n),
                    _rows([[3.0, -3.0, 0.5], [0.0, 0.0, 0.0]]))
    space = box((2, 2, 1), 0, 255, "uint8")
    stacked, state = net.prog.emit_many("frame_stack", ("obs", "state", "mask"),
                                        outputs=("stacked", "stack_state"), attrs={"n": 3, "frame": [2, 2, 1]})
    flat = net.prog.emit("flatten", (stacked,))
    return Case(f"op_{name}", net.spec("ppo2", space, box((12,), 0, 255), {"y0": flat, "state": state},
                                       Distribution("deterministic"), frame_stack=3),
                _rows(np.array([[[[0], [255]], [[7], [128]]]], np.uint8), np.uint8))
