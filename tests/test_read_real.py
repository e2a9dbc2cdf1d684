"""Every real SB2 agent of ../shared/zoo and ../shared/zoo-more reads, and reads to what
SB2 itself reported (goldens/<algo>/<env>.json: policy name, spaces, parameter names
and shapes)."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from sbexportd.read import (
    find_vecnormalize,
    is_standin,
    is_standin_class,
    read_model,
    read_vecnormalize,
    read_zoo_config,
    zoo_settings,
)
from sbexportd.read.safe_pickle import safe_loads
from sbexportd.read.standins import InertFunction
from zoo import EXPECTED, ROOTS, ZOO, agents, missing_zoos

ZOO_REASON = f"zoo not found: {', '.join(missing_zoos())}: real SB2 files NOT tested"
AGENT_LIST = agents()
AGENTS = [a.path for a in AGENT_LIST]
GOLDEN = {a.path: a.meta for a in AGENT_LIST}
VECNORM = sorted(p for root in ROOTS for p in (root / "agents").glob("*/*/obs_rms.pkl")) if AGENTS else []
CONFIGS = sorted(p for root in ROOTS for p in (root / "agents").glob("*/*/config.yml")) if AGENTS else []

pytestmark = [pytest.mark.zoo, pytest.mark.skipif(bool(missing_zoos()), reason=ZOO_REASON)]


def agent_id(p: Path) -> str:
    return f"{p.parents[2].name}/{p.parent.name}/{p.name}"


def golden(agent: Path) -> dict:
    return json.loads(GOLDEN[agent].read_text())


def test_zoo_has_the_expected_agents():
    for root in ROOTS:
        found = [p for p in AGENTS if p.parents[2] == root]
        assert len(found) == EXPECTED[root.name], root
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
        assert isinstance(arr, np.ndarray) and arr.dtype in (np.float32, np.float64)


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
        # Very old releases pickled a bare list, which SB2 loads by position (surplus
        # ignored): names come from understanding, checked against SB2's in
        # tests/test_zoo.py::test_parameters_named_as_sb2_named_them.
        assert list(a.params) == [f"#{i}" for i in range(len(got))]
        assert len(got) >= len(expected)
    else:
        assert got == expected


@pytest.mark.parametrize("agent", AGENTS, ids=agent_id)
def test_policy_standin(agent):
    a, g = read_model(agent), golden(agent)
    policy = a.data["policy"]
    assert is_standin_class(policy) and policy.sb_name == g["policy"]
    assert not policy.sb_by_value and policy.sb_bases == ()
    if g["policy"].startswith("Custom"):  # the zoo's own utils.utils classes
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


@pytest.mark.parametrize("obs_rms", VECNORM, ids=lambda p: agent_id(p.parent))
def test_vecnormalize(obs_rms):
    (agent,) = [p for p in obs_rms.parents[1].glob(obs_rms.parent.name + ".*") if p.suffix in (".pkl", ".zip")]
    assert find_vecnormalize(agent) == obs_rms
    obs_shape = tuple(read_model(agent).data["observation_space"].shape)
    frames = zoo_settings(agent).frame_stack  # the statistics are of one frame
    if frames:
        obs_shape = (*obs_shape[:-1], obs_shape[-1] // frames)
    for src in (obs_rms, obs_rms.parent):
        vn = read_vecnormalize(src)
        assert vn.mean.shape == vn.var.shape == obs_shape
        assert vn.epsilon == 1e-8 and vn.clip_obs == 10.0 and vn.norm_obs
        assert np.all(vn.var > 0)
        assert vn.source == str(obs_rms)
        # the counts continued training needs, as the files hold them (safe reader, inert)
        for name, got in (("obs_rms.pkl", vn.count), ("ret_rms.pkl", vn.returns and vn.returns.count)):
            held = safe_loads((obs_rms.parent / name).read_bytes(), name).sb_get("count")
            assert isinstance(held, float) and got == held


def test_find_vecnormalize_none():
    assert find_vecnormalize(ZOO / "agents" / "dqn" / "CartPole-v1.pkl") is None
    assert find_vecnormalize(ZOO / "agents" / "ppo2" / "CartPoleBulletEnv-v1.zip") is None


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: agent_id(p.parent))
def test_zoo_config(config):
    cfg = read_zoo_config(config)
    (agent,) = [p for p in config.parents[1].glob(config.parent.name + ".*") if p.suffix in (".pkl", ".zip")]
    assert type(cfg) is dict and cfg["policy"] == golden(agent)["policy"]
    assert read_zoo_config(config.parent) == cfg
    assert all(type(v) in (int, float, str, bool, list, dict) for v in cfg.values())
