"""clients/c/run_policy: the TensorFlow C API (from the tensorflow wheel) running a
`graphdef` export, built with the C compiler by clients/c/Makefile, its printed
actions compared with the NumPy reference (SB2's deterministic predict)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sbexportd
from conftest import FIXTURES
from sbexportd.export import export
from sbexportd.export.conventions import sample_observations

pytest.importorskip("tensorflow", reason="tensorflow not installed (run `make install`)")

ROOT = Path(__file__).resolve().parents[1]
CASES = {  # an MLP Box policy, a Discrete one, a uint8-image CNN, and a recurrent one (zero state)
    "ppo2_mlp_vec_box": "box",
    "ppo2_mlp_vec_discrete": "discrete",
    "a2c_cnn_img_discrete": "discrete",
    "ppo2_mlplstm_vec_box": "box",
}
N = 7


@pytest.fixture(scope="module")
def run_policy(tmp_path_factory) -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (gcc or cc) on PATH: the C client is NOT tested")
    if shutil.which("make") is None:
        pytest.skip("make not found: the C client is NOT tested")
    out = tmp_path_factory.mktemp("c")
    proc = subprocess.run(["make", "-C", str(ROOT / "clients" / "c"), f"OUT={out}", f"PYTHON={sys.executable}",
                           f"CC={cc}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warning" not in proc.stderr, proc.stderr
    return out / "run_policy"


def _run(binary: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("case", list(CASES))
def test_c_client_actions(run_policy, tmp_path, case):
    model = sbexportd.load(FIXTURES / case / "model.zip")
    export(model, "graphdef", tmp_path)
    obs = sample_observations(model.spec, N, seed=3)
    obs_file = tmp_path / "obs.f32"
    obs.astype("<f4").tofile(obs_file)
    proc = _run(run_policy, tmp_path / "graphdef" / "frozen_graph.pb", obs_file, *obs.shape)
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.strip().splitlines()
    assert len(rows) == N
    ref = model.predict(obs.astype(np.float32))["actions"]
    if CASES[case] == "discrete":
        got = np.array([int(r) for r in rows])
        np.testing.assert_array_equal(got, ref)
    else:
        got = np.array([[float(x) for x in r.split()] for r in rows], np.float32)
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1e-5


def test_c_client_errors(run_policy, tmp_path):
    model = sbexportd.load(FIXTURES / "ppo2_mlp_vec_box" / "model.zip")
    export(model, "graphdef", tmp_path)
    graph = tmp_path / "graphdef" / "frozen_graph.pb"
    obs_file = tmp_path / "obs.f32"
    np.zeros((2, 4), "<f4").tofile(obs_file)
    usage = _run(run_policy, graph)
    assert usage.returncode == 2 and "usage" in usage.stderr
    short = _run(run_policy, graph, obs_file, 3, 4)   # 3x4 floats asked, 2x4 in the file
    assert short.returncode == 1 and "bytes" in short.stderr
    rank = _run(run_policy, graph, obs_file, 2, 2, 2)
    assert rank.returncode == 1 and "rank" in rank.stderr
    missing = _run(run_policy, tmp_path / "nope.pb", obs_file, 2, 4)
    assert missing.returncode == 1 and "cannot open" in missing.stderr
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"not a graph")
    bad = _run(run_policy, garbage, obs_file, 2, 4)
    assert bad.returncode == 1 and "run_policy:" in bad.stderr
