"""The fast path: the fastest backend that reproduces the reference on this model.

Measured on the zoo's PPO2 CartPole (docs/benchmarks.md), ONNX Runtime is the fastest
evaluator at every batch size (batch 1: ~12 us against ~100 us for the NumPy reference
and ~85 us for torch; batch 1024: ~3M observations/s against ~0.26M and ~1.9M), so it
is the one candidate. It is verified, not trusted: before it serves a request it runs
seeded observations (export.conventions.sample_inputs, as every export's check) at
batch 64 and batch 1, and every output, and every tensor sampling reads, must meet the
parity rule against the NumPy reference, as every export does (sbexportd.parity.judge:
the rule plus what float32 evaluation itself puts in doubt). A model whose fast path
cannot be built or does not verify is served by the reference, and says why.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import SbExportError
from .backends import FAST_CANDIDATES, REFERENCE

CANDIDATE = FAST_CANDIDATES[0]  # the one fast backend (backends.py marks it)
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

def check(spec, impl) -> tuple[int, dict[str, float]]:
    """Run `impl` and the judge on seeded inputs; raises NotVerified on any output (or
    tensor sampling reads) outside the parity rule. Returns (observations, max errors)."""
    import dataclasses

    from ..export.conventions import sample_inputs
    from ..parity import judge
    feeds = sample_inputs(spec, VERIFY_N, VERIFY_SEED)
    # stochastic actions are drawn from the distribution's tensors: judged with the outputs
    extra = {f"tensor {t}": t for t in spec.distribution.tensors.values() if t not in spec.outputs.values()}
    judged = dataclasses.replace(spec, outputs={**spec.outputs, **extra}) if extra else spec
    errors: dict[str, float] = {}
    batches = [feeds, {k: v[:1] for k, v in feeds.items()}]  # the batch-1 kernels differ from the batched ones
    for batch in batches:
        args = (batch["obs"], batch.get("state"), batch.get("mask"))
        got = impl.run(*args)
        if extra:
            env = impl.forward(*args)
            got.update({name: env[t] for name, t in extra.items()})
        checks = judge(judged, batch).check(got)
        for name, err in checks.max_abs_error.items():
            errors[name] = max(errors.get(name, 0.0), err)
        if not checks.passed:
            raise NotVerified(f"{checks.describe()} on seeded observations (batch {len(batch['obs'])})")
    return sum(len(b["obs"]) for b in batches), errors

def choose(model) -> FastPath:
    """Build the candidate on `model` (Model.backend) and verify it against the
    reference; never raises for the candidate's sake."""
    start = time.perf_counter()
    try:
        impl = model.backend(CANDIDATE, verified=False)
        n, errors = check(model.spec, impl)
    except (NotVerified, SbExportError) as e:  # it disagrees, or it lacks an op of this model
        return FastPath(REFERENCE, reason=f"{CANDIDATE}: {e}", seconds=time.perf_counter() - start)
    except Exception as e:  # noqa: BLE001 - a runtime that cannot take this graph: the reference serves
        return FastPath(REFERENCE, reason=f"{CANDIDATE}: {type(e).__name__}: {str(e)[:300]}",
                        seconds=time.perf_counter() - start)
    return FastPath(CANDIDATE, verified=True, observations=n, max_abs_error=errors,
                    seconds=time.perf_counter() - start)
