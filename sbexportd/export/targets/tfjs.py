"""`tfjs`: a TensorFlow.js graph model (model.json + weight shards), converted in
process by the tensorflowjs converter from a temporary SavedModel, outputs keyed by
the convention's names (structured outputs).

TensorFlow.js has neither float64 nor int64: this target computes VecNormalize in
float32 (as tflite does), and integer outputs (the Discrete / MultiDiscrete action)
come out as int32; NOTE.txt says so. Verified in Node with the Node client's own
loadExport (@tensorflow/tfjs, cpu backend) when Node and the client are there
(_tf_common.node_client); else model.json and its shards run with TensorFlow."""
from __future__ import annotations

import contextlib
import json
import tempfile
import threading
from pathlib import Path

from ...errors import ExportError
from ._tf_common import (
    conform,
    feed_arrays,
    import_tfjs_converter,
    node_client,
    node_manifest,
    node_package_version,
    run_node,
)
from .savedmodel import save

NOTE = "NOTE.txt"


def note(spec) -> str:
    return ("TensorFlow.js graph model (model.json + weight shards)\n\n"
            "Load with tf.loadGraphModel(...) and run model.executeAsync({obs[, state, mask]}):\n"
            "outputs are keyed by the manifest's names (structured outputs).\n"
            "TensorFlow.js has no int64: the action of a Discrete / MultiDiscrete space comes out\n"
            "as int32 (the manifest says int64 for the other targets); integer observations\n"
            "(uint8 images, Discrete indices) are fed as int32.\n"
            "TensorFlow.js has no float64: " + (
                "this model's VecNormalize step is computed in FLOAT32 (SB2: float64).\n"
                if spec.vecnormalize else "not needed here (no VecNormalize statistics).\n"))


def write(model, folder: Path) -> None:
    convert_tf_saved_model = import_tfjs_converter().convert_tf_saved_model
    with tempfile.TemporaryDirectory(prefix="sbexportd-tfjs-") as tmp:
        saved = Path(tmp) / "saved_model"
        save(model.spec, saved, float64=False)
        with _without_remapper():
            convert_tf_saved_model(str(saved), str(folder), signature_def="serving_default",
                                   saved_model_tags="serve", use_structured_outputs_names=True)
        name_outputs(folder / "model.json", saved)
    (folder / NOTE).write_text(note(model.spec))


_CONVERT_LOCK = threading.Lock()


@contextlib.contextmanager
def _without_remapper():
    """Run the converter without Grappler's `remap` pass. With oneDNN (TF's default
    on x86) it fuses layer norms into _MklLayerNorm, which tfjs cannot run, and it
    fuses Tanh (SB2's default activation) into _FusedMatMul, which tfjs's kernels
    reject ("Activation tanh has not been implemented"). Without it the graph keeps
    plain MatMul / Conv2D / AddV2 / activation ops that every tfjs backend (and
    TensorFlow itself) runs."""
    conv = import_tfjs_converter()
    original = conv._run_grappler

    def run_grappler(config, graph_def, graph, signature_def):
        opts = config.graph_options.rewrite_options.optimizers
        kept = [o for o in opts if o != "remap"]
        del opts[:]
        opts.extend(kept)
        return original(config, graph_def, graph, signature_def)

    with _CONVERT_LOCK:
        conv._run_grappler = run_grappler
        try:
            yield
        finally:
            conv._run_grappler = original


def name_outputs(model_json: Path, saved: Path) -> None:
    """Key model.json's signature outputs by the convention's names. The converter
    names them by matching dtype and shape against the SavedModel's signature, so
    outputs of one shape (action, mean, std of a Box policy) are left under tensor
    names; the function's outputs are in sorted-key order (the converter checks it
    for structuredOutputKeys), which gives each its name."""
    from ._tf_common import import_tf
    tf = import_tf()
    fn = tf.saved_model.load(str(saved)).signatures["serving_default"]
    by_tensor = dict(zip((t.name for t in fn.outputs), sorted(fn.structured_outputs), strict=True))
    doc = json.loads(model_json.read_text())
    entries = doc["signature"]["outputs"].values()
    if sorted(e["name"] for e in entries) != sorted(by_tensor):
        raise ExportError(f"the converter's outputs {sorted(e['name'] for e in entries)} are not the "
                          f"function's {sorted(by_tensor)}", model_json)
    # In sorted key order: GraphModel.predict() labels its outputs, which come in this
    # order, with the sorted structuredOutputKeys.
    doc["signature"]["outputs"] = dict(sorted((by_tensor[e["name"]], e) for e in entries))
    model_json.write_text(json.dumps(doc))


def load(folder: Path, spec):
    client, why = node_client()
    if client is None:
        return _python_fallback(folder, spec, why)

    manifest = node_manifest(spec, "tfjs", adjust_io)

    def run(feeds):
        got, _ = run_node("tfjs", folder, feed_arrays(spec, feeds), client, manifest)
        return conform(spec, got)
    version = node_package_version(client, "@tensorflow/tfjs")
    return run, f"@tensorflow/tfjs {version} in Node (cpu backend, sbexportd-client's loadExport)"


def feeds_for_tfjs(spec, feeds):
    arrays = feed_arrays(spec, feeds)
    return {k: (v.astype("int32") if v.dtype.kind in "iub" else v.astype("float32")) for k, v in arrays.items()}


def _python_fallback(folder: Path, spec, why: str):
    """Without Node: rebuild model.json's graph and the shards' weights as a GraphDef
    and run it with TensorFlow. This checks the files (topology, weights, names), not
    TensorFlow.js's kernels; the runtime string says so."""
    from google.protobuf import json_format
    import_tfjs_converter()
    from tensorflowjs.read_weights import read_weights

    from ._tf_common import import_tf, session_config
    tf = import_tf()
    doc = json.loads((folder / "model.json").read_text())
    graph_def = json_format.ParseDict(doc["modelTopology"], tf.compat.v1.GraphDef(), ignore_unknown_fields=True)
    nodes = {n.name: n for n in graph_def.node}
    for group in read_weights(doc["weightsManifest"], str(folder)):
        for w in group:
            nodes[w["name"]].attr["value"].tensor.CopyFrom(tf.make_tensor_proto(w["data"]))
    for node in graph_def.node:
        if node.op == "BiasAdd":  # the converter's normalize_bias_add makes any Add one
            node.op = "AddV2"
            del node.attr["data_format"]
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    session = tf.compat.v1.Session(graph=graph, config=session_config())
    sig = doc["signature"]
    fetch = {k: graph.get_tensor_by_name(v["name"]) for k, v in sig["outputs"].items()}

    def run(feeds):
        arrays = feeds_for_tfjs(spec, feeds)
        feed = {graph.get_tensor_by_name(sig["inputs"][k]["name"]): v.astype(
            graph.get_tensor_by_name(sig["inputs"][k]["name"]).dtype.as_numpy_dtype) for k, v in arrays.items()}
        return conform(spec, session.run(fetch, feed))
    return run, (f"not verified in Node: {why}; model.json and its shards run with tensorflow "
                 f"{tf.__version__} instead")


def manifest_notes(spec) -> list[str]:
    """NOTE.txt's first paragraph after its title, and the float32 VecNormalize caveat."""
    return [" ".join(note(spec).split("\n\n")[1].split())] + (
        ["VecNormalize is computed in float32 in this target (SB2: float64); see NOTE.txt"]
        if spec.vecnormalize else [])


def adjust_io(spec, inputs, outputs):
    """TensorFlow.js has no int64: integer inputs are fed, integer actions come, as int32."""
    def int32(d):
        return dict(d, dtype="int32") if d["dtype"] in ("int64", "uint8", "int32", "int16", "int8") else d
    return [int32(i) for i in inputs], [int32(o) for o in outputs]
