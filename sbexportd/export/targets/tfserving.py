"""`tfserving`: a TensorFlow Serving model repository holding the agent:

    models.config            ModelServerConfig (text proto, TF Serving's own
                             model_server_config.proto): NAME at base_path /models/NAME
    NAME/1/                  the `savedmodel` target's SavedModel (tag `serve`, signature
                             `serving_default`, method tensorflow/serving/predict)
    NAME/rest-predict.json   REST predict requests for this agent (row and columnar
                             forms) and the responses they get

Mount the folder at /models (TF Serving's images' convention; base paths in a
models.config must be absolute): `--model_config_file=/models/models.config`.

Verified as TF Serving would serve it: models.config parsed strictly with
tensorflow-serving-api's ModelServerConfig, each base path checked to hold a numbered
version, the SignatureDef read from saved_model.pb and held to the convention (names,
dtypes, a dynamic batch), and the observations sent through the loaded signature as
a gRPC PredictRequest (serialized TensorProtos) and as REST predict bodies in both
documented forms, whose answers must agree exactly; the documented examples replay."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ExportError, ParityFailed, TargetUnavailable
from ...parity import judge
from ..conventions import export_name, io
from ._serving import VERSION, dumps, example_inputs, model_folders, model_name, version_folders
from ._tf_common import conform, feed_arrays, import_tf
from .savedmodel import SIGNATURE
from .savedmodel import save as save_savedmodel

CONFIG = "models.config"
EXAMPLE = "rest-predict.json"
MOUNT = "/models"  # where the repository is mounted for the server (tensorflow/serving's images)
TAG = "serve"
PREDICT_METHOD = "tensorflow/serving/predict"


def protos():
    """(model_server_config_pb2, predict_pb2) of tensorflow-serving-api."""
    try:
        from tensorflow_serving.apis import predict_pb2
        from tensorflow_serving.config import model_server_config_pb2
    except ImportError as exc:  # pragma: no cover - make install puts it there
        raise TargetUnavailable(f"tfserving: tensorflow-serving-api is not installed ({exc}); run `make install`") \
            from exc
    return model_server_config_pb2, predict_pb2


# --- writing ---------------------------------------------------------------------------
def models_config(names: list[str], mount: str = MOUNT):
    """The ModelServerConfig serving `names` from <mount>/<name>."""
    msc, _ = protos()
    config = msc.ModelServerConfig()
    for name in names:
        config.model_config_list.config.add(name=name, base_path=f"{mount}/{name}", model_platform="tensorflow")
    return config


def write_models_config(repository: Path, mount: str = MOUNT) -> list[str]:
    """models.config for every model folder of the repository (one agent or many)."""
    from google.protobuf import text_format
    names = [p.name for p in model_folders(repository) if version_folders(p)]
    text = text_format.MessageToString(models_config(names, mount))
    (repository / CONFIG).write_text(
        f"# TF Serving: --model_config_file={mount}/{CONFIG} with this folder mounted at {mount}\n"
        "# (written by sbexportd, docs/targets/tfserving.md)\n" + text)
    return names


def write(model, folder: Path) -> None:
    name = model_name(model)
    save_savedmodel(model.spec, folder / name / str(VERSION))
    write_models_config(folder)
    (folder / name / EXAMPLE).write_text(dumps(example(model, name)))


def example(model, name: str) -> dict[str, Any]:
    """REST predict requests (row and columnar) of a few observations and the
    reference's responses."""
    from ..core import reference_outputs
    spec = model.spec
    feeds = feed_arrays(spec, example_inputs(spec))
    answers = reference_outputs(model, feeds)
    return {"endpoint": f"POST /v1/models/{name}:predict",
            "row": {"request": rest_request(feeds, "row"), "response": rest_response(answers, "row")},
            "columnar": {"request": rest_request(feeds, "columnar"), "response": rest_response(answers, "columnar")}}


# --- the REST API's two forms (TF Serving's api_rest.md) ---------------------------------
def rest_request(feeds: dict[str, np.ndarray], form: str) -> dict[str, Any]:
    """{"instances": [...]} (row: one entry per observation; with one input, its value
    alone) or {"inputs": ...} (columnar: whole tensors by name; one input: alone)."""
    names = list(feeds)
    if form == "row":
        n = len(feeds[names[0]])
        rows = ([feeds[names[0]][i].tolist() for i in range(n)] if len(names) == 1
                else [{k: feeds[k][i].tolist() for k in names} for i in range(n)])
        return {"signature_name": SIGNATURE, "instances": rows}
    return {"signature_name": SIGNATURE,
            "inputs": feeds[names[0]].tolist() if len(names) == 1 else {k: v.tolist() for k, v in feeds.items()}}


def rest_response(outputs: dict[str, np.ndarray], form: str) -> dict[str, Any]:
    """{"predictions": ...} for a row request, {"outputs": ...} for a columnar one;
    a single output is given alone, several by name (per row in the row form)."""
    names = list(outputs)
    if form == "row":
        n = len(outputs[names[0]])
        return {"predictions": [outputs[names[0]][i].tolist() for i in range(n)] if len(names) == 1
                else [{k: outputs[k][i].tolist() for k in names} for i in range(n)]}
    return {"outputs": outputs[names[0]].tolist() if len(names) == 1 else {k: v.tolist() for k, v in outputs.items()}}


class Servable:
    """One version of one model as TF Serving's Predict serves it: the SignatureDef as
    read from saved_model.pb, and the loaded signature."""

    def __init__(self, name: str, version_folder: Path):
        tf = import_tf()
        from tensorflow.core.protobuf import saved_model_pb2
        self.name, self.version = name, int(version_folder.name)
        saved = saved_model_pb2.SavedModel()
        saved.ParseFromString((version_folder / "saved_model.pb").read_bytes())
        graphs = [g for g in saved.meta_graphs if TAG in g.meta_info_def.tags]
        if not graphs or SIGNATURE not in graphs[0].signature_def:
            raise ExportError(f"tfserving: no {SIGNATURE!r} signature under tag {TAG!r}", version_folder)
        self.signature = graphs[0].signature_def[SIGNATURE]
        if self.signature.method_name != PREDICT_METHOD:
            raise ExportError(f"tfserving: {SIGNATURE} has method {self.signature.method_name!r}; TF Serving's "
                              f"predict API needs {PREDICT_METHOD!r}", version_folder)
        self.dtypes = {k: tf.dtypes.as_dtype(v.dtype).as_numpy_dtype for k, v in self.signature.inputs.items()}
        self.fn = tf.saved_model.load(str(version_folder), tags=[TAG]).signatures[SIGNATURE]

    def shapes(self, which: str) -> dict[str, tuple[str, list[int]]]:
        """{name: (dtype, dims)} of the signature's inputs or outputs (-1: any size)."""
        tf = import_tf()
        entries = getattr(self.signature, which)
        return {k: (tf.dtypes.as_dtype(v.dtype).name, [d.size for d in v.tensor_shape.dim]) for k, v in entries.items()}

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tf = import_tf()
        missing = set(self.dtypes) - set(arrays)
        unknown = set(arrays) - set(self.dtypes)
        if missing or unknown:
            raise ExportError(f"tfserving: the request's inputs {sorted(arrays)} are not the signature's "
                              f"{sorted(self.dtypes)}")
        for k, a in arrays.items():
            if a.dtype != self.dtypes[k]:  # TF Serving refuses a tensor of another dtype
                raise ExportError(f"tfserving: input {k} is {a.dtype}, the signature takes {np.dtype(self.dtypes[k])}")
        out = self.fn(**{k: tf.constant(v) for k, v in arrays.items()})
        return {k: v.numpy() for k, v in out.items()}

    def predict(self, request_bytes: bytes) -> bytes:
        """gRPC PredictionService/Predict: a serialized PredictRequest in, a PredictResponse out."""
        tf = import_tf()
        _, predict_pb2 = protos()
        request = predict_pb2.PredictRequest.FromString(request_bytes)
        if request.model_spec.name != self.name or (request.model_spec.signature_name or SIGNATURE) != SIGNATURE:
            raise ExportError(f"tfserving: a request for {request.model_spec.name!r} "
                              f"({request.model_spec.signature_name!r}) reached {self.name!r}")
        outputs = self.run({k: tf.make_ndarray(v) for k, v in request.inputs.items()})
        wanted = list(request.output_filter) or list(outputs)
        response = predict_pb2.PredictResponse()
        response.model_spec.name, response.model_spec.signature_name = self.name, SIGNATURE
        response.model_spec.version.value = self.version
        for k in wanted:
            response.outputs[k].CopyFrom(tf.make_tensor_proto(outputs[k]))
        return response.SerializeToString()

    def rest(self, body: str) -> str:
        """REST POST /v1/models/NAME:predict: the row or the columnar form."""
        request = json.loads(body)
        if request.get("signature_name", SIGNATURE) != SIGNATURE:
            raise ExportError(f"tfserving: no signature {request['signature_name']!r}")
        names = list(self.dtypes)
        if "instances" in request:
            rows, form = request["instances"], "row"
            columns = ({names[0]: rows} if len(names) == 1 and not isinstance(rows[0], dict)
                       else {k: [r[k] for r in rows] for k in names})
        elif "inputs" in request:
            given, form = request["inputs"], "columnar"
            columns = given if isinstance(given, dict) else {names[0]: given}
        else:
            raise ExportError("tfserving: a predict body has 'instances' or 'inputs'")
        arrays = {k: np.asarray(v, dtype=self.dtypes[k]) for k, v in columns.items()}
        return json.dumps(rest_response(self.run(arrays), form))


# --- loading -----------------------------------------------------------------------------
def read_models_config(repository: Path):
    from google.protobuf import text_format
    msc, _ = protos()
    config = msc.ModelServerConfig()
    try:
        text_format.Parse((repository / CONFIG).read_text(), config)
    except text_format.ParseError as exc:
        raise ExportError(f"tfserving: {CONFIG} is not a valid ModelServerConfig: {exc}", repository) from exc
    return config


def servables(repository: Path, mount: str = MOUNT) -> dict[str, Path]:
    """name -> the version folder TF Serving would serve (the latest), for every model
    models.config lists; each must be there, under the mount point."""
    config = read_models_config(repository)
    if config.WhichOneof("config") != "model_config_list" or not config.model_config_list.config:
        raise ExportError(f"tfserving: {CONFIG} lists no model", repository)
    found, problems = {}, []
    for entry in config.model_config_list.config:
        if entry.model_platform != "tensorflow":
            problems.append(f"{entry.name}: model_platform {entry.model_platform!r}, expected 'tensorflow'")
            continue
        if not entry.base_path.startswith(mount + "/"):
            problems.append(f"{entry.name}: base_path {entry.base_path!r} is not under {mount}/")
            continue
        base = repository / entry.base_path[len(mount) + 1:]
        versions = version_folders(base) if base.is_dir() else []
        if not versions or not (versions[-1] / "saved_model.pb").is_file():
            problems.append(f"{entry.name}: no <version>/saved_model.pb under {base.name}/")
            continue
        found[entry.name] = versions[-1]
    if problems:
        raise ExportError("tfserving: " + "; ".join(problems), repository / CONFIG)
    return found


def check_signature(spec, servable: Servable, where: Path) -> None:
    """The signature's inputs and outputs are the convention's: names, dtypes, shapes."""
    inputs, outputs = io(spec)
    problems = []
    for which, entries in (("inputs", inputs), ("outputs", outputs)):
        declared = servable.shapes(which)
        for e in entries:
            want = [-1] + [int(d) for d in e["shape"][1:]]
            if declared.get(e["name"]) != (e["dtype"], want):
                problems.append(f"{e['name']}: signature {declared.get(e['name'])}, expected ({e['dtype']}, {want})")
        extra = set(declared) - {e["name"] for e in entries}
        if extra:
            problems.append(f"unexpected {which} {sorted(extra)}")
    if problems:
        raise ExportError(f"tfserving: {SIGNATURE} is not the export convention: " + "; ".join(problems), where)


def load(folder: Path, spec):
    tf = import_tf()
    from importlib.metadata import version
    _, predict_pb2 = protos()
    found = servables(folder)
    if len(found) != 1:
        raise ExportError(f"tfserving: expected one model in {CONFIG}, found {sorted(found)}", folder)
    ((name, version_folder),) = found.items()
    servable = Servable(name, version_folder)
    check_signature(spec, servable, version_folder)

    def run(feeds):
        arrays = feed_arrays(spec, feeds)
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = name, SIGNATURE
        for k, v in arrays.items():
            request.inputs[k].CopyFrom(tf.make_tensor_proto(v))
        response = predict_pb2.PredictResponse.FromString(servable.predict(request.SerializeToString()))
        got = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
        for form in ("row", "columnar"):
            answered = _from_rest(json.loads(servable.rest(json.dumps(rest_request(arrays, form)))), form, got)
            for k, v in got.items():
                if not np.array_equal(answered[k], v):
                    raise ExportError(f"tfserving: the REST {form} form answers {k} unlike gRPC Predict", folder)
        return conform(spec, got)

    _replay_example(spec, servable, version_folder.parent)
    runtime = (f"tensorflow {tf.__version__} saved_model ({SIGNATURE}) behind {CONFIG} (tensorflow-serving-api "
               f"{version('tensorflow-serving-api')} protos): gRPC PredictRequest and REST bodies")
    return run, runtime


def _from_rest(body: dict[str, Any], form: str, like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A REST response -> arrays typed like the gRPC answer."""
    names = list(like)
    if form == "row":
        rows = body["predictions"]
        columns = {names[0]: rows} if len(names) == 1 else {k: [r[k] for r in rows] for k in names}
    else:
        columns = body["outputs"] if isinstance(body["outputs"], dict) else {names[0]: body["outputs"]}
    return {k: np.asarray(columns[k], dtype=like[k].dtype) for k in names}


def _replay_example(spec, servable: Servable, model_folder: Path) -> None:
    """The documented requests get the documented responses: the reference's answers,
    which the servable's must meet under the parity rule."""
    doc = json.loads((model_folder / EXAMPLE).read_text())
    for form in ("row", "columnar"):
        request = doc[form]["request"]
        names = list(servable.dtypes)
        if form == "row":
            rows = request["instances"]
            feeds = {k: np.asarray([r[k] for r in rows] if isinstance(rows[0], dict) else rows,
                                   dtype=servable.dtypes[k]) for k in names}
        else:
            given = request["inputs"]
            feeds = {k: np.asarray(given[k] if isinstance(given, dict) else given, dtype=servable.dtypes[k])
                     for k in names}
        verdict = judge(spec, feeds, export_name)
        like = {k: np.asarray(v) for k, v in verdict.reference.items()}
        documented = _from_rest(doc[form]["response"], form, like)
        answered = _from_rest(json.loads(servable.rest(json.dumps(request))), form, like)
        for k, want in like.items():
            if not np.array_equal(documented[k], want):
                raise ParityFailed(f"tfserving: the export does not reproduce the policy: {EXAMPLE} documents {k} "
                                   "unlike the reference", model_folder)
        checks = verdict.check(conform(spec, answered))
        if not checks.passed:
            raise ParityFailed(f"tfserving: the export does not reproduce the policy: the {form} request of "
                               f"{EXAMPLE} is not answered as documented: {checks.describe()}", model_folder)


def manifest_notes(spec) -> list[str]:
    return [(f"TF Serving: mount this folder at {MOUNT} and start tensorflow_model_server with "
             f"--model_config_file={MOUNT}/{CONFIG}; {EXAMPLE} beside the model holds REST predict requests "
             "and their responses")]
