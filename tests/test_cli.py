"""The command line: answers, dumps, one-line errors, and no heavy imports for inspect."""
from __future__ import annotations

import json
import subprocess
import sys

import msgpack
import numpy as np
import pytest

from conftest import FIXTURES, ROOT

EXAMPLE = ROOT / "examples" / "ppo2_CartPole-v1.pkl"


def run(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "sbexportd.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_inspect_json_describes_the_policy():
    info = json.loads(run("inspect", EXAMPLE, "--json").stdout)
    assert info["algorithm"] == "ppo2"
    assert info["policy"] == {"class": "MlpPolicy", "custom": False}
    assert info["action_space"] == {"type": "Discrete", "n": 2}
    assert info["observation_space"]["shape"] == [4]
    assert [layer["name"] for layer in info["layers"]] == ["model/pi_fc0", "model/pi_fc1", "model/vf_fc0",
                                                    "model/vf_fc1", "model/vf", "model/pi"]
    assert {layer["activation"] for layer in info["layers"][:4]} == {"tanh"}
    assert info["outputs"] == ["actions", "probs", "values"]
    assert info["parameters"]["policy_weights"] == (4 * 64 + 64 + 64 * 64 + 64 + 4 * 64 + 64 + 64 * 64 + 64
                                                    + 64 + 1 + 64 * 2 + 2)


def test_inspect_imports_neither_tensorflow_nor_torch():
    heavy = ("tensorflow", "torch", "gym", "stable_baselines", "cloudpickle")
    code = (f"import sys; from sbexportd.cli import main; main(['inspect', {str(EXAMPLE)!r}]); "
            f"heavy = [m for m in {heavy!r} if m in sys.modules]; "
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60).stdout
    assert "HEAVY []" in out


@pytest.mark.parametrize("suffix", [".npz", ".json", ".msgpack"])
def test_params_dump_round_trips(tmp_path, suffix):
    from sbexportd.read import read_model
    params = read_model(FIXTURES / "ppo2_mlp_vec_box" / "model.zip").params
    out = tmp_path / f"w{suffix}"
    run("params", FIXTURES / "ppo2_mlp_vec_box" / "model.zip", "--out", out)
    if suffix == ".npz":
        back = dict(np.load(out))
    elif suffix == ".json":
        back = {k: np.array(v["data"], v["dtype"]).reshape(v["shape"]) for k, v in json.loads(out.read_text()).items()}
    else:
        raw = msgpack.unpackb(out.read_bytes())
        back = {k: np.frombuffer(v["data"], np.dtype(v["dtype"]).newbyteorder("<")).reshape(v["shape"])
                for k, v in raw.items()}
    assert list(back) == list(params)
    for k in params:
        np.testing.assert_array_equal(back[k], params[k])


def test_predict_writes_sb2s_actions(tmp_path):
    case = FIXTURES / "ppo2_mlp_vec_box"
    golden = np.load(case / "golden.npz")
    np.save(tmp_path / "obs.npy", golden["obs"])
    run("predict", case / "model.pkl", "--obs", tmp_path / "obs.npy", "--out", tmp_path / "out.npz")
    out = np.load(tmp_path / "out.npz")
    assert np.max(np.abs(out["actions"] - golden["actions"])) <= 1e-5


@pytest.mark.parametrize("content,word", [
    (b"", "empty"), (b"garbage that is no model", "neither a zip"), (b"PK\x03\x04broken", "zip")])
def test_errors_are_one_line_and_nonzero(tmp_path, content, word):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(content)
    proc = run("inspect", bad, check=False)
    assert proc.returncode == 3  # a bad input file
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("sbexportd: error: ") and str(bad) in lines[0]
    assert word in lines[0].lower()


def test_missing_file_is_one_line():
    proc = run("params", "/nonexistent/agent.zip", check=False)
    assert proc.returncode == 3 and proc.stderr.count("\n") == 1 and "agent.zip" in proc.stderr
