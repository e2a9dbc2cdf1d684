"""The TensorFlow-family export targets (savedmodel, graphdef, tflite, tfjs, onnx) on
every fixture family: each export is written through sbexportd.export.export, loaded
back in the runtime that consumes it (TF SavedModel loader, a tf.compat.v1 Session on
the frozen graph, the TFLite interpreter, TensorFlow.js in Node, onnxruntime and
onnxruntime-node) and held to the parity rule against the NumPy reference."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

import sbexportd
from conftest import FIXTURES, ZOO
from sbexportd.errors import ParityFailed
from sbexportd.export import export
from sbexportd.export.conventions import export_name, io, sample_inputs
from sbexportd.export.targets import TARGETS
from sbexportd.parity import judge

pytest.importorskip("tensorflow", reason="tensorflow not installed (run `make install`)")

TF_TARGETS = ("savedmodel", "graphdef", "tflite", "tfjs", "onnx")
NODE_CLIENT = Path(__file__).resolve().parents[1] / "clients" / "node"
NODE_READY = shutil.which("node") is not None and (NODE_CLIENT / "node_modules").is_dir()

# case id -> (model file, vecnormalize); every family the targets must carry.
CASES = {
    "ppo2_mlp_vec_discrete": (FIXTURES / "ppo2_mlp_vec_discrete" / "model.zip", None),
    "ppo2_mlp_vec_box": (FIXTURES / "ppo2_mlp_vec_box" / "model.zip", None),
    "a2c_mlp_vec_multidiscrete": (FIXTURES / "a2c_mlp_vec_multidiscrete" / "model.zip", None),
    "a2c_mlp_vec_multibinary": (FIXTURES / "a2c_mlp_vec_multibinary" / "model.zip", None),
    "a2c_mlp_dobs_discrete": (FIXTURES / "a2c_mlp_dobs_discrete" / "model.zip", None),       # Discrete obs
    "ppo2_mlp_mbobs_multibinary": (FIXTURES / "ppo2_mlp_mbobs_multibinary" / "model.zip", None),
    "a2c_cnn_img_discrete": (FIXTURES / "a2c_cnn_img_discrete" / "model.zip", None),         # uint8 image
    "ppo2_mlplstm_vec_box": (FIXTURES / "ppo2_mlplstm_vec_box" / "model.zip", None),         # state / mask
    "a2c_cnnlnlstm_img_discrete": (FIXTURES / "a2c_cnnlnlstm_img_discrete" / "model.zip", None),
    "dqn_mlp_vec_discrete": (FIXTURES / "dqn_mlp_vec_discrete" / "model.zip", None),         # dueling
    "dqn_lnmlp_vec_discrete": (FIXTURES / "dqn_lnmlp_vec_discrete" / "model.zip", None),     # layer norm
    "sac_mlp_vec_box": (FIXTURES / "sac_mlp_vec_box" / "model.zip", None),
    "td3_mlp_vec_box": (FIXTURES / "td3_mlp_vec_box" / "model.zip", None),
    "ddpg_mlp_normobs": (FIXTURES / "ddpg_mlp_normobs" / "model.zip", None),
    "her_sac_bitflip": (FIXTURES / "her_sac_bitflip" / "model.zip", None),
    "ppo2_mlp_vecnormalize": (FIXTURES / "ppo2_mlp_vecnormalize" / "model.zip",
                              FIXTURES / "ppo2_mlp_vecnormalize" / "vecnormalize.pkl"),
}
ZOO_CASES = {  # a layer-norm DQN with a custom policy, and a VecNormalize agent (obs_rms.pkl)
    "zoo_dqn_CartPole-v1": (ZOO / "agents" / "dqn" / "CartPole-v1.pkl", "auto"),
    "zoo_a2c_MountainCarContinuous-v0": (ZOO / "agents" / "a2c" / "MountainCarContinuous-v0.pkl", "auto"),
}
ALL = {**CASES, **{k: v for k, v in ZOO_CASES.items() if v[0].is_file()}}
MEASURED: dict[str, dict[str, float]] = {}  # target -> {"max_abs_error", "seconds" (first export)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every case exported to every TF target once: {case: (model, {target: result}, folder)}."""
    root = tmp_path_factory.mktemp("exports")
    done = {}
    for case, (path, vn) in ALL.items():
        model = sbexportd.load(path, vn)
        out = root / case
        results = {}
        for target in TF_TARGETS:
            start = time.perf_counter()
            (result,) = export(model, target, out)
            seconds = time.perf_counter() - start
            results[target] = result
            m = MEASURED.setdefault(target, {"max_abs_error": 0.0, "first_seconds": seconds, "seconds": 0.0})
            m["seconds"] += seconds
            m["max_abs_error"] = max(m["max_abs_error"], max(result.parity["max_abs_error"].values()))
        done[case] = (model, results, out)
    return done


def test_zoo_cases_present():
    if not ZOO.is_dir():
        pytest.skip(f"../shared/zoo not found at {ZOO}: zoo agents NOT exported")
    missing = [k for k, v in ZOO_CASES.items() if not v[0].is_file()]
    assert not missing, f"zoo agents missing: {missing}"


@pytest.mark.parametrize("target", TF_TARGETS)
@pytest.mark.parametrize("case", list(ALL))
def test_export_parity(exported, case, target):
    model, _results, out = exported[case]
    folder = out / target
    manifest = json.loads((folder / "manifest.json").read_text())
    parity = manifest["parity"]
    assert parity["verified"] and parity["passed"], parity
    # parity is keyed by the convention's names; graphdef/onnx call the state output state_out
    assert set(parity["max_abs_error"]) == {"state" if d["name"] == "state_out" else d["name"]
                                            for d in manifest["outputs"]}
    assert max(parity["max_abs_error"].values()) < 1e-3  # the rule itself is relative; see sbexportd.parity
    assert parity["observations"] == 64
    inputs, outputs = io(model.spec)
    mod = TARGETS[target].load_module()
    if hasattr(mod, "adjust_io"):  # the names and dtypes this runtime really has
        inputs, outputs = mod.adjust_io(model.spec, inputs, outputs)
    assert manifest["inputs"] == inputs and manifest["outputs"] == outputs
    if target in ("graphdef", "onnx") and model.spec.stateful:
        assert "state_out" in {d["name"] for d in manifest["outputs"]}
    if target == "tfjs" and manifest["outputs"][0]["dtype"] != "float32":
        assert manifest["outputs"][0]["dtype"] == "int32"
    assert manifest["target"] == target
    for f in manifest["files"]:
        assert (folder / f["path"]).is_file(), f["path"]
    runtime = parity["runtime"]
    if target == "tfjs":
        assert NODE_READY, "node or clients/node/node_modules missing: run `make install`"
        assert "in Node" in runtime and "not verified" not in runtime, runtime
    if target == "onnx":
        assert NODE_READY, "node or clients/node/node_modules missing: run `make install`"
        assert "onnxruntime-node" in runtime and "agrees" in runtime, runtime
    if target == "tflite" and model.spec.vecnormalize:
        assert "float32" in runtime and "FLOAT32" in (folder / "NOTE.txt").read_text()


@pytest.mark.parametrize("case", ["ppo2_mlplstm_vec_box", "a2c_cnn_img_discrete", "a2c_mlp_dobs_discrete"])
def test_files_and_names(exported, case):
    model, _, out = exported[case]
    spec = model.spec
    recurrent = spec.stateful
    names_in = ["obs", "state", "mask"] if recurrent else ["obs"]
    names_out = [d["name"] for d in io(spec)[1]]

    assert (out / "savedmodel" / "saved_model.pb").is_file()
    import tensorflow as tf
    sig = tf.saved_model.load(str(out / "savedmodel")).signatures["serving_default"]
    assert sorted(sig.structured_input_signature[1]) == sorted(names_in)
    assert sorted(sig.structured_outputs) == sorted(names_out)

    doc = json.loads((out / "graphdef" / "io.json").read_text())
    assert [d["tensor"] for d in doc["inputs"]] == [n + ":0" for n in names_in]
    assert [d["tensor"] for d in doc["outputs"]] == [("state_out" if n == "state" else n) + ":0" for n in names_out]
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((out / "graphdef" / "frozen_graph.pb").read_bytes())
    ops = {n.name: n.op for n in graph_def.node}
    assert all(ops[n] == "Placeholder" for n in names_in)
    assert ops["action"] == "Identity"
    assert not any(op in ("VarHandleOp", "ReadVariableOp", "Placeholder") for n, op in ops.items()
                   if n not in names_in), "frozen graph must hold only the inference graph"
    assert (out / "graphdef" / "model.meta").is_file()

    assert (out / "tflite" / "policy.tflite").is_file() and (out / "tflite" / "NOTE.txt").is_file()
    model_json = json.loads((out / "tfjs" / "model.json").read_text())
    assert sorted(model_json["signature"]["outputs"]) == sorted(names_out)
    assert sorted(model_json["signature"]["inputs"]) == sorted(names_in)
    assert all((out / "tfjs" / p).is_file() for g in model_json["weightsManifest"] for p in g["paths"])

    import onnx
    proto = onnx.load(str(out / "onnx" / "policy.onnx"))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in proto.graph.input] == names_in
    assert sorted(o.name for o in proto.graph.output) == sorted("state_out" if n == "state" else n
                                                                  for n in names_out)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 0  # dynamic batch


@pytest.mark.parametrize("target", TF_TARGETS)
@pytest.mark.parametrize("case", ["ppo2_mlplstm_vec_box", "a2c_cnn_img_discrete"])
def test_other_batch_sizes(exported, case, target):
    """Batch is dynamic in every target: 1 and 3 observations after the 64 of verification
    (a recurrent state fed back in)."""
    model, _, out = exported[case]
    runner, _ = TARGETS[target].load_module().load(out / target, model.spec)
    for n in (1, 3):
        feeds = sample_inputs(model.spec, n, seed=7 + n)
        for _ in range(2 if model.spec.stateful else 1):
            got, verdict = runner(feeds), judge(model.spec, feeds, export_name)
            checks = verdict.check(got)
            assert checks.passed, f"{target} batch {n}: {checks.describe()}"
            if model.spec.stateful:
                feeds = {**feeds, "state": verdict.reference["state"], "mask": np.zeros(n, np.float32)}


def _no_leftovers(out: Path, target: str) -> None:
    assert not (out / target).exists()
    assert not [p for p in out.iterdir() if p.name.startswith(f".{target}.")], list(out.iterdir())


def test_wrong_weight_in_file_fails(tmp_path, monkeypatch):
    """A wrong weight written into policy.onnx: ParityFailed, and nothing left behind."""
    import onnx
    from onnx import numpy_helper

    mod = TARGETS["onnx"].load_module()
    real_write = mod.write

    def write_then_corrupt(model, folder):
        real_write(model, folder)
        proto = onnx.load(str(folder / mod.FILE))
        init = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
        w = numpy_helper.to_array(init).copy()
        w.flat[0] += 0.5
        init.CopyFrom(numpy_helper.from_array(w, init.name))
        onnx.save(proto, str(folder / mod.FILE))

    monkeypatch.setattr(mod, "write", write_then_corrupt)
    model = sbexportd.load(FIXTURES / "ppo2_mlp_vec_box" / "model.zip")
    with pytest.raises(ParityFailed, match="onnx"):
        export(model, "onnx", tmp_path)
    _no_leftovers(tmp_path, "onnx")


def test_wrong_output_in_runtime_fails(tmp_path, monkeypatch):
    """A runner that is off by 1e-3 (tfjs through Node): ParityFailed, nothing left."""
    mod = TARGETS["tfjs"].load_module()
    real = mod.run_node

    def off(*args):
        got, runtime = real(*args)
        return {k: (v + 1e-3 if v.dtype.kind == "f" else v) for k, v in got.items()}, runtime

    monkeypatch.setattr(mod, "run_node", off)
    model = sbexportd.load(FIXTURES / "sac_mlp_vec_box" / "model.zip")
    with pytest.raises(ParityFailed, match="tfjs"):
        export(model, "tfjs", tmp_path)
    _no_leftovers(tmp_path, "tfjs")


def test_tfjs_without_node_says_so(tmp_path, monkeypatch):
    """No Node packages: the files are checked with TensorFlow instead, and the manifest
    says the export was not verified in Node."""
    monkeypatch.setenv("SBEXPORTD_NODE_CLIENT", str(tmp_path / "nowhere"))
    model = sbexportd.load(FIXTURES / "a2c_cnnlnlstm_img_discrete" / "model.zip")
    (result,) = export(model, "tfjs", tmp_path / "out")
    assert result.parity["passed"]
    assert result.parity["runtime"].startswith("not verified in Node: "), result.parity["runtime"]


def test_node_client_where_the_daemon_is_installed(tmp_path, monkeypatch):
    """The Node check's client: a daemon installed without the source tree has no
    clients/node, and says what to set; SBEXPORTD_NODE_CLIENT may name a client installed
    in a project's node_modules, whose runtimes Node resolves from the project (as
    tests/test_client_node.py runs it for real); a folder of another package is no client."""
    from sbexportd.export.targets import _tf_common as common
    if shutil.which("node") is None:
        pytest.skip("node not found")
    monkeypatch.delenv("SBEXPORTD_NODE_CLIENT", raising=False)
    monkeypatch.setattr(common, "DEFAULT_NODE_CLIENT", tmp_path / "lib" / "clients" / "node")
    folder, why = common.node_client()
    assert folder is None and "no sbexportd-client package at" in why and "SBEXPORTD_NODE_CLIENT" in why, why

    modules = tmp_path / "project" / "node_modules"
    for name, version in (("sbexportd-client", "0.1.0"), ("@tensorflow/tfjs", "4.22.0"),
                          ("onnxruntime-node", "1.30.0")):
        (modules / name).mkdir(parents=True)
        (modules / name / "package.json").write_text(json.dumps({"name": name, "version": version}))
    monkeypatch.setenv("SBEXPORTD_NODE_CLIENT", str(modules / "sbexportd-client"))
    assert common.node_client() == (modules / "sbexportd-client", "")
    assert common.node_package_version(modules / "sbexportd-client", "@tensorflow/tfjs") == "4.22.0"

    (modules / "onnxruntime-node" / "package.json").unlink()
    folder, why = common.node_client()
    assert folder is None and why.startswith("onnxruntime-node is not installed"), why
    monkeypatch.setenv("SBEXPORTD_NODE_CLIENT", str(modules / "@tensorflow" / "tfjs"))
    folder, why = common.node_client()
    assert folder is None and "SBEXPORTD_NODE_CLIENT" in why, why


def test_graphdef_session_config(exported):
    """io.json carries the Session option the verification ran with (Grappler's remapper
    off: oneDNN's fused layer norm is off by ~1e-3 on this layer-norm policy)."""
    import tensorflow as tf
    _model, _, out = exported["dqn_lnmlp_vec_discrete"]
    doc = json.loads((out / "graphdef" / "io.json").read_text())
    config = tf.compat.v1.ConfigProto()
    config.ParseFromString(bytes.fromhex(doc["session_config"]["serialized_hex"]))
    assert config.graph_options.rewrite_options.remapping == 2  # OFF


def test_report_measurements(exported, record_property):
    """Per target: the largest abs error over every case and output, and export times."""
    lines = []
    for target, m in MEASURED.items():
        record_property(f"{target}_max_abs_error", m["max_abs_error"])
        lines.append(f"{target}: max abs error {m['max_abs_error']:.2e}, first export {m['first_seconds']:.1f} s, "
                     f"all {len(ALL)} cases {m['seconds']:.1f} s")
    print("\n" + "\n".join(lines))
    assert set(MEASURED) == set(TF_TARGETS)
