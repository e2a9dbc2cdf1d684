"""sbexportd.load(...).predict(...): batching, recurrent state, goal dicts, sampling."""
from __future__ import annotations

import numpy as np
import pytest

import sbexportd
from conftest import FIXTURES
from sbexportd.errors import BadObservation


def fixture(name):
    return sbexportd.load(FIXTURES / name / "model.zip"), dict(np.load(FIXTURES / name / "golden.npz"))


def test_single_observation_gives_unbatched_outputs():
    m, g = fixture("ppo2_mlp_vec_discrete")
    one = m.predict(g["obs"][3])
    assert one["actions"].shape == () and one["actions"] == g["actions"][3]
    assert one["probs"].shape == g["probs"].shape[1:]


def test_bad_observation_shape_is_a_typed_error():
    m, _ = fixture("ppo2_mlp_vec_discrete")
    with pytest.raises(BadObservation, match="observation shape"):
        m.predict(np.zeros((3, 99), np.float32))


def test_her_accepts_the_goal_dict():
    m, g = fixture("her_sac_bitflip")
    assert m.spec.goal_observation is not None
    obs = {"observation": g["obs_observation"], "achieved_goal": g["obs_achieved_goal"],
           "desired_goal": g["obs_desired_goal"]}
    out = m.predict(obs)
    assert np.max(np.abs(out["actions"] - g["actions"])) <= 1e-5


def test_recurrent_defaults_to_initial_state_and_returns_state():
    m, g = fixture("ppo2_mlplstm_vec_box")
    n = g["obs"].shape[1]
    out = m.predict(g["obs"][0])  # SB2's predict with state=None, mask=None
    np.testing.assert_allclose(out["state"], g["state_out"][0], atol=1e-5)
    assert out["state"].shape == (n, m.spec.state_size)


def test_categorical_sampling_follows_sb2s_probabilities():
    m, g = fixture("ppo2_mlp_vec_discrete")
    obs = np.repeat(g["obs"][:1], 20000, axis=0)
    for backend in ("numpy", "torch"):
        acts = m.predict(obs, deterministic=False, seed=1, backend=backend)["actions"]
        freq = np.bincount(acts, minlength=g["probs"].shape[1]) / len(acts)
        assert np.max(np.abs(freq - g["probs"][0])) < 0.015
        again = m.predict(obs, deterministic=False, seed=1, backend=backend)["actions"]
        np.testing.assert_array_equal(acts, again)


def test_gaussian_sampling_follows_sb2s_mean_and_std():
    """Samples are clip(N(mean, std), low, high): their quantiles are the clipped
    normal quantiles of SB2's own mean and std."""
    from statistics import NormalDist
    m, g = fixture("ppo2_mlp_vec_box")
    low, high = m.spec.action_space.low, m.spec.action_space.high
    acts = m.predict(np.repeat(g["obs"][:1], 20000, axis=0), deterministic=False, seed=2)["actions"]
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        expected = np.clip(g["mean"][0] + g["std"][0] * NormalDist().inv_cdf(q), low, high)
        np.testing.assert_allclose(np.quantile(acts, q, axis=0), expected, atol=0.03 * g["std"][0].max())


def test_sac_sampling_is_a_squashed_gaussian_of_sb2s_mean_and_std():
    m, g = fixture("sac_mlp_vec_box")
    low, high = m.spec.action_space.low, m.spec.action_space.high
    acts = m.predict(np.repeat(g["obs"][:1], 20000, axis=0), deterministic=False, seed=3)["actions"]
    pre = np.arctanh(np.clip(2 * (acts - low) / (high - low) - 1, -1 + 1e-6, 1 - 1e-6))
    np.testing.assert_allclose(pre.mean(axis=0), g["mean"][0], atol=0.05 * max(1, g["std"][0].max()))
    np.testing.assert_allclose(pre.std(axis=0), g["std"][0], rtol=0.05)


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_large_batches_run_in_chunks_like_one_call(backend):
    """Model.predict cuts large batches into chunks (bounded memory; ONNX Runtime on
    every core): the answers are those of the rows predicted a few at a time, and a
    seeded sample draws the same stream."""
    from sbexportd.parity import compare_all, discrete_names
    m = sbexportd.load(FIXTURES / "ppo2_mlp_vec_discrete" / "model.zip")
    obs = np.random.default_rng(5).normal(size=(20_000, 4)).astype(np.float32)
    whole = m.predict(obs, backend=backend)
    for lo in (0, 4095, 8191, 19_000):
        part = m.predict(obs[lo:lo + 1000], backend=backend)
        checks = compare_all({k: v[lo:lo + 1000] for k, v in whole.items()}, part, discrete_names(m.spec))
        assert checks.passed and set(checks) == set(whole), checks.describe()
    a = m.predict(obs, deterministic=False, seed=3, backend=backend)["actions"]
    one_call = m.backend(backend).sample(obs, rng=np.random.default_rng(3))
    assert a.shape == (20_000,) and np.mean(a != one_call) <= 1e-3  # the same stream (a near-tie may flip)
