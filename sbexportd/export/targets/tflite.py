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
            "Verified with TFLite's builtin kernels (experimental_op_resolver_type=\n"
            "BUILTIN_WITHOUT_DEFAULT_DELEGATES). The XNNPACK delegate, on by default on CPU, sums in\n"
            "another order: float32 round-off of the hidden layers' magnitude (measured: 1.4e-5 on a\n"
            "q_value of a zoo DQN whose hidden activations reach ~60).\n\n" + vn)


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
    tf = import_tf()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice (LiteRT)
        # TFLite's own builtin kernels, without the default XNNPACK delegate: XNNPACK
        # sums in another order, which on a zoo DQN (q_values near 0.46 from layers of
        # magnitude ~60) moved a q_value by 1.4e-5, past the 1e-5 rule; NOTE.txt says so.
        interpreter = tf.lite.Interpreter(
            model_path=str(folder / FILE),
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    runner = interpreter.get_signature_runner(SIGNATURE)

    def run(feeds):
        # The batch is dynamic: the signature runner resizes each input to its feed
        # (resize_tensor_input) and allocates the tensors before invoking.
        return conform(spec, runner(**feed_arrays(spec, feeds)))
    note_vn = "; VecNormalize in float32" if spec.vecnormalize else ""
    return run, (f"tensorflow lite {tf.__version__} (tf.lite.Interpreter signature runner, builtin kernels "
                 f"without the XNNPACK delegate{note_vn})")


def manifest_notes(spec) -> list[str]:
    """NOTE.txt's first paragraph after its title, and the float32 VecNormalize caveat."""
    return [" ".join(note(spec).split("\n\n")[1].split())] + (
        ["VecNormalize is computed in float32 in this target (SB2: float64); see NOTE.txt"]
        if spec.vecnormalize else [])
