"""`tflite`: a TensorFlow Lite flatbuffer with one signature, `serving_default`,
inputs obs (state, mask), outputs the convention's names; dynamic batch (run it
through the signature runner, or resize_tensor_input before allocate_tensors).

TFLite's builtin kernels have no float64 arithmetic, so this target computes the
VecNormalize step in float32 (every other target, like SB2, in float64); NOTE.txt
says so beside the model, and the parity check holds it to the same rule."""
from __future__ import annotations

from pathlib import Path

from ._tf_common import conform, feed_arrays, import_tf, serving_module

FILE = "policy.tflite"
NOTE = "NOTE.txt"
SIGNATURE = "serving_default"


def note(spec) -> str:
    vn = ("This model applies VecNormalize inside the graph, and this target computes it in\n"
          "FLOAT32 (SB2, and the savedmodel, graphdef and onnx targets, in float64): TFLite's\n"
          "builtin kernels have no float64 arithmetic. The export passed the same parity check.\n"
          if spec.vecnormalize else
          "No VecNormalize statistics: the graph computes in float32 as SB2's did.\n")
    return ("TensorFlow Lite export (policy.tflite)\n\n"
            f"Signature {SIGNATURE!r}: inputs obs (state, mask), outputs as manifest.json lists.\n"
            "The batch dimension is dynamic: the signature runner resizes it; with the plain\n"
            "Interpreter API call resize_tensor_input(...) then allocate_tensors() first.\n"
            "Run it with LiteRT (pip install ai-edge-litert; from ai_edge_litert.interpreter\n"
            "import Interpreter), the interpreter that replaces tf.lite.Interpreter (removed in\n"
            "TensorFlow 2.20). It was verified that way, with LiteRT's default CPU kernels\n"
            "(XNNPACK), as a user runs it.\n\n" + vn)


def write(model, folder: Path) -> None:
    tf = import_tf()
    spec = model.spec
    module = serving_module(spec, float64=False)
    concrete = module.serve.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    (folder / FILE).write_bytes(converter.convert())
    (folder / NOTE).write_text(note(spec))


def load(folder: Path, spec):
    """LiteRT's Interpreter with its defaults (the XNNPACK delegate on CPU), as a user
    runs the file: XNNPACK sums in its own order, which the float32 bound of the
    verification allows for (sbexportd.parity)."""
    from ai_edge_litert import __version__ as litert_version
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(folder / FILE)).get_signature_runner(SIGNATURE)

    def run(feeds):
        # The batch is dynamic: the signature runner resizes each input to its feed
        # (resize_tensor_input) and allocates the tensors before invoking.
        return conform(spec, runner(**feed_arrays(spec, feeds)))
    note_vn = "; VecNormalize in float32" if spec.vecnormalize else ""
    return run, f"LiteRT {litert_version} (ai_edge_litert Interpreter signature runner, default kernels{note_vn})"


def manifest_notes(spec) -> list[str]:
    """NOTE.txt's first paragraph after its title, and the float32 VecNormalize caveat."""
    return [" ".join(note(spec).split("\n\n")[1].split())] + (
        ["VecNormalize is computed in float32 in this target (SB2: float64); see NOTE.txt"]
        if spec.vecnormalize else [])
