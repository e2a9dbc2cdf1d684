"""Failures a user can cause, from every layer, reach the user as typed errors: the
daemon answers their documented code and kind with a message saying what was
expected (never -32603 "a bug in sbexportd"), the CLI exits with its documented
status and one line. Each is driven through a real daemon (tests/rpc_client.py) or
the real command line, and the Python API's own error class is checked beside."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import sbexportd
from conftest import FIXTURES, ROOT
from rpc_client import Daemon, RpcError
from sbexportd import errors
from sbexportd.understand.spec import ACTIVATIONS

MLP = FIXTURES / "ppo2_mlp_vec_discrete" / "model.zip"
HER = FIXTURES / "her_sac_bitflip" / "model.zip"
EXAMPLE = ROOT / "examples" / "ppo2_CartPole-v1.pkl"
INTERNAL = -32603


@pytest.fixture(scope="module")
def client():
    d = Daemon()
    c = d.client()
    yield c
    c.close()
    d.stop()


def refused(c, method: str, params: dict) -> RpcError:
    with pytest.raises(RpcError) as e:
        c.request(method, params)
    assert e.value.code != INTERNAL and e.value.kind != "internal", e.value
    assert "bug in sbexportd" not in e.value.data.get("hint", ""), e.value
    return e.value


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sbexportd.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.stderr.count("\n") <= 1 and "internal error" not in proc.stderr, proc.stderr
    return proc.stderr


# --- an activation the op contract does not know ------------------------------------------------
def test_unknown_activation_is_an_invalid_argument(client):
    e = refused(client, "sbexport/open", {"path": str(MLP), "activation": "gelu"})
    assert e.code == -32602 and e.kind in ("unknown_activation", "invalid_params"), e
    assert all(a in e.error["message"] for a in ACTIVATIONS), e
    proc = cli("inspect", MLP, "--activation", "gelu")
    assert proc.returncode == 2 and "unknown activation 'gelu'; choose one of identity, relu" in one_line(proc)
    with pytest.raises(errors.UnknownActivation, match="choose one of"):
        sbexportd.load(MLP, activation="gelu")


def test_a_bad_activation_is_refused_before_an_old_files_naming_search():
    """An unnamed parameter list is named by trying architectures; a bad override must
    not be taken for a misfit of each (it would end as 'inconsistent parameters')."""
    old = FIXTURES / "v2_3_0_ppo2_mlp_vec_box" / "model.pkl"
    with pytest.raises(errors.UnknownActivation):
        sbexportd.load(old, activation="gelu")


# --- a seed NumPy cannot take ----------------------------------------------------------------------
def test_negative_seed_is_an_invalid_argument(client, tmp_path):
    mid = client.request("sbexport/open", {"path": str(MLP)})["modelId"]
    e = refused(client, "sbexport/predict", {"modelId": mid, "obs": [0.1, 0.2, 0.3, 0.4], "deterministic": False,
                                             "seed": -1})
    assert e.code == -32602 and "seed" in e.error["message"] and "non-negative" in e.error["message"], e
    (tmp_path / "o.json").write_text("[[0.1, 0.2, 0.3, 0.4]]")
    proc = cli("predict", MLP, "--obs", tmp_path / "o.json", "--stochastic", "--seed", "-1")
    assert proc.returncode == 2 and "seed must be a non-negative integer" in one_line(proc)
    with pytest.raises(errors.InvalidArgument, match="seed must be a non-negative integer"):
        sbexportd.load(MLP).predict([0.1, 0.2, 0.3, 0.4], deterministic=False, seed=-1)


# --- observations that do not fit ----------------------------------------------------------------
def test_goal_dict_whose_shapes_do_not_line_up_is_a_bad_observation(client, tmp_path):
    mid = client.request("sbexport/open", {"path": str(HER)})["modelId"]
    goal = {"observation": [[0, 1, 0, 1], [1, 1, 0, 0]], "achieved_goal": [0, 1, 1, 0], "desired_goal": [1, 0, 0, 1]}
    e = refused(client, "sbexport/predict", {"modelId": mid, "obs": goal})
    assert (e.code, e.kind) == (-33005, "bad_observation"), e
    assert "do not line up: expected {'observation': [4], 'achieved_goal': [4], 'desired_goal': [4]}" \
        in e.error["message"], e
    (tmp_path / "g.json").write_text(json.dumps(goal))
    proc = cli("predict", HER, "--obs", tmp_path / "g.json")
    assert proc.returncode == 4 and "goal observation shapes" in one_line(proc)


def test_text_and_ragged_lists_are_bad_observations_in_the_python_api():
    model = sbexportd.load(FIXTURES / "ppo2_mlplstm_vec_box" / "model.zip")
    obs = np.zeros((1, 4), np.float32)
    cases = (({"obs": [["a", "b", "c", "d"]]}, "observations"), ({"obs": [[1, 2], [1, 2, 3]]}, "observations"),
             ({"obs": obs, "state": "abc"}, "state"), ({"obs": obs, "mask": [[1], [1, 2]]}, "mask"))
    for kwargs, what in cases:
        with pytest.raises(errors.BadObservation, match=f"{what} must be a rectangular array of numbers"):
            model.predict(**kwargs)
    # numbers written as text pass, as SB2's feed_dict took them
    assert np.array_equal(model.predict([["0", "0", "0", "0"]])["actions"], model.predict(obs)["actions"])


# --- export folders that are not what `sbexportd export` wrote --------------------------------------
@pytest.fixture(scope="module")
def exported(client, tmp_path_factory):
    """A pytorch export of the example CartPole agent, made by the daemon."""
    out = tmp_path_factory.mktemp("typed")
    mid = client.request("sbexport/open", {"path": str(EXAMPLE)})["modelId"]
    client.request("sbexport/export", {"modelId": mid, "to": "pytorch", "out": str(out)})
    return out / "pytorch"


@pytest.mark.parametrize("damage,says", [
    ("manifest not json", "manifest.json is not JSON"),
    ("manifest without inputs", "manifest.json lacks what `sbexportd export` writes"),
    ("model file missing", "this pytorch export cannot be loaded in its runtime"),
])
def test_a_broken_export_folder_is_refused_with_its_kind(client, exported, tmp_path, damage, says):
    folder = tmp_path / "pytorch"
    subprocess.run(["cp", "-r", str(exported), str(folder)], check=True)
    manifest = json.loads((folder / "manifest.json").read_text())
    if damage == "manifest not json":
        (folder / "manifest.json").write_text("{not json")
    elif damage == "manifest without inputs":
        (folder / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "inputs"}))
    else:
        (folder / "policy.torchscript.pt").unlink()
    e = refused(client, "sbexport/evaluate", {"path": str(folder), "env": "CartPole-v1", "episodes": 1})
    assert (e.code, e.kind) == (-33010, "bad_export_folder") and says in e.error["message"], e
    assert e.data["file"] == str(folder)
    proc = cli("evaluate", folder, "--env", "CartPole-v1", "--episodes", "1")
    assert proc.returncode == 5 and says in one_line(proc)


def test_an_export_on_another_environment_is_a_bad_observation(client, exported):
    """Pendulum's observations are 3 numbers, the CartPole export takes 4: said before any
    runtime is fed them (TF Lite would not even fail)."""
    e = refused(client, "sbexport/evaluate", {"path": str(exported), "env": "Pendulum-v1", "episodes": 1})
    assert (e.code, e.kind) == (-33005, "bad_observation"), e
    assert "Pendulum-v1's observations are [3]; this export takes [4]" in e.error["message"], e
    got = client.request("sbexport/evaluate", {"path": str(exported), "env": "CartPole-v1", "episodes": 1})
    assert got["returns"] == [500.0]  # the intact export still plays


# --- a file that is not one of ours ------------------------------------------------------------------
def test_params_output_of_an_unknown_format_is_a_usage_error(tmp_path):
    proc = cli("params", MLP, "--out", tmp_path / "new" / "w.txt")
    assert proc.returncode == 2 and "choose a .npz, .json or .msgpack output" in one_line(proc)
    assert not (tmp_path / "new").exists()


def test_a_backend_whose_runtime_is_missing_is_unavailable(tmp_path):
    (tmp_path / "o.json").write_text("[[0.1, 0.2, 0.3, 0.4]]")
    code = ("import sys; sys.modules['torch'] = None\nfrom sbexportd.cli import main\n"
            f"sys.exit(main(['predict', {str(MLP)!r}, '--obs', {str(tmp_path / 'o.json')!r}, '--backend', 'torch']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 5 and "the torch backend needs torch" in one_line(proc)


def test_a_program_that_breaks_the_contract_is_an_invalid_spec():
    """What a portable document (or a bug) could hand a backend is refused by
    validate() first, naming what is wrong, for the distribution too."""
    import dataclasses

    from sbexportd.understand.spec import Distribution
    spec = sbexportd.load(MLP).spec
    for dist, says in ((Distribution("gumbel", {"logits": "x"}), "distribution 'gumbel' is not one of"),
                       (Distribution("categorical", {"logits": "nowhere"}), "reads logits 'nowhere', which is never")):
        with pytest.raises(errors.InvalidSpec, match=says):
            dataclasses.replace(spec, distribution=dist).validate()
    assert isinstance(errors.InvalidSpec("x"), errors.UnsupportedModel)


def test_every_typed_error_maps_to_a_documented_code_with_a_hint():
    """serve/errors.py gives each family its code and each kind a hint; protocol.md
    lists every kind the daemon can answer."""
    from sbexportd.serve.errors import HINTS, INTERNAL_ERROR, map_exception
    protocol = (ROOT / "protocol.md").read_text()
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.SbExportError)]
    for cls in classes:
        exc = cls.__new__(cls)
        errors.SbExportError.__init__(exc, "a message")
        mapped = map_exception(exc)
        assert mapped.code != INTERNAL_ERROR and "bug in sbexportd" not in mapped.data["hint"], cls
        if cls.code not in ("error", "bad_observation_file"):  # (the CLI's observation files: not served)
            assert f"`{cls.code}`" in protocol, f"protocol.md does not list kind {cls.code}"
    assert "invalid_argument" in HINTS and "bad_export_folder" in HINTS
