"""The parity rule every backend and every export is held to.

- discrete outputs (the action of a Discrete / MultiDiscrete / MultiBinary space): equal;
- continuous actions: max abs error <= 1e-5;
- probabilities, means, stds, values, Q-values, LSTM state: |err| <= 1e-5 * max(1, |ref|).
  Values and Q-values of real agents reach the hundreds, where float32 itself
  resolves only ~3e-5; below magnitude 1 the bound is the absolute 1e-5.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOL = 1e-5


@dataclass
class Comparison:
    name: str
    max_abs_error: float
    scaled_error: float      # max |err| / max(1, |ref|)
    mismatches: int          # discrete outputs: entries that differ
    passed: bool

    def describe(self) -> str:
        if self.mismatches:
            return f"{self.name}: {self.mismatches} entries differ"
        return f"{self.name}: max abs error {self.max_abs_error:.3g}"


def compare(name: str, mine, ref, discrete: bool) -> Comparison:
    mine, ref = np.asarray(mine), np.asarray(ref)
    if mine.shape != ref.shape:
        return Comparison(name, float("inf"), float("inf"), ref.size, False)
    a, b = mine.astype(np.float64), ref.astype(np.float64)
    diff = np.abs(a - b)
    err = float(diff.max()) if diff.size else 0.0
    scaled = float((diff / np.maximum(1.0, np.abs(b))).max()) if diff.size else 0.0
    if discrete:
        bad = int(np.count_nonzero(mine != ref))
        return Comparison(name, err, scaled, bad, bad == 0)
    if name in ("action", "actions"):
        return Comparison(name, err, scaled, 0, err <= TOL)
    return Comparison(name, err, scaled, 0, scaled <= TOL)
