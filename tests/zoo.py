"""The real agents of ../shared/zoo and ../shared/zoo-more, with SB2's goldens, and the
sweep every one of them goes through (tests/test_zoo.py asserts it;
bench/zoo_sweep.py tabulates it in docs/zoo-sweep.md).

An agent whose failure is not fixed yet is listed in KNOWN_FAILURES with its reason:
the tests mark it a strict expected failure, so it turns the suite red the moment it
passes, and the list shrinks as fixes land.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sbexportd.realize.backends import BACKENDS as _REGISTERED
from sbexportd.realize.backends import FAST_CANDIDATES

ROOT = Path(__file__).resolve().parents[1]
ZOO = Path(os.environ.get("SBEXPORTD_ZOO", ROOT.parent / "shared" / "zoo"))
ZOO_MORE = Path(os.environ.get("SBEXPORTD_ZOO_MORE", ZOO.parent / "zoo-more"))
ROOTS = (ZOO, ZOO_MORE)
EXPECTED = {ZOO.name: 15, ZOO_MORE.name: 39}
BACKENDS = tuple(_REGISTERED)  # every backend of sbexportd.realize.backends

# (agent id, backend or target) -> why it fails today. Empty when every agent passes.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}

# (agent id, "java" | "node") -> why that client's portable evaluator fails on the agent
# against SB2's goldens today, with the measured error (tests/zoo_reference.py hands it to
# the clients' tests, which hold it a strict expected failure). Empty when both pass.
CLIENT_KNOWN_FAILURES: dict[tuple[str, str], str] = {}

# Agents the training-framework targets (sb3, rl-zoo3) must refuse, with a word of the
# reason their NotRepresentable error must give: what SB3 cannot represent exactly.
SB3_TARGETS = ("sb3", "rl-zoo3")
SB3_REFUSED: dict[str, str] = {
    "zoo/acer/CartPole-v1.pkl": "ACER has no Stable-Baselines3 implementation",
    "zoo/ddpg/Pendulum-v0.pkl": "DDPG's critic takes the action after its first hidden layer",
    "zoo/dqn/CartPole-v1.pkl": "layer-normalized",
    "zoo-more/acer/LunarLander-v2.pkl": "ACER has no Stable-Baselines3 implementation",
    "zoo-more/ddpg/HalfCheetahBulletEnv-v0.pkl": "layer-normalized",
    "zoo-more/ddpg/LunarLanderContinuous-v2.pkl": "DDPG's critic takes the action after its first hidden layer",
    "zoo-more/ddpg/Walker2DBulletEnv-v0.pkl": "layer-normalized",
    "zoo-more/dqn/Acrobot-v1.pkl": "layer-normalized",
}


@dataclass(frozen=True)
class Agent:
    id: str          # "<zoo>/<algo>/<file>", e.g. "zoo-more/td3/HumanoidBulletEnv-v0.pkl"
    path: Path
    golden: Path     # goldens/<algo>/<env>.npz: SB2's answers on 64 observations
    meta: Path       # goldens/<algo>/<env>.json: what SB2 reported of the file

    @property
    def algo(self) -> str:
        return self.path.parent.name

    @property
    def env(self) -> str:
        return self.path.stem

    def golden_arrays(self) -> dict[str, np.ndarray]:
        with np.load(self.golden) as z:
            return dict(z)

    def golden_meta(self) -> dict[str, Any]:
        return json.loads(self.meta.read_text())


def agents() -> list[Agent]:
    """Every agent file of both zoos that has a golden, sorted by id."""
    found = []
    for root in ROOTS:
        for golden in sorted((root / "goldens").glob("*/*.npz")):
            algo, env = golden.parent.name, golden.stem
            for path in sorted((root / "agents" / algo).glob(env + ".*")):
                if path.suffix in (".zip", ".pkl"):
                    found.append(Agent(f"{root.name}/{algo}/{path.name}", path, golden, golden.with_suffix(".json")))
    return found


def missing_zoos() -> list[str]:
    return [f"{root} (set SBEXPORTD_ZOO / SBEXPORTD_ZOO_MORE)" for root in ROOTS if not (root / "goldens").is_dir()]


def golden_outputs(golden: dict, action_space) -> dict[str, str]:
    """golden key -> our output name. SB2's action_probability gives (mean, std) for Box."""
    from sbexportd.understand.spec import Box
    names = {}
    for key in golden:
        if key == "obs" or key.endswith("_error"):
            continue
        if isinstance(action_space, Box) and key in ("probs_0", "probs_1"):
            names[key] = {"probs_0": "mean", "probs_1": "std"}[key]
        else:
            names[key] = key
    return names


@dataclass
class Outcome:
    """One cell of the sweep: passed or not, the largest error, why, how long."""
    passed: bool
    max_error: float = 0.0
    detail: str = ""
    seconds: float = 0.0
    errors: dict[str, float] = field(default_factory=dict)
    code: str = ""   # the typed error's code when the export raised one


def backend_parity(model, agent: Agent, backend: str) -> Outcome:
    """predict(golden obs) on one backend against SB2's answers, under the parity rule.

    A fast-path backend (ONNX Runtime) is held to what it must meet before it serves:
    the rule every export is judged by (parity.judge: the rule, or the float32 bound
    2E of each continuous output, computed on these observations). The reference's
    own row holds it to SB2 under the plain rule, so the chain reaches SB2. Only an
    output that the plain rule rejects is looked at again (TD3 Humanoid's 400x300
    actor, summed by MLAS in another order than TF1: 1.5e-5)."""
    from sbexportd.parity import compare_all, discrete_names, judge
    start = time.perf_counter()
    golden = agent.golden_arrays()
    try:
        out = model.predict(golden["obs"], backend=backend)
    except Exception as exc:  # noqa: BLE001 - a sweep records and goes on
        return Outcome(False, float("inf"), f"{type(exc).__name__}: {exc}"[:300], time.perf_counter() - start)
    names = golden_outputs(golden, model.spec.action_space)  # SB2's key -> ours
    got = {key: out[mine] for key, mine in names.items() if mine in out}
    sb2 = {key: golden[key] for key in names}
    checks = compare_all(got, sb2, discrete_names(model.spec))
    if not checks.passed and backend in FAST_CANDIDATES and not isinstance(golden["obs"], dict):
        j = judge(model.spec, {"obs": np.asarray(golden["obs"])})
        bound = {key: j.bound[mine] for key, mine in names.items() if mine in j.bound}
        checks = compare_all(got, sb2, discrete_names(model.spec), bound=bound)
    errors = {names[k]: c.max_abs_error for k, c in checks.items() if not c.missing}
    return Outcome(checks.passed, max(errors.values(), default=0.0), checks.describe(),
                   time.perf_counter() - start, errors)


def export_all(model, out: Path) -> dict[str, Outcome]:
    """Every target, each exported and verified on its own (a failure does not stop
    the others): target -> outcome."""
    from sbexportd.export import export
    from sbexportd.export.targets import TARGETS
    results = {}
    for target in TARGETS:
        start = time.perf_counter()
        try:
            (res,) = export(model, target, out, force=True)
        except Exception as exc:  # noqa: BLE001 - a sweep records and goes on
            results[target] = Outcome(False, float("inf"), f"{type(exc).__name__}: {exc}"[:600],
                                      time.perf_counter() - start, code=getattr(exc, "code", ""))
            continue
        errors = dict(res.parity.get("max_abs_error", {}))
        results[target] = Outcome(bool(res.parity.get("passed")), max(errors.values(), default=0.0), "",
                                  time.perf_counter() - start, errors)
    return results
