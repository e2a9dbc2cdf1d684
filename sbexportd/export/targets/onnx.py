"""`onnx`: policy.onnx (opset 17), converted by tf2onnx from the serving function;
inputs obs (state, mask) and outputs named as the convention (no ":0" suffixes),
except the recurrent state output: `state_out` (an ONNX graph cannot have an input
and an output both named `state`); dynamic batch, named `batch`. The file describes
itself: metadata_props (spaces, preprocessing, what each output means, the source
file's sha256, the sbexportd version) and a doc string. Verified with onnxruntime's
InferenceSession (Python), and in Node with onnxruntime-node through node_runner.mjs
when Node and clients/node's packages are there (both must reproduce the reference)."""
from __future__ import annotations

import json
from pathlib import Path

from ... import __version__
from ...errors import ExportError
from ...parity import compare_all, discrete_names
from ..conventions import io, meaning, output_names
from ._tf_common import (
    STATE_OUT,
    conform,
    feed_arrays,
    input_names,
    node_client,
    node_package_version,
    rename_state_out,
    run_node,
    serving_module,
)

FILE = "policy.onnx"
OPSET = 17


def _rename(model_proto, renames: dict[str, str]) -> None:
    graph = model_proto.graph
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        vi.name = renames.get(vi.name, vi.name)
    for node in graph.node:
        node.input[:] = [renames.get(x, x) for x in node.input]
        node.output[:] = [renames.get(x, x) for x in node.output]


def convert(model):
    """The policy as an ONNX ModelProto, checked, named and described (metadata_props,
    doc string, the batch dimension named `batch`). The triton target writes the same."""
    import onnx
    import tf2onnx

    spec = model.spec
    module = serving_module(spec, state_output=STATE_OUT)
    model_proto, _ = tf2onnx.convert.from_function(module.serve, input_signature=module.serve.input_signature,
                                                   opset=OPSET)
    want_in = input_names(spec)
    want_out = [STATE_OUT if e == "state" else e for e, _ in output_names(spec)]
    got_in = [i.name for i in model_proto.graph.input]
    got_out = [o.name for o in model_proto.graph.output]
    # tf2onnx names the graph's values after the function's (structured) names; older
    # releases kept TF's ":0" suffixes.
    renames = {n: n[:-2] for n in got_in + got_out if n.endswith(":0")}
    if renames:
        _rename(model_proto, renames)
        got_in = [i.name for i in model_proto.graph.input]
        got_out = [o.name for o in model_proto.graph.output]
    if sorted(got_in) != sorted(want_in) or sorted(got_out) != sorted(want_out):
        raise ExportError(f"tf2onnx gave inputs {got_in} and outputs {got_out}; expected {want_in} and {want_out}")
    _name_batch(model_proto)
    describe(model, model_proto)
    onnx.checker.check_model(model_proto, full_check=True)
    return model_proto


def write(model, folder: Path) -> None:
    import onnx
    onnx.save(convert(model), str(folder / FILE))


BATCH = "batch"


def _name_batch(model_proto) -> None:
    """tf2onnx names the dynamic batch `unk__<n>` (one symbol per input and output): call
    every one of them `batch`, wherever the graph uses it."""
    graph = model_proto.graph
    symbols = set()
    for vi in list(graph.input) + list(graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            symbols.add(dims[0].dim_param)
            dims[0].dim_param = BATCH
    for vi in graph.value_info:
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in symbols:
                d.dim_param = BATCH


def metadata(model) -> dict[str, str]:
    """What a serving engine or a user needs to know of the policy, as ONNX
    metadata_props (string values; JSON where structured)."""
    spec, archive = model.spec, model.archive
    inputs, outputs = rename_state_out(spec, *io(spec))
    vn = model.vecnormalize
    props = {
        "sbexportd_version": __version__,
        "source_file": archive.path.name,
        "source_sha256": archive.sha256,
        "source_format": archive.format,
        "algorithm": spec.algo,
        "policy": spec.policy,
        "observation_space": spec.observation_space.describe(),
        "action_space": spec.action_space.describe(),
        "preprocessing": spec.preprocessing,
        "postprocessing": spec.postprocessing,
        "vecnormalize": ({"applied": True, "epsilon": vn.epsilon, "clip_obs": vn.clip_obs, "source": vn.source}
                         if spec.vecnormalize and vn is not None else {"applied": bool(spec.vecnormalize)}),
        "frame_stack": spec.frame_stack or 0,
        "inputs": [dict(i, meaning=meaning(i["name"], is_input=True)) for i in inputs],
        "outputs": [dict(o, meaning=meaning(o["name"])) for o in outputs],
    }
    return {k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in props.items()}


def describe(model, model_proto) -> None:
    """metadata_props and a doc string that says what the graph is."""
    spec, archive = model.spec, model.archive
    props = metadata(model)
    del model_proto.metadata_props[:]
    for key, value in props.items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value
    ins = ", ".join(f"{i.name} ({meaning(i.name, is_input=True)})" for i in model_proto.graph.input)
    outs = ", ".join(f"{o.name} ({meaning(o.name)})" for o in model_proto.graph.output)
    model_proto.doc_string = (
        f"Stable Baselines 2 {spec.algo.upper()} {spec.policy} policy from {archive.path.name} "
        f"(sha256 {archive.sha256}), exported by sbexportd {__version__}. "
        f"Inputs, first dimension `batch`: {ins}. Outputs: {outs}. "
        + (f"Preprocessing in the graph: {'; '.join(spec.preprocessing)}. " if spec.preprocessing else "")
        + (f"Action: {spec.postprocessing}. " if spec.postprocessing else "")
        + "metadata_props hold the spaces and these descriptions as JSON.")


def load(folder: Path, spec):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(folder / FILE), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    client, why = node_client()
    from ._tf_common import node_manifest
    manifest = node_manifest(spec, "onnx", adjust_io)

    def run(feeds):
        arrays = feed_arrays(spec, feeds)
        got = conform(spec, dict(zip(names, session.run(names, arrays), strict=True)))
        if client is not None:  # the Node client's loadExport, with onnxruntime-node
            in_node, _ = run_node("onnx", folder, arrays, client, manifest)
            _agree(spec, conform(spec, in_node), got, folder)
        return got
    runtime = f"onnxruntime {ort.__version__} (python, CPU)"
    if client is not None:
        runtime += (f"; onnxruntime-node {node_package_version(client, 'onnxruntime-node')} "
                    "in Node agrees")
    else:
        runtime += f"; not checked in Node: {why}"
    return run, runtime


def _agree(spec, node_out, py_out, folder) -> None:
    """onnxruntime-node must give what onnxruntime gives (the parity rule)."""
    from ...errors import ParityFailed
    checks = compare_all(node_out, py_out, discrete_names(spec))
    if not checks.passed:
        raise ParityFailed(f"onnx: onnxruntime-node disagrees with onnxruntime: {checks.describe()}", folder)


def adjust_io(spec, inputs, outputs):
    return rename_state_out(spec, inputs, outputs)
