"""The export targets: one module each, with

    write(model, folder) -> None                     write the files into folder
    load(folder, spec) -> (runner, runtime)          load them back in their own runtime;
                                                     runner(feeds) -> {export name: array}
and optionally
    adjust_io(spec, inputs, outputs) -> (inputs, outputs)   the manifest's I/O as this
                                                     target names and types them
    manifest_notes(spec) -> [str]                    what a user of this target must know

Modules are imported only when their target is used (TensorFlow, torch, the
tensorflowjs converter and onnxruntime are heavy)."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from ...errors import TargetUnavailable
from ...registry import Registry


@dataclass(frozen=True)
class Target:
    name: str
    module: str
    summary: str
    # part of `--to all` (training-framework targets, which refuse what they cannot represent
    # exactly, are asked for by name)
    in_all: bool = field(default=True, kw_only=True)

    def load_module(self):
        return importlib.import_module(f"{__name__}.{self.module}")


TARGETS: Registry[Target] = Registry("target", TargetUnavailable, [(t.name, t) for t in (
    Target("pytorch", "pytorch", "standalone nn.Module source, state_dict (.pt) and TorchScript"),
    Target("onnx", "onnx", "ONNX (opset 17), checked with onnxruntime"),
    Target("savedmodel", "savedmodel", "TF2 SavedModel, serving_default (TF Serving, TF Java, C API)"),
    Target("graphdef", "graphdef", "frozen GraphDef (.pb) and MetaGraph for the TF C/C++ Session API"),
    Target("tfjs", "tfjs", "TensorFlow.js graph model (tensorflowjs converter)"),
    Target("tflite", "tflite", "TensorFlow Lite flatbuffer with a signature runner"),
    Target("portable", "portable", "versioned msgpack: the spec and little-endian weights"),
    Target("params", "params", "raw weights by SB2 name: .npz, .json and .msgpack"),
    Target("tfserving", "tfserving", "TF Serving model repository: NAME/1/ SavedModel and models.config"),
    Target("triton", "triton", "Triton model repository: NAME/config.pbtxt and NAME/1/model.onnx (ONNX Runtime)"),
    Target("sb3", "sb3", "a Stable-Baselines3 / sb3-contrib model.zip (+ vecnormalize.pkl) that loads, "
           "predicts and trains in SB3", in_all=False),
    Target("rl-zoo3", "rl_zoo3", "the sb3 model in rl-baselines3-zoo's layout (python -m rl_zoo3.enjoy runs it), "
           "for the gymnasium successor of the agent's environment", in_all=False),
)])
