"""The fast path (realize/fast.py): verified, not trusted. A candidate that reproduces
the reference becomes the default backend, in-process and in the daemon; one that
does not (here: ONNX Runtime with its answers nudged by 1e-3, in-process by
monkeypatching, in a real daemon by a sitecustomize shim on its path) is never
used: the reference serves, and the open result and sbexport/status say why."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

import sbexportd
from conftest import FIXTURES, ROOT
from rpc_client import Daemon, RpcError, raw, to_array
from sbexportd.errors import BackendUnavailable
from sbexportd.realize import onnxruntime_backend

MLP = FIXTURES / "ppo2_mlp_vec_box" / "model.zip"
OBS = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)

NUDGE = """
from sbexportd.realize import onnxruntime_backend as _ob

_run = _ob.OrtPolicy.run


def _nudged(self, *args, **kwargs):
    out = _run(self, *args, **kwargs)
    return {k: (v + 1e-3 if v.dtype.kind == "f" else v) for k, v in out.items()}


_ob.OrtPolicy.run = _nudged
"""


def test_a_verified_candidate_is_the_default():
    m = sbexportd.load(MLP)
    fast = m.fast_path
    assert fast.verified and fast.backend == m.default_backend == "onnxruntime" and fast.reason is None
    assert fast.observations == 65 and set(fast.max_abs_error) >= set(m.spec.outputs)
    got = m.predict(OBS)
    want = m.predict(OBS, backend="onnxruntime")
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_a_candidate_that_does_not_reproduce_the_reference_is_not_used(monkeypatch):
    run = onnxruntime_backend.OrtPolicy.run
    monkeypatch.setattr(onnxruntime_backend.OrtPolicy, "run", lambda self, *a, **k: {
        name: v + np.float32(1e-3) if v.dtype.kind == "f" else v for name, v in run(self, *a, **k).items()})
    m = sbexportd.load(MLP)
    fast = m.fast_path
    assert not fast.verified and fast.backend == m.default_backend == "numpy"
    assert "onnxruntime" in fast.reason and "max abs error" in fast.reason, fast.reason
    got, ref = m.predict(OBS), m.predict(OBS, backend="numpy")
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])
    with pytest.raises(BackendUnavailable, match="not used for this model"):
        m.predict(OBS, backend="onnxruntime")


def test_the_daemon_reports_its_fast_path_and_answers_with_it():
    d = Daemon()
    try:
        c = d.client()
        opened = c.request("sbexport/open", {"path": str(MLP)})
        assert opened["defaultBackend"] == "onnxruntime" and opened["fastPath"]["verified"] is True
        out = c.request("sbexport/predict", {"modelId": opened["modelId"], "obs": raw(OBS)}, "msgpack")
        assert out["backend"] == "onnxruntime"
        want = sbexportd.load(MLP).predict(OBS)
        for k, w in want.items():
            np.testing.assert_array_equal(to_array(out["outputs"][k]), w)
        [model] = c.request("sbexport/status")["models"]
        assert model["defaultBackend"] == "onnxruntime" and "onnxruntime" in model["backends"]
    finally:
        d.stop()


def test_the_daemon_falls_back_to_the_reference_and_says_why(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent(NUDGE))
    d = Daemon(env={"PYTHONPATH": f"{tmp_path}:{ROOT}"})
    try:
        c = d.client()
        opened = c.request("sbexport/open", {"path": str(MLP)})
        fast = opened["fastPath"]
        assert opened["defaultBackend"] == "numpy" and fast["verified"] is False and fast["backend"] == "numpy"
        assert "max abs error" in fast["reason"], fast
        out = c.request("sbexport/predict", {"modelId": opened["modelId"], "obs": raw(OBS)}, "msgpack")
        assert out["backend"] == "numpy"
        want = sbexportd.load(MLP).predict(OBS, backend="numpy")
        for k, w in want.items():
            np.testing.assert_array_equal(to_array(out["outputs"][k]), w)
        [model] = c.request("sbexport/status")["models"]
        assert model["defaultBackend"] == "numpy" and model["fastPath"]["reason"] == fast["reason"]
        assert "onnxruntime" not in model["backends"]
        with pytest.raises(RpcError) as e:
            c.request("sbexport/predict", {"modelId": opened["modelId"], "obs": raw(OBS), "backend": "onnxruntime"},
                      "msgpack")
        assert (e.value.code, e.value.kind) == (-33006, "backend_unavailable")
    finally:
        d.stop()
