"""Ray, on a local instance this test starts (and stops): agents served by
sbexportd.deploy.ray over HTTP and through Python handles, held to the parity rule
against the reference, under concurrent requests (batched), and a replica killed
and replaced while requests go on; and `sbexportd export --ray ADDRESS` running one
Ray task per agent on the same instance."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest

import sbexportd
from conftest import FIXTURES, ROOT
from sbexportd.export.conventions import sample_observations
from sbexportd.parity import compare
from sbexportd.serve.arrays import decode
from sbexportd.understand.spec import Discrete, MultiBinary, MultiDiscrete

ray = pytest.importorskip("ray", reason="ray[serve] not installed (run `make install`)")
serve = pytest.importorskip("ray.serve", reason="ray[serve] not installed (run `make install`)")
from sbexportd.deploy.ray import PredictError, build_app, runtime_env, wait_healthy  # noqa: E402

pytestmark = pytest.mark.ray
AGENTS = {
    "ppo2_CartPole-v1": ROOT / "examples" / "ppo2_CartPole-v1.pkl",                      # Discrete
    "ppo2_mlplstm_vec_box": FIXTURES / "ppo2_mlplstm_vec_box" / "model.zip",              # state, mask
    "sac_mlp_vec_box": FIXTURES / "sac_mlp_vec_box" / "model.zip",                        # Box
    "a2c_mlp_dobs_discrete": FIXTURES / "a2c_mlp_dobs_discrete" / "model.zip",            # Discrete obs
}
APP = "sbexportd"


def test_config_file_is_a_serve_config():
    """config_file() is what `serve deploy` takes (Ray's own schema), for the app built here."""
    from ray.serve.schema import ServeDeploySchema

    from sbexportd.deploy.ray import config_file
    config = config_file([str(AGENTS["ppo2_CartPole-v1"])], replicas=2, max_batch_size=8)
    schema = ServeDeploySchema.parse_obj(config)  # pydantic v1 API in Ray 2.52
    (app,) = schema.applications
    assert app.import_path == "sbexportd.deploy.ray:build_app" and app.args["replicas"] == 2
    assert "EveryNode" in str(schema.proxy_location)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """A fresh local Ray instance (never one already running on this machine) with
    Serve's HTTP proxy on a free port; shut down, processes and files, at the end."""
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # a FutureWarning of Ray 2.52 otherwise
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports from a test machine
    temp = tempfile.mkdtemp(prefix="sbx-ray-", dir="/tmp")  # short: Ray's socket paths must fit
    context = ray.init(address="local", num_cpus=6, include_dashboard=False, _temp_dir=temp,
                       runtime_env=runtime_env(), logging_level="ERROR", log_to_driver=False)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield SimpleNamespace(address=context.address_info["gcs_address"], url=f"http://127.0.0.1:{port}")
    serve.shutdown()
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def app(cluster):
    serve.run(build_app({"agents": [str(p) for p in AGENTS.values()], "replicas": 1, "max_batch_size": 16,
                         "batch_wait_timeout_s": 0.01, "max_predict_values": 4096}), name=APP, route_prefix="/")
    wait_healthy(APP)
    return cluster


@pytest.fixture(scope="module")
def references():
    return {name: sbexportd.load(path) for name, path in AGENTS.items()}


def _post(url: str, body, timeout: float = 60.0) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _same(model, outputs: dict, reference: dict, what: str) -> None:
    discrete = isinstance(model.spec.action_space, (Discrete, MultiDiscrete, MultiBinary))
    assert set(outputs) == set(reference), what
    for name, ref in reference.items():
        c = compare(name, np.asarray(outputs[name], np.asarray(ref).dtype), ref, discrete and name == "actions")
        assert c.passed, f"{what}: {c.describe()}"


def _request(model, n: int, seed: int) -> tuple[dict, dict]:
    """Predict params of n observations (state and mask too for a recurrent policy),
    and the NumPy reference's answer to them."""
    obs = sample_observations(model.spec, n, seed)
    params, kw = {"obs": obs.tolist()}, {}
    if model.spec.stateful:
        rng = np.random.RandomState(seed)
        kw = {"state": rng.uniform(-1, 1, (n, model.spec.state_size)).astype(np.float32),
              "mask": (rng.uniform(size=n) < 0.3).astype(np.float32)}
        params.update({k: v.tolist() for k, v in kw.items()})
    return params, model.predict(obs, backend="numpy", **kw)


def test_agents_over_http_and_handles(app, references):
    with urllib.request.urlopen(f"{app.url}/agents", timeout=30) as response:
        index = json.loads(response.read())["agents"]
    assert sorted(a["name"] for a in index) == sorted(AGENTS)
    with urllib.request.urlopen(f"{app.url}/agents/ppo2_mlplstm_vec_box", timeout=30) as response:
        info = json.loads(response.read())
    assert info["recurrent"]["n_lstm"] == references["ppo2_mlplstm_vec_box"].spec.recurrent
    # the replica runs the agent's fast path once it has verified it, as in-process
    fast = references["ppo2_mlplstm_vec_box"].fast_path
    assert info["serving"]["backend"] == fast.backend and info["serving"]["fast_path"]["verified"] == fast.verified
    assert info["serving"]["fast_path"]["observations"] > 0 or not fast.verified

    assert "onnxruntime" in {m.default_backend for m in references.values()}  # the fast path is exercised
    handle = serve.get_app_handle(APP)
    for name, model in references.items():
        params, reference = _request(model, 5, seed=11)
        status, answer = _post(f"{app.url}/agents/{name}/predict", params)
        assert status == 200 and answer["agent"] == name and answer["backend"] == model.default_backend, answer
        _same(model, answer["outputs"], reference, f"{name} over HTTP")
        status, exact = _post(f"{app.url}/agents/{name}/predict", dict(params, backend="numpy", encoding="base64"))
        assert status == 200 and exact["backend"] == "numpy"
        for key, value in reference.items():  # the reference on request: its very numbers
            assert np.array_equal(decode(exact["outputs"][key]), value), (name, key)
        got = handle.predict.remote(name, params).result(timeout_s=60)
        assert all(isinstance(v, np.ndarray) for v in got["outputs"].values())
        _same(model, got["outputs"], reference, f"{name} through the application's handle")
        own = serve.get_deployment_handle(name, app_name=APP).predict.remote(params).result(timeout_s=60)
        _same(model, own["outputs"], reference, f"{name} through its deployment's handle")

    # one unbatched observation gives unbatched outputs; base64 answers are exact
    model = references["sac_mlp_vec_box"]
    obs = sample_observations(model.spec, 1, 5)[0]
    status, answer = _post(f"{app.url}/agents/sac_mlp_vec_box/predict", {"obs": obs.tolist(), "encoding": "base64"})
    assert status == 200
    action = answer["outputs"]["actions"]
    assert action["shape"] == list(model.spec.action_space.shape) and action["dtype"] == "float32"
    assert np.array_equal(decode(action), model.predict(obs, backend=answer["backend"])["actions"])

    # stochastic: seeded like the reference
    status, answer = _post(f"{app.url}/agents/sac_mlp_vec_box/predict",
                           {"obs": [obs.tolist()] * 3, "deterministic": False, "seed": 7, "outputs": ["actions"]})
    assert status == 200 and list(answer["outputs"]) == ["actions"]
    assert np.allclose(answer["outputs"]["actions"], model.predict(np.stack([obs] * 3), deterministic=False, seed=7,
                                                                   backend=answer["backend"])["actions"], atol=1e-6)


def test_errors_are_typed(app):
    url = f"{app.url}/agents/ppo2_CartPole-v1/predict"
    status, answer = _post(url, {"obs": [1.0, 2.0]})
    assert status == 400 and answer["error"]["data"]["kind"] == "bad_observation", answer
    assert answer["error"]["code"] == -33005 and "[4]" in answer["error"]["message"]
    status, answer = _post(url, {"obs": [[0.0] * 4], "frobnicate": 1})
    assert status == 400 and answer["error"]["data"]["kind"] == "invalid_params"
    status, answer = _post(url, {"obs": [[0.0] * 4], "outputs": ["q_values"]})
    assert status == 400 and answer["error"]["data"]["kind"] == "unknown_output"
    status, answer = _post(url, {"obs": [[0.0] * 4], "backend": "tensorflow"})  # not loaded on replicas
    assert status == 400 and answer["error"]["data"]["kind"] == "invalid_params" and "onnxruntime" in \
        answer["error"]["message"]
    status, answer = _post(url, b"{not json")
    assert status == 400 and answer["error"]["data"]["kind"] == "parse_error"
    status, answer = _post(f"{app.url}/agents/nobody/predict", {"obs": [[0.0] * 4]})
    assert status == 404 and answer["error"]["data"]["kind"] == "unknown_agent" and "ppo2_CartPole-v1" in \
        answer["error"]["message"]
    status, answer = _post(f"{app.url}/elsewhere", {})
    assert status == 404
    status, answer = _post(url, {"obs": [[0.0] * 4] * 1025})  # 4100 values: over max_predict_values
    assert status == 413 and answer["error"]["data"]["kind"] == "batch_too_large", answer
    assert "4100" in answer["error"]["message"] and "max_predict_values" in answer["error"]["message"]
    status, answer = _post(url, {"obs": [[0.0] * 4] * 1024})
    assert status == 200 and len(answer["outputs"]["actions"]) == 1024
    with pytest.raises(PredictError) as caught:
        serve.get_app_handle(APP).predict.remote("ppo2_CartPole-v1", {"obs": "text"}).result(timeout_s=60)
    assert caught.value.kind == "bad_observation" and caught.value.status == 400
    # the service carries on
    status, answer = _post(url, {"obs": [[0.0] * 4]})
    assert status == 200


def test_concurrent_requests_are_batched(app, references):
    """48 requests from 16 threads at once: every answer is the reference's for its own
    observations, and the replica ran fewer forward passes than requests."""
    handle = serve.get_deployment_handle("ppo2_mlplstm_vec_box", app_name=APP)
    before = handle.stats.remote().result(timeout_s=60)
    model = references["ppo2_mlplstm_vec_box"]
    jobs = [_request(model, 1 + i % 5, seed=100 + i) for i in range(48)]

    def one(job):
        params, reference = job
        status, answer = _post(f"{app.url}/agents/ppo2_mlplstm_vec_box/predict", params)
        assert status == 200, answer
        _same(model, answer["outputs"], reference, "a concurrent request")
        return True

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(one, jobs))
    after = handle.stats.remote().result(timeout_s=60)
    requests = after["requests"] - before["requests"]
    batches = after["batches"] - before["batches"]
    assert requests == 48 and batches < requests, (requests, batches)


def _replicas(app_name: str, deployment: str) -> list[str]:
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["namespace"] == "serve" and a["name"].startswith(f"SERVE_REPLICA::{app_name}#{deployment}#"))


def test_replica_killed_and_replaced(cluster, references):
    """Two replicas of one agent (backend "numpy": the reference only); one is killed:
    the other keeps answering, Serve starts a new one, and every answer is still the
    reference's."""
    name, model = "ppo2_CartPole-v1", references["ppo2_CartPole-v1"]
    serve.run(build_app({"agents": [str(AGENTS[name])], "replicas": 2, "backend": "numpy"}), name="two",
              route_prefix="/two")
    wait_healthy("two")
    before = _replicas("two", name)
    assert len(before) == 2, before
    url = f"{cluster.url}/two/agents/{name}/predict"
    outcomes: list[tuple[float, int]] = []
    stop = threading.Event()

    def keep_asking():
        i = 0
        while not stop.is_set():
            params, reference = _request(model, 3, seed=1000 + i)
            i += 1
            try:
                status, answer = _post(url, params, timeout=10)
            except OSError:
                status, answer = -1, {}
            if status == 200:
                assert answer["backend"] == "numpy"  # build_app's backend: the reference answers all
                _same(model, answer["outputs"], reference, "during the replacement")
            outcomes.append((time.monotonic(), status))
            time.sleep(0.02)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        time.sleep(1.0)
        killed_at = time.monotonic()
        ray.kill(ray.get_actor(before[0], namespace="serve"), no_restart=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            now = _replicas("two", name)
            if len(now) == 2 and before[0] not in now:
                break
            time.sleep(0.5)
        assert len(now) == 2 and before[0] not in now and before[1] in now, now
        wait_healthy("two")
        time.sleep(1.0)
    finally:
        stop.set()
        asker.join(timeout=60)
    after_kill = [s for t, s in outcomes if t > killed_at]
    assert after_kill.count(200) >= 5, outcomes[-20:]          # answered during and after the replacement
    assert [s for _, s in outcomes[-5:]] == [200] * 5, outcomes[-10:]
    stats = {serve.get_deployment_handle(name, app_name="two").stats.remote().result(timeout_s=60)["replica"]
             for _ in range(20)}
    assert len(stats) == 2  # both replicas (one of them new) answer
    serve.delete("two")


def test_export_many_as_ray_tasks(cluster, tmp_path):
    """`sbexportd export ... --ray ADDRESS` from another process: one task per agent on
    this instance; a broken file is a failed row, the others are exported."""
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 truncated")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "sbexportd.cli", "export", str(AGENTS["ppo2_CartPole-v1"]),
                           str(AGENTS["ppo2_mlplstm_vec_box"]), str(broken), "--to", "portable,params",
                           "--out", str(out), "--ray", cluster.address], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 5, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["executor"] == f"ray {cluster.address}"
    rows = {(r["agent"], r["target"]): r for r in summary["rows"]}
    assert len(rows) == 6
    for target in ("portable", "params"):
        assert not rows[("broken", target)]["ok"]
        for agent in ("ppo2_CartPole-v1", "ppo2_mlplstm_vec_box/model"):
            assert rows[(agent, target)]["ok"] and rows[(agent, target)]["parity"]["passed"], rows[(agent, target)]
            assert (out / agent / target / "manifest.json").is_file()
    assert "6 exported" not in proc.stdout and "4 exported, 2 failed" in proc.stdout
