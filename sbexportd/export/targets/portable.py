"""`portable`: policy.sbx.msgpack, the spec and its weights in one versioned msgpack
file that any language can run (docs/portable.md is its specification; the Java and
Node clients carry small runtimes for it)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from ...errors import InvalidSpec, ModelFileError, SbExportError
from ...understand.spec import (
    OPS,
    SPEC_VERSION,
    Box,
    Discrete,
    Distribution,
    MultiBinary,
    MultiDiscrete,
    Node,
    PolicySpec,
)
from ..conventions import export_name, output_names

FORMAT = "sbexportd-portable"
FILE = "policy.sbx.msgpack"
MAX_FILE = 1 << 30


def _array(a: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.name, "shape": list(a.shape), "data": a.astype(a.dtype.newbyteorder("<")).tobytes()}


def _json_array(a: np.ndarray) -> dict[str, Any]:
    a = np.asarray(a)
    return {"dtype": a.dtype.name, "shape": list(a.shape), "data": a.ravel().tolist()}


def spec_document(spec: PolicySpec) -> dict[str, Any]:
    """The spec as plain data. `constants` are the tensors that are not SB2 parameters
    (space bounds, statistics, reshaped biases), as JSON arrays."""
    used = spec.used_tensors()
    trained = set(spec.sb2_params)
    return {
        "spec_version": SPEC_VERSION,
        "algorithm": spec.algo,
        "policy": spec.policy,
        "observation_space": spec.observation_space.describe(),
        "action_space": spec.action_space.describe(),
        "input": {"name": "obs", "dtype": spec.input_dtype, "shape": [None, *spec.observation_space.shape]},
        "recurrent": {"n_lstm": spec.recurrent} if spec.recurrent else None,
        "frame_stack": {"n": spec.frame_stack} if spec.frame_stack else None,
        # state (batch, size) float32 and mask (batch,) when the program carries state
        "state": {"size": spec.state_size} if spec.stateful else None,
        # HER: a goal dict is flattened into obs in this key order before the program runs.
        "goal_observation": ({"keys": [k for k, _ in spec.goal_observation.spaces]}
                             if spec.goal_observation else None),
        "nodes": [{"op": n.op, "inputs": list(n.inputs), "outputs": list(n.outputs), "attrs": n.attrs,
                   "params": n.params} for n in spec.nodes],
        "outputs": {name: spec.outputs[key] for name, key in output_names(spec)},
        "distribution": {"kind": spec.distribution.kind, "tensors": spec.distribution.tensors,
                         "nvec": list(spec.distribution.nvec)},
        "preprocessing": spec.preprocessing,
        "postprocessing": spec.postprocessing,
        "constants": {k: _json_array(spec.tensors[k]) for k in used if k not in trained},
    }


def write(model, folder: Path) -> None:
    spec = model.spec
    doc = spec_document(spec)
    constants = doc.pop("constants")
    doc = {"format": FORMAT, "format_version": 1, **doc,
           "tensors": {k: _array(spec.tensors[k]) for k in spec.used_tensors()}}
    assert set(constants) <= set(doc["tensors"])
    (folder / FILE).write_bytes(msgpack.packb(doc, use_bin_type=True))


# --- the NumPy reader of the format ------------------------------------------------------
def read(path: Path) -> PolicySpec:
    """Parse a portable file into a spec without trusting it: ops, dtypes and shapes
    are checked before any array is built. A file that is not a well-formed portable
    document is a ModelFileError, a program that breaks the op contract InvalidSpec."""
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) > MAX_FILE:
        raise ModelFileError(f"larger than {MAX_FILE} bytes", path)
    try:
        doc = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:  # noqa: BLE001 - msgpack's errors for bytes that are not its format
        raise ModelFileError(f"not msgpack: {type(exc).__name__}", path) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("format_version") != 1:
        raise ModelFileError(f"not an {FORMAT} v1 file", path)
    try:
        tensors = {name: _tensor(name, t, path) for name, t in doc["tensors"].items()}
        return spec_from_document(doc, tensors, source=str(path))
    except SbExportError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:  # a field missing or mistyped
        what = f"field {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {str(exc)[:120]}"
        raise ModelFileError(f"not a well-formed {FORMAT} v1 document ({what})", path) from None


def _tensor(name: str, t: dict[str, Any], path: Path) -> np.ndarray:
    try:
        dtype = np.dtype(t["dtype"]).newbyteorder("<")
    except TypeError:
        raise ModelFileError(f"tensor {name} has an unknown dtype {t['dtype']!r:.40}", path) from None
    if dtype.kind not in "fiub":
        raise ModelFileError(f"tensor {name} has dtype {t['dtype']}", path)
    count = int(np.prod(t["shape"], dtype=np.int64))
    if count * dtype.itemsize != len(t["data"]):
        raise ModelFileError(f"tensor {name} has {len(t['data'])} bytes for shape {t['shape']}", path)
    return np.frombuffer(t["data"], dtype).reshape(t["shape"]).astype(dtype.newbyteorder("="))


def _space(d: dict[str, Any]):
    kind = d["type"]
    if kind == "Discrete":
        return Discrete(int(d["n"]))
    if kind == "MultiDiscrete":
        return MultiDiscrete(tuple(int(v) for v in d["nvec"]))
    if kind == "MultiBinary":
        return MultiBinary(int(d["n"]))

    def bound(v):
        v = np.asarray([float(x) for x in np.ravel(v)]) \
            if not isinstance(v, str) else np.asarray([float(v)])
        return np.broadcast_to(v, d["shape"]).astype(d.get("dtype", "float32"))
    return Box(low=bound(d.get("low", "-inf")), high=bound(d.get("high", "inf")), dtype=d.get("dtype", "float32"))


def spec_from_document(doc: dict[str, Any], tensors: dict[str, np.ndarray], source: str | None = None) -> PolicySpec:
    nodes = []
    for n in doc["nodes"]:
        if n["op"] not in OPS:
            raise InvalidSpec(f"unknown op {n['op']!r:.40}; the ops are {', '.join(OPS)}", source)
        nodes.append(Node(n["op"], tuple(n["inputs"]), tuple(n["outputs"]), dict(n["attrs"]), dict(n["params"])))
    outputs = {("actions" if k == "action" else k): v for k, v in doc["outputs"].items()}
    dist = doc["distribution"]
    spec = PolicySpec(
        algo=doc["algorithm"], policy=doc["policy"], observation_space=_space(doc["observation_space"]),
        action_space=_space(doc["action_space"]), nodes=nodes, outputs=outputs, tensors=tensors,
        distribution=Distribution(dist["kind"], dict(dist["tensors"]), tuple(dist["nvec"])),
        input_dtype=doc["input"]["dtype"], recurrent=(doc["recurrent"] or {}).get("n_lstm", 0),
        frame_stack=(doc.get("frame_stack") or {}).get("n", 0),
        preprocessing=list(doc.get("preprocessing", [])), postprocessing=doc.get("postprocessing", ""))
    spec.validate(source)
    return spec


def load(folder: Path, spec: PolicySpec):
    from ...realize.numpy_backend import NumpyPolicy
    policy = NumpyPolicy(read(folder / FILE))

    def run(feeds):
        out = policy.run(feeds["obs"], feeds.get("state"), feeds.get("mask"))
        return {export_name(k): v for k, v in out.items()}
    return run, "numpy reader of the portable format"
