"""Many clients on one daemon: concurrent predicts, a slow export that does not
hold up predicts on another model, exports (files, manifest, parity, the export
cache), progress, cancellation that leaves no files, and clients that vanish."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import sbexportd
from conftest import FIXTURES
from rpc_client import Daemon, RpcError, raw, to_array, wait_until

MODELS = ["ppo2_mlp_vec_discrete", "dqn_mlp_vec_discrete", "sac_mlp_vec_box", "a2c_mlp_vec_box",
          "ppo2_mlplstm_vec_box", "acktr_mlp_vec_discrete"]


def path(case: str) -> str:
    return str(FIXTURES / case / "model.zip")


@pytest.fixture(scope="module")
def daemon():
    d = Daemon("--workers", "4")
    yield d
    d.stop()


def test_several_clients_at_once(daemon):
    errors: list[BaseException] = []

    def worker(i: int, case: str) -> None:
        try:
            c = daemon.client()
            model = sbexportd.load(path(case))
            mid = c.request("sbexport/open", {"path": path(case)})["modelId"]
            rng = np.random.default_rng(i)
            shape = model.spec.observation_space.shape
            for step in range(40):
                obs = rng.normal(size=(1 + step % 5, *shape)).astype(np.float32)
                encoding = "msgpack" if (i + step) % 2 else "json"
                params = {"modelId": mid, "obs": raw(obs) if encoding == "msgpack" else obs.tolist()}
                got = c.request("sbexport/predict", params, encoding=encoding)["outputs"]
                want = model.predict(obs)
                for k, w in want.items():
                    np.testing.assert_array_equal(to_array(got[k]).astype(w.dtype), w)
            c.close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i, MODELS[i % len(MODELS)])) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    status = daemon.client().request("sbexport/status")
    assert status["connections"]["total"] >= 8


def test_a_slow_export_does_not_hold_up_predicts_on_another_model(daemon, tmp_path):
    exporter, predictor = daemon.client(), daemon.client()
    slow = exporter.request("sbexport/open", {"path": path("a2c_cnn_img_discrete")})["modelId"]
    fast = predictor.request("sbexport/open", {"path": path("ppo2_mlp_vec_discrete")})["modelId"]
    small = [[0.1, 0.2, 0.3, 0.4]]
    big = raw(np.random.default_rng(0).normal(size=(4096, 4)).astype(np.float32))  # runs on the work pool
    rid = exporter.start("sbexport/export", {"modelId": slow, "to": "savedmodel,onnx", "out": str(tmp_path / "x")})
    done = threading.Event()
    answer: dict = {}

    def wait_export():
        answer.update(exporter.wait(rid))
        done.set()
    threading.Thread(target=wait_export, daemon=True).start()
    latencies = []
    while not done.is_set():
        t = time.perf_counter()
        predictor.request("sbexport/predict", {"modelId": fast, "obs": small})
        if len(latencies) % 10 == 0:
            out = predictor.request("sbexport/predict", {"modelId": fast, "obs": big}, encoding="msgpack")
            assert out["outputs"]["actions"]["shape"] == [4096]
        latencies.append(time.perf_counter() - t)
        assert time.perf_counter() - t < 5, "a predict waited behind the export"
    assert "result" in answer, answer
    assert [r["target"] for r in answer["result"]["results"]] == ["savedmodel", "onnx"]
    # the export took seconds (TensorFlow import, conversion, verification); predicts kept coming
    assert len(latencies) >= 20, len(latencies)
    print(f"{len(latencies)} predicts during the export, median {1e3 * np.median(latencies):.2f} ms, "
          f"max {1e3 * max(latencies):.1f} ms")


def test_tensorflow_backend_predicts_like_in_process(daemon):
    obs = np.random.default_rng(3).normal(size=(16, 4)).astype(np.float32)
    c = daemon.client()
    mid = c.request("sbexport/open", {"path": path("sac_mlp_vec_box"), "backends": ["tensorflow"]})["modelId"]
    got = c.request("sbexport/predict", {"modelId": mid, "obs": raw(obs), "backend": "tensorflow"}, encoding="msgpack")
    want = sbexportd.load(path("sac_mlp_vec_box")).predict(obs, backend="tensorflow")
    for k, w in want.items():
        np.testing.assert_array_equal(to_array(got["outputs"][k]), w)
    c.close()


def test_export_results_files_manifest_parity_and_the_export_cache(daemon, tmp_path):
    c = daemon.client()
    mid = c.request("sbexport/open", {"path": path("ppo2_mlp_vec_box")})["modelId"]
    first = c.request("sbexport/export", {"modelId": mid, "to": ["portable", "params"], "out": str(tmp_path / "a"),
                                          "workDoneToken": "exp-1"})
    for r in first["results"]:
        folder = Path(r["path"])
        assert folder == tmp_path / "a" / r["target"] and r["cached"] is False
        assert json.loads((folder / "manifest.json").read_text()) == r["manifest"]
        assert r["parity"]["verified"] and r["parity"]["passed"]
        assert sorted(f["path"] for f in r["files"]) == sorted(
            p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json")
    kinds = [n["params"]["value"]["kind"] for n in c.notifications if n["params"]["token"] == "exp-1"]
    assert kinds[0] == "begin" and kinds[-1] == "end" and "report" in kinds

    again = c.request("sbexport/export", {"modelId": mid, "to": "portable,params", "out": str(tmp_path / "b")})
    assert all(r["cached"] for r in again["results"])
    for a, b in zip(first["results"], again["results"], strict=True):
        assert a["files"] == b["files"] and a["manifest"] == b["manifest"]
    with pytest.raises(RpcError) as e:
        c.request("sbexport/export", {"modelId": mid, "to": "portable", "out": str(tmp_path / "a")})
    assert e.value.code == -33012 and e.value.kind == "output_exists"
    forced = c.request("sbexport/export", {"modelId": mid, "to": "portable", "out": str(tmp_path / "a"),
                                           "force": True, "verify": False})
    assert forced["results"][0]["parity"] == {"verified": False}
    assert json.loads((tmp_path / "a" / "portable" / "manifest.json").read_text())["parity"] == {"verified": False}
    c.close()


def test_cancelled_export_leaves_no_files(daemon, tmp_path):
    """portable is made first (quickly), then savedmodel is cancelled mid-way: the
    request is all or nothing, so out/ stays empty, and no staging folder is left."""
    c = daemon.client()
    mid = c.request("sbexport/open", {"path": path("trpo_mlp_vec_box")})["modelId"]
    out = tmp_path / "out"
    rid = c.start("sbexport/export", {"modelId": mid, "to": "portable,savedmodel", "out": str(out),
                                      "workDoneToken": "cancel-me"})
    while not any(n["params"]["value"].get("message") == "savedmodel: writing" for n in c.notifications):
        c.notifications.append(c.receive())
    c.notify("$/cancelRequest", {"id": rid})
    with pytest.raises(RpcError) as e:
        c.result(rid)
    assert e.value.code == -32800 and e.value.kind == "cancelled"
    assert c.notifications[-1]["params"]["value"] == {"kind": "end", "message": "cancelled"}
    assert not out.exists()  # not even the folder the request created
    # nothing was poisoned: the same export, not cancelled, works
    done = c.request("sbexport/export", {"modelId": mid, "to": "portable,savedmodel", "out": str(out)})
    assert [r["target"] for r in done["results"]] == ["portable", "savedmodel"]
    assert sorted(p.name for p in out.iterdir()) == ["portable", "savedmodel"]
    c.close()


def test_window_progress_cancel_and_workspace_command_export(daemon, tmp_path):
    c = daemon.client()
    mid = c.request("sbexport/open", {"path": path("acktr_mlp_vec_discrete")})["modelId"]
    out = tmp_path / "out"
    rid = c.start("workspace/executeCommand", {"command": "sbexport.export", "workDoneToken": "w",
                                               "arguments": [{"modelId": mid, "to": "params,tflite", "out": str(out)}]})
    while not any(n["params"]["value"].get("message") == "tflite: writing" for n in c.notifications):
        c.notifications.append(c.receive())
    c.notify("window/workDoneProgress/cancel", {"token": "w"})
    with pytest.raises(RpcError) as e:
        c.result(rid)
    assert e.value.code == -32800
    assert not out.exists() or list(out.iterdir()) == []
    c.close()


def test_clients_that_vanish_mid_request_do_not_disturb_the_daemon(daemon, tmp_path):
    c = daemon.client()
    mid = c.request("sbexport/open", {"path": path("a2c_mlp_vec_discrete")})["modelId"]
    out = tmp_path / "out"
    c.start("sbexport/export", {"modelId": mid, "to": "tfjs", "out": str(out)})
    c.start("sbexport/predict", {"modelId": mid, "obs": raw(np.zeros((50000, 4), np.float32))}, encoding="msgpack")
    c.close()  # gone before the answers: its export is cancelled, nothing is written
    other = daemon.client()
    assert wait_until(lambda: other.request("sbexport/status")["requests"]["inFlight"] == 1, 60)  # just this one
    assert not out.exists() or list(out.iterdir()) == []
    assert other.request("sbexport/predict", {"modelId": other.request("sbexport/open", {"path": path(
        "a2c_mlp_vec_discrete")})["modelId"], "obs": [[0, 0, 0, 0]]})["outputs"]["actions"] in ([0], [1])
    other.close()
