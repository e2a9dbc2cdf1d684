"""What the TensorFlow-based targets (savedmodel, graphdef, tflite, tfjs, onnx) share:
the serving module (the TF backend's `serve`, outputs renamed to the convention),
feeding, and the Node check of tfjs and ONNX files (node_runner.mjs, which runs them
with the Node client's own loadExport)."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ExportError, TargetUnavailable
from ...understand.spec import PolicySpec
from ..conventions import action_dtype, output_names, target_io

NODE_RUNNER = Path(__file__).with_name("node_runner.mjs")
# The Node client (the sbexportd-client package) whose loadExport checks tfjs and ONNX
# exports: SBEXPORTD_NODE_CLIENT, else clients/node of the source checkout this module
# lies in. An installed daemon has no such folder: without SBEXPORTD_NODE_CLIENT its
# tfjs exports are checked with TensorFlow and its ONNX exports with onnxruntime
# (Python) only, and each manifest's parity.runtime says so (docs/targets/tfjs.md).
NODE_CLIENT_PACKAGE = "sbexportd-client"
DEFAULT_NODE_CLIENT = Path(__file__).resolve().parents[3] / "clients" / "node"
NODE_RUNTIMES = ("@tensorflow/tfjs", "onnxruntime-node")
NODE_TIMEOUT = 120


def import_tf():
    from ...realize.tf_backend import _import_tf
    return _import_tf()


def import_tfjs_converter():
    """tensorflowjs's converter module. tensorflowjs imports tensorflow_decision_forests,
    whose welcome message imports IPython (not installed) whenever sys.stdout is not
    the process's fd 1 or 2 (pytest's capture, a daemon's redirected stdout): turn the
    message off first."""
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    import_tf()  # quietly, before tensorflowjs imports TensorFlow
    from tensorflowjs.converters import tf_saved_model_conversion_v2
    return tf_saved_model_conversion_v2


def tf_version() -> str:
    return import_tf().__version__


# Formats with one namespace for inputs and outputs (a GraphDef's nodes, an ONNX
# graph's values) cannot have both an input and an output named `state`: there the
# recurrent state output is `state_out`.
STATE_OUT = "state_out"


def serving_module(spec: PolicySpec, float64: bool = True, state_output: str = "state"):
    """A tf.Module whose tf.function `serve(obs[, state, mask])` returns
    {export name: tensor} (each an Identity named as the export), around the TF
    backend's module. Its input signature is the backend's: obs (dynamic batch, the
    spec's input dtype), state (batch, 2n) and mask (batch,) float32. The recurrent
    state output is keyed `state_output`."""
    from ...realize.tf_backend import make_module
    tf = import_tf()
    inner = make_module(spec, float64=float64)
    signature = list(inner.serve.input_signature)
    if isinstance(signature[0], dict):
        raise TargetUnavailable("a goal-dict observation input cannot be exported: the export convention "
                                "takes obs as the concatenated goal observation")
    names = [(state_output if export == "state" else export, key) for export, key in output_names(spec)]

    def rename(out):
        return {export: tf.identity(out[key], name=export) for export, key in names}

    if spec.stateful:
        def serve(self, obs, state, mask):
            return rename(self.inner.serve(obs, state, mask))
    else:
        # the traced function's arguments are the signature's: one variant each
        def serve(self, obs):  # type: ignore[misc]
            return rename(self.inner.serve(obs))

    cls = type("SbExportServing", (tf.Module,), {
        "serve": tf.function(serve, input_signature=signature, autograph=False)})
    module = cls(name="sbexportd_serving")
    module.inner = inner
    return module


# Grappler's remapper, with oneDNN on (TensorFlow's default on x86), fuses the layer
# norms of LN policies into _MklLayerNorm, which is off by up to ~1e-3 from SB2
# (measured on dqn_lnmlp: q_values 1.4e-3). Session-based consumers of the frozen
# graph run with this option; io.json carries it serialized for TF_SetConfig.
SESSION_CONFIG_NOTE = ("run the Session with Grappler's remapper off (ConfigProto graph_options."
                       "rewrite_options.remapping = OFF; serialized below for TF_SetConfig) or with "
                       "TF_ENABLE_ONEDNN_OPTS=0: oneDNN's fused layer norm is off by up to 1e-3 on LN policies")


def session_config():
    """A ConfigProto for tf.compat.v1.Session: the remapper off (see above)."""
    tf = import_tf()
    from tensorflow.core.protobuf import rewriter_config_pb2
    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.remapping = rewriter_config_pb2.RewriterConfig.OFF
    return config


def input_names(spec: PolicySpec) -> list[str]:
    return ["obs", "state", "mask"] if spec.stateful else ["obs"]


def feed_arrays(spec: PolicySpec, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The feeds cast to the exported inputs' dtypes (as SB2's feed_dict cast them)."""
    out = {"obs": np.ascontiguousarray(np.asarray(feeds["obs"]).astype(spec.input_dtype))}
    if spec.stateful:
        n = out["obs"].shape[0]
        state = feeds.get("state")
        mask = feeds.get("mask")
        out["state"] = np.ascontiguousarray(np.zeros((n, spec.state_size), np.float32) if state is None
                                            else np.asarray(state, np.float32))
        out["mask"] = np.ascontiguousarray(np.zeros((n,), np.float32) if mask is None
                                           else np.asarray(mask, np.float32).reshape(-1))
    return out


def conform(spec: PolicySpec, got: dict[str, Any]) -> dict[str, np.ndarray]:
    """Outputs as NumPy by export name (`state_out` read as `state`), the action in the
    convention's dtype (runtimes without int64 give int32)."""
    out = {("state" if k == STATE_OUT else k): np.asarray(v) for k, v in got.items()}
    if "action" in out:
        out["action"] = out["action"].astype(action_dtype(spec))
    return out


# --- Node ----------------------------------------------------------------------------
def node_client() -> tuple[Path | None, str]:
    """(the sbexportd-client package's folder, "") when Node, the client and its runtimes
    (@tensorflow/tfjs, onnxruntime-node) are there, else (None, why not)."""
    if shutil.which("node") is None:
        return None, "node not found on PATH"
    named = os.environ.get("SBEXPORTD_NODE_CLIENT")
    folder = Path(named) if named else DEFAULT_NODE_CLIENT
    try:
        name = json.loads((folder / "package.json").read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        name = None
    if name != NODE_CLIENT_PACKAGE:
        where = "SBEXPORTD_NODE_CLIENT" if named else "no source checkout's clients/node"
        return None, (f"no {NODE_CLIENT_PACKAGE} package at {folder} ({where}; SBEXPORTD_NODE_CLIENT names "
                      f"one: clients/node, or node_modules/{NODE_CLIENT_PACKAGE} where it is installed)")
    for package in NODE_RUNTIMES:
        if node_package_dir(folder, package) is None:
            return None, f"{package} is not installed for {folder} (run `make install`, or npm install there)"
    return folder, ""


def node_package_dir(client: Path, package: str) -> Path | None:
    """Where Node resolves `package` from inside the client's folder: node_modules/package
    in the folder or the nearest ancestor that has it (a project's node_modules, where the
    client itself is installed)."""
    for folder in (client, *client.parents):
        if folder.name == "node_modules":
            continue
        candidate = folder / "node_modules" / package
        if (candidate / "package.json").is_file():
            return candidate
    return None


def node_package_version(client: Path, package: str) -> str:
    found = node_package_dir(client, package)
    try:
        return json.loads((found / "package.json").read_text())["version"] if found else "?"
    except (OSError, ValueError, KeyError):
        return "?"


def node_manifest(spec: PolicySpec, target: str, adjust_io: Callable[..., Any] | None = None) -> dict[str, Any]:
    """What loadExport reads of manifest.json (which the export gets only once verified):
    the target, its inputs and outputs as the manifest will give them (`adjust_io`), the
    spaces and the goal observation's keys."""
    inputs, outputs = target_io(spec, adjust_io)
    goal = spec.goal_observation
    return {"format": "sbexportd-export", "format_version": 1, "target": target, "inputs": inputs,
            "outputs": outputs, "observation_space": spec.observation_space.describe(),
            "action_space": spec.action_space.describe(),
            "goal_observation": {"keys": [k for k, _ in goal.spaces]} if goal else None}


def _encode(a: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.name, "shape": list(a.shape),
            "data": base64.b64encode(a.astype(a.dtype.newbyteorder("<")).tobytes()).decode()}


def _decode(d: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(d["dtype"]).newbyteorder("<")
    return np.frombuffer(base64.b64decode(d["data"]), dtype).reshape(d["shape"]).astype(dtype.newbyteorder("="))


def run_node(kind: str, folder: Path, feeds: dict[str, np.ndarray], client: Path,
             manifest: dict[str, Any]) -> tuple[dict, str]:
    """Run the export in `folder` with the Node client's loadExport (node_runner.mjs):
    ({output: array} under the convention's names, the loader's runtime description)."""
    with tempfile.TemporaryDirectory(prefix="sbexportd-node-") as tmp:
        request = Path(tmp) / "request.json"
        reply = Path(tmp) / "reply.json"
        request.write_text(json.dumps({"kind": kind, "folder": str(folder), "client": str(client),
                                       "manifest": manifest, "out": str(reply),
                                       "feeds": {k: _encode(v) for k, v in feeds.items()}}))
        try:
            proc = subprocess.run(["node", str(NODE_RUNNER), str(request)], capture_output=True, text=True,
                                  timeout=NODE_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise ExportError(f"node_runner.mjs ({kind}) did not finish in {NODE_TIMEOUT} s", folder) from exc
        if proc.returncode != 0 or not reply.is_file():
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            said = [ln for ln in lines if ln.startswith("node_runner: ")] or lines[-3:]
            raise ExportError(f"node_runner.mjs ({kind}, {NODE_CLIENT_PACKAGE} at {client}) failed "
                              f"(exit {proc.returncode}): " + " | ".join(said), folder)
        doc = json.loads(reply.read_text())
    return {k: _decode(v) for k, v in doc["outputs"].items()}, doc["runtime"]


def rename_state_out(spec: PolicySpec, inputs: list, outputs: list) -> tuple[list, list]:
    """Manifest I/O of graphs that cannot name an input and an output alike."""
    return inputs, [dict(o, name=STATE_OUT) if o["name"] == "state" else o for o in outputs]
