"""What the daemon answers is what sbexportd.load(...).predict answers in-process:
MLP, CNN, LSTM (state and mask round trip), HER goal dicts, VecNormalize, seeded
sampling, chosen outputs, every array encoding; parameters and inspect; the warm
cache (stable ids, reload on change, LRU eviction)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import sbexportd
from conftest import FIXTURES
from rpc_client import Daemon, RpcError, b64, raw, to_array

CASES = {"mlp": "ppo2_mlp_vec_discrete", "cnn": "a2c_cnn_img_discrete", "lstm": "ppo2_mlplstm_vec_box",
         "box": "sac_mlp_vec_box", "dqn": "dqn_mlp_vec_discrete", "multidiscrete": "ppo2_mlp_vec_multidiscrete"}


@pytest.fixture(scope="module")
def daemon():
    d = Daemon()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def client(daemon):
    c = daemon.client()
    yield c
    c.close()


def model_path(case: str):
    return FIXTURES / CASES.get(case, case) / "model.zip"


def golden(case: str):
    return np.load(FIXTURES / CASES.get(case, case) / "golden.npz")


def outputs(result: dict) -> dict[str, np.ndarray]:
    return {k: to_array(v) for k, v in result["outputs"].items()}


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for k, w in want.items():
        g = np.asarray(got[k])
        assert g.shape == w.shape, k
        np.testing.assert_array_equal(g.astype(w.dtype), w, err_msg=k)  # bit for bit, after JSON's float64


@pytest.mark.parametrize("case", ["mlp", "cnn", "box", "dqn", "multidiscrete"])
@pytest.mark.parametrize("encoding", ["json-list", "json-base64", "msgpack"])
def test_predict_equals_in_process(client, case, encoding):
    obs = golden(case)["obs"][:8]
    want = sbexportd.load(model_path(case)).predict(obs)
    mid = client.request("sbexport/open", {"path": str(model_path(case))})["modelId"]
    if encoding == "msgpack":
        result = client.request("sbexport/predict", {"modelId": mid, "obs": raw(obs)}, encoding="msgpack")
        assert all(isinstance(v["data"], bytes) for v in result["outputs"].values())
    elif encoding == "json-base64":
        result = client.request("sbexport/predict", {"modelId": mid, "obs": b64(obs), "encoding": "base64"})
        assert all(isinstance(v["data"], str) for v in result["outputs"].values())
    else:
        result = client.request("sbexport/predict", {"modelId": mid, "obs": obs.tolist()})
        assert all(isinstance(v, list) for v in result["outputs"].values())
    assert_same(outputs(result), want)


def test_large_batches_are_equal_too(client):
    """Big nested lists are decoded, and big answers encoded, off the event loop."""
    obs = np.repeat(golden("cnn")["obs"], 3, axis=0)[:80]  # 80 images: ~420k numbers as lists
    mid = client.request("sbexport/open", {"path": str(model_path("cnn"))})["modelId"]
    assert_same(outputs(client.request("sbexport/predict", {"modelId": mid, "obs": obs.tolist()})),
                sbexportd.load(model_path("cnn")).predict(obs))
    obs = np.random.default_rng(1).normal(size=(100_000, 4)).astype(np.float32)
    mid = client.request("sbexport/open", {"path": str(model_path("mlp"))})["modelId"]
    want = sbexportd.load(model_path("mlp")).predict(obs)
    assert_same(outputs(client.request("sbexport/predict", {"modelId": mid, "obs": raw(obs)}, encoding="msgpack")),
                want)
    assert_same(outputs(client.request("sbexport/predict", {"modelId": mid, "obs": b64(obs), "encoding": "base64"})),
                want)


def test_single_observation_gives_unbatched_outputs(client):
    obs = golden("mlp")["obs"][0]
    mid = client.request("sbexport/open", {"path": str(model_path("mlp"))})["modelId"]
    got = outputs(client.request("sbexport/predict", {"modelId": mid, "obs": obs.tolist()}))
    assert got["actions"].shape == () and got["actions"] == golden("mlp")["actions_obs_single"]


def test_lstm_state_and_mask_round_trip(client):
    """Five steps of two envs: the state the daemon returns goes back in, with the
    golden's episode-start mask; every step equals the in-process run."""
    g = golden("lstm")
    model = sbexportd.load(model_path("lstm"))
    mid = client.request("sbexport/open", {"path": str(model_path("lstm"))})["modelId"]
    state_local = state_remote = None
    for t in range(g["obs"].shape[0]):
        want = model.predict(g["obs"][t], state=state_local, mask=g["mask"][t])
        params = {"modelId": mid, "obs": raw(g["obs"][t]), "mask": raw(g["mask"][t])}
        if state_remote is not None:
            params["state"] = raw(state_remote)
        got = outputs(client.request("sbexport/predict", params, encoding="msgpack"))
        assert_same(got, want)
        np.testing.assert_allclose(got["actions"], g["actions"][t], atol=1e-5)  # and SB2's own answer
        state_local, state_remote = want["state"], got["state"]
    with pytest.raises(RpcError) as e:  # a state of the wrong size
        client.request("sbexport/predict", {"modelId": mid, "obs": g["obs"][0].tolist(), "state": [[0.0] * 3] * 2})
    assert e.value.code == -33005


def test_seeded_sampling_chosen_outputs_and_backends(client):
    obs = golden("box")["obs"][:16]
    model = sbexportd.load(model_path("box"))
    mid = client.request("sbexport/open", {"path": str(model_path("box")), "backends": ["numpy", "torch"]})["modelId"]
    want = model.predict(obs, deterministic=False, seed=7)
    got = outputs(client.request("sbexport/predict", {"modelId": mid, "obs": b64(obs), "deterministic": False,
                                                      "seed": 7, "encoding": "base64"}))
    np.testing.assert_array_equal(got["actions"], want["actions"])
    other = outputs(client.request("sbexport/predict", {"modelId": mid, "obs": b64(obs), "deterministic": False,
                                                        "seed": 8}))
    assert not np.array_equal(np.asarray(other["actions"], np.float32), want["actions"])
    got = outputs(client.request("sbexport/predict", {"modelId": mid, "obs": obs.tolist(),
                                                      "outputs": ["mean", "std"]}))
    assert sorted(got) == ["mean", "std"]
    want = model.predict(obs, backend="torch")
    got = outputs(client.request("sbexport/predict", {"modelId": mid, "obs": raw(obs), "backend": "torch"},
                                 encoding="msgpack"))
    assert_same(got, want)
    q = outputs(client.request("sbexport/predict", {"modelId": client.request("sbexport/open", {
        "path": str(model_path("dqn"))})["modelId"], "obs": golden("dqn")["obs"][:4].tolist(),
        "outputs": ["q_values"]}))
    assert sorted(q) == ["q_values"] and q["q_values"].shape == (4, 3)  # Discrete(3)
    probs = outputs(client.request("sbexport/predict", {"modelId": client.request("sbexport/open", {
        "path": str(model_path("multidiscrete"))})["modelId"], "obs": golden("multidiscrete")["obs"][:2].tolist(),
        "outputs": ["probs"]}))
    assert sorted(probs) and all(k.startswith("probs_") for k in probs)


def test_goal_dict_and_vecnormalize(client):
    case = FIXTURES / "her_sac_bitflip"
    g = np.load(case / "golden.npz")
    goal = {k: g[f"obs_{k}"][:4] for k in ("observation", "achieved_goal", "desired_goal")}
    want = sbexportd.load(case / "model.zip").predict(dict(goal))
    mid = client.request("sbexport/open", {"path": str(case / "model.zip")})["modelId"]
    assert_same(outputs(client.request("sbexport/predict", {"modelId": mid, "obs": {k: v.tolist() for k, v in
                                                                                      goal.items()}})), want)
    case = FIXTURES / "ppo2_mlp_vecnormalize"
    g = np.load(case / "golden.npz")
    want = sbexportd.load(case / "model.zip", vecnormalize="auto").predict(g["obs_raw"])
    opened = client.request("sbexport/open", {"path": str(case / "model.zip"), "vecnormalize": "auto"})
    assert opened["summary"]["vecnormalize"] is True
    plain = client.request("sbexport/open", {"path": str(case / "model.zip")})
    assert plain["modelId"] != opened["modelId"] and plain["summary"]["vecnormalize"] is False
    assert_same(outputs(client.request("sbexport/predict", {"modelId": opened["modelId"],
                                                            "obs": g["obs_raw"].tolist()})), want)


def test_parameters_and_inspect(client):
    from sbexportd.params import stats
    from sbexportd.read import read_model
    path = model_path("mlp")
    params = read_model(path).params
    mid = client.request("sbexport/open", {"path": str(path)})["modelId"]
    listed = client.request("sbexport/parameters", {"modelId": mid})
    assert listed["count"] == len(params) and "value" not in listed["parameters"][0]
    assert listed["parameters"] == stats(params)
    name = next(iter(params))
    for encoding in ("list", "base64", "msgpack"):
        got = client.request("sbexport/parameters", {"modelId": mid, "names": [name], "values": True,
                                                     **({"encoding": encoding} if encoding != "msgpack" else {})},
                             encoding="msgpack" if encoding == "msgpack" else "json")
        assert got["count"] == 1
        np.testing.assert_array_equal(to_array(got["parameters"][0]["value"]).astype(params[name].dtype).reshape(
            params[name].shape), params[name])
    with pytest.raises(RpcError) as e:
        client.request("sbexport/parameters", {"modelId": mid, "names": ["nope"]})
    assert e.value.code == -32602
    info = client.request("sbexport/inspect", {"modelId": mid})
    want = sbexportd.load(path).inspect()
    assert {k: v for k, v in info.items() if k != "modelId"} == want


@pytest.mark.zoo
def test_zoo_cartpole_agent(client, zoo_dir):
    path = zoo_dir / "agents" / "ppo2" / "CartPole-v1.pkl"
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    mid = client.request("sbexport/open", {"path": str(path)})["modelId"]
    assert_same(outputs(client.request("sbexport/predict", {"modelId": mid, "obs": raw(obs)}, encoding="msgpack")),
                sbexportd.load(path).predict(obs))


def _stacked_run(client, mid: str, model, frames: np.ndarray, backend: str | None) -> np.ndarray:
    """Feed frames (batch, n, frame) one step at a time from a reset, through the daemon
    and in process; every step's outputs equal. The last step's actions."""
    state_local = state_remote = None
    for t in range(frames.shape[1]):
        mask = np.full(len(frames), 1.0 if t == 0 else 0.0, np.float32)
        want = model.predict(frames[:, t], state=state_local, mask=mask, backend=backend)
        params = {"modelId": mid, "obs": raw(frames[:, t]), "mask": raw(mask)}
        if state_remote is not None:
            params["state"] = raw(state_remote)
        if backend is not None:
            params["backend"] = backend
        got = outputs(client.request("sbexport/predict", params, encoding="msgpack"))
        assert_same(got, want)
        state_local, state_remote = want["state"], got["state"]
    return got["actions"]


@pytest.mark.zoo
def test_frame_stack_on_the_zoos_frame_stacked_agent(client, tmp_path):
    """zoo-more's a2c BipedalWalkerHardcore (config frame_stack: 4) opened with
    frameStack takes one observation at a time, as sbexportd.load(frame_stack=4)
    does in process (bit for bit, on the fast path and the reference) and as SB2
    did on the stacked observation; it is another model than the file without it."""
    from zoo import ZOO_MORE
    path = ZOO_MORE / "agents" / "a2c" / "BipedalWalkerHardcore-v2.pkl"
    if not path.is_file():
        pytest.skip(f"{path} not found (set SBEXPORTD_ZOO_MORE): the frame-stacked agent NOT tested")
    g = np.load(ZOO_MORE / "goldens" / "a2c" / "BipedalWalkerHardcore-v2.npz")
    model = sbexportd.load(path, frame_stack=4)
    opened = client.request("sbexport/open", {"path": str(path), "frameStack": 4})
    assert opened["summary"]["frame_stack"] == {"n": 4, "state_shape": [None, 72]}
    assert opened["summary"]["input"]["shape"] == [None, 24]
    plain = client.request("sbexport/open", {"path": str(path)})
    auto = client.request("sbexport/open", {"path": str(path), "frameStack": "auto"})  # the config's 4
    assert len({opened["modelId"], plain["modelId"], auto["modelId"]}) == 3
    assert plain["summary"]["frame_stack"] is None and plain["summary"]["input"]["shape"] == [None, 96]
    assert auto["summary"]["frame_stack"] == opened["summary"]["frame_stack"]
    frames = g["obs"].reshape(len(g["obs"]), 4, 24)  # SB2's stacked observations, oldest frame first
    for backend in (None, "numpy"):
        actions = _stacked_run(client, opened["modelId"], model, frames, backend)
        assert np.abs(actions - g["actions"]).max() <= 1e-5, backend  # SB2's own answer
    assert_same(outputs(client.request("sbexport/predict", {"modelId": plain["modelId"], "obs": raw(g["obs"])},
                                       encoding="msgpack")), sbexportd.load(path).predict(g["obs"]))
    # the export cache keeps them apart too: each export has its own inputs
    shapes = {}
    for name, mid in (("plain", plain["modelId"]), ("stacked", opened["modelId"])):
        result = client.request("sbexport/export", {"modelId": mid, "to": "portable", "out": str(tmp_path / name)})
        shapes[name] = {i["name"]: i["shape"] for i in result["results"][0]["manifest"]["inputs"]}
    assert shapes["plain"] == {"obs": [None, 96]}
    assert shapes["stacked"] == {"obs": [None, 24], "state": [None, 72], "mask": [None]}


def test_frame_stack_on_a_fixture(client):
    """frameStack on any file: the MLP fixture's 4 observation values as 2 stacked
    frames of 2, equal to sbexportd.load(frame_stack=2) in process."""
    path = model_path("mlp")
    model = sbexportd.load(path, frame_stack=2)
    opened = client.request("sbexport/open", {"path": str(path), "frameStack": 2})
    assert opened["summary"]["frame_stack"]["n"] == 2
    assert opened["modelId"] != client.request("sbexport/open", {"path": str(path)})["modelId"]
    frames = golden("mlp")["obs"][:16].reshape(16, 2, 2)
    for backend in (None, "numpy"):
        _stacked_run(client, opened["modelId"], model, frames, backend)


@pytest.mark.parametrize("value", [0, -1, 65, 2.0, True, "4", "x", [4], {}])
def test_frame_stack_must_be_a_number_of_frames(client, value):
    with pytest.raises(RpcError) as e:
        client.request("sbexport/open", {"path": str(model_path("mlp")), "frameStack": value})
    assert e.value.code == -32602 and "frameStack" in e.value.error["message"], e.value
    if value != 0:  # sbexport/evaluate takes 0 (no stacking, whatever config.yml says) besides
        with pytest.raises(RpcError) as e:
            client.request("sbexport/evaluate", {"path": str(model_path("mlp")), "env": "CartPole-v1",
                                                 "frameStack": value})
        assert e.value.code == -32602 and "frameStack" in e.value.error["message"], e.value


# -- the warm cache ------------------------------------------------------------------------------
def test_model_ids_are_stable_and_reopening_is_a_cache_hit(client, tmp_path, monkeypatch):
    path = model_path("mlp")
    first = client.request("sbexport/open", {"path": str(path)})
    again = client.request("sbexport/open", {"path": str(path.parent / ".." / path.parent.name / "model.zip")})
    assert again["modelId"] == first["modelId"] and again["cached"] is True
    other = client.request("sbexport/open", {"path": str(path), "algo": "ppo2"})
    assert other["modelId"] != first["modelId"]


def test_a_changed_file_is_reloaded_on_next_use(client, tmp_path):
    path = tmp_path / "agent.zip"
    shutil.copy(model_path("mlp"), path)
    obs = golden("mlp")["obs"][:8]
    mid = client.request("sbexport/open", {"path": str(path)})["modelId"]
    before = outputs(client.request("sbexport/predict", {"modelId": mid, "obs": obs.tolist()}))
    status = client.request("sbexport/status")["cache"]
    path.touch()  # a new mtime, the same bytes: checked by sha256, kept
    client.request("sbexport/predict", {"modelId": mid, "obs": obs.tolist()})
    assert client.request("sbexport/status")["cache"]["reloads"] == status["reloads"]
    shutil.copy(FIXTURES / "a2c_mlp_vec_discrete" / "model.zip", path)  # same spaces, other weights
    after = outputs(client.request("sbexport/predict", {"modelId": mid, "obs": obs.tolist()}))
    assert_same(after, sbexportd.load(path).predict(obs))
    assert not np.array_equal(np.asarray(after["probs"], np.float32), np.asarray(before["probs"], np.float32))
    assert client.request("sbexport/status")["cache"]["reloads"] == status["reloads"] + 1
    path.unlink()
    with pytest.raises(RpcError) as e:
        client.request("sbexport/predict", {"modelId": mid, "obs": obs.tolist()})
    assert e.value.code == -33001 and e.value.data["file"] == str(path)


def _answers(client, path, obs) -> tuple[dict, dict]:
    """(open's summary, predict's outputs) for the zoo's "auto" VecNormalize and frame stacking."""
    opened = client.request("sbexport/open", {"path": str(path), "vecnormalize": "auto", "frameStack": "auto"})
    got = client.request("sbexport/predict", {"modelId": opened["modelId"], "obs": raw(obs)}, encoding="msgpack")
    return opened, outputs(got)


def _fresh_daemon_answers(path, obs) -> tuple[dict, dict]:
    d = Daemon()
    try:
        c = d.client()
        try:
            return _answers(c, path, obs)
        finally:
            c.close()
    finally:
        d.stop()


def _copy_agent(zoo_root, agent: str, to) -> object:
    """A copy of a zoo agent and the folder the zoo keeps beside it (config.yml, statistics)."""
    src = zoo_root / "agents" / agent
    if not src.is_file():
        pytest.skip(f"{src} not found (set SBEXPORTD_ZOO / SBEXPORTD_ZOO_MORE): NOT tested")
    shutil.copy(src, to / src.name)
    if (src.parent / src.stem).is_dir():
        shutil.copytree(src.parent / src.stem, to / src.stem)
    return to / src.name


@pytest.mark.zoo
def test_a_changed_zoo_config_or_statistics_file_is_reloaded(client, tmp_path):
    """A model opened with "auto" VecNormalize depends on config.yml and obs_rms.pkl beside
    it: a touched but unchanged config keeps the warm entry; a config that no longer asks
    for VecNormalize, and other statistics, each give what a fresh daemon answers."""
    from zoo import ZOO, ZOO_MORE
    path = _copy_agent(ZOO, "a2c/MountainCarContinuous-v0.pkl", tmp_path)
    config, stats = tmp_path / path.stem / "config.yml", tmp_path / path.stem / "obs_rms.pkl"
    obs = np.load(ZOO / "goldens" / "a2c" / "MountainCarContinuous-v0.npz")["obs"][:16]
    opened, normalized = _answers(client, path, obs)
    assert opened["summary"]["vecnormalize"] is True
    status = client.request("sbexport/status")["cache"]
    config.touch()  # a new stamp, the same bytes: kept warm
    again, same = _answers(client, path, obs)
    assert again["cached"] is True and again["modelId"] == opened["modelId"]
    assert_same(same, normalized)
    assert client.request("sbexport/status")["cache"]["reloads"] == status["reloads"]

    text = config.read_text()
    assert "[normalize, true]" in text
    config.write_text(text.replace("  - [normalize, true]\n", ""))  # trained without VecNormalize
    opened, plain = _answers(client, path, obs)
    assert opened["cached"] is False and opened["summary"]["vecnormalize"] is False
    fresh, want = _fresh_daemon_answers(path, obs)
    assert fresh["summary"] == opened["summary"]
    assert_same(plain, want)
    assert not np.array_equal(plain["actions"], normalized["actions"])
    assert client.request("sbexport/status")["cache"]["reloads"] == status["reloads"] + 1

    config.write_text(text)  # VecNormalize again, with another agent's statistics of the same env
    shutil.copy(ZOO_MORE / "agents" / "ppo2" / "MountainCarContinuous-v0" / "obs_rms.pkl", stats)
    _, other = _answers(client, path, obs)
    assert_same(other, _fresh_daemon_answers(path, obs)[1])
    assert not np.array_equal(other["actions"], normalized["actions"])
    assert not np.array_equal(other["actions"], plain["actions"])


@pytest.mark.zoo
def test_an_sb3_export_follows_a_changed_ret_rms(client, tmp_path):
    """ret_rms.pkl changes no prediction but does change the sb3 export (SB3's VecNormalize
    carries it for continued training): the export cache does not serve the old one."""
    pytest.importorskip("stable_baselines3", reason="stable-baselines3 not installed (run `make install`)")
    import pickle

    from sbexportd.read.safe_pickle import safe_loads
    from zoo import ZOO, ZOO_MORE
    path = _copy_agent(ZOO, "a2c/MountainCarContinuous-v0.pkl", tmp_path)
    ret = path.parent / path.stem / "ret_rms.pkl"
    mid = client.request("sbexport/open", {"path": str(path), "vecnormalize": "auto", "frameStack": "auto"})["modelId"]

    def exported(out: str) -> tuple[bool, float]:
        params = {"modelId": mid, "to": "sb3", "out": str(tmp_path / out)}
        (result,) = client.request("sbexport/export", params)["results"]
        with open(Path(result["path"]) / "vecnormalize.pkl", "rb") as f:  # SB3's own save, as SB3 loads it
            return result["cached"], pickle.load(f).ret_rms.count

    def held() -> float:  # what SB2's file holds, read inert
        return safe_loads(ret.read_bytes(), str(ret)).sb_get("count")

    assert exported("first") == (False, held())
    assert exported("again") == (True, held())
    shutil.copy(ZOO_MORE / "agents" / "ppo2" / "MountainCarContinuous-v0" / "ret_rms.pkl", ret)
    cached, count = exported("after")
    assert cached is False and count == held()


@pytest.mark.zoo
def test_a_zoo_config_appearing_or_going_changes_the_frame_stack(client, tmp_path):
    """"auto" frame stacking watches for a config.yml that is not there yet: one that
    appears with frame_stack 2 makes the 4-value CartPole policy take frames of 2, as a
    fresh daemon does; its removal brings back the plain policy."""
    from zoo import ZOO
    path = _copy_agent(ZOO, "ppo2/CartPole-v1.pkl", tmp_path)
    obs = np.load(ZOO / "goldens" / "ppo2" / "CartPole-v1.npz")["obs"][:16]
    opened, plain = _answers(client, path, obs)
    assert opened["summary"]["frame_stack"] is None and opened["summary"]["input"]["shape"] == [None, 4]
    (tmp_path / path.stem).mkdir()
    (tmp_path / path.stem / "config.yml").write_text(
        "!!python/object/apply:collections.OrderedDict\n- - [frame_stack, 2]\n  - [policy, MlpPolicy]\n")
    frames = obs.reshape(32, 2)
    opened, stacked = _answers(client, path, frames)
    assert opened["cached"] is False and opened["summary"]["frame_stack"]["n"] == 2
    fresh, want = _fresh_daemon_answers(path, frames)
    assert fresh["summary"] == opened["summary"]
    assert_same(stacked, want)
    with pytest.raises(RpcError):  # no longer the 4-value policy
        client.request("sbexport/predict", {"modelId": opened["modelId"], "obs": raw(obs)}, encoding="msgpack")
    (tmp_path / path.stem / "config.yml").unlink()
    opened, back = _answers(client, path, obs)
    assert opened["summary"]["frame_stack"] is None
    assert_same(back, plain)


def test_lru_eviction_under_max_models():
    d = Daemon("--max-models", "2")
    try:
        c = d.client()
        ids = [c.request("sbexport/open", {"path": str(model_path(k))})["modelId"] for k in ("mlp", "dqn", "box")]
        s = c.request("sbexport/status")
        assert s["cache"]["loaded"] == 2 and s["cache"]["evictions"] == 1 and s["openModels"] == 3
        assert ids[0] not in [m["modelId"] for m in s["models"]]
        obs = golden("mlp")["obs"][:2]  # the evicted model is still open: loaded again on use
        assert_same(outputs(c.request("sbexport/predict", {"modelId": ids[0], "obs": obs.tolist()})),
                    sbexportd.load(model_path("mlp")).predict(obs))
        s = c.request("sbexport/status")["cache"]
        assert s["misses"] == 4 and s["evictions"] == 2
        c.request("sbexport/close", {"modelId": ids[0]})
        with pytest.raises(RpcError) as e:
            c.request("sbexport/predict", {"modelId": ids[0], "obs": obs.tolist()})
        assert e.value.code == -33004
        c.close()
    finally:
        d.stop()
