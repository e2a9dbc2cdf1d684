"""The 15 zoo agents against SB2's own answers (../shared/zoo/goldens), every backend."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

import sbexportd
from sbexportd.understand.spec import Box, Discrete, MultiBinary, MultiDiscrete

from conftest import ZOO_REASON, zoo_cases
from parity import check

CASES = zoo_cases()
BACKENDS = ("numpy", "tensorflow", "torch", "onnxruntime")


@lru_cache(maxsize=None)
def model(path):
    return sbexportd.load(path)


def golden_outputs(golden: dict, action_space) -> dict[str, str]:
    """golden key -> our output name. SB2's action_probability gives (mean, std) for Box."""
    names = {}
    for key in golden:
        if key == "obs" or key.endswith("_error"):
            continue
        if isinstance(action_space, Box) and key in ("probs_0", "probs_1"):
            names[key] = {"probs_0": "mean", "probs_1": "std"}[key]
        else:
            names[key] = key
    return names


def test_zoo_present():
    if not CASES:
        pytest.skip(ZOO_REASON)
    assert len(CASES) >= 15


@pytest.mark.zoo
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_zoo_parity(case, backend, record_property):
    if backend != "numpy":
        pytest.importorskip(backend, reason=f"{backend} not installed (run the README's install command)")
    _, agent, golden_path = case
    m = model(agent)
    golden = dict(np.load(golden_path))
    out = m.predict(golden["obs"], backend=backend)
    discrete = isinstance(m.spec.action_space, (Discrete, MultiDiscrete, MultiBinary))
    names = golden_outputs(golden, m.spec.action_space)
    assert "actions" in names
    for key, mine in names.items():
        assert mine in out, f"{mine} missing from outputs {sorted(out)}"
        err = check(key, out[mine], golden[key], discrete)
        record_property(mine, err)
