"""Every fixture family against SB2's recorded answers, every backend: tiny models trained
and saved by SB2 2.10.2 itself in both formats (tools/legacy/make_fixtures.py), and by older
releases in each on-disk format era (tools/legacy/make_era_fixtures.py: folders v<release>_*,
whose goldens are what THAT release answered; where SB2 2.10.2 reads such a file and answers
otherwise, golden_2_10_2.npz holds its answers, which sbexportd reproduces: SB2 <= 2.3 did
not clip a Gaussian policy's action to its Box)."""
from __future__ import annotations

from functools import cache

import numpy as np
import pytest

import sbexportd
from conftest import fixture_cases, load_meta
from parity import check
from sbexportd.realize.backends import BACKENDS as REGISTERED
from sbexportd.understand.spec import Discrete, MultiBinary, MultiDiscrete

CASES = fixture_cases()
BACKENDS = tuple(REGISTERED)
FILES = [(name, d, fmt) for name, d in CASES for fmt in ("zip", "pkl") if (d / f"model.{fmt}").is_file()]

# Files of older SB2 releases that sbexportd does not reproduce yet (issue 8), as STRICT
# expected failures: fixing the reader turns a case into XPASS, which fails the run until its
# line here is deleted. Key "case.fmt" (every backend) or "case.fmt-backend"; value: the error seen.
EXPECTED_FAILURES: dict[str, str] = {}


def _marks(file_id: str, backend: str) -> list:
    reason = EXPECTED_FAILURES.get(f"{file_id}-{backend}") or EXPECTED_FAILURES.get(file_id)
    return [pytest.mark.xfail(strict=True, reason=reason)] if reason else []


PARITY_PARAMS = [pytest.param((name, d, fmt), backend, id=f"{name}.{fmt}-{backend}",
                              marks=_marks(f"{name}.{fmt}", backend))
                 for name, d, fmt in FILES for backend in BACKENDS]
# Golden keys that are not policy outputs.
INPUT_KEYS = {"obs", "obs_raw", "state", "mask", "actions_obs_single", "obs_observation",
              "obs_achieved_goal", "obs_desired_goal"}


@cache
def model(path, vecnormalize=None):
    return sbexportd.load(path, vecnormalize)


def test_fixtures_exist():
    assert len(CASES) >= 40, "tests/fixtures is missing: run `make fixtures` (needs the legacy stack)"


def _outputs(golden: dict, space) -> list[str]:
    return [k for k in golden if k not in INPUT_KEYS and not k.endswith("_error")]


def test_expected_failures_name_real_files():
    """A stale key would silently stop guarding anything."""
    known = {p.id for p in PARITY_PARAMS} | {f"{n}.{fmt}" for n, _, fmt in FILES}
    assert sorted(set(EXPECTED_FAILURES) - known) == []


@pytest.mark.parametrize("case, backend", PARITY_PARAMS)
def test_fixture_parity(case, backend, record_property):
    if backend != "numpy":
        pytest.importorskip(backend, reason=f"{backend} not installed (run the README's install command)")
    _name, folder, fmt = case
    meta = load_meta(folder)
    golden = dict(np.load(folder / "golden.npz"))
    # An older release's file that SB2 2.10.2 reads but answers differently: sbexportd
    # reproduces 2.10.2 (its answers, by tools/legacy/check_current.py).
    current = folder / "golden_2_10_2.npz"
    if current.is_file():
        golden.update(np.load(current))
    m = model(folder / f"model.{fmt}")
    discrete = isinstance(m.spec.action_space, (Discrete, MultiDiscrete, MultiBinary))
    keys = _outputs(golden, m.spec.action_space)
    assert "actions" in keys
    if meta.get("recurrent"):
        assert m.spec.recurrent, "SB2 says recurrent, the spec does not"
        steps = golden["obs"].shape[0]
        for t in range(steps):
            out = m.predict(golden["obs"][t], state=golden["state"][t], mask=golden["mask"][t], backend=backend)
            for key in keys:
                ours = "state" if key == "state_out" else key
                err = check(key, out[ours], golden[key][t], discrete)
                record_property(key, err)
        return
    out = m.predict(golden["obs"], backend=backend)
    for key in keys:
        assert key in out, f"{key} missing from outputs {sorted(out)}"
        record_property(key, check(key, out[key], golden[key], discrete))
    if "actions_obs_single" in golden:
        single = m.predict(golden["obs"][0], backend=backend)["actions"]
        check("actions", np.asarray(single)[None], np.asarray(golden["actions_obs_single"])[None], discrete)


def test_vecnormalize_fixture():
    """VecNormalize statistics, in both layouts, give SB2's actions from RAW observations."""
    cases = [d for _, d in CASES if (d / "vecnormalize.pkl").is_file()]
    if not cases:
        pytest.fail("no VecNormalize fixture")
    for folder in cases:
        golden = dict(np.load(folder / "golden.npz"))
        for stats in ("vecnormalize.pkl", "obs_rms.pkl"):
            m = sbexportd.load(folder / "model.zip", folder / stats)
            out = m.predict(golden["obs_raw"])
            check("actions", out["actions"], golden["actions"], isinstance(m.spec.action_space, Discrete))
