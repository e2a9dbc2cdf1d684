"""The TensorFlow 2 backend: the spec as one `tf.function`, traced once.

The graph is built in `__init__` with a fixed input signature (batch dimension
None), weights as non-trainable `tf.Variable`s held by a `tf.Module`, so repeated
`run` calls reuse the same concrete function. The exporters (SavedModel, tf2onnx,
TensorFlow.js, TFLite) reuse `TFPolicy.module` (its `serve` method) and
`TFPolicy.concrete`; `serve` returns a dict of the spec's public outputs.

Every op has one converter in `CONVERTERS`. Math is float32 throughout, as in
SB2's graphs, except `vecnormalize`, which SB2's VecNormalize computes in float64
(NumPy) before the policy's float32 placeholder. tanh is TensorFlow's own.

TensorFlow is imported here only (lazily, when a TFPolicy is built), never by
`import sbexportd`.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BackendUnavailable, InvalidSpec
from ..registry import Registry
from ..understand.spec import FLOAT64_PARAMS, Box, DictSpace, Node, PolicySpec
from .backends import Backend

Converter = Callable[[Node, list, dict], tuple]
CONVERTERS: Registry[Converter] = Registry("tensorflow converter", BackendUnavailable)
converter = CONVERTERS.register

if TYPE_CHECKING:
    import tensorflow as _tf
else:
    _tf = None  # bound by _import_tf()


@contextlib.contextmanager
def _quiet_stderr():
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded interpreters)
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _import_tf():
    global _tf
    if _tf is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        if os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3":
            # XLA/CUDA plugin registration logs through absl before TF's log level
            # applies ("Unable to register cuDNN factory", "computation placer
            # already registered"): hide the C-level stderr while importing.
            with _quiet_stderr():
                import tensorflow as tf
        else:
            import tensorflow as tf
        tf.get_logger().setLevel("ERROR")
        try:
            from absl import logging as absl_logging
            absl_logging.set_verbosity(absl_logging.ERROR)
        except ImportError:  # pragma: no cover - absl ships with tensorflow
            pass
        _tf = tf
    return _tf


# --- converters: (node, input tensors, {role: parameter tensor}) -> output tensors ---
def _f32(x):
    return _tf.cast(x, _tf.float32) if x.dtype != _tf.float32 else x


ACTIVATIONS: Registry[Callable] = Registry("tensorflow activation", BackendUnavailable, [
    ("identity", lambda x: _tf.identity(x)),
    ("relu", lambda x: _tf.nn.relu(x)),
    ("tanh", lambda x: _tf.tanh(x)),
    ("sigmoid", lambda x: _tf.sigmoid(x)),
    ("elu", lambda x: _tf.nn.elu(x)),
    ("softplus", lambda x: _tf.nn.softplus(x)),
    ("softsign", lambda x: _tf.nn.softsign(x)),
    ("relu6", lambda x: _tf.nn.relu6(x)),
    ("selu", lambda x: _tf.nn.selu(x)),
    ("leaky_relu", lambda x: _tf.nn.leaky_relu(x, alpha=0.2)),
    ("swish", lambda x: x * _tf.sigmoid(x)),
])


@converter("cast_float")
def _cast_float(node, xs, p):
    via = _tf.as_dtype(node.attrs.get("via", "float32"))
    x = xs[0]
    if x.dtype != via:
        x = _tf.cast(x, via)
    return (_f32(x),)


def _one_hot_of(idx, n):
    # tf.one_hot gives all zeros for an index out of [0, n), as SB2's graph did.
    return _tf.one_hot(idx, n, dtype=_tf.float32)


@converter("one_hot")
def _one_hot(node, xs, p):
    idx = _tf.reshape(_tf.cast(xs[0], _tf.int64), [-1])
    return (_one_hot_of(idx, int(node.attrs["n"])),)


@converter("multi_one_hot")
def _multi_one_hot(node, xs, p):
    nvec = [int(n) for n in node.attrs["nvec"]]
    x = _tf.reshape(_tf.cast(xs[0], _tf.int64), [-1, len(nvec)])
    return (_tf.concat([_one_hot_of(x[:, i], n) for i, n in enumerate(nvec)], axis=-1),)


@converter("scale_box")
def _scale_box(node, xs, p):
    rng = p["range"]  # high - low, computed in the space's dtype by the builder
    return ((_f32(xs[0]) - p["low"]) / rng,)


@converter("vecnormalize")
def _vecnormalize(node, xs, p):
    # float64 as SB2, unless the module was made with float64=False (the statistics
    # are then float32 variables: TFLite's builtin kernels have no float64 math).
    tf = _tf
    dt = p["mean"].dtype
    x = tf.cast(xs[0], dt)
    clip = float(node.attrs["clip"])
    y = (x - p["mean"]) / tf.sqrt(p["var"] + tf.constant(float(node.attrs["eps"]), dt))
    return (_f32(tf.clip_by_value(y, -clip, clip)),)


@converter("running_norm")
def _running_norm(node, xs, p):
    y = (xs[0] - p["mean"]) / p["std"]
    return (_tf.clip_by_value(y, float(node.attrs["lo"]), float(node.attrs["hi"])),)


@converter("concat_dict")
def _concat_dict(node, xs, p):
    obs = xs[0]
    return (_tf.concat([_f32(obs[k]) for k in node.attrs["keys"]], axis=-1),)


@converter("flatten")
def _flatten(node, xs, p):
    x = xs[0]
    inner = x.shape[1:]
    if inner.is_fully_defined():
        return (_tf.reshape(x, [-1, int(np.prod(inner.as_list()))]),)
    return (_tf.reshape(x, [_tf.shape(x)[0], -1]),)


@converter("dense")
def _dense(node, xs, p):
    return (_tf.matmul(xs[0], p["w"]) + p["b"],)


@converter("conv2d")
def _conv2d(node, xs, p):
    s = int(node.attrs["stride"])
    return (_tf.nn.conv2d(xs[0], p["w"], strides=[1, s, s, 1], padding="VALID", data_format="NHWC")
            + p["b"],)


@converter("activation")
def _activation(node, xs, p):
    return (ACTIVATIONS[node.attrs["fn"]](xs[0]),)


@converter("exp")
def _exp(node, xs, p):
    return (_tf.exp(xs[0]),)


def _moments(x, axes):
    mean = _tf.reduce_mean(x, axis=axes, keepdims=True)
    var = _tf.reduce_mean(_tf.square(x - mean), axis=axes, keepdims=True)
    return mean, var


@converter("layer_norm")
def _layer_norm(node, xs, p):
    # tf.contrib.layers.layer_norm -> nn.batch_normalization's arithmetic.
    x = xs[0]
    mean, var = _moments(x, list(range(1, x.shape.rank)))
    inv = _tf.math.rsqrt(var + float(node.attrs["eps"])) * p["gamma"]
    return (x * inv + (p["beta"] - mean * inv),)


def _ln(x, gain, bias, eps=1e-5):
    """tf_layers._ln: SB2's own layer norm inside LN-LSTMs."""
    mean, var = _moments(x, [1])
    return (x - mean) / _tf.sqrt(var + eps) * gain + bias


@converter("lstm")
def _lstm(node, xs, p):
    tf = _tf
    x, state, mask = xs
    n = int(node.attrs["n_hidden"])
    keep = 1.0 - tf.reshape(_f32(mask), [-1, 1])
    c, h = state[:, :n] * keep, state[:, n:] * keep
    if node.attrs["layer_norm"]:
        gates = (_ln(tf.matmul(x, p["wx"]), p["gx"], p["bx"]) + _ln(tf.matmul(h, p["wh"]), p["gh"], p["bh"])
                 + p["b"])
    else:
        gates = tf.matmul(x, p["wx"]) + tf.matmul(h, p["wh"]) + p["b"]
    i, f, o, u = tf.split(gates, 4, axis=1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(u)
    hc = _ln(c, p["gc"], p["bc"]) if node.attrs["layer_norm"] else c
    h = tf.sigmoid(o) * tf.tanh(hc)
    return h, tf.concat([c, h], axis=1)


@converter("frame_stack")
def _frame_stack(node, xs, p):
    tf = _tf
    x, state, mask = xs
    n, frame = int(node.attrs["n"]), [int(d) for d in node.attrs["frame"]]
    keep = tf.reshape(1.0 - _f32(mask), [-1] + [1] * len(frame))
    prev = tf.reshape(state, [-1, *frame[:-1], frame[-1] * (n - 1)]) * keep
    stacked = tf.concat([prev, _f32(x)], axis=-1)
    rest = stacked[..., frame[-1]:]  # type: ignore[index]  # types-tensorflow leaves Ellipsis out of an index
    return stacked, tf.reshape(rest, [-1, (n - 1) * int(np.prod(frame))])


@converter("concat")
def _concat(node, xs, p):
    return (_tf.concat(list(xs), axis=-1),)


@converter("dueling")
def _dueling(node, xs, p):
    a, v = xs
    return (v + (a - _tf.reduce_mean(a, axis=1, keepdims=True)),)


@converter("squeeze_last")
def _squeeze_last(node, xs, p):
    return (xs[0][:, 0],)


@converter("softmax")
def _softmax(node, xs, p):
    return (_tf.nn.softmax(xs[0], axis=-1),)


@converter("argmax")
def _argmax(node, xs, p):
    return (_tf.argmax(xs[0], axis=-1, output_type=_tf.int64),)


@converter("split")
def _split(node, xs, p):
    return tuple(_tf.split(xs[0], [int(s) for s in node.attrs["sizes"]], axis=-1))


@converter("stack_last")
def _stack_last(node, xs, p):
    return (_tf.stack(list(xs), axis=-1),)


@converter("round")
def _round(node, xs, p):
    return (_tf.round(xs[0]),)  # half to even


@converter("exp_broadcast")
def _exp_broadcast(node, xs, p):
    return (_tf.exp(xs[0] * 0.0 + p["logstd"]),)


@converter("clip_value")
def _clip_value(node, xs, p):
    return (_tf.clip_by_value(xs[0], float(node.attrs["lo"]), float(node.attrs["hi"])),)


@converter("clip_box")
def _clip_box(node, xs, p):
    return (_tf.minimum(_tf.maximum(xs[0], p["low"]), p["high"]),)


@converter("unscale_box")
def _unscale_box(node, xs, p):
    low, high = p["low"], p["high"]
    return (low + (0.5 * (xs[0] + 1.0) * (high - low)),)


# --- the module ----------------------------------------------------------------------
def variable_name(sb2_name: str) -> str:
    """An SB2 tensor name ("model/pi_fc0/w:0", "model/c1/b:0#flat") as a valid TF name."""
    name = re.sub(r":0(?=$|#)", "", sb2_name)
    name = re.sub(r"[^A-Za-z0-9_./-]", "_", name).strip("/") or "t"
    return name if re.match(r"[A-Za-z0-9.]", name) else "t" + name


def _param_dtypes(spec: PolicySpec, float64: bool = True) -> dict[str, str]:
    """Each used tensor's dtype in the graph: float64 where an op computes in float64."""
    dtypes: dict[str, str] = {}
    for node in spec.nodes:
        for role, key in node.params.items():
            value = np.asarray(spec.tensors[key])
            if value.dtype.kind == "f":
                dt = "float64" if float64 and role in FLOAT64_PARAMS.get(node.op, ()) else "float32"
            else:
                dt = value.dtype.name
            if dtypes.setdefault(key, dt) != dt:
                raise InvalidSpec(f"tensor {key!r:.60} is read both as {dtypes[key]} and as {dt}")
    return dtypes


def _obs_signature(spec: PolicySpec):
    tf = _tf
    dict_node = next((n for n in spec.nodes if n.op == "concat_dict" and "obs" in n.inputs), None)
    if dict_node is not None:
        # A goal observation fed as a dict: one (batch, ...) tensor per key.
        sub = dict(spec.goal_observation.spaces) if isinstance(spec.goal_observation, DictSpace) else {}
        sig = {}
        for k in dict_node.attrs["keys"]:
            space = sub.get(k)
            shape = [None, *space.shape] if space is not None else [None, None]
            dtype = space.dtype if isinstance(space, Box) else "float32"
            sig[k] = tf.TensorSpec(shape, tf.as_dtype(dtype), name=f"obs_{k}")
        return sig
    return tf.TensorSpec([None, *spec.observation_space.shape], tf.as_dtype(spec.input_dtype), name="obs")


def _build_graph(spec: PolicySpec, weights: dict[str, Any], obs, state, mask, extra: tuple[str, ...] = ()):
    """Run every node's converter; returns {public output: tensor} (+ extra tensors by name)."""
    env: dict[str, Any] = {"obs": obs}
    if spec.stateful:
        env["state"], env["mask"] = state, mask
    for node in spec.nodes:
        params = {role: weights[key] for role, key in node.params.items()}
        results = CONVERTERS[node.op](node, [env[i] for i in node.inputs], params)
        if len(results) != len(node.outputs):
            raise ValueError(f"{node.op} gave {len(results)} outputs for {len(node.outputs)} names")
        env.update(zip(node.outputs, results, strict=True))
    out = {k: _tf.identity(env[t], name=re.sub(r"[^A-Za-z0-9_.-]", "_", k)) for k, t in spec.outputs.items()}
    for t in extra:
        out["#" + t] = env[t]
    return out


def make_module(spec: PolicySpec, float64: bool = True):
    """A tf.Module holding the weights, with `serve` = the spec as a tf.function.

    float64=False computes `vecnormalize` in float32 (for TFLite, whose builtin
    kernels have no float64 arithmetic): not SB2's exact arithmetic."""
    tf = _import_tf()
    obs_sig = _obs_signature(spec)
    if spec.stateful:
        signature = [obs_sig, tf.TensorSpec([None, spec.state_size], tf.float32, name="state"),
                     tf.TensorSpec([None], tf.float32, name="mask")]

        def serve(self, obs, state, mask):
            return _build_graph(self.spec, self.weights, obs, state, mask)
    else:
        signature = [obs_sig]

        # the traced function's arguments are the signature's: one variant each
        def serve(self, obs):  # type: ignore[misc]
            return _build_graph(self.spec, self.weights, obs, None, None)

    def __init__(self, spec: PolicySpec):
        tf.Module.__init__(self, name="sbexportd_policy")
        self.spec = spec
        dtypes = _param_dtypes(spec, float64)
        self.sb2_names = {}  # TF variable name -> SB2 name
        weights = {}
        for key, dt in dtypes.items():
            name = variable_name(key)
            while name in self.sb2_names:
                name += "_"
            self.sb2_names[name] = key
            weights[key] = tf.Variable(np.asarray(spec.tensors[key]).astype(dt), trainable=False, name=name)
        self.weights = weights
        # The tensors a stochastic draw needs beside the public outputs.
        self.extra = tuple(t for t in spec.distribution.tensors.values() if t not in spec.outputs.values())

    cls = type("SpecTFModule", (tf.Module,), {
        "__init__": __init__,
        "serve": tf.function(serve, input_signature=signature, autograph=False),
        "__call__": lambda self, *args: self.serve(*args),
    })
    return cls(spec)


class GraphSession:
    """The spec as a graph with frozen weights, run by a `tf.compat.v1.Session` through
    callables made once per set of outputs: SB2's own way of running a policy, without
    the eager dispatch of a tf.function call (~0.2 ms against ~0.5 ms at batch 1).
    One thread per call: the daemon runs requests side by side."""

    def __init__(self, spec: PolicySpec, extra: tuple[str, ...]):
        tf = _import_tf()
        self.spec = spec
        self.graph = tf.Graph()
        with self.graph.as_default():
            sig = _obs_signature(spec)
            self.obs: Any  # a placeholder, or one per key of a goal observation
            if isinstance(sig, dict):
                self.obs = {k: tf.compat.v1.placeholder(s.dtype, s.shape, name=s.name) for k, s in sig.items()}
            else:
                self.obs = tf.compat.v1.placeholder(sig.dtype, sig.shape, name="obs")
            self.state = self.mask = None
            if spec.stateful:
                self.state = tf.compat.v1.placeholder(tf.float32, [None, spec.state_size], name="state")
                self.mask = tf.compat.v1.placeholder(tf.float32, [None], name="mask")
            weights = {key: tf.constant(np.asarray(spec.tensors[key]).astype(dt), name=variable_name(key))
                       for key, dt in _param_dtypes(spec).items()}
            self.tensors = _build_graph(spec, weights, self.obs, self.state, self.mask, extra)
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
        # Grappler would fold and reorder arithmetic around the frozen weights (a layer
        # norm drifted by 1e-4): run the graph as written, as the tf.function computes it
        config.graph_options.rewrite_options.disable_meta_optimizer = True
        self.session = tf.compat.v1.Session(graph=self.graph, config=config)
        self.feeds = list(self.obs.values()) if isinstance(self.obs, dict) else [self.obs]
        if spec.stateful:
            self.feeds += [self.state, self.mask]
        self._callables: dict[tuple[str, ...], Any] = {}

    def run(self, names: tuple[str, ...], inputs: list[np.ndarray]) -> list[np.ndarray]:
        fn = self._callables.get(names)
        if fn is None:
            fn = self._callables[names] = self.session.make_callable([self.tensors[k] for k in names], self.feeds)
        return fn(*inputs)


class TFPolicy(Backend):
    """Runs a PolicySpec with TensorFlow 2.

    `module` (a tf.Module whose tf.function `serve` the exporters and tests use) and
    `concrete` are the spec traced once; predictions run the same converters as a
    graph in a Session (GraphSession), which is what keeps a warm batch-1 call as fast
    as SB2's own session.run."""

    name = "tensorflow"

    def __init__(self, spec: PolicySpec):
        CONVERTERS.require(n.op for n in spec.nodes)
        self.spec = spec
        self._tf = _import_tf()
        self.module = make_module(spec)
        self.concrete = self.module.serve.get_concrete_function()
        # the graph also fetches the tensors sampling reads beside the public outputs (the logits)
        self.graph = GraphSession(spec, self.module.extra)

    # -- feeding ----------------------------------------------------------------------
    def _arrays(self, obs, state, mask) -> list[np.ndarray]:
        """numpy inputs in the graph's order, cast to the placeholders' dtypes as SB2's
        feed_dict did."""
        sig = self.module.serve.input_signature[0]
        if isinstance(sig, dict):
            arrays = [np.asarray(obs[k]).astype(s.dtype.as_numpy_dtype, copy=False) for k, s in sig.items()]
        else:
            arrays = [np.asarray(obs).astype(sig.dtype.as_numpy_dtype, copy=False)]
        if self.spec.stateful:
            arrays += [np.asarray(state, np.float32), np.asarray(mask, np.float32).reshape(-1)]
        return arrays

    def _inputs(self, obs, state, mask) -> list:
        """The tf.function's inputs (tensors)."""
        tf = self._tf
        sig = self.module.serve.input_signature[0]
        arrays = self._arrays(obs, state, mask)
        if isinstance(sig, dict):
            feed = {k: tf.convert_to_tensor(a, s.dtype) for (k, s), a in zip(sig.items(), arrays, strict=True)}
            return [feed, *[tf.convert_to_tensor(a) for a in arrays[len(sig):]]]
        return [tf.convert_to_tensor(a) for a in arrays]

    def forward(self, obs, state=None, mask=None) -> dict[str, np.ndarray]:
        """The public outputs' tensors and the distribution's tensors, by tensor name."""
        names = tuple(self.spec.outputs) + tuple("#" + t for t in self.module.extra)
        got = dict(zip(names, self.graph.run(names, self._arrays(obs, state, mask)), strict=True))
        env = {t: got[k] for k, t in self.spec.outputs.items()}
        env.update({t: got["#" + t] for t in self.module.extra})
        return env

    def run(self, obs, state=None, mask=None, outputs: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        wanted = self.wanted(outputs)
        return dict(zip(wanted, self.graph.run(wanted, self._arrays(obs, state, mask)), strict=True))
