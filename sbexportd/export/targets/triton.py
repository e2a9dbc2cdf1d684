"""`triton`: a Triton Inference Server model repository holding the agent:

    NAME/config.pbtxt    ModelConfig (text proto, Triton's model_config.proto): the ONNX
                         Runtime backend, every input and output by name with its data
                         type and dims, max_batch_size, dynamic batching, CPU instances
    NAME/1/model.onnx    the `onnx` target's graph (self-describing, batch dim `batch`)
    NAME/oip-v2.json     an Open Inference Protocol (v2) request for this agent and the
                         response it gets (KServe and Seldon speak the same protocol)

The batch is Triton's (max_batch_size > 0): dims leave it out. Tensors that are one
number per row (a Discrete obs, mask, values, a Discrete action) are dims [1] on the
wire with `reshape { shape: [] }` to the graph's (batch,). A recurrent policy's state
is an explicit input `state` and output `state_out`, so dynamic batching may mix rows
of any episodes.

Verified as Triton would run it: the config parsed with tritonclient's model_config
proto, checked against the graph onnxruntime reads (names, data types, shapes), and
the observations sent as v2 JSON requests of at most max_batch_size rows, decoded
under the config's names, shapes and types, run by onnxruntime, answered as v2 JSON
responses and decoded back; the documented example is replayed too."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ExportError, ParityFailed, TargetUnavailable
from ...parity import judge
from ..conventions import io
from ._serving import VERSION, dumps, example_inputs, model_folders, model_name, version_folders
from ._tf_common import conform, feed_arrays, rename_state_out

CONFIG = "config.pbtxt"
MODEL_FILE = "model.onnx"
EXAMPLE = "oip-v2.json"
BACKEND = "onnxruntime"
# Rows Triton batches at most (requests with more rows are refused by Triton: split
# them); a policy's forward pass is small, so a generous bound costs nothing.
MAX_BATCH_SIZE = 256
QUEUE_DELAY_US = 100  # how long the dynamic batcher waits to fill a batch

# NumPy dtype <-> Triton config type <-> v2 datatype; onnxruntime's type strings.
_TYPES = {"bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
          "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64", "float16": "FP16",
          "float32": "FP32", "float64": "FP64"}
_NUMPY = {v: k for k, v in _TYPES.items()}
_ORT = {"tensor(bool)": "bool", "tensor(uint8)": "uint8", "tensor(uint16)": "uint16", "tensor(uint32)": "uint32",
        "tensor(uint64)": "uint64", "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32",
        "tensor(int64)": "int64", "tensor(float16)": "float16", "tensor(float)": "float32",
        "tensor(double)": "float64"}


def model_config_pb2():
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:  # pragma: no cover - make install puts it there
        raise TargetUnavailable(f"triton: tritonclient's model_config proto is not installed ({exc}); "
                                "run `make install`") from exc
    return model_config_pb2


# --- writing ---------------------------------------------------------------------------
def build_config(name: str, spec):
    """The ModelConfig of the convention's I/O (state out as `state_out`)."""
    mc = model_config_pb2()
    config = mc.ModelConfig(name=name, backend=BACKEND, max_batch_size=MAX_BATCH_SIZE)
    inputs, outputs = rename_state_out(spec, *io(spec))
    for entries, field in ((inputs, config.input), (outputs, config.output)):
        for entry in entries:
            tensor = field.add(name=entry["name"], data_type=mc.DataType.Value("TYPE_" + _TYPES[entry["dtype"]]))
            dims = [int(d) for d in entry["shape"][1:]]
            if dims:
                tensor.dims.extend(dims)
            else:  # one number per row: Triton needs a dim; the graph has none
                tensor.dims.append(1)
                tensor.reshape.SetInParent()
    config.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    config.default_model_filename = MODEL_FILE
    return config


def write(model, folder: Path) -> None:
    import onnx
    from google.protobuf import text_format

    from .onnx import convert

    name = model_name(model)
    version = folder / name / str(VERSION)
    version.mkdir(parents=True)
    onnx.save(convert(model), str(version / MODEL_FILE))
    config = build_config(name, model.spec)
    (folder / name / CONFIG).write_text(
        f"# Triton model configuration of {name}: written by sbexportd (docs/targets/triton.md)\n"
        + text_format.MessageToString(config))
    (folder / name / EXAMPLE).write_text(dumps(example(model, config)))


def example(model, config) -> dict[str, Any]:
    """A v2 infer request of a few observations and the reference's response."""
    from ..core import reference_outputs
    feeds = feed_arrays(model.spec, example_inputs(model.spec))
    answers = {("state_out" if k == "state" else k): v for k, v in reference_outputs(model, feeds).items()}
    return {"endpoint": f"POST /v2/models/{config.name}/versions/{VERSION}/infer",
            "request": v2_request(config, feeds),
            "response": v2_response(config, answers)}


# --- Open Inference Protocol v2 JSON ------------------------------------------------------
def _datatype(tensor) -> str:
    return model_config_pb2().DataType.Name(tensor.data_type)[len("TYPE_"):]


def _wire(tensor, array: np.ndarray) -> np.ndarray:
    """An array of the graph's shape as Triton sends it: (batch, *dims), the config's type."""
    array = np.asarray(array).astype(_NUMPY[_datatype(tensor)], copy=False)
    return array.reshape((len(array), *tensor.dims))


def _graph(tensor, array: np.ndarray) -> np.ndarray:
    """A wire array as the graph takes it: (batch, *reshape) where the config reshapes."""
    if tensor.HasField("reshape"):
        return array.reshape((len(array), *tensor.reshape.shape))
    return array


def _tensor_json(tensor, array: np.ndarray) -> dict[str, Any]:
    a = _wire(tensor, array)
    return {"name": tensor.name, "shape": list(a.shape), "datatype": _datatype(tensor), "data": a.reshape(-1).tolist()}


def v2_request(config, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    return {"inputs": [_tensor_json(t, arrays[t.name]) for t in config.input]}


def v2_response(config, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    return {"model_name": config.name, "model_version": str(VERSION),
            "outputs": [_tensor_json(t, arrays[t.name]) for t in config.output]}


def _decode(tensors, items: list[dict[str, Any]], what: str) -> dict[str, np.ndarray]:
    """v2 JSON tensors -> graph arrays, each checked against its config entry."""
    by_name = {t.name: t for t in tensors}
    got = {}
    for item in items:
        t = by_name.get(item.get("name"))
        if t is None:
            raise ExportError(f"triton: {what} tensor {item.get('name')!r} is not in config.pbtxt")
        if item["datatype"] != _datatype(t):
            raise ExportError(f"triton: {what} {t.name} is {item['datatype']}, config.pbtxt says {_datatype(t)}")
        shape = [int(d) for d in item["shape"]]
        if shape[1:] != list(t.dims):
            raise ExportError(f"triton: {what} {t.name} has shape {shape}, config.pbtxt says [batch, "
                              f"{', '.join(map(str, t.dims))}]")
        got[t.name] = _graph(t, np.asarray(item["data"], dtype=_NUMPY[item["datatype"]]).reshape(shape))
    missing = set(by_name) - set(got)
    if missing:
        raise ExportError(f"triton: {what} lacks {sorted(missing)}")
    return got


# --- loading -----------------------------------------------------------------------------
def read_config(model_folder: Path):
    """config.pbtxt parsed strictly with Triton's own ModelConfig."""
    from google.protobuf import text_format
    config = model_config_pb2().ModelConfig()
    try:
        text_format.Parse((model_folder / CONFIG).read_text(), config)
    except text_format.ParseError as exc:
        raise ExportError(f"triton: {CONFIG} is not a valid ModelConfig: {exc}", model_folder) from exc
    return config


def check_config(config, model_folder: Path) -> Path:
    """What Triton requires of this repository entry; returns the model file to load."""
    problems = []
    if config.name != model_folder.name:
        problems.append(f"name {config.name!r} is not the folder's name {model_folder.name!r}")
    if config.backend != BACKEND and config.platform != "onnxruntime_onnx":
        problems.append(f"backend {config.backend!r}: expected {BACKEND!r}")
    if config.max_batch_size <= 0:
        problems.append("max_batch_size must be > 0 (the graph's first dimension is the batch)")
    if not config.HasField("dynamic_batching"):
        problems.append("no dynamic_batching")
    versions = version_folders(model_folder)
    model_file = versions[-1] / (config.default_model_filename or MODEL_FILE) if versions else None
    if model_file is None or not model_file.is_file():
        problems.append(f"no <version>/{config.default_model_filename or MODEL_FILE}")
    if problems or model_file is None:
        raise ExportError("triton: " + "; ".join(problems), model_folder / CONFIG)
    return model_file


def check_against_graph(config, session, model_folder: Path) -> None:
    """The config's inputs and outputs are the graph's: names, types, and shapes
    ((batch, *reshape or dims)), as Triton's onnxruntime backend insists."""
    problems = []
    for kind, tensors, graph in (("input", config.input, session.get_inputs()),
                                 ("output", config.output, session.get_outputs())):
        declared = {t.name: t for t in tensors}
        actual = {g.name: g for g in graph}
        if set(declared) != set(actual):
            problems.append(f"{kind}s {sorted(declared)} in config, {sorted(actual)} in the graph")
            continue
        for name, t in declared.items():
            g = actual[name]
            if _ORT.get(g.type) != _NUMPY[_datatype(t)]:
                problems.append(f"{kind} {name}: config {_datatype(t)}, graph {g.type}")
            want = list(t.reshape.shape) if t.HasField("reshape") else list(t.dims)
            if isinstance(g.shape[0], int) or [int(d) for d in g.shape[1:]] != want:
                problems.append(f"{kind} {name}: config [batch, {want}], graph {g.shape}")
    if problems:
        raise ExportError("triton: config.pbtxt does not describe the graph: " + "; ".join(problems), model_folder)


def load(folder: Path, spec):
    from importlib.metadata import version

    import onnxruntime as ort

    found = model_folders(folder)
    if len(found) != 1:
        raise ExportError(f"triton: expected one model folder in the repository, found "
                          f"{[p.name for p in found]}", folder)
    (model_folder,) = found
    config = read_config(model_folder)
    model_file = check_config(config, model_folder)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    check_against_graph(config, session, model_folder)

    def infer(request_json: str) -> str:
        """One v2 request through the model, as Triton's onnxruntime backend runs it."""
        request = json.loads(request_json)
        feeds = _decode(config.input, request["inputs"], "request input")
        rows = {len(a) for a in feeds.values()}
        if len(rows) != 1 or rows.pop() > config.max_batch_size:
            raise ExportError(f"triton: a request of batch sizes {sorted({len(a) for a in feeds.values()})} "
                              f"(max_batch_size {config.max_batch_size})")
        names = [t.name for t in config.output]
        outputs = dict(zip(names, session.run(names, feeds), strict=True))
        return json.dumps(v2_response(config, {t.name: outputs[t.name] for t in config.output}))

    def run(feeds):
        arrays = feed_arrays(spec, feeds)
        n = len(arrays["obs"])
        parts = []
        for start in range(0, n, config.max_batch_size):
            chunk = {k: v[start:start + config.max_batch_size] for k, v in arrays.items()}
            response = json.loads(infer(json.dumps(v2_request(config, chunk))))
            parts.append(_decode(config.output, response["outputs"], "response output"))
        got = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return conform(spec, got)

    _replay_example(spec, config, model_folder, infer)
    runtime = (f"onnxruntime {ort.__version__} (python, CPU) under {model_folder.name}/{CONFIG} "
               f"(tritonclient {version('tritonclient')} model_config proto), v2 JSON requests")
    return run, runtime


def _replay_example(spec, config, model_folder: Path, infer) -> None:
    """The documented request gets the documented response: the reference's answer,
    which the model's answer must meet under the parity rule."""
    from ..conventions import export_name
    doc = json.loads((model_folder / EXAMPLE).read_text())
    feeds = _decode(config.input, doc["request"]["inputs"], f"{EXAMPLE} input")
    verdict = judge(spec, feeds, export_name)
    documented = conform(spec, _decode(config.output, doc["response"]["outputs"], f"{EXAMPLE} output"))
    answered = conform(spec, _decode(config.output, json.loads(infer(json.dumps(doc["request"])))["outputs"],
                                     "response output"))
    for name, want in verdict.reference.items():
        got = documented.get(name)
        if got is None or not np.array_equal(got, np.asarray(want).astype(got.dtype)):
            raise ParityFailed(f"triton: the export does not reproduce the policy: {EXAMPLE} documents {name} "
                               "unlike the reference", model_folder)
    checks = verdict.check(answered)
    if not checks.passed:
        raise ParityFailed(f"triton: the export does not reproduce the policy: the model does not answer "
                           f"{EXAMPLE}'s request as documented: {checks.describe()}", model_folder)


def adjust_io(spec, inputs, outputs):
    return rename_state_out(spec, inputs, outputs)


def manifest_notes(spec) -> list[str]:
    return [("Triton: start tritonserver with --model-repository at this folder; the model is the folder "
             f"beside this manifest (config.pbtxt, 1/{MODEL_FILE}); {EXAMPLE} holds an Open Inference "
             "Protocol v2 request and its response")]
