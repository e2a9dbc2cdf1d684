"""One convention across every export target.

Inputs:  obs (raw environment observation, batch first, dynamic batch), and for
         recurrent policies state (batch, 2*n_lstm) float32 and mask (batch,) float32.
Outputs: action (exactly SB2's predict(deterministic=True)), then where they apply
         probs / probs_<i>, mean, std, values, q_values, state.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..understand.spec import Box, Discrete, MultiBinary, MultiDiscrete, PolicySpec

# spec output name -> export name
RENAME = {"actions": "action"}
ORDER = ("action", "probs", "mean", "std", "values", "q_values", "state")


# What each output means, for the files that describe themselves (ONNX metadata,
# serving configurations); docs/export.md's table says the same.
MEANINGS = {
    "action": "SB2's predict(obs, deterministic=True)",
    "probs": "action probabilities (Discrete: softmax, MultiBinary: sigmoid; DQN: softmax of Q)",
    "mean": "the Gaussian's mean (SAC: before tanh)",
    "std": "the Gaussian's standard deviation",
    "values": "the critic's value (V(s); DDPG: Q(s, pi(s)))",
    "q_values": "DQN's Q-values",
    "state": "the next recurrent state: feed it back at the next step",
}
INPUT_MEANINGS = {
    "obs": "the raw environment observation (preprocessing is inside the model)",
    "state": "recurrent state [c, h] (zeros at the start) or the previous stacked frames",
    "mask": "1.0 where an episode starts (the state is reset first)",
}


IOSpecs = tuple[list[dict[str, Any]], list[dict[str, Any]]]


def target_io(spec: PolicySpec, adjust_io: Callable[[PolicySpec, list, list], IOSpecs] | None = None) -> IOSpecs:
    """The manifest's inputs and outputs as a target gives them: io(spec), renamed or
    retyped by the target's `adjust_io` where it has one (graphdef's `state_out`, tfjs's
    int32). Written into manifest.json, and handed to the Node client's loader when it
    checks an export before that manifest exists."""
    inputs, outputs = io(spec)
    return adjust_io(spec, inputs, outputs) if adjust_io is not None else (inputs, outputs)


def meaning(name: str, is_input: bool = False) -> str:
    """What the export's input or output `name` holds (`probs_<i>`, `state_out` too)."""
    if is_input:
        return INPUT_MEANINGS.get(name, "")
    if name.startswith("probs_"):
        return f"MultiDiscrete: the probabilities of sub-action {name.split('_', 1)[1]}"
    return MEANINGS.get("state" if name == "state_out" else name, "")


def export_name(spec_name: str) -> str:
    return RENAME.get(spec_name, spec_name)


def output_names(spec: PolicySpec) -> list[tuple[str, str]]:
    """[(export name, spec output name)] in the convention's order."""
    pairs = [(export_name(k), k) for k in spec.outputs]
    rank = {n: i for i, n in enumerate(ORDER)}
    return sorted(pairs, key=lambda p: (rank.get(p[0].split("_")[0] if p[0].startswith("probs_") else p[0], 99), p[0]))


def action_dtype(spec: PolicySpec) -> str:
    space = spec.action_space
    if isinstance(space, (Discrete, MultiDiscrete)):
        return "int64"
    return "float32"  # Box, and MultiBinary (SB2 returns tf.round's float32)


def io(spec: PolicySpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The manifest's inputs and outputs: name, dtype, shape (None = batch)."""
    inputs = [{"name": "obs", "dtype": spec.input_dtype, "shape": [None, *spec.observation_space.shape]}]
    if spec.stateful:
        inputs += [{"name": "state", "dtype": "float32", "shape": [None, spec.state_size]},
                   {"name": "mask", "dtype": "float32", "shape": [None]}]
    outputs = []
    space = spec.action_space
    for name, _ in output_names(spec):
        if name == "action":
            outputs.append({"name": name, "dtype": action_dtype(spec), "shape": [None, *space.shape]})
        elif name in ("values",):
            outputs.append({"name": name, "dtype": "float32", "shape": [None]})
        elif name == "state":
            outputs.append({"name": name, "dtype": "float32", "shape": [None, spec.state_size]})
        elif name.startswith("probs_") and isinstance(space, MultiDiscrete):
            outputs.append({"name": name, "dtype": "float32",
                            "shape": [None, int(space.nvec[int(name.split("_")[1])])]})
        else:
            n = space.n if isinstance(space, (Discrete, MultiBinary)) else int(np.prod(space.shape))
            outputs.append({"name": name, "dtype": "float32", "shape": [None, n]})
    return inputs, outputs


def sample_observations(spec: PolicySpec, n: int, seed: int) -> np.ndarray:
    """Seeded observations from the observation space, as SB2's oracle samples them:
    uniform within finite bounds, standard normal where a bound is infinite."""
    rng = np.random.RandomState(seed)
    space = spec.observation_space
    if isinstance(space, Box):
        low, high = space.low.astype(np.float64), space.high.astype(np.float64)
        finite = np.isfinite(low) & np.isfinite(high) & (high - low < 1e6)
        normal = rng.normal(0.0, 1.0, size=(n,) + space.shape)
        uni = rng.uniform(np.where(finite, low, 0), np.where(finite, high, 1), size=(n,) + space.shape)
        out = np.where(finite, uni, normal)
        if np.issubdtype(np.dtype(space.dtype), np.integer):
            out = np.round(out)
        return out.astype(spec.input_dtype)
    if isinstance(space, Discrete):
        return rng.randint(0, space.n, size=(n,)).astype(spec.input_dtype)
    if isinstance(space, MultiDiscrete):
        return np.stack([rng.randint(0, k, size=(n,)) for k in space.nvec], axis=1).astype(spec.input_dtype)
    if isinstance(space, MultiBinary):
        return rng.randint(0, 2, size=(n, space.n)).astype(spec.input_dtype)
    raise TypeError(f"cannot sample {space!r}")


def stack_state(frames: list[np.ndarray]) -> np.ndarray:
    """A frame stack's state from its previous frames (oldest first, each (n, *frame)):
    concatenated on the last axis as VecFrameStack held them, flattened per row."""
    stacked = np.concatenate([np.asarray(f, np.float32) for f in frames], axis=-1)
    return stacked.reshape(len(stacked), -1)


def sample_inputs(spec: PolicySpec, n: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """obs (and state, mask where the program carries state: some resets; an LSTM's
    state random in [-1, 1], a frame stack's the previous observations, sampled too)."""
    feeds = {"obs": sample_observations(spec, n, seed)}
    if spec.stateful:
        rng = np.random.RandomState(seed + 1)
        if spec.frame_stack:
            feeds["state"] = stack_state([sample_observations(spec, n, seed + 2 + i)
                                          for i in range(spec.frame_stack - 1)])
        else:
            feeds["state"] = rng.uniform(-1, 1, size=(n, spec.state_size)).astype(np.float32)
        feeds["mask"] = (rng.uniform(size=n) < 0.25).astype(np.float32)
    return feeds
