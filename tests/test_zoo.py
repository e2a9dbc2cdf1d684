"""Every real agent of ../shared/zoo and ../shared/zoo-more (54 at their real sizes)
through what a user does with it: inspect, params, predict on the four backends
against SB2 2.10.2's own answers, and an export to every target (`--vecnormalize auto
--frame-stack auto`, each verified in its own runtime). Each agent is loaded once and
exported once (module caches). A failure not fixed yet is a strict expected failure
listed in tests/zoo.py KNOWN_FAILURES; bench/zoo_sweep.py tabulates the same sweep in
docs/zoo-sweep.md."""
from __future__ import annotations

import json

import numpy as np
import pytest

import sbexportd
from sbexportd.export.targets import TARGETS
from sbexportd.understand.param_order import DUPLICATE
from zoo import (
    BACKENDS,
    EXPECTED,
    KNOWN_FAILURES,
    ROOTS,
    SB3_REFUSED,
    SB3_TARGETS,
    Agent,
    Outcome,
    agents,
    backend_parity,
    export_all,
    missing_zoos,
)

AGENTS = agents()
pytestmark = pytest.mark.zoo
_MODELS: dict[str, object] = {}
_EXPORTS: dict[str, dict[str, Outcome]] = {}


def _cases(kinds) -> list:
    """(agent, kind) for every agent and backend / target, strict xfail where known."""
    cases = []
    for agent in AGENTS:
        for kind in kinds:
            why = KNOWN_FAILURES.get((agent.id, kind))
            marks = [pytest.mark.xfail(strict=True, reason=why)] if why else []
            cases.append(pytest.param(agent, kind, id=f"{agent.id}-{kind}", marks=marks))
    return cases


def model(agent: Agent):
    if agent.id not in _MODELS:
        _MODELS[agent.id] = sbexportd.load(agent.path)
    return _MODELS[agent.id]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """agent id -> {target: outcome}, each agent exported to every target once, on demand."""
    root = tmp_path_factory.mktemp("zoo")

    def get(agent: Agent) -> dict[str, Outcome]:
        if agent.id not in _EXPORTS:
            m = sbexportd.load(agent.path, "auto", frame_stack="auto")
            _EXPORTS[agent.id] = export_all(m, root / agent.id.replace("/", "_"))
        return _EXPORTS[agent.id]
    return get


def test_both_zoos_are_here_whole():
    if missing_zoos():
        pytest.skip("zoo not found: " + ", ".join(missing_zoos()) + ": real agents NOT tested")
    for root in ROOTS:
        assert sum(1 for a in AGENTS if a.id.startswith(root.name + "/")) == EXPECTED[root.name], root


@pytest.mark.parametrize("agent", AGENTS, ids=[a.id for a in AGENTS])
def test_inspect_reports_what_sb2_reported(agent):
    info = model(agent).inspect()
    meta = agent.golden_meta()
    assert info["algorithm"] == meta["algo"] and info["policy"]["class"] == meta["policy"]
    assert info["parameters"]["in_file"] >= len(meta["params"])
    shape = [int(d) for d in meta["observation_space"].split("(", 2)[-1].split(")")[0].split(",") if d.strip()] \
        if meta["observation_space"].startswith("Box") else None
    if shape is not None:
        assert info["input"]["shape"] == [None, *shape]
        for side in ("low", "high"):  # bounds are numbers: one, or one per element
            b = info["observation_space"][side]
            assert isinstance(b, (float, str)) or (len(b) == np.prod(shape) and all(
                isinstance(x, float) or x in ("inf", "-inf") for x in b))
    json.loads(json.dumps(info))
    auto = info["auto"]
    assert isinstance(auto["vecnormalize"], bool) and auto["reason"]


@pytest.mark.parametrize("agent", AGENTS, ids=[a.id for a in AGENTS])
def test_parameters_named_as_sb2_named_them(agent):
    """Every parameter read, or named from an old file's unnamed list, has the name
    and shape SB2 2.10.2 gave it when it loaded the file."""
    m = model(agent)
    sb2 = {name: tuple(shape) for name, shape in agent.golden_meta()["params"].items()}
    ours = {k: v.shape for k, v in m.archive.params.items() if not k.startswith(("#", DUPLICATE))}
    assert ours and all(sb2.get(k) == shape for k, shape in ours.items()), \
        {k: (shape, sb2.get(k)) for k, shape in ours.items() if sb2.get(k) != shape}
    used = {k for n in m.spec.nodes for k in n.params.values()}
    assert used & set(ours), "the policy reads none of the file's parameters"


@pytest.mark.parametrize("agent,backend", _cases(BACKENDS))
def test_predict_matches_sb2(agent, backend, record_property):
    if backend != "numpy":
        pytest.importorskip(backend, reason=f"{backend} not installed (run `make install`)")
    outcome = backend_parity(model(agent), agent, backend)
    for name, err in outcome.errors.items():
        record_property(name, err)
    assert outcome.passed, outcome.detail


@pytest.mark.parametrize("agent,target", _cases(TARGETS))
def test_export_verifies(exports, agent, target, record_property):
    """Every target verifies in its own runtime; the training-framework targets (sb3,
    rl-zoo3) refuse exactly the agents SB3 cannot represent, saying why and what is
    closest, and convert, predict and learn with every other one."""
    outcome = exports(agent)[target]
    record_property("max_abs_error", outcome.max_error)
    if target in SB3_TARGETS and agent.id in SB3_REFUSED:
        assert not outcome.passed and outcome.code == "not_representable", outcome.detail
        assert SB3_REFUSED[agent.id] in outcome.detail and "Closest:" in outcome.detail, outcome.detail
        return
    assert outcome.passed, outcome.detail


def test_frame_stacked_agent_takes_single_observations():
    """The zoo's frame-stacked agent (config frame_stack: 4), fed its golden stacked
    observations one frame at a time from a reset, gives SB2's action on the stack."""
    (agent,) = [a for a in AGENTS if a.id == "zoo-more/a2c/BipedalWalkerHardcore-v2.pkl"] or [None]
    if agent is None:
        pytest.skip("zoo-more not found: the frame-stacked agent NOT tested")
    golden = agent.golden_arrays()
    stacked = model(agent)
    framed = sbexportd.load(agent.path, frame_stack="auto")
    assert framed.spec.frame_stack == 4 and framed.spec.observation_space.shape == (24,)
    frames = golden["obs"].reshape(len(golden["obs"]), 4, 24)  # oldest first on the last axis
    for backend in BACKENDS:
        state = None
        for t in range(4):
            mask = np.full(len(frames), 1.0 if t == 0 else 0.0, np.float32)
            out = framed.predict(frames[:, t], state=state, mask=mask, backend=backend)
            state = out["state"]
        np.testing.assert_array_equal(state, golden["obs"][:, 24:])
        assert np.abs(out["actions"] - golden["actions"]).max() <= 1e-5, backend
        np.testing.assert_allclose(out["actions"], stacked.predict(golden["obs"], backend=backend)["actions"],
                                   atol=1e-6)
