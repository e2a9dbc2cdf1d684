"""The serving-engine targets (tfserving, triton) and the self-describing ONNX file,
checked here with the engines' own protos and formats, independently of the
targets' own verification: models.config parsed with tensorflow-serving-api's
ModelServerConfig and its requests run as TF Serving's REST and gRPC APIs feed a
signature; config.pbtxt parsed with tritonclient's ModelConfig and the model run by
onnxruntime with tensors built from that config alone; both held to the parity rule
against the NumPy reference. Both sides are proven: a repository whose configuration
lies about the model, or whose documented answer is wrong, is refused."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import sbexportd
from conftest import FIXTURES
from sbexportd.errors import ExportError, ParityFailed
from sbexportd.export import export
from sbexportd.export.conventions import export_name, sample_inputs
from sbexportd.export.targets import TARGETS
from sbexportd.parity import judge

tf = pytest.importorskip("tensorflow", reason="tensorflow not installed (run `make install`)")
pytest.importorskip("tensorflow_serving", reason="tensorflow-serving-api not installed (run `make install`)")
pytest.importorskip("tritonclient", reason="tritonclient not installed (run `make install`)")
from google.protobuf import text_format  # noqa: E402
from tensorflow_serving.apis import predict_pb2  # noqa: E402
from tensorflow_serving.config import model_server_config_pb2  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402

CASES = {
    "ppo2_mlp_vec_discrete": FIXTURES / "ppo2_mlp_vec_discrete" / "model.zip",
    "ppo2_mlplstm_vec_box": FIXTURES / "ppo2_mlplstm_vec_box" / "model.zip",        # state / mask
    "a2c_mlp_dobs_discrete": FIXTURES / "a2c_mlp_dobs_discrete" / "model.zip",      # one number per row
    "a2c_cnn_img_discrete": FIXTURES / "a2c_cnn_img_discrete" / "model.zip",        # uint8 images
    "a2c_mlp_vec_multidiscrete": FIXTURES / "a2c_mlp_vec_multidiscrete" / "model.zip",
    "dqn_mlp_vec_discrete": FIXTURES / "dqn_mlp_vec_discrete" / "model.zip",
}
N = 7  # rows sent: not the verification's 64


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    done = {}
    for case, path in CASES.items():
        model = sbexportd.load(path)
        results = {r.target: r for r in export(model, ["tfserving", "triton", "onnx"], root / case)}
        done[case] = (model, results, root / case)
    return done


def _check(model, feeds, got, what):
    verdict = judge(model.spec, feeds, export_name)
    failed = [c.describe() for c in verdict.check(got).values() if not c.passed]
    assert not failed, f"{what}: {failed}"


def _conform(got):
    return {("state" if k == "state_out" else k): np.asarray(v) for k, v in got.items()}


# --- tfserving ----------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_tfserving_repository(exported, case):
    model, results, out = exported[case]
    repo = out / "tfserving"
    assert results["tfserving"].parity["passed"]
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((repo / "models.config").read_text(), config)
    (entry,) = config.model_config_list.config
    assert entry.name == case and entry.model_platform == "tensorflow"
    assert entry.base_path == f"/models/{case}"          # the repository mounted at /models
    version = repo / case / "1"
    assert (version / "saved_model.pb").is_file() and (version / "variables").is_dir()

    signature = tf.saved_model.load(str(version), tags=["serve"]).signatures["serving_default"]
    dtypes = {k: v.dtype.as_numpy_dtype for k, v in signature.structured_input_signature[1].items()}
    feeds = sample_inputs(model.spec, N, 3)
    feeds = {k: np.asarray(v).astype(dtypes[k]) for k, v in feeds.items() if k in dtypes}

    # gRPC Predict: TensorProtos in, TensorProtos out
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = case, "serving_default"
    for k, v in feeds.items():
        request.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    out_grpc = signature(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
    response = predict_pb2.PredictResponse()
    for k, v in out_grpc.items():
        response.outputs[k].CopyFrom(tf.make_tensor_proto(v.numpy()))
    got = {k: tf.make_ndarray(v) for k, v in predict_pb2.PredictResponse.FromString(
        response.SerializeToString()).outputs.items()}
    _check(model, feeds, got, "gRPC Predict")

    # REST, row form: {"instances": [...]} -> {"predictions": [...]}
    names = list(dtypes)
    rows = [{k: feeds[k][i].tolist() for k in names} if len(names) > 1 else feeds[names[0]][i].tolist()
            for i in range(N)]
    body = json.loads(json.dumps({"signature_name": "serving_default", "instances": rows}))
    columns = {k: [r[k] for r in body["instances"]] for k in names} if len(names) > 1 else \
        {names[0]: body["instances"]}
    rest = signature(**{k: tf.constant(np.asarray(v, dtypes[k])) for k, v in columns.items()})
    predictions = json.loads(json.dumps([{k: v.numpy()[i].tolist() for k, v in rest.items()} for i in range(N)]))
    _check(model, feeds, {k: np.asarray([p[k] for p in predictions], got[k].dtype) for k in got}, "REST rows")


@pytest.mark.parametrize("case", ["ppo2_mlp_vec_discrete", "ppo2_mlplstm_vec_box", "a2c_mlp_dobs_discrete"])
def test_tfserving_documented_requests(exported, case):
    """rest-predict.json: both forms' requests answered by the signature as documented."""
    model, _, out = exported[case]
    doc = json.loads((out / "tfserving" / case / "rest-predict.json").read_text())
    assert doc["endpoint"] == f"POST /v1/models/{case}:predict"
    signature = tf.saved_model.load(str(out / "tfserving" / case / "1")).signatures["serving_default"]
    dtypes = {k: v.dtype.as_numpy_dtype for k, v in signature.structured_input_signature[1].items()}
    instances = doc["row"]["request"]["instances"]
    feeds = ({k: np.asarray([r[k] for r in instances], dtypes[k]) for k in dtypes} if isinstance(instances[0], dict)
             else {"obs": np.asarray(instances, dtypes["obs"])})
    columnar = doc["columnar"]["request"]["inputs"]
    assert all(np.array_equal(np.asarray(columnar[k] if isinstance(columnar, dict) else columnar, dtypes[k]), v)
               for k, v in feeds.items())
    answered = {k: v.numpy() for k, v in signature(**{k: tf.constant(v) for k, v in feeds.items()}).items()}
    predictions, outputs = doc["row"]["response"]["predictions"], doc["columnar"]["response"]["outputs"]
    for k, v in answered.items():
        assert np.array_equal(np.asarray([p[k] for p in predictions], v.dtype), np.asarray(outputs[k], v.dtype))
        documented = np.asarray(outputs[k], v.dtype)
        assert documented.shape == v.shape
    _check(model, feeds, answered, "the documented request")
    _check(model, feeds, {k: np.asarray(outputs[k], v.dtype) for k, v in answered.items()}, "the documented answer")


# --- triton -------------------------------------------------------------------------------
NUMPY = {model_config_pb2.TYPE_FP32: np.float32, model_config_pb2.TYPE_FP64: np.float64,
         model_config_pb2.TYPE_INT32: np.int32, model_config_pb2.TYPE_INT64: np.int64,
         model_config_pb2.TYPE_UINT8: np.uint8}


@pytest.mark.parametrize("case", list(CASES))
def test_triton_repository(exported, case):
    import onnxruntime as ort
    model, results, out = exported[case]
    assert results["triton"].parity["passed"]
    folder = out / "triton" / case
    config = model_config_pb2.ModelConfig()
    text_format.Parse((folder / "config.pbtxt").read_text(), config)
    assert config.name == case and config.backend == "onnxruntime" and config.max_batch_size >= 64
    assert config.HasField("dynamic_batching")
    assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    want_in = ["obs", "state", "mask"] if model.spec.stateful else ["obs"]
    assert [t.name for t in config.input] == want_in
    assert ("state_out" in [t.name for t in config.output]) == model.spec.stateful

    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = sample_inputs(model.spec, N, 4)
    wire = {}
    for t in config.input:  # what a Triton client sends: (batch, *dims) of the config's type
        wire[t.name] = np.asarray(feeds[t.name]).astype(NUMPY[t.data_type]).reshape((N, *t.dims))
    graph = {t.name: wire[t.name].reshape((N, *t.reshape.shape)) if t.HasField("reshape") else wire[t.name]
             for t in config.input}
    names = [t.name for t in config.output]
    got = dict(zip(names, session.run(names, graph), strict=True))
    for t in config.output:  # every output is what the config says it is
        assert got[t.name].dtype == NUMPY[t.data_type], t.name
        assert got[t.name].reshape((N, *t.dims)).size == got[t.name].size, t.name
    _check(model, feeds, _conform(got), "onnxruntime under config.pbtxt")

    doc = json.loads((folder / "oip-v2.json").read_text())
    assert doc["endpoint"] == f"POST /v2/models/{case}/versions/1/infer"
    request = {i["name"]: i for i in doc["request"]["inputs"]}
    by_name = {t.name: t for t in config.input}
    feeds2 = {}
    for name, item in request.items():
        t = by_name[name]
        assert item["datatype"] == model_config_pb2.DataType.Name(t.data_type)[5:]
        assert item["shape"][1:] == list(t.dims)
        a = np.asarray(item["data"], NUMPY[t.data_type]).reshape(item["shape"])
        feeds2[name] = a.reshape((len(a), *t.reshape.shape)) if t.HasField("reshape") else a
    answered = dict(zip(names, session.run(names, feeds2), strict=True))
    for item in doc["response"]["outputs"]:
        documented = np.asarray(item["data"]).reshape(item["shape"])
        assert documented.shape == (len(documented), *{t.name: t for t in config.output}[item["name"]].dims)
        assert np.allclose(documented.reshape(answered[item["name"]].shape), answered[item["name"]], atol=1e-5)


# --- ONNX describes itself ------------------------------------------------------------------
@pytest.mark.parametrize("case", ["ppo2_mlp_vec_discrete", "ppo2_mlplstm_vec_box"])
def test_onnx_describes_itself(exported, case):
    import onnx
    model, _, out = exported[case]
    for path in (out / "onnx" / "policy.onnx", out / "triton" / case / "1" / "model.onnx"):
        proto = onnx.load(str(path))
        props = {p.key: p.value for p in proto.metadata_props}
        assert props["source_sha256"] == hashlib.sha256(CASES[case].read_bytes()).hexdigest()
        assert props["sbexportd_version"] == sbexportd.__version__
        assert props["algorithm"] == model.spec.algo and props["policy"] == model.spec.policy
        manifest = json.loads((out / "onnx" / "manifest.json").read_text())
        assert json.loads(props["observation_space"]) == json.loads(json.dumps(manifest["observation_space"]))
        assert json.loads(props["action_space"]) == json.loads(json.dumps(manifest["action_space"]))
        outputs = json.loads(props["outputs"])
        assert [o["name"] for o in outputs] == [o["name"] for o in manifest["outputs"]]
        assert all(o["meaning"] for o in outputs) and json.loads(props["inputs"])[0]["meaning"]
        assert model.spec.algo.upper() in proto.doc_string and props["source_sha256"] in proto.doc_string
        for vi in list(proto.graph.input) + list(proto.graph.output):
            assert vi.type.tensor_type.shape.dim[0].dim_param == "batch", vi.name
        assert "unk__" not in str(proto.graph.input) + str(proto.graph.output)


# --- what is refused ------------------------------------------------------------------------
def _copy(exported, case, target, tmp_path) -> Path:
    folder = tmp_path / target
    shutil.copytree(exported[case][2] / target, folder)
    return folder


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, count))


@pytest.mark.parametrize("edit,match", [
    (("data_type: TYPE_FP32", "data_type: TYPE_FP64"), "config.pbtxt does not describe the graph"),  # obs type
    (("dims: 4", "dims: 5"), "config.pbtxt does not describe the graph"),
    (('name: "probs"', 'name: "probabilities"'), "config.pbtxt does not describe the graph"),
    (("dynamic_batching", "#dynamic_batching"), "dynamic_batching|not a valid ModelConfig"),
    (('name: "ppo2_mlp_vec_discrete"', 'name: "other"'), "is not the folder's name"),
    (("max_batch_size: 256", "max_batch_size: 0"), "max_batch_size"),
    (("backend: \"onnxruntime\"", "backend: \"pytorch\""), "backend"),
])
def test_triton_config_that_lies_is_refused(exported, tmp_path, edit, match):
    model = exported["ppo2_mlp_vec_discrete"][0]
    folder = _copy(exported, "ppo2_mlp_vec_discrete", "triton", tmp_path)
    _edit(folder / "ppo2_mlp_vec_discrete" / "config.pbtxt", *edit)
    with pytest.raises(ExportError, match=match):
        TARGETS["triton"].load_module().load(folder, model.spec)


def test_triton_wrong_documented_answer_is_refused(exported, tmp_path):
    model = exported["ppo2_mlp_vec_discrete"][0]
    folder = _copy(exported, "ppo2_mlp_vec_discrete", "triton", tmp_path)
    path = folder / "ppo2_mlp_vec_discrete" / "oip-v2.json"
    doc = json.loads(path.read_text())
    values = next(o for o in doc["response"]["outputs"] if o["name"] == "values")
    values["data"][0] += 1e-3
    path.write_text(json.dumps(doc))
    with pytest.raises(ParityFailed, match=r"oip-v2\.json"):
        TARGETS["triton"].load_module().load(folder, model.spec)


@pytest.mark.parametrize("edit,match", [
    (('base_path: "/models/ppo2_mlp_vec_discrete"', 'base_path: "/models/elsewhere"'), "no <version>"),
    (('base_path: "/models/', 'base_path: "models/'), "is not under /models"),
    (('model_platform: "tensorflow"', 'model_platform: "onnx"'), "model_platform"),
    (("config {", "confi {"), "not a valid ModelServerConfig"),
])
def test_tfserving_config_that_lies_is_refused(exported, tmp_path, edit, match):
    model = exported["ppo2_mlp_vec_discrete"][0]
    folder = _copy(exported, "ppo2_mlp_vec_discrete", "tfserving", tmp_path)
    _edit(folder / "models.config", *edit)
    with pytest.raises(ExportError, match=match):
        TARGETS["tfserving"].load_module().load(folder, model.spec)


def test_tfserving_wrong_documented_answer_is_refused(exported, tmp_path):
    model = exported["ppo2_mlp_vec_discrete"][0]
    folder = _copy(exported, "ppo2_mlp_vec_discrete", "tfserving", tmp_path)
    path = folder / "ppo2_mlp_vec_discrete" / "rest-predict.json"
    doc = json.loads(path.read_text())
    doc["columnar"]["response"]["outputs"]["values"][0] += 1e-3
    path.write_text(json.dumps(doc))
    with pytest.raises(ParityFailed, match=r"rest-predict\.json"):
        TARGETS["tfserving"].load_module().load(folder, model.spec)


def test_tfserving_signature_of_another_policy_is_refused(exported, tmp_path):
    """The repository of one policy checked against another's spec: the signature's
    I/O is not that policy's."""
    folder = _copy(exported, "ppo2_mlp_vec_discrete", "tfserving", tmp_path)
    with pytest.raises(ExportError, match="not the export convention"):
        TARGETS["tfserving"].load_module().load(folder, exported["ppo2_mlplstm_vec_box"][0].spec)
