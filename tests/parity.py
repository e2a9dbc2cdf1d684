"""The parity rule (sbexportd.parity) as a test assertion against SB2's own answers."""
from __future__ import annotations

import numpy as np

from sbexportd.parity import TOL, compare  # noqa: F401  (TOL re-exported for tests)


def check(name: str, mine: np.ndarray, ref: np.ndarray, discrete_actions: bool) -> float:
    """Assert the rule for one output; returns the max abs error measured."""
    mine, ref = np.asarray(mine), np.asarray(ref)
    assert mine.shape == ref.shape, f"{name}: shape {mine.shape} != SB2's {ref.shape}"
    result = compare(name, mine, ref, discrete=(name == "actions" and discrete_actions))
    assert result.passed, (f"{name}: differs from SB2: {result.describe()} "
                           f"(relative to max(1, |sb2|): {result.scaled_error:.3g})")
    return result.max_abs_error
