"""The policy spec: one framework-neutral description of an SB2 inference network.

An adapter (one per algorithm, in `sbexportd.understand.adapters`) turns an
`Archive` into a `PolicySpec`. Backends and exporters only *realize* a spec: each
op below has one implementation per backend, and nothing downstream looks at
parameter names or re-derives architecture.

The network is a straight-line program: `nodes` run in order, each reading named
tensors and writing named tensors. Tensor names are free-form strings; three are
reserved inputs:

    "obs"    the raw environment observation, batch first (dtype as the env gives it)
    "state"  carried state in, (batch, state_size) float32: the LSTM's (c, h), or the
             previous frames of a frame stack                  [stateful only]
    "mask"   episode-start flags, (batch,) float32, 1.0 = reset [stateful only]

`outputs` maps the public output names to tensor names:

    actions          exactly SB2's predict(deterministic=True)
    probs            Discrete / MultiBinary action probabilities (action_probability)
    probs_<i>        MultiDiscrete: one softmax per sub-action
    mean, std        Box: the Gaussian's mean and std (SAC: pre-tanh mean)
    values           the critic's V(s)
    q_values         DQN's Q(s, .)
    state            carried state out (feed it back with the next observation)

Constants (space bounds, VecNormalize statistics, DDPG's observation statistics)
live in `tensors` beside the trained weights, so every export embeds them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidSpec

SPEC_VERSION = 1


# --- spaces ------------------------------------------------------------------
@dataclass(frozen=True)
class Box:
    low: np.ndarray
    high: np.ndarray
    dtype: str = "float32"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.low.shape)

    def describe(self) -> dict[str, Any]:
        """JSON-ready: a bound is one number when every element is equal, else a list
        of numbers in row-major order; "inf" / "-inf" for an unbounded side (JSON has
        no infinity; gym's float32 max counts as unbounded). Numbers round-trip: nine
        significant digits are exact for float32."""
        digits = 9 if np.dtype(self.dtype).itemsize <= 4 else 17

        def num(x: float):
            if x >= 3.4e38:
                return "inf"
            if x <= -3.4e38:
                return "-inf"
            return float(f"{x:.{digits}g}")

        def bound(a: np.ndarray):
            v = a.astype(np.float64).ravel()
            if v.size and np.all(v == v[0]):
                return num(v[0])
            return [num(x) for x in v]
        return {"type": "Box", "shape": list(self.shape), "dtype": self.dtype,
                "low": bound(self.low), "high": bound(self.high)}


@dataclass(frozen=True)
class Discrete:
    n: int

    @property
    def shape(self) -> tuple[int, ...]:
        return ()

    def describe(self) -> dict[str, Any]:
        return {"type": "Discrete", "n": self.n}


@dataclass(frozen=True)
class MultiDiscrete:
    nvec: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.nvec),)

    def describe(self) -> dict[str, Any]:
        return {"type": "MultiDiscrete", "nvec": list(self.nvec)}


@dataclass(frozen=True)
class MultiBinary:
    n: int

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n,)

    def describe(self) -> dict[str, Any]:
        return {"type": "MultiBinary", "n": self.n}


@dataclass(frozen=True)
class DictSpace:
    """A goal-conditioned observation (HER): sub-spaces in SB2's KEY_ORDER."""
    spaces: tuple[tuple[str, Space], ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return (sum(int(np.prod(s.shape or (1,))) for _, s in self.spaces),)

    def describe(self) -> dict[str, Any]:
        return {"type": "Dict", "spaces": {k: s.describe() for k, s in self.spaces}}


Space = Box | Discrete | MultiDiscrete | MultiBinary | DictSpace


# --- the program ---------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    """One op application: `outputs = op(inputs; attrs, params)`.

    `params` maps an op's parameter role ("w", "b", "gamma", ...) to a key of
    `PolicySpec.tensors`. Ops and their contracts are listed in OPS.
    """
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


# The contract every backend implements: understand/ops.py (machine-readable).
# re-exported (`X as X`): spec.OPS, spec.FLOAT64_PARAMS
from .ops import FLOAT64_PARAMS as FLOAT64_PARAMS  # noqa: E402
from .ops import OPS as OPS  # noqa: E402

ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid", "elu", "softplus", "softsign",
               "relu6", "selu", "leaky_relu", "swish")


# --- stochastic sampling -------------------------------------------------------
@dataclass(frozen=True)
class Distribution:
    """How SB2 samples a non-deterministic action, on tensors of the program.

    kind                 tensors used
    categorical          logits
    multi_categorical    logits (split by nvec)
    bernoulli            logits
    diag_gaussian        mean, std            then the action post-processing
    squashed_gaussian    mean, std            tanh, then unscale (SAC)
    deterministic        (none)               TD3/DDPG: SB2 adds exploration noise
                                              outside the policy; no sampling here
    softmax_q            q                    DQN samples from softmax(Q)
    """
    kind: str
    tensors: dict[str, str] = field(default_factory=dict)
    nvec: tuple[int, ...] = ()


# distribution kind -> the tensors it reads (realize/sampling.py draws from them)
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "categorical": ("logits",), "multi_categorical": ("logits",), "bernoulli": ("logits",),
    "diag_gaussian": ("mean", "std"), "squashed_gaussian": ("mean", "std"), "deterministic": (),
    "softmax_q": ("q",)}


# --- the spec ----------------------------------------------------------------------
@dataclass
class Layer:
    """A human-readable summary row for `inspect` (not used to compute anything)."""
    name: str
    kind: str
    shape: str
    activation: str = ""
    params: tuple[str, ...] = ()


@dataclass
class PolicySpec:
    algo: str                       # a2c, acer, acktr, ddpg, dqn, gail, her, ppo1, ppo2, sac, td3, trpo
    policy: str                     # the SB2 policy class name as saved
    observation_space: Space
    action_space: Space
    nodes: list[Node]
    outputs: dict[str, str]
    tensors: dict[str, np.ndarray]  # trained weights (by SB2 name) and constants
    distribution: Distribution
    input_dtype: str = "float32"    # dtype of "obs" (SB2's placeholder dtype; feeding casts to it)
    recurrent: int = 0              # n_lstm for recurrent policies, else 0
    frame_stack: int = 0            # frames stacked in front of the policy (VecFrameStack), else 0
    summary: list[Layer] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # decisions a user should know about
    preprocessing: list[str] = field(default_factory=list)  # human-readable obs pipeline
    postprocessing: str = ""        # human-readable action pipeline
    sb2_params: list[str] = field(default_factory=list)  # every parameter in the file
    goal_observation: DictSpace | None = None  # HER: the dict obs, flattened in KEY_ORDER into "obs"
    vecnormalize: bool = False      # VecNormalize statistics are baked into the program

    @property
    def stack_size(self) -> int:
        """Floats a frame stack carries: the n - 1 previous frames."""
        if not self.frame_stack:
            return 0
        return (self.frame_stack - 1) * int(np.prod(self.observation_space.shape))

    @property
    def state_size(self) -> int:
        return self.stack_size + 2 * self.recurrent

    @property
    def stateful(self) -> bool:
        """The program reads "state" and "mask" (an LSTM or a frame stack)."""
        return self.state_size > 0

    def used_tensors(self) -> list[str]:
        seen: dict[str, None] = {}
        for node in self.nodes:
            for key in node.params.values():
                seen[key] = None
        return list(seen)

    def validate(self, source: str | None = None) -> dict[str, tuple[int, ...]]:
        """Every tensor a node reads exists (as an input, an earlier output or a
        parameter), every op is a known op, and every parameter's shape fits the op's
        inputs (understand/shapes.py): a spec bug or a wrong parameter naming surfaces
        here, not in a backend. Raises InvalidSpec (InconsistentParameters for shapes).
        Returns every tensor's per-sample shape."""
        known = {"obs"} | ({"state", "mask"} if self.stateful else set())
        for i, node in enumerate(self.nodes):
            if node.op not in OPS:
                raise InvalidSpec(f"node {i}: unknown op {node.op!r:.40}; the ops are {', '.join(OPS)}", source)
            wrong = OPS[node.op].check(node)
            if wrong is None and node.op == "activation" and node.attrs["fn"] not in ACTIVATIONS:
                wrong = f"activation {node.attrs['fn']!r:.40} is not one of {', '.join(ACTIVATIONS)}"
            if wrong:
                raise InvalidSpec(f"node {i} ({node.op}): {wrong}", source)
            for name in node.inputs:
                if name not in known:
                    raise InvalidSpec(f"node {i} ({node.op}) reads {name!r:.60} before it is written", source)
            for role, key in node.params.items():
                if key not in self.tensors:
                    raise InvalidSpec(f"node {i} ({node.op}) param {role}={key!r:.60} missing", source)
            known.update(node.outputs)
        for out, name in self.outputs.items():
            if name not in known:
                raise InvalidSpec(f"output {out!r:.40} -> {name!r:.60} is never written", source)
        roles = DISTRIBUTIONS.get(self.distribution.kind)
        if roles is None:
            raise InvalidSpec(f"distribution {self.distribution.kind!r:.40} is not one of "
                              f"{', '.join(DISTRIBUTIONS)}", source)
        for role in roles:
            if self.distribution.tensors.get(role) not in known:
                raise InvalidSpec(f"distribution {self.distribution.kind} reads {role} "
                                  f"{self.distribution.tensors.get(role)!r:.60}, which is never written", source)
        from .shapes import check_program
        return check_program(self, source)
