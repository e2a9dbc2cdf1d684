"""The parity rule every backend and every export is held to.

Against SB2's own answers (the tests' goldens) and between two runtimes of one export:

- discrete outputs (the action of a Discrete / MultiDiscrete / MultiBinary space): equal;
- continuous actions: max abs error <= 1e-5;
- probabilities, means, stds, values, Q-values, LSTM state: |err| <= 1e-5 * max(1, |ref|).
  Values and Q-values of real agents reach the hundreds, where float32 itself
  resolves only ~3e-5; below magnitude 1 the bound is the absolute 1e-5.

Against the reference (`judge`), an export may also differ by what float32
evaluation itself puts in doubt: SB2 computed in float32, so its answer is the exact
one plus TF1's rounding error E, and an export in another runtime (another order of
summation, another tanh) is the exact one plus its own error of the same kind. Both
are within E of the exact answer, so the export is within 2E of SB2 (the triangle
inequality), where E, per output, is the largest distance over its elements and the
checked observations between the reference in TF1's float32 arithmetic and the same
function in float64 with exact elementwise functions (realize/numpy_backend.py). The only
assumption: an export's runtime is no less accurate in float32 than TF1 was. On
well-conditioned policies E is ~1e-7 and the 1e-5 rule decides; on large networks
with large activations (a 400x300 TD3 actor) E reaches ~1e-5 and is what a correct
export needs. docs/export.md gives the reasoning and the measurements.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import numpy as np

TOL = 1e-5


@dataclass
class Comparison:
    name: str
    max_abs_error: float
    scaled_error: float      # max |err| / max(1, |ref|)
    mismatches: int          # discrete outputs: entries that differ
    passed: bool
    bound: float = 0.0       # the largest float32-evaluation allowance used (judge only)
    missing: bool = False    # the output was not given at all

    def describe(self) -> str:
        if self.missing:
            return f"{self.name}: missing"
        if self.mismatches:
            return f"{self.name}: {self.mismatches} entries differ"
        extra = f" (allowed there: rule + float32 bound {self.bound:.2g})" if self.bound else ""
        return f"{self.name}: max abs error {self.max_abs_error:.3g}{extra}"


def compare(name: str, mine, ref, discrete: bool, bound=None, ties=None) -> Comparison:
    """The rule for one output. bound: an extra allowance per element (broadcast to ref);
    ties: for discrete outputs, a mask of entries where any answer is accepted."""
    mine, ref = np.asarray(mine), np.asarray(ref)
    if mine.shape != ref.shape:
        return Comparison(name, float("inf"), float("inf"), ref.size, False)
    a, b = mine.astype(np.float64), ref.astype(np.float64)
    diff = np.abs(a - b)
    err = float(diff.max()) if diff.size else 0.0
    scaled = float((diff / np.maximum(1.0, np.abs(b))).max()) if diff.size else 0.0
    if discrete:
        differ = mine != ref
        if ties is not None:
            differ &= ~np.broadcast_to(ties, differ.shape)
        bad = int(np.count_nonzero(differ))
        return Comparison(name, err, scaled, bad, bad == 0)
    allowed = np.full(b.shape, TOL) if name in ("action", "actions") else TOL * np.maximum(1.0, np.abs(b))
    extra = np.broadcast_to(np.asarray(0.0 if bound is None else bound, np.float64), b.shape)
    passed = bool(np.all(diff <= allowed + extra)) if diff.size else True
    worst = float(extra.flat[int(np.argmax(diff - allowed))]) if diff.size else 0.0
    return Comparison(name, err, scaled, 0, passed, worst)


class Checks(dict[str, Comparison]):
    """The rule over every output of an answer, by name: what an export check, the
    fast path's verification and the tests report."""

    @property
    def failed(self) -> list[Comparison]:
        return [c for c in self.values() if not c.passed]

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def max_abs_error(self) -> dict[str, float]:
        return {k: c.max_abs_error for k, c in self.items()}

    @property
    def worst(self) -> float:
        return max((c.max_abs_error for c in self.values()), default=0.0)

    def describe(self) -> str:
        """The failures, one clause each ('' when every output passed)."""
        return "; ".join(c.describe() for c in self.failed)


def discrete_names(spec) -> frozenset[str]:
    """The outputs compared for equality: the action of a Discrete, MultiDiscrete or
    MultiBinary action space (`actions` in the spec, `action` in an export)."""
    from .understand.spec import Discrete, MultiBinary, MultiDiscrete
    discrete = isinstance(spec.action_space, (Discrete, MultiDiscrete, MultiBinary))
    return frozenset({"actions", "action"}) if discrete else frozenset()


def compare_all(got: Mapping, reference: Mapping, discrete: Collection[str] = (), bound: Mapping | None = None,
                ties: Mapping | None = None) -> Checks:
    """The rule (`compare`) for every output of `reference` against `got`, the one
    loop every check runs: an output `got` lacks fails as missing, outputs only `got`
    has are not judged. discrete: the names compared for equality; bound, ties: per
    name, as `compare` takes them."""
    bound, ties = bound or {}, ties or {}
    out = Checks()
    for name, ref in reference.items():
        if name not in got:
            out[name] = Comparison(name, float("inf"), float("inf"), int(np.size(ref)), False, missing=True)
        else:
            out[name] = compare(name, got[name], ref, name in discrete, bound.get(name), ties.get(name))
    return out


@dataclass
class Judgement:
    """The reference's answers for some inputs, and what each may be off by."""
    reference: dict[str, np.ndarray]                    # TF1-faithful float32, by output name
    bound: dict[str, np.ndarray]                        # per element: 2 * E (float64, broadcastable)
    ties: dict[str, np.ndarray] = field(default_factory=dict)   # discrete entries exact and TF1 disagree on
    discrete: frozenset[str] = frozenset()

    def check(self, got: dict[str, np.ndarray]) -> Checks:
        """Every reference output against `got` (a missing one fails)."""
        return compare_all(got, self.reference, self.discrete, self.bound, self.ties)


def float32_error(tf1: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """E of one output: the largest |TF1 - exact| over its elements and the batch.

    Pooled over the whole output, not per column: the columns share the hidden layers
    whose rounding they inherit, and which column a given order of summation happens
    to favour is chance (TF1 was within 9e-7 on one action of SAC HumanoidBulletEnv
    where TF Lite, summing otherwise, was 1.6e-5 from the exact value; both were
    3e-5 to 4e-5 off on other actions)."""
    e = np.abs(np.asarray(tf1, np.float64) - np.asarray(exact, np.float64))
    return np.asarray(e.max() if e.size else 0.0)


def judge(spec, feeds: dict, rename=lambda k: k) -> Judgement:
    """The reference (NumPy, TF1's arithmetic) on `feeds`, with the float32 bound of
    every continuous output. rename maps the spec's output names (e.g. to an export's)."""
    from .realize.numpy_backend import EXACT, TF1, NumpyPolicy

    args = (feeds["obs"], feeds.get("state"), feeds.get("mask"))
    ref = NumpyPolicy(spec, TF1).run(*args)
    exact = NumpyPolicy(spec, EXACT).run(*args)
    discrete_actions = "actions" in discrete_names(spec)
    j = Judgement({}, {})
    discrete = set()
    for key, value in ref.items():
        name = rename(key)
        j.reference[name] = value
        if key == "actions" and discrete_actions:
            discrete.add(name)
            j.ties[name] = np.asarray(value) != np.asarray(exact[key]).astype(np.asarray(value).dtype)
        else:
            j.bound[name] = 2.0 * float32_error(value, exact[key])
    j.discrete = frozenset(discrete)
    return j
