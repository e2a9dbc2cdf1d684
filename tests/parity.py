"""The parity rule every backend and export is held to, against SB2's own answers.

- discrete outputs (actions of Discrete/MultiDiscrete/MultiBinary): equal;
- continuous actions: max abs error <= 1e-5;
- probabilities, means, stds, values, Q-values: |err| <= 1e-5 * max(1, |sb2|).
  Values and Q-values of real agents reach the hundreds, where float32 itself
  only resolves ~3e-5; below magnitude 1 the bound is the absolute 1e-5.
"""
from __future__ import annotations

import numpy as np

TOL = 1e-5


def max_error(mine: np.ndarray, ref: np.ndarray) -> float:
    mine, ref = np.asarray(mine, np.float64), np.asarray(ref, np.float64)
    assert mine.shape == ref.shape, f"shape {mine.shape} != SB2's {ref.shape}"
    return float(np.max(np.abs(mine - ref))) if ref.size else 0.0


def check(name: str, mine: np.ndarray, ref: np.ndarray, discrete_actions: bool) -> float:
    """Assert the rule for one output; returns the max abs error measured."""
    err = max_error(mine, ref)
    if name == "actions" and discrete_actions:
        bad = np.flatnonzero(np.asarray(mine).reshape(len(ref), -1) != np.asarray(ref).reshape(len(ref), -1))
        assert bad.size == 0, f"actions differ from SB2 at {bad[:10]} (of {len(ref)})"
    elif name == "actions":
        assert err <= TOL, f"actions: max abs error {err:.3g} > {TOL}"
    else:
        scaled = np.abs(np.asarray(mine, np.float64) - np.asarray(ref, np.float64)) / np.maximum(1.0, np.abs(ref))
        worst = float(scaled.max()) if scaled.size else 0.0
        assert worst <= TOL, f"{name}: error {worst:.3g} (relative to max(1, |sb2|)) > {TOL}; abs {err:.3g}"
    return err
