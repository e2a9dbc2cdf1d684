"""The sb3 and rl-zoo3 targets, evaluate and the scripting CLI, checked in SB3 itself.

- every fixture family converts exactly (verified in SB3: predict on the seeded
  observations, a learn() that moves the weights) or gets NotRepresentable saying why
  and what is closest; the table of which is below, not derived from the code;
- the exports load and predict in a Python where sbexportd cannot be imported;
- `python -m rl_zoo3.enjoy` runs an rl-zoo3 export (with VecNormalize);
- evaluate reproduces the zoo's published mean return for the shared classic-control
  agents with their sb3 and onnx exports (tests/zoo.py puts every zoo agent through
  both targets)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml

import sbexportd
from conftest import FIXTURES, ROOT
from sbexportd.errors import NotRepresentable
from sbexportd.export import export
from sbexportd.export.conventions import sample_inputs
from zoo import ZOO, ZOO_MORE

pytest.importorskip("stable_baselines3", reason="stable-baselines3 not installed (run `make install`)")

# fixture -> a phrase of the refusal; every other fixture must convert
REFUSED = {
    "a2c_cnnlnlstm_img_discrete": "layer-normalized (LnLstm)",
    "a2c_lstm_netarch_first": "after its LSTM shared by the policy and the value function",
    "a2c_mlp_elu": "shared by the policy and the value function",
    "a2c_mlplnlstm_vec_box": "layer-normalized (LnLstm)",
    "a2c_mlplstm_vec_discrete": "in front of its LSTM",
    "acer_cnn_img_discrete": "ACER has no Stable-Baselines3 implementation",
    "acer_mlp_vec_discrete": "ACER has no Stable-Baselines3 implementation",
    "acer_mlplnlstm_vec_discrete": "layer-normalized",
    "acer_mlplstm_vec_discrete": "ACER has no Stable-Baselines3 implementation",
    "acktr_mlplstm_vec_discrete": "in front of its LSTM",
    "ddpg_cnn_img_box": "DDPG's critic",
    "ddpg_lnmlp_vec_box": "layer-normalized",
    "ddpg_mlp_normobs": "DDPG's critic",
    "ddpg_mlp_vec_box": "DDPG's critic",
    "ddpg_lnmlp_normobs_paramnoise": "layer-normalized",
    "dqn_cnn_img_discrete": "dueling DQN",
    "dqn_custom_module": "layer-normalized",
    "dqn_lncnn_img_discrete": "layer-normalized",
    "dqn_lnmlp_vec_discrete": "layer-normalized",
    "dqn_mlp_layers8_tanh": "dueling DQN",
    "dqn_mlp_vec_discrete": "dueling DQN",
    "her_ddpg_bitflip": "DDPG's critic",
    "her_dqn_bitflip": "dueling DQN",
    "ppo2_cnn_floatimg_box": "scales only uint8 ones",
    "ppo2_lstm_netarch_mid": "in front of its LSTM",
    "ppo2_mlp_netarch_relu": "shared by the policy and the value function",
    "ppo2_mlplnlstm_vec_multidiscrete": "layer-normalized (LnLstm)",
    "ppo2_mlplstm_vec_box": "in front of its LSTM",
    "sac_lncnn_img_box": "layer-normalized",
    "sac_lnmlp_vec_box": "layer-normalized",
    "td3_lncnn_img_box": "layer-normalized",
    "td3_lnmlp_vec_box": "layer-normalized",
}
CASES = sorted(d.name for d in FIXTURES.iterdir() if (d / "model.zip").is_file() or (d / "model.pkl").is_file()) \
    if FIXTURES.is_dir() else []
_EXPORTS: dict[str, object] = {}


def expected_refusal(case: str) -> str | None:
    """The refusal phrase of a fixture; files of older SB2 releases (v2_8_0_<family>) as their family."""
    return REFUSED.get(re.sub(r"^v\d+_\d+_\d+_", "", case))


def _load(case):
    folder = FIXTURES / case
    vn = folder / "vecnormalize.pkl"
    path = folder / "model.zip" if (folder / "model.zip").is_file() else folder / "model.pkl"
    return sbexportd.load(path, vn if vn.is_file() else None)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("sb3")

    def get(case):
        if case not in _EXPORTS:
            try:
                (res,) = export(_load(case), "sb3", root / case)
                _EXPORTS[case] = res
            except NotRepresentable as exc:
                _EXPORTS[case] = exc
        return _EXPORTS[case]
    return get


def test_fixture_table_names_real_fixtures():
    assert len(CASES) >= 60 and set(REFUSED) <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_fixture_converts_exactly_or_is_refused(exported, case):
    got = exported(case)
    refusal = expected_refusal(case)
    if refusal is not None:
        assert isinstance(got, NotRepresentable), f"{case} converted, but SB3 cannot represent it"
        assert refusal in got.why and got.closest and "Closest:" in str(got), str(got)
        return
    assert not isinstance(got, Exception), str(got)
    parity = got.parity
    assert parity["passed"] and "learn(" in parity["runtime"] and "action" in parity["max_abs_error"]
    meta = json.loads((got.path / "sb3.json").read_text())
    manifest = json.loads((got.path / "manifest.json").read_text())
    assert manifest["target"] == "sb3" and any(meta["algorithm"] in n for n in manifest["notes"])


def test_refused_cli_export_is_one_line_with_its_own_status(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sbexportd.cli", "export", FIXTURES / "ddpg_mlp_vec_box" /
                           "model.zip", "--to", "sb3", "--out", tmp_path / "x"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 5 and proc.stderr.count("\n") == 1 and "Closest:" in proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("case,key", [("ppo2_mlp_vec_box", "action_net.bias"),
                                      ("sac_mlp_vec_box", "actor.latent_pi.0.weight"),
                                      ("ppo2_cnnlstm_img_discrete", "value_net.bias")])
def test_verification_rejects_a_tampered_sb3_file(tmp_path, case, key):
    """The other side: the same check refuses model.zip once one of its weights moves."""
    import torch

    from sbexportd.errors import ParityFailed
    from sbexportd.export.core import verify_export
    from sbexportd.export.targets import TARGETS, sb3
    model = _load(case)
    sb3.write(model, tmp_path)
    m, _, _meta = sb3.load_folder(tmp_path)
    state = m.policy.state_dict()
    with torch.no_grad():
        state[key].view(-1)[0] += 1e-2 * max(1.0, float(state[key].abs().max()))
    m.policy.load_state_dict(state)
    m.save(str(tmp_path / "model.zip"))
    with pytest.raises(ParityFailed, match="does not reproduce the policy"):
        verify_export(model, TARGETS["sb3"], tmp_path)


# --- SB3 on its own ----------------------------------------------------------------------
STANDALONE = ["ppo2_mlp_vec_box", "a2c_cnn_img_discrete", "trpo_mlp_vec_discrete", "ppo2_cnnlstm_img_discrete",
              "sac_mlp_vec_box", "td3_cnn_img_box", "dqn_mlp_nodueling", "her_sac_bitflip",
              "ppo2_mlp_vecnormalize", "a2c_mlp_vec_multidiscrete"]

SCRIPT = textwrap.dedent('''
    import importlib.abc, json, pickle, sys
    class NoSbexportd(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "sbexportd" or name.startswith("sbexportd."):
                raise ImportError("sbexportd is not installed here")
    sys.meta_path.insert(0, NoSbexportd())
    sys.modules.pop("sbexportd", None)
    import numpy as np, gymnasium as gym
    import stable_baselines3, sb3_contrib
    from stable_baselines3.common.vec_env import DummyVecEnv

    class GoalEnv(gym.Env):  # a user's goal env with the agent's spaces
        def __init__(self, obs_space, act_space):
            self.observation_space, self.action_space = obs_space, act_space
        def reset(self, *, seed=None, options=None):
            return self.observation_space.sample(), {}
        def step(self, a):
            return self.observation_space.sample(), 0.0, False, False, {}
        def compute_reward(self, a, d, info):
            return -(np.abs(a - d).sum(-1) > 0)

    out = {}
    for case, folder in json.loads(sys.argv[1]).items():
        meta = json.load(open(folder + "/sb3.json"))
        cls = getattr(sys.modules[meta["module"]], meta["algorithm"])
        env = None
        if meta.get("her"):
            from stable_baselines3.common.save_util import load_from_zip_file
            data, _, _ = load_from_zip_file(folder + "/model.zip")
            env = DummyVecEnv([lambda: GoalEnv(data["observation_space"], data["action_space"])])
        model = cls.load(folder + "/model.zip", env=env, device="cpu")
        obs = np.load(folder + "/obs.npy")
        if meta.get("vecnormalize"):
            with open(folder + "/" + meta["vecnormalize"], "rb") as f:
                obs = pickle.load(f).normalize_obs(obs)
        if meta.get("her"):
            keys = ["observation", "achieved_goal", "desired_goal"]
            n = obs.shape[1] // 3
            obs = {k: obs[:, i * n:(i + 1) * n] for i, k in enumerate(keys)}
        kw = {}
        if meta["algorithm"] == "RecurrentPPO":
            k = model.policy.lstm_actor.hidden_size
            kw = {"state": (np.zeros((1, len(np.load(folder + "/obs.npy")), k), np.float32),) * 2,
                  "episode_start": np.ones(len(np.load(folder + "/obs.npy")), np.float32)}
        actions, _ = model.predict(obs, deterministic=True, **kw)
        out[case] = np.asarray(actions, np.float64).tolist()
    print(json.dumps(out))
''')


def test_exports_load_and_predict_without_sbexportd(exported, tmp_path):
    """SB3 / sb3-contrib alone (sbexportd's import refused) load each family's model.zip
    (and vecnormalize.pkl) and predict SB2's actions on the seeded observations."""
    folders, want = {}, {}
    for case in STANDALONE:
        res = exported(case)
        assert not isinstance(res, Exception), str(res)
        model = _load(case)
        feeds = sample_inputs(model.spec, 16, 3)
        if model.spec.stateful:
            feeds["state"] = np.zeros_like(feeds["state"])
            feeds["mask"] = np.ones_like(feeds["mask"])
        np.save(res.path / "obs.npy", feeds["obs"])
        folders[case] = str(res.path)
        want[case] = model.predict(feeds["obs"], state=feeds.get("state"), mask=feeds.get("mask"))["actions"]
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(folders)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for case in STANDALONE:
        a, b = np.asarray(got[case]), np.asarray(want[case], np.float64)
        assert a.shape == b.reshape(a.shape).shape and np.abs(a - b.reshape(a.shape)).max() <= 1e-5, case


# --- rl-zoo3, evaluate ---------------------------------------------------------------------
needs_zoo = pytest.mark.skipif(not (ZOO / "agents").is_dir(), reason=f"../shared/zoo not found at {ZOO}")


@needs_zoo
def test_rl_zoo3_enjoy_runs_the_export(tmp_path):
    """rl-baselines3-zoo's own enjoy script runs a converted agent trained under
    VecNormalize, in gymnasium, and its return is the zoo's."""
    model = sbexportd.load(ZOO / "agents" / "a2c" / "MountainCarContinuous-v0.pkl", "auto")
    (res,) = export(model, "rl-zoo3", tmp_path)
    assert (res.path / "a2c" / "MountainCarContinuous-v0_1" / "MountainCarContinuous-v0" / "vecnormalize.pkl").is_file()
    proc = subprocess.run([sys.executable, "-m", "rl_zoo3.enjoy", "--algo", "a2c", "--env", "MountainCarContinuous-v0",
                           "-f", "rl-zoo3", "--no-render", "-n", "700"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mean = float(proc.stdout.split("Mean reward:")[1].split("+/-")[0])
    assert abs(mean - 93.659) <= 0.199 * 3, proc.stdout[-500:]  # the zoo's 93.659 +- 0.199


# --- VecNormalize counts: continuing training in SB3 weighs new batches as SB2 would ----------
SB3_INITIAL_COUNT = 1e-4  # SB3's RunningMeanStd(epsilon=1e-4): where a count-less conversion starts


def _sb2_moments(rms) -> tuple:
    """(mean, var, count) of SB2's pickled RunningMeanStd, as the file holds them (read
    by the safe reader as an inert stand-in: nothing in the pickle is executed)."""
    return tuple(np.asarray(rms.sb_get(k), np.float64) for k in ("mean", "var", "count"))


def _sb2_file(path):
    from sbexportd.read.safe_pickle import safe_loads
    return safe_loads(path.read_bytes(), str(path), 1 << 26)


def _running(moments: tuple, batch: np.ndarray) -> tuple:
    """(mean, var, count) after `batch`: the parallel update (Chan et al.) that SB2's and
    SB3's RunningMeanStd both implement, done here on the given count."""
    mean, var, count = moments
    n = batch.shape[0]
    delta, total = batch.mean(axis=0) - mean, count + n
    m2 = var * count + batch.var(axis=0) * n + np.square(delta) * count * n / total
    return mean + delta * n / total, m2 / total, total


def _assert_moved(rms, before: tuple, batch: np.ndarray) -> None:
    """SB3's RunningMeanStd `rms` holds `before` moved by `batch` with before's count, which
    a restart at SB3's initial count would not give (so this check can fail)."""
    mean, var, count = _running(before, batch)
    assert rms.count == count
    np.testing.assert_allclose(rms.mean, mean, rtol=1e-12, atol=0)
    np.testing.assert_allclose(rms.var, var, rtol=1e-12, atol=0)
    restarted = _running((before[0], before[1], SB3_INITIAL_COUNT), batch)
    assert not np.allclose(restarted[0], mean, rtol=1e-6, atol=0)


def _assert_holds(rms, moments: tuple) -> None:
    assert rms.count == moments[2]
    assert np.array_equal(rms.mean, moments[0]) and np.array_equal(rms.var, moments[1])


COUNTED = ["zoo/a2c/MountainCarContinuous-v0.pkl", "zoo-more/ppo2/Acrobot-v1.pkl",
           "zoo-more/acktr/MountainCarContinuous-v0.zip"]


@needs_zoo
@pytest.mark.parametrize("agent", COUNTED)
def test_sb3_vecnormalize_carries_sb2_counts(tmp_path, agent):
    """A zoo agent's obs_rms.pkl / ret_rms.pkl become SB3's VecNormalize with their counts:
    VecNormalize.load, in the agent's gymnasium environment, holds SB2's mean, var and
    count; training on (reset, one step) moves them as a running mean with SB2's count."""
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    zoo, rest = agent.split("/", 1)
    path = ZOO.parent / zoo / "agents" / rest
    obs_rms = _sb2_moments(_sb2_file(path.parent / path.stem / "obs_rms.pkl"))
    ret_rms = _sb2_moments(_sb2_file(path.parent / path.stem / "ret_rms.pkl"))
    (res,) = export(sbexportd.load(path, "auto"), "sb3", tmp_path)
    venv = DummyVecEnv([lambda: gym.make(path.stem)])
    venv.seed(0)
    vn = VecNormalize.load(str(res.path / "vecnormalize.pkl"), venv)
    _assert_holds(vn.obs_rms, obs_rms)
    _assert_holds(vn.ret_rms, ret_rms)
    vn.training = True
    vn.reset()  # training: obs_rms takes the first observation
    _assert_moved(vn.obs_rms, obs_rms, vn.get_original_obs().astype(np.float64))
    after_reset = (vn.obs_rms.mean.copy(), vn.obs_rms.var.copy(), vn.obs_rms.count)
    vn.step(np.zeros((1, *venv.action_space.shape), venv.action_space.dtype))
    _assert_moved(vn.obs_rms, after_reset, vn.get_original_obs().astype(np.float64))
    # the discounted return after one step from reset is that step's reward
    _assert_moved(vn.ret_rms, ret_rms, vn.get_original_reward().astype(np.float64))


def test_sb3_vecnormalize_carries_a_vecnormalize_pkl_count(exported):
    """SB2 2.10's vecnormalize.pkl (a pickled VecNormalize) layout: obs_rms and ret_rms
    counts carried; SB3's VecNormalize.load reads them and updates from them."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from sbexportd.export.targets.sb3 import load_folder, spaces_env
    case = "ppo2_mlp_vecnormalize"
    sb2 = _sb2_file(FIXTURES / case / "vecnormalize.pkl")
    res = exported(case)
    model, _, _ = load_folder(res.path)
    vn = VecNormalize.load(str(res.path / "vecnormalize.pkl"),
                           DummyVecEnv([lambda: spaces_env(model.observation_space, model.action_space)]))
    batch = np.random.default_rng(0).normal(size=(32, *vn.obs_rms.mean.shape)) * 3.0
    for rms, name, data in ((vn.obs_rms, "obs_rms", batch), (vn.ret_rms, "ret_rms", batch[:, 0])):
        before = _sb2_moments(sb2.sb_get(name))
        _assert_holds(rms, before)
        rms.update(data)
        _assert_moved(rms, before, data)


def test_sb3_vecnormalize_says_when_sb2_kept_no_count(tmp_path):
    """Statistics without counts (given as VecNormalizeStats, not read from SB2's files):
    SB3's initial count stands, and sb3.json's notes say so."""
    import dataclasses
    import pickle

    from sbexportd.read import read_vecnormalize
    case = FIXTURES / "ppo2_mlp_vecnormalize"
    stats = dataclasses.replace(read_vecnormalize(case / "vecnormalize.pkl"), count=None, returns=None)
    (res,) = export(sbexportd.load(case / "model.zip", stats), "sb3", tmp_path)
    notes = json.loads((res.path / "sb3.json").read_text())["notes"]
    assert any("did not hold obs_rms.count or ret_rms" in n for n in notes), notes
    with open(res.path / "vecnormalize.pkl", "rb") as f:
        assert pickle.load(f).obs_rms.count == SB3_INITIAL_COUNT


CLASSIC = ["a2c/CartPole-v1.pkl", "acer/CartPole-v1.pkl", "acktr/CartPole-v1.pkl", "dqn/CartPole-v1.pkl",
           "ppo2/CartPole-v1.pkl", "trpo/CartPole-v1.pkl", "a2c/MountainCarContinuous-v0.pkl",
           "acktr/Pendulum-v0.zip", "ddpg/Pendulum-v0.pkl", "ppo2/Pendulum-v0.pkl", "sac/Pendulum-v0.pkl",
           "td3/Pendulum-v0.pkl", "trpo/Pendulum-v0.pkl"]


@needs_zoo
@pytest.mark.parametrize("agent", CLASSIC)
def test_evaluate_reproduces_the_zoo(tmp_path, agent):
    """The shared classic-control agents, as sb3 (where SB3 can hold them) and onnx
    exports, score the zoo's published mean within its std over 10 seeded episodes."""
    from sbexportd.evaluate import evaluate
    path = ZOO / "agents" / agent
    model = sbexportd.load(path, "auto", frame_stack="auto")
    targets = ["onnx"] + ([] if agent.split("/")[0] in ("acer", "dqn", "ddpg") else ["sb3"])
    export(model, targets, tmp_path)
    for target in targets:
        result = evaluate(tmp_path / target, episodes=10, seed=0)
        assert result.published is not None and result.published.env == path.stem
        assert result.within_published(), (target, result.mean, result.std, result.published)
        assert result.env == {"Pendulum-v0": "Pendulum-v1"}.get(path.stem, path.stem)


WRAPPED = "td3/ReacherBulletEnv-v0.pkl"  # zoo-more: trained inside the zoo's TimeFeatureWrapper (config.yml)


@needs_zoo
def test_evaluate_wraps_the_env_as_the_zoo_trained_it(tmp_path):
    """An agent trained inside the zoo's env_wrapper (TimeFeatureWrapper: one more
    observation, the remaining time) is run inside its counterpart, from the SB2 file
    and from its exports (the manifest and rl-zoo3's config name it), and scores the
    zoo's published mean within its std over 10 seeded episodes."""
    from sbexportd.evaluate import evaluate
    path = ZOO_MORE / "agents" / WRAPPED
    model = sbexportd.load(path, "auto", frame_stack="auto")
    (wrapper,) = model.env_wrappers()
    assert (wrapper.trained_with, wrapper.name) == ("utils.wrappers.TimeFeatureWrapper",
                                                    "sb3_contrib.common.wrappers.TimeFeatureWrapper")
    export(model, ["onnx", "sb3", "rl-zoo3"], tmp_path)
    assert json.loads((tmp_path / "onnx" / "manifest.json").read_text())["env_wrappers"] == [wrapper.as_dict()]
    (config,) = (tmp_path / "rl-zoo3").rglob("config.yml")
    assert yaml.safe_load(config.read_text())["env_wrapper"] == wrapper.name
    runs = {"sb2": evaluate(path, episodes=10, seed=0, backend="onnxruntime"),
            **{t: evaluate(tmp_path / t, episodes=10, seed=0) for t in ("onnx", "sb3", "rl-zoo3")}}
    for name, result in runs.items():
        assert any(wrapper.name in n for n in result.notes), (name, result.notes)
        assert result.lengths == [150] * 10, name  # ReacherBulletEnv's TimeLimit: the feature's max_steps
        assert result.published is not None and result.within_published(), (name, result.mean, result.published)


@needs_zoo
def test_evaluate_refuses_an_env_wrapper_it_cannot_build(tmp_path):
    """A manifest is a file like any other: its env_wrappers may name only the known
    counterparts (a class path from a file is never imported), in the shape export writes."""
    from sbexportd.environments import UnknownEnvironment
    from sbexportd.errors import ExportFolderError
    from sbexportd.evaluate import evaluate
    export(sbexportd.load(ZOO_MORE / "agents" / WRAPPED), "onnx", tmp_path)
    manifest = tmp_path / "onnx" / "manifest.json"
    original = json.loads(manifest.read_text())
    for wrappers, error, words in [
            ([{"trained_with": "utils.wrappers.TimeFeatureWrapper", "name": "os.system", "kwargs": {}}],
             UnknownEnvironment, "no gymnasium counterpart"),
            ([{"trained_with": "utils.wrappers.Other", "name": None, "kwargs": {}}], UnknownEnvironment,
             "utils.wrappers.Other"),
            ([{"name": "sb3_contrib.common.wrappers.TimeFeatureWrapper"}], ExportFolderError, "env_wrappers"),
            ([{"trained_with": "utils.wrappers.TimeFeatureWrapper",
               "name": "sb3_contrib.common.wrappers.TimeFeatureWrapper", "kwargs": {"max_step": 5}}],
             UnknownEnvironment, "cannot wrap")]:
        manifest.write_text(json.dumps({**original, "env_wrappers": wrappers}))
        with pytest.raises(error, match=words):
            evaluate(tmp_path / "onnx", episodes=1, seed=0)


def test_evaluate_cli_json_with_the_zoo_convention(tmp_path):
    zoo = tmp_path / "zoo" / "ppo2"
    zoo.mkdir(parents=True)
    (zoo / "CartPole-v1.pkl").write_bytes((ROOT / "examples" / "ppo2_CartPole-v1.pkl").read_bytes())
    proc = subprocess.run([sys.executable, "-m", "sbexportd.cli", "evaluate", "--algo", "ppo2", "--env",
                           "CartPole-v1", "-f", tmp_path / "zoo", "--episodes", "2", "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["env"] == "CartPole-v1" and len(doc["returns"]) == 2 and doc["mean_reward"] == 500.0
    assert doc["published"]["mean_reward"] == 500.0 and doc["within_published_std"] is True


# --- the scripting CLI ------------------------------------------------------------------------
def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "sbexportd.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_predict_reads_every_format_alike(tmp_path):
    example = ROOT / "examples" / "ppo2_CartPole-v1.pkl"
    obs = np.array([[0.01, 0.2, -0.03, -0.3], [0.1, 1.0, 0.05, -1.2]], np.float32)
    want = sbexportd.load(example).predict(obs)["actions"].tolist()
    np.save(tmp_path / "o.npy", obs)
    np.savez(tmp_path / "o.npz", obs=obs)
    (tmp_path / "o.json").write_text(json.dumps(obs.tolist()))
    (tmp_path / "o.csv").write_text("x,v,theta,omega\n" + "\n".join(",".join(repr(float(v)) for v in r) for r in obs))
    for name in ("o.npy", "o.npz", "o.json", "o.csv"):
        proc = _cli("predict", example, "--obs", tmp_path / name, "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["actions"] == want, name


def test_predict_reads_a_her_goal_dict(tmp_path):
    model = sbexportd.load(FIXTURES / "her_sac_bitflip" / "model.zip")
    goal = {k: np.random.RandomState(i).randint(0, 2, size=(3, 4)).tolist()
            for i, k in enumerate(("observation", "achieved_goal", "desired_goal"))}
    (tmp_path / "g.json").write_text(json.dumps(goal))
    proc = _cli("predict", FIXTURES / "her_sac_bitflip" / "model.zip", "--obs", tmp_path / "g.json", "--json")
    assert proc.returncode == 0, proc.stderr
    want = model.predict({k: np.asarray(v) for k, v in goal.items()})["actions"]
    assert np.abs(np.asarray(json.loads(proc.stdout)["actions"]) - want).max() <= 1e-6


def test_exit_statuses_tell_file_from_observation(tmp_path):
    example = ROOT / "examples" / "ppo2_CartPole-v1.pkl"
    (tmp_path / "bad.json").write_text("[[1, 2], [3")
    (tmp_path / "wrong.json").write_text("[[1, 2, 3]]")
    (tmp_path / "bad.zip").write_bytes(b"no model")
    np.save(tmp_path / "ok.npy", np.zeros((1, 4), np.float32))
    cases = {("predict", tmp_path / "bad.zip", "--obs", tmp_path / "ok.npy"): 3,
             ("predict", example, "--obs", tmp_path / "bad.json"): 3,
             ("predict", example, "--obs", tmp_path / "missing.npy"): 3,
             ("predict", example, "--obs", tmp_path / "wrong.json"): 4,
             ("inspect", "--algo", "ppo2", "--env", "Nope-v0", "-f", tmp_path): 3,
             ("predict",): 2}
    for args, status in cases.items():
        proc = _cli(*args)
        assert proc.returncode == status, (args, proc.returncode, proc.stderr)
        assert proc.stderr.count("\n") <= 1 or status == 2, proc.stderr


# --- the daemon -----------------------------------------------------------------------------
def test_daemon_evaluates_and_refuses_with_typed_errors(tmp_path):
    from rpc_client import Daemon, RpcError
    d = Daemon()
    try:
        c = d.client()
        got = c.request("sbexport/evaluate", {"path": str(ROOT / "examples" / "ppo2_CartPole-v1.pkl"),
                                               "env": "CartPole-v1", "episodes": 2, "seed": 3})
        assert got["returns"] == [500.0, 500.0] and got["env"] == "CartPole-v1" and got["seed"] == 3
        with pytest.raises(RpcError) as bad:
            c.request("sbexport/evaluate", {"path": str(ROOT / "examples" / "ppo2_CartPole-v1.pkl"), "episodes": 0})
        assert bad.value.code == -32602
        opened = c.request("sbexport/open", {"path": str(FIXTURES / "ddpg_mlp_vec_box" / "model.zip")})
        with pytest.raises(RpcError) as refused:
            c.request("sbexport/export", {"modelId": opened["modelId"], "to": "sb3", "out": str(tmp_path / "x")})
        assert refused.value.data["kind"] == "not_representable" and "Closest:" in str(refused.value)
        c.close()
    finally:
        d.stop()
