"""SB2 agents on Ray Serve: one application, one deployment per agent.

    from ray import serve
    from sbexportd.deploy.ray import build_app

    serve.run(build_app({"agents": ["zoo/", "extra/agent.zip"], "replicas": 2}), name="sbexportd")

or, on any Ray cluster, `serve run sbexportd.deploy.ray:build_app agents=zoo/ replicas=2`,
or a Serve config file with `import_path: sbexportd.deploy.ray:build_app` and these
args (`config_file` writes one).

Each agent is read and understood once, where the application is built (the driver,
or the cluster's head for `serve deploy`); its replicas receive the understood policy
(sbexportd's spec: plain data, no file, no TensorFlow), so a replica on any node needs
sbexportd installed and nothing else. A replica answers as `Model.predict` and the
daemon do: with the agent's fast path (ONNX Runtime, built from the spec) once it has
reproduced the NumPy reference there (realize.fast: seeded observations judged by
the parity rule), else with the reference; build_app's `backend: numpy`, or a
request's `"backend": "numpy"`, gets the reference's own numbers. Deterministic
predicts of concurrent requests for the default backend are batched (`@serve.batch`:
rows of several requests in one forward pass); stochastic ones run alone, so a seed
means what it means in-process.

HTTP (the ingress, at the application's route prefix):
    GET  /agents                       {"agents": [{"name", "file", "algorithm", ...}]}
    GET  /agents/NAME                  what `sbexportd inspect --json` says of it
    POST /agents/NAME/predict          sbexport/predict's params without modelId (backend:
                                       numpy or onnxruntime) -> {"agent", "backend", "outputs"}
Errors answer {"error": {"code", "message", "data": {"kind", "file", "hint"}}} (the
daemon's codes) with HTTP 400 (bad request), 404 (no such agent or route), 405, 413
(a body over 64 MiB, or more than max_predict_values observation values) or 500.

Python: serve.get_app_handle(app).predict.remote(NAME, params) gives the same answer
with NumPy arrays; serve.get_deployment_handle(NAME, app) is the agent's own deployment
(`.predict.remote(params)`, `.info.remote()`)."""
from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from ray import serve

from ..realize.backends import FAST_CANDIDATES, REFERENCE

# Deterministic requests gathered into one forward pass: at most this many requests,
# waiting at most this long for them (the user_config of each deployment can change both).
MAX_BATCH_SIZE = 32
BATCH_WAIT_TIMEOUT_S = 0.002
MAX_BODY_BYTES = 64 << 20        # larger HTTP bodies are refused (413)
MAX_PREDICT_VALUES = 1 << 24     # observation values one predict may carry (the daemon's default)
APP_NAME = "sbexportd"
DEFAULT_BACKEND = "fast"         # "fast": the agent's verified fast path; "numpy": the reference always


@dataclass
class ShippedArchive:
    """What a replica knows of the agent's file (the file itself stays on the driver)."""
    path: Path
    sha256: str
    format: str


def runtime_env() -> dict[str, Any]:
    """Ray workers import the sbexportd the driver imports (a source checkout on
    PYTHONPATH, or the installed package)."""
    import sbexportd
    root = str(Path(sbexportd.__file__).resolve().parents[1])
    paths = [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}}


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64)
class Policy:
    """One agent: its fast path (once verified here against the reference) or the NumPy
    reference, predicts batched across requests."""

    def __init__(self, agent: dict[str, Any]):
        from ..model import Model
        self.name = agent["name"]
        self.info = agent["info"]
        self.model = Model(agent["archive"], agent["spec"], agent.get("vecnormalize"))
        self.fast_path = None
        if agent.get("backend", DEFAULT_BACKEND) == "fast":
            # built and judged on this replica (parity.judge on seeded observations, as
            # every export is) before it answers anything; the reference if it fails
            self.fast_path = self.model.fast_path.as_dict()
            self.default = self.model.default_backend
        else:
            self.default = "numpy"
        self.model.backend("numpy")
        self.model.backend(self.default)  # built before the first request
        self.max_values = MAX_PREDICT_VALUES
        self.requests = 0
        self.batches = 0

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """user_config: {"max_batch_size", "batch_wait_timeout_s", "max_predict_values"}."""
        self.max_values = int(config.get("max_predict_values", MAX_PREDICT_VALUES))
        batched: Any = self._batched  # @serve.batch's wrapper: its setters are not in Ray's annotations
        batched.set_max_batch_size(int(config.get("max_batch_size", MAX_BATCH_SIZE)))
        batched.set_batch_wait_timeout_s(float(config.get("batch_wait_timeout_s", BATCH_WAIT_TIMEOUT_S)))

    def describe(self) -> dict[str, Any]:
        """What `sbexportd inspect --json` says of the agent, and what this replica runs."""
        return dict(self.info, serving={"backend": self.default, "fast_path": self.fast_path})

    def stats(self) -> dict[str, Any]:
        """Requests answered and forward passes run by this replica."""
        return {"replica": serve.get_replica_context().replica_id.unique_id, "requests": self.requests,
                "batches": self.batches}

    async def predict(self, params: dict[str, Any]) -> dict[str, Any]:
        """sbexport/predict's params (without modelId): {"agent", "backend", "outputs":
        {name: ndarray}}. Raises PredictError (the daemon's error, typed)."""
        try:
            return await self._predict(params)
        except Exception as exc:  # noqa: BLE001 - sent back as the daemon's error
            raise PredictError.of(exc) from None

    async def _predict(self, params: dict[str, Any]) -> dict[str, Any]:
        from ..serve.methods import Params, array_params, count_values, output_names
        p = Params(params, "predict")
        unknown = set(params) - PREDICT_PARAMS
        if unknown:
            from ..serve.errors import invalid_params
            raise invalid_params(f"predict: unknown params {sorted(unknown)}; expected {sorted(PREDICT_PARAMS)}")
        deterministic, seed, wanted = p.bool("deterministic", True), p.int("seed"), p.str_list("outputs")
        backend = p.choice("backend", REPLICA_BACKENDS, self.default)
        p.encoding()
        count_values(params.get("obs"), self.max_values, "max_predict_values of build_app")
        obs, state, mask = array_params(p)
        spec = self.model.spec
        outputs = output_names(spec, wanted) if wanted is not None else None
        self.requests += 1
        if not deterministic or backend != self.default:  # alone: a seed keeps its meaning
            self.batches += 1
            result = self.model.predict(obs, state=state, mask=mask, deterministic=deterministic, seed=seed,
                                        backend=backend, outputs=outputs)
            if outputs is not None and "actions" not in outputs:
                result.pop("actions", None)
        else:
            batch, single = self.model._batch(obs)
            n = len(batch)
            if spec.stateful:
                state = np.zeros((n, spec.state_size), np.float32) if state is None else np.asarray(state, np.float32)
                mask = np.zeros((n,), np.float32) if mask is None else np.asarray(mask, np.float32).reshape(-1)
                if state.shape != (n, spec.state_size) or mask.shape != (n,):
                    from ..errors import BadObservation
                    raise BadObservation(f"recurrent policy: state must be ({n}, {spec.state_size}) and mask "
                                         f"({n},); got {list(state.shape)} and {list(mask.shape)}", self.name)
            result = await self._batched((batch, state, mask))
            if outputs is not None:
                result = {k: v for k, v in result.items() if k in outputs}
            if single:
                result = {k: v[0] for k, v in result.items()}
        return {"agent": self.name, "backend": backend, "outputs": result}

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_TIMEOUT_S)
    async def _batched(self, requests: list[tuple]) -> list[dict[str, np.ndarray]]:
        """Several requests' rows in one forward pass, split back per request."""
        self.batches += 1
        sizes = [len(b) for b, _, _ in requests]
        obs = np.concatenate([b for b, _, _ in requests]) if len(requests) > 1 else requests[0][0]
        state = mask = None
        if self.model.spec.stateful:
            state = np.concatenate([s for _, s, _ in requests])
            mask = np.concatenate([m for _, _, m in requests])
        result = self.model.predict(obs, state=state, mask=mask, backend=self.default)
        bounds = np.cumsum([0] + sizes)
        return [{k: v[a:b] for k, v in result.items()} for a, b in itertools.pairwise(bounds)]


PREDICT_PARAMS = frozenset({"obs", "state", "mask", "deterministic", "seed", "outputs", "encoding", "backend"})
# What a replica runs: the reference, and ONNX Runtime once verified on its agent (a
# request for it is refused, backend_unavailable, when it was not). TensorFlow and torch,
# which the daemon also offers, are not loaded on replicas.
REPLICA_BACKENDS = (REFERENCE, *FAST_CANDIDATES)


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=256)
class Agents:
    """The ingress: routes HTTP requests and handle calls to the agents' deployments."""

    def __init__(self, handles: dict[str, Any], index: list[dict[str, Any]]):
        self.handles = handles
        self.index = index

    async def predict(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._handle(name).predict.remote(params)
        except Exception as exc:  # noqa: BLE001
            raise PredictError.of(getattr(exc, "cause", None) or exc) from None

    async def describe(self, name: str) -> dict[str, Any]:
        try:
            return await self._handle(name).describe.remote()
        except Exception as exc:  # noqa: BLE001
            raise PredictError.of(getattr(exc, "cause", None) or exc) from None

    def agents(self) -> list[dict[str, Any]]:
        return self.index

    def _handle(self, name: str):
        handle = self.handles.get(name)
        if handle is None:
            raise UnknownAgent(name, sorted(self.handles))
        return handle

    async def __call__(self, request) -> Any:
        from starlette.responses import JSONResponse, Response
        path = request.url.path
        root = request.scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        parts = [p for p in path.split("/") if p]
        try:
            if parts == ["agents"] and request.method == "GET":
                return JSONResponse({"agents": self.index})
            if len(parts) == 2 and parts[0] == "agents" and request.method == "GET":
                return JSONResponse(await self.describe(parts[1]))
            if len(parts) == 3 and parts[0] == "agents" and parts[2] == "predict":
                if request.method != "POST":
                    return _error(405, "method_not_allowed", "POST the predict params as JSON")
                size = int(request.headers.get("content-length") or 0)
                if size > MAX_BODY_BYTES:
                    return _error(413, "message_too_large", f"{size} bytes; at most {MAX_BODY_BYTES}")
                body = await request.body()
                if len(body) > MAX_BODY_BYTES:
                    return _error(413, "message_too_large", f"{len(body)} bytes; at most {MAX_BODY_BYTES}")
                try:
                    params = json.loads(body or b"{}")
                except ValueError as exc:
                    return _error(400, "parse_error", f"the body is not JSON: {exc}")
                if not isinstance(params, dict):
                    return _error(400, "invalid_params", "the body must be a JSON object of predict params")
                result = await self.predict(parts[1], params)
                encoding = params.get("encoding") or "list"
                return Response(_dumps(result, encoding), media_type="application/json")
            return _error(404, "not_found", f"no route {request.method} {path}; see GET /agents")
        except Exception as exc:  # noqa: BLE001 - every failure is a typed answer
            return _exception_response(exc)


class PredictError(Exception):
    """A request the agent could not answer: `status` (HTTP) and `error`, the daemon's
    JSON-RPC error object {"code", "message", "data": {"kind", "file", "hint"}}."""

    def __init__(self, status: int, error: dict[str, Any]):
        super().__init__(status, error)
        self.status, self.error = status, error

    def __str__(self) -> str:
        return f"{self.error.get('message')} ({self.error.get('data', {}).get('kind')})"

    @property
    def kind(self) -> str:
        return self.error.get("data", {}).get("kind", "internal")

    @classmethod
    def of(cls, exc: BaseException) -> PredictError:
        from ..serve import errors as E
        if isinstance(exc, cls):
            return exc
        if isinstance(exc, UnknownAgent):
            return cls(404, {"code": E.ERROR, "message": str(exc),
                             "data": {"kind": "unknown_agent", "file": None, "hint": "GET /agents lists the agents"}})
        err = E.map_exception(exc)
        status = {E.INTERNAL_ERROR: 500, E.ERROR: 500, E.MESSAGE_TOO_LARGE: 413}.get(err.code, 400)
        return cls(status, {"code": err.code, "message": err.message, "data": dict(err.data or {})})


class UnknownAgent(LookupError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(f"no agent {name!r}; this application serves {', '.join(known)}")


def _dumps(result: dict[str, Any], encoding: str) -> bytes | bytearray:
    """The daemon's JSON encoder: large list outputs written a chunk of rows at a time."""
    from ..serve.arrays import Out, encode_json
    return encode_json(dict(result, outputs={k: Out(v, encoding) for k, v in result["outputs"].items()}))


def _error(status: int, kind: str, message: str, code: int | None = None, file: str | None = None,
           hint: str | None = None):
    from starlette.responses import JSONResponse

    from ..serve.errors import ERROR, HINTS
    return JSONResponse({"error": {"code": code if code is not None else ERROR, "message": message,
                                   "data": {"kind": kind, "file": file, "hint": hint or HINTS.get(kind)}}},
                        status_code=status)


def _exception_response(exc: BaseException):
    """A replica's or the router's exception as the daemon's error, with an HTTP status."""
    from starlette.responses import JSONResponse
    cause = getattr(exc, "cause", None) or exc   # Ray wraps a replica's exception
    err = PredictError.of(cause)
    return JSONResponse({"error": err.error}, status_code=err.status)


# --- building the application -------------------------------------------------------------
def read_agents(agents: list[str] | str, vecnormalize: str | None = "auto",
                frame_stack: str | None = "auto") -> list[dict[str, Any]]:
    """Read and understand every agent (files, or folders searched as `sbexportd export`
    searches them): what each replica is given."""
    import sbexportd

    from ..describe import describe
    from ..export.many import find_agents
    found = find_agents([agents] if isinstance(agents, (str, Path)) else list(agents))
    shipped = []
    for job in found:
        model = sbexportd.load(job.path, vecnormalize, frame_stack=frame_stack)
        info = json.loads(json.dumps(describe(model), default=str))
        archive = model.archive
        shipped.append({"name": job.name, "info": dict(info, name=job.name),
                        "archive": ShippedArchive(Path(archive.path), archive.sha256, archive.format),
                        "spec": model.spec, "vecnormalize": model.vecnormalize})
    return shipped


def build_app(args: dict[str, Any]):
    """A Serve application of the agents in args:

        agents                 a folder, a file, or a list of them (required)
        replicas               replicas per agent (default 1)
        max_batch_size         requests per forward pass (default 32)
        batch_wait_timeout_s   how long a replica waits to fill a batch (default 0.002)
        max_predict_values     observation values one predict may carry (default 16777216)
        vecnormalize           "auto" (default, as the zoo's enjoy.py), a path, or null
        frame_stack            "auto" (default), a number, or null
        num_cpus               CPUs reserved per replica (default 0.5)
        backend                "fast" (default: the agent's fast path, verified on each replica
                               against the reference before it answers, else the reference)
                               or "numpy" (the NumPy reference answers everything)

    Usable as `serve run sbexportd.deploy.ray:build_app agents=zoo/` and as a Serve
    config file's import_path (its `args`)."""
    agents = args.get("agents")
    if not agents:
        raise ValueError("build_app: args.agents is required (a folder, a file, or a list of them)")
    if isinstance(agents, str) and "," in agents:  # `serve run ... agents=a.zip,b.zip`
        agents = agents.split(",")
    replicas = int(args.get("replicas", 1))
    user_config = {"max_batch_size": int(args.get("max_batch_size", MAX_BATCH_SIZE)),
                   "batch_wait_timeout_s": float(args.get("batch_wait_timeout_s", BATCH_WAIT_TIMEOUT_S)),
                   "max_predict_values": int(args.get("max_predict_values", MAX_PREDICT_VALUES))}
    cpus = float(args.get("num_cpus", 0.5))
    backend = args.get("backend", DEFAULT_BACKEND)
    if backend not in ("fast", "numpy"):
        raise ValueError(f"build_app: args.backend must be 'fast' or 'numpy', got {backend!r}")
    shipped = [dict(a, backend=backend) for a in read_agents(agents, args.get("vecnormalize", "auto"),
                                                              args.get("frame_stack", "auto"))]
    # @serve.deployment made both classes Deployments; Ray's annotations keep the class type
    policy, ingress = cast(serve.Deployment, Policy), cast(serve.Deployment, Agents)
    handles = {a["name"]: policy.options(name=a["name"], num_replicas=replicas, user_config=user_config,
                                         ray_actor_options={"num_cpus": cpus}).bind(a) for a in shipped}
    index = [{k: a["info"].get(k) for k in ("name", "file", "sha256", "algorithm", "observation_space",
                                              "action_space", "outputs")} for a in shipped]
    return ingress.bind(handles, index)


def config_file(agents: list[str], *, replicas: int = 1, app_name: str = APP_NAME, route_prefix: str = "/",
                host: str = "0.0.0.0", port: int = 8000, **args) -> dict[str, Any]:
    """A Serve config (`serve deploy serve.yaml`, `serve run serve.yaml`) for the same
    application on any cluster: agent paths as the head node sees them."""
    return {"proxy_location": "EveryNode", "http_options": {"host": host, "port": port},
            "applications": [{"name": app_name, "route_prefix": route_prefix,
                              "import_path": "sbexportd.deploy.ray:build_app",
                              "runtime_env": runtime_env(),
                              "args": dict(args, agents=[str(a) for a in agents], replicas=replicas)}]}


def wait_healthy(app_name: str = APP_NAME, timeout: float = 120.0) -> None:
    """Until every deployment of the application has its replicas running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = serve.status().applications.get(app_name)
        if status is not None and status.status == "RUNNING" and all(
                d.status == "HEALTHY" for d in status.deployments.values()):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{app_name} not healthy after {timeout} s: {serve.status().applications.get(app_name)}")
