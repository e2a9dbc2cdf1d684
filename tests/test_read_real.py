"""Every real SB2 agent of the zoo reads, and reads to what SB2 itself reported
(goldens/<algo>/<env>.json: policy name, spaces, parameter names and shapes)."""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from sbexportd.read import (find_vecnormalize, is_standin, is_standin_class, read_model,
                            read_vecnormalize, read_zoo_config)
from sbexportd.read.standins import InertFunction

ZOO = Path(os.environ.get("SBEXPORTD_ZOO", Path(__file__).resolve().parents[2] / "shared" / "zoo"))
ZOO_REASON = f"zoo not found at {ZOO} (set SBEXPORTD_ZOO): real SB2 files NOT tested"
AGENTS = sorted(p for p in (ZOO / "agents").glob("*/*.*") if p.suffix in (".zip", ".pkl")) \
    if (ZOO / "agents").is_dir() else []
VECNORM = sorted((ZOO / "agents").glob("*/*/obs_rms.pkl")) if AGENTS else []
CONFIGS = sorted((ZOO / "agents").glob("*/*/config.yml")) if AGENTS else []

pytestmark = [pytest.mark.zoo, pytest.mark.skipif(not AGENTS, reason=ZOO_REASON)]


def agent_id(p: Path) -> str:
    return f"{p.parent.name}/{p.name}"


def golden(agent: Path) -> dict:
    return json.loads((ZOO / "goldens" / agent.parent.name / f"{agent.stem}.json").read_text())


def test_zoo_has_the_expected_agents():
    assert len(AGENTS) == 15
    assert {p.suffix for p in AGENTS} == {".zip", ".pkl"}


@pytest.mark.parametrize("agent", AGENTS, ids=agent_id)
def test_reads(agent):
    a = read_model(agent)
    raw = agent.read_bytes()
    assert a.format == ("zip" if raw[:2] == b"PK" else "pkl") == agent.suffix[1:]
    assert a.sha256 == hashlib.sha256(raw).hexdigest()
    assert a.path == agent
    if a.format == "zip":
        assert set(a.members) == {"data", "parameters", "parameter_list"}
        assert a.data_json["policy"][":type:"].startswith("<class")
        assert ":serialized:" not in a.data_json["policy"]
    for arr in a.params.values():
        assert isinstance(arr, np.ndarray) and arr.dtype == np.float32


def _space_shape(text: str) -> tuple | None:
    m = re.search(r"\((\d+(?:, \d+)*),?\)", text)
    return tuple(int(x) for x in m.group(1).split(",")) if m else None


@pytest.mark.parametrize("agent", AGENTS, ids=agent_id)
def test_spaces(agent):
    a, g = read_model(agent), golden(agent)
    for key in ("observation_space", "action_space"):
        space = a.data[key]
        assert is_standin(space) and type(space).sb_module.startswith("gym.spaces")
        kind = type(space).sb_name
        assert g[key].startswith(kind + "(")
        if kind == "Box":
            assert isinstance(space.low, np.ndarray) and isinstance(space.high, np.ndarray)
            assert space.low.shape == space.high.shape == tuple(space.shape) == _space_shape(g[key])
            assert isinstance(space.dtype, np.dtype) and space.dtype.name in g[key]
            assert np.all(space.low <= space.high)
        elif kind == "Discrete":
            assert int(space.n) == int(re.match(r"Discrete\((\d+)\)", g[key]).group(1))


@pytest.mark.parametrize("agent", AGENTS, ids=agent_id)
def test_params_match_what_sb2_reported(agent):
    a, g = read_model(agent), golden(agent)
    expected = [(name, tuple(shape)) for name, shape in g["params"].items()]
    got = [(name, arr.shape) for name, arr in a.params.items()]
    if a.data.get("_params_unnamed"):
        # very old releases pickled a bare list: compare by position
        assert list(a.params) == [f"#{i}" for i in range(len(got))]
        shapes = [s for _, s in got]
        assert shapes[:len(expected)] == [s for _, s in expected]
        if len(shapes) != len(expected):  # old SAC: its list repeats itself
            assert (agent.parent.name, len(shapes)) == ("sac", 2 * len(expected))
            for x, y in zip(list(a.params.values())[:len(expected)],
                            list(a.params.values())[len(expected):]):
                np.testing.assert_array_equal(x, y)
    else:
        assert got == expected


@pytest.mark.parametrize("agent", AGENTS, ids=agent_id)
def test_policy_standin(agent):
    a, g = read_model(agent), golden(agent)
    policy = a.data["policy"]
    assert is_standin_class(policy) and policy.sb_name == g["policy"]
    assert not policy.sb_by_value and policy.sb_bases == ()
    if g["policy"] == "CustomDQNPolicy":
        assert policy.sb_module in ("utils", "utils.utils") and policy.sb_known is False
        with pytest.raises(Exception, match="refusing to call"):
            policy()
    else:
        assert policy.sb_module.startswith("stable_baselines.") and policy.sb_known is True


def test_her_details():
    agent = ZOO / "agents" / "her" / "FetchReach-v1.pkl"
    a = read_model(agent)
    assert a.data["goal_selection_strategy"].sb_args == (0,)
    assert type(a.data["goal_selection_strategy"]).sb_name == "GoalSelectionStrategy"
    assert a.data["model_class"].sb_name == "SAC"
    spaces = a.data["her_obs_space"].spaces
    assert list(spaces) == ["achieved_goal", "desired_goal", "observation"]
    assert all(type(s).sb_name == "Box" for s in spaces.values())
    lr = a.data["learning_rate"]
    assert isinstance(lr, InertFunction) and lr.closure_values == [0.001]


def test_schedules_are_inert_functions():
    a = read_model(ZOO / "agents" / "ppo2" / "CartPoleBulletEnv-v1.zip")
    for key in ("learning_rate", "cliprange", "cliprange_vf"):
        f = a.data[key]
        assert isinstance(f, InertFunction)
        assert f.name == "func" and f.qualname == "constfn.<locals>.func"
        assert f.module == "stable_baselines.ppo2.ppo2" and f.code.co_name == "func"
        assert not callable(f)
    assert a.data["learning_rate"].closure_values == [0.0003]


@pytest.mark.parametrize("obs_rms", VECNORM, ids=lambda p: p.parent.parent.name)
def test_vecnormalize(obs_rms):
    agent = obs_rms.parent.parent / (obs_rms.parent.name + ".pkl")
    assert find_vecnormalize(agent) == obs_rms
    obs_shape = tuple(read_model(agent).data["observation_space"].shape)
    for src in (obs_rms, obs_rms.parent):
        vn = read_vecnormalize(src)
        assert vn.mean.shape == vn.var.shape == obs_shape
        assert vn.epsilon == 1e-8 and vn.clip_obs == 10.0 and vn.norm_obs
        assert np.all(vn.var > 0)
        assert vn.source == str(obs_rms)


def test_find_vecnormalize_none():
    assert find_vecnormalize(ZOO / "agents" / "dqn" / "CartPole-v1.pkl") is None
    assert find_vecnormalize(ZOO / "agents" / "ppo2" / "CartPoleBulletEnv-v1.zip") is None


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.parent.parent.name + "/" + p.parent.name)
def test_zoo_config(config):
    cfg = read_zoo_config(config)
    assert type(cfg) is dict and cfg["policy"] == "MlpPolicy"
    assert read_zoo_config(config.parent) == cfg
    assert all(type(v) in (int, float, str, bool, list, dict) for v in cfg.values())
