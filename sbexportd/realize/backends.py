"""The backends: what every one shares (`Backend`), and the one list of them
(`BACKENDS`), which `Model.backend`, the CLI's --backend, the daemon's capabilities
and request checks, and the fast path all read.

A backend module is imported only when its backend is first used: TensorFlow, torch
and ONNX Runtime are heavy, and reading and understanding import none of them."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BackendUnavailable
from ..registry import Registry
from ..understand.spec import PolicySpec


class Backend:
    """A spec realized in one runtime, built once and kept warm.

    A subclass sets `name`, builds itself from the spec in `__init__`, and implements
    `forward`: the tensors of the program by tensor name (at least the public
    outputs' and those sampling reads). `run` and `sample` are the same for every
    backend; a backend overrides `run` only to fetch just the outputs asked for."""

    name: str = ""

    def __init__(self, spec: PolicySpec) -> None:
        self.spec = spec

    def forward(self, obs, state=None, mask=None) -> dict[str, Any]:
        raise NotImplementedError

    def wanted(self, outputs: tuple[str, ...] | None) -> tuple[str, ...]:
        """The public outputs to return: those of `outputs` the spec has (all when None)."""
        return tuple(k for k in (outputs or tuple(self.spec.outputs)) if k in self.spec.outputs)

    def run(self, obs, state=None, mask=None, outputs: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """The spec's public outputs by name (`outputs` selects some)."""
        env = self.forward(obs, state, mask)
        return {k: env[self.spec.outputs[k]] for k in self.wanted(outputs)}

    def sample(self, obs, state=None, mask=None, rng: np.random.Generator | None = None) -> np.ndarray:
        """A stochastic action, drawn the way SB2's distributions draw it (sampling.py:
        NumPy's stream, so a seed draws the same actions whichever backend computed
        the distribution)."""
        from .sampling import sample
        env = self.forward(obs, state, mask)
        return sample(self.spec, lambda name: env[name], rng or np.random.default_rng())


@dataclass(frozen=True)
class BackendInfo:
    name: str
    module: str         # sbexportd/realize/<module>.py
    cls: str            # its Backend subclass
    summary: str
    fast: bool = False  # a fast-path candidate: the default once it reproduces the reference on a model

    def load(self) -> type[Backend]:
        return getattr(importlib.import_module(f"{__package__}.{self.module}"), self.cls)


REFERENCE = "numpy"
BACKENDS: Registry[BackendInfo] = Registry("backend", BackendUnavailable, [(b.name, b) for b in (
    BackendInfo("numpy", "numpy_backend", "NumpyPolicy", "the reference: NumPy in TensorFlow 1's float32 arithmetic"),
    BackendInfo("tensorflow", "tf_backend", "TFPolicy", "TensorFlow 2: a graph run in a session"),
    BackendInfo("torch", "torch_backend", "TorchPolicy", "PyTorch: the spec as an nn.Module"),
    BackendInfo("onnxruntime", "onnxruntime_backend", "OrtPolicy", "ONNX Runtime: an ONNX graph built from the "
                "spec; the fast path", fast=True),
)])
FAST_CANDIDATES = tuple(b.name for b in BACKENDS.values() if b.fast)
