"""Stochastic actions, drawn as SB2's distributions draw them (common/distributions.py,
sac/policies.py, deepq/policies.py), from tensors any backend computed.

The random stream is NumPy's (seeded by the caller), so a seed gives the same
actions whichever backend computed the distribution's parameters."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..understand.spec import Box, PolicySpec

F32 = np.float32


def _gumbel_argmax(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # CategoricalProbabilityDistribution.sample: argmax(logits - log(-log(u)))
    u = rng.uniform(np.finfo(F32).tiny, 1.0, size=logits.shape).astype(F32)
    return np.argmax(logits - np.log(-np.log(u)), axis=-1).astype(np.int64)


def sample(spec: PolicySpec, get: Callable[[str], np.ndarray], rng: np.random.Generator) -> np.ndarray:
    dist = spec.distribution
    kind = dist.kind
    if kind == "categorical":
        return _gumbel_argmax(np.asarray(get(dist.tensors["logits"]), F32), rng)
    if kind == "multi_categorical":
        logits = np.asarray(get(dist.tensors["logits"]), F32)
        parts = np.split(logits, np.cumsum(dist.nvec)[:-1], axis=-1)
        return np.stack([_gumbel_argmax(p, rng) for p in parts], axis=-1)
    if kind == "bernoulli":
        p = 1.0 / (1.0 + np.exp(-np.asarray(get(dist.tensors["logits"]), F32)))
        return (rng.uniform(size=p.shape) < p).astype(F32)
    if kind in ("diag_gaussian", "squashed_gaussian"):
        mean = np.asarray(get(dist.tensors["mean"]), F32)
        std = np.asarray(get(dist.tensors["std"]), F32)
        draw = (mean + std * np.asarray(rng.standard_normal(mean.shape)).astype(F32)).astype(F32)
        space = spec.action_space
        assert isinstance(space, Box)
        low, high = space.low.astype(F32), space.high.astype(F32)
        if kind == "diag_gaussian":  # BaseRLModel.predict clips Box actions
            return np.clip(draw, low, high)
        return (low + F32(0.5) * (np.tanh(draw) + F32(1)) * (high - low)).astype(F32)
    if kind == "softmax_q":  # deepq FeedForwardPolicy.step(deterministic=False)
        q = np.asarray(get(dist.tensors["q"]), np.float64)
        p = np.exp(q - q.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return np.array([rng.choice(p.shape[1], p=row) for row in p], dtype=np.int64)
    if kind == "deterministic":
        # TD3/DDPG explore with an action-noise object outside the policy; predict
        # without noise is the policy's only action.
        return np.asarray(get(spec.outputs["actions"]))
    raise ValueError(f"no sampler for distribution {kind!r}")
