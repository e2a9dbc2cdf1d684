"""The fast path: the fastest backend that reproduces the reference on this model.

Measured on the zoo's PPO2 CartPole (docs/benchmarks.md), ONNX Runtime is the fastest
evaluator at every batch size (batch 1: ~12 us against ~100 us for the NumPy reference
and ~85 us for torch; batch 1024: ~3M observations/s against ~0.26M and ~1.9M), so it
is the one candidate. It is verified, not trusted: before it serves a request it runs
seeded observations (export.conventions.sample_inputs, as every export's check) at
batch 64 and batch 1, and every output, and every tensor sampling reads, must meet the
parity rule (sbexportd.parity) against the NumPy reference. A model whose fast path
cannot be built or does not verify is served by the reference, and says why.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..parity import compare
from ..understand.spec import Discrete, MultiBinary, MultiDiscrete

CANDIDATE = "onnxruntime"
REFERENCE = "numpy"
VERIFY_N = 64
VERIFY_SEED = 0


@dataclass
class FastPath:
    """What `Model.predict` uses by default, and why."""

    backend: str                      # the default: CANDIDATE if verified, else REFERENCE
    candidate: str = CANDIDATE
    verified: bool = False
    reason: str | None = None         # why the candidate is not used
    observations: int = 0
    seed: int = VERIFY_SEED
    max_abs_error: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """camelCase, as the daemon's protocol objects."""
        return {"backend": self.backend, "candidate": self.candidate, "verified": self.verified,
                "reason": self.reason, "observations": self.observations, "seed": self.seed,
                "maxAbsError": self.max_abs_error, "seconds": round(self.seconds, 4)}


class NotVerified(Exception):
    """The candidate disagrees with the reference (the parity rule)."""


def check(spec, impl, reference) -> tuple[int, dict[str, float]]:
    """Run `impl` and `reference` on seeded inputs; raises NotVerified on any output
    (or sampling tensor) outside the parity rule. Returns (observations, max errors)."""
    from ..export.conventions import sample_inputs
    feeds = sample_inputs(spec, VERIFY_N, VERIFY_SEED)
    discrete = isinstance(spec.action_space, (Discrete, MultiDiscrete, MultiBinary))
    errors: dict[str, float] = {}
    batches = [feeds, {k: v[:1] for k, v in feeds.items()}]  # the batch-1 kernels differ from the batched ones
    for batch in batches:
        args = (batch["obs"], batch.get("state"), batch.get("mask"))
        want, got = reference.run(*args), impl.run(*args)
        if spec.distribution.tensors:  # stochastic actions are drawn from these
            ref_env, env = reference.forward(*args), impl.forward(*args)
            for t in spec.distribution.tensors.values():
                want[f"tensor {t}"], got[f"tensor {t}"] = ref_env[t], env[t]
        for name, w in want.items():
            if name not in got:
                raise NotVerified(f"{name!r} is missing")
            c = compare(name, got[name], w, discrete and name == "actions")
            errors[name] = max(errors.get(name, 0.0), c.max_abs_error)
            if not c.passed:
                raise NotVerified(f"{c.describe()} on seeded observations (batch {len(batch['obs'])})")
    return sum(len(b["obs"]) for b in batches), errors


def choose(model) -> FastPath:
    """Build the candidate on `model` (Model.backend) and verify it against the
    reference; never raises for the candidate's sake."""
    start = time.perf_counter()
    try:
        impl = model.backend(CANDIDATE, verified=False)
        n, errors = check(model.spec, impl, model.backend(REFERENCE))
    except (NotVerified, NotImplementedError) as e:
        return FastPath(REFERENCE, reason=f"{CANDIDATE}: {e}", seconds=time.perf_counter() - start)
    except Exception as e:  # noqa: BLE001 - a runtime that cannot take this graph: the reference serves
        return FastPath(REFERENCE, reason=f"{CANDIDATE}: {type(e).__name__}: {str(e)[:300]}",
                        seconds=time.perf_counter() - start)
    return FastPath(CANDIDATE, verified=True, observations=n, max_abs_error=errors,
                    seconds=time.perf_counter() - start)
