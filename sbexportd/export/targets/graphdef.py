"""`graphdef`: the inference graph frozen to constants, for the TF1-style Session APIs
(C: TF_GraphImportGraphDef + TF_SessionRun, C++: tensorflow::Session, Java's
legacy Graph/Session, tf.compat.v1).

Files:
  frozen_graph.pb  GraphDef; placeholders `obs` (`state`, `mask`), and one node per
                   output named as the convention's output (`action`, `probs`, ...),
                   except the recurrent state out: `state_out` (`state` is the input)
  model.meta       MetaGraphDef (tag "serve") around the same GraphDef, with a
                   `serving_default` SignatureDef naming those tensors, for
                   tf.compat.v1.train.import_meta_graph and other MetaGraph readers;
                   it holds no variables (they are constants) and no saver
  io.json          the tensor names ("obs:0", "action:0", ...), dtypes and shapes
Only the policy's forward pass is in the graph: no training placeholders, no
optimizer, no sampling.

Run sessions with Grappler's remapper off (io.json "session_config"): with oneDNN,
TensorFlow's default on x86, it fuses layer norms into _MklLayerNorm, which is off by
up to 1e-3 from SB2 on LN policies.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..conventions import io
from ._tf_common import (
    SESSION_CONFIG_NOTE,
    STATE_OUT,
    conform,
    feed_arrays,
    import_tf,
    input_names,
    rename_state_out,
    serving_module,
    session_config,
)

GRAPH = "frozen_graph.pb"
META = "model.meta"
IO = "io.json"
SIGNATURE = "serving_default"


def node_name(export: str) -> str:
    """The graph node of an output (the state output's name is the state input's)."""
    return STATE_OUT if export == "state" else export


def frozen_graph_def(spec):
    """The serving function frozen, its outputs' nodes renamed to the export names."""
    import_tf()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    module = serving_module(spec)
    concrete = module.serve.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    # The function's outputs are Identity nodes ("Identity", "Identity_1", ...): give
    # each the export name, moving aside any inner node that holds that name.
    position = {t.name: i for i, t in enumerate(concrete.outputs)}
    final = {frozen.outputs[position[t.name]].name.split(":")[0]: node_name(export)
             for export, t in concrete.structured_outputs.items()}
    taken = {n.name for n in graph_def.node}
    renames = {}
    for export in final.values():
        if export in taken and export not in final:
            new = export + "_inner"
            while new in taken:
                new += "_"
            renames[export] = new
            taken.add(new)
    renames.update(final)
    for node in graph_def.node:
        node.name = renames.get(node.name, node.name)
        for i, inp in enumerate(node.input):
            ctrl = inp.startswith("^")
            name, _, port = inp.lstrip("^").partition(":")
            if name in renames:
                node.input[i] = ("^" if ctrl else "") + renames[name] + (":" + port if port else "")
    names = {n.name for n in graph_def.node}
    missing = [n for n in input_names(spec) + list(final.values()) if n not in names]
    if missing:
        raise RuntimeError(f"frozen graph lacks nodes {missing}")
    return graph_def


def meta_graph_def(spec, graph_def):
    tf = import_tf()
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
        meta = v1.train.export_meta_graph(graph=graph, clear_devices=True)
        inputs, outputs = io(spec)
        sig = v1.saved_model.signature_def_utils.build_signature_def(
            inputs={d["name"]: v1.saved_model.utils.build_tensor_info(graph.get_tensor_by_name(d["name"] + ":0"))
                    for d in inputs},
            outputs={d["name"]: v1.saved_model.utils.build_tensor_info(
                graph.get_tensor_by_name(node_name(d["name"]) + ":0"))
                     for d in outputs},
            method_name="tensorflow/serving/predict")
    meta.meta_info_def.tags.append("serve")
    meta.signature_def[SIGNATURE].CopyFrom(sig)
    return meta


def write(model, folder: Path) -> None:
    spec = model.spec
    graph_def = frozen_graph_def(spec)
    (folder / GRAPH).write_bytes(graph_def.SerializeToString())
    (folder / META).write_bytes(meta_graph_def(spec, graph_def).SerializeToString())
    inputs, outputs = io(spec)
    doc = {"graph": GRAPH, "meta_graph": META, "signature": SIGNATURE, "tags": ["serve"],
           "inputs": [{**d, "tensor": d["name"] + ":0"} for d in inputs],
           "outputs": [{**d, "tensor": node_name(d["name"]) + ":0"} for d in outputs],
           "session_config": {"note": SESSION_CONFIG_NOTE,
                              "serialized_hex": session_config().SerializeToString().hex()},
           "note": "feed obs in its dtype (SB2 cast observations to it); batch is dynamic"}
    (folder / IO).write_text(json.dumps(doc, indent=2) + "\n")


def load(folder: Path, spec):
    """Run frozen_graph.pb in a tf.compat.v1 Session by the tensor names of io.json;
    model.meta is imported and run too, and must give the same outputs."""
    tf = import_tf()
    v1 = tf.compat.v1
    doc = json.loads((folder / IO).read_text())
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((folder / GRAPH).read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    session = v1.Session(graph=graph, config=session_config())
    fetch = {d["name"]: graph.get_tensor_by_name(d["tensor"]) for d in doc["outputs"]}
    inputs = {d["name"]: graph.get_tensor_by_name(d["tensor"]) for d in doc["inputs"]}

    meta_graph = tf.Graph()
    with meta_graph.as_default():
        v1.train.import_meta_graph(str(folder / META), clear_devices=True)
    meta_session = v1.Session(graph=meta_graph, config=session_config())
    from tensorflow.core.protobuf import meta_graph_pb2
    meta = meta_graph_pb2.MetaGraphDef()
    meta.ParseFromString((folder / META).read_bytes())
    sig = meta.signature_def[SIGNATURE]
    meta_fetch = {k: meta_graph.get_tensor_by_name(v.name) for k, v in sig.outputs.items()}
    meta_inputs = {k: meta_graph.get_tensor_by_name(v.name) for k, v in sig.inputs.items()}

    def run(feeds):
        arrays = feed_arrays(spec, feeds)
        got = session.run(fetch, {inputs[k]: v for k, v in arrays.items()})
        again = meta_session.run(meta_fetch, {meta_inputs[k]: v for k, v in arrays.items()})
        for k, v in got.items():
            if k not in again or not np.array_equal(again[k], v):
                raise RuntimeError(f"{META} ({SIGNATURE}) and {GRAPH} disagree on {k!r}")
        return conform(spec, got)
    return run, (f"tensorflow {tf.__version__} tf.compat.v1.Session on {GRAPH} (and {META} via "
                 f"import_meta_graph, identical); Grappler remapper off as io.json says")


def adjust_io(spec, inputs, outputs):
    return rename_state_out(spec, inputs, outputs)
