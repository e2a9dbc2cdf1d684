"""`savedmodel`: a TF2 SavedModel whose `serving_default` signature takes obs (state,
mask) and returns the convention's outputs (TF Serving, TF Java, the C API's
TF_LoadSessionFromSavedModel, and the tfjs converter)."""
from __future__ import annotations

from pathlib import Path

from ._tf_common import conform, feed_arrays, import_tf, serving_module

SIGNATURE = "serving_default"


def save(spec, folder: Path, float64: bool = True) -> None:
    """Write the serving module of `spec` as a SavedModel into folder (also used by
    the tfjs target on a temporary folder)."""
    tf = import_tf()
    module = serving_module(spec, float64=float64)
    tf.saved_model.save(module, str(folder), signatures={SIGNATURE: module.serve.get_concrete_function()},
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))


def write(model, folder: Path) -> None:
    save(model.spec, folder)


def load(folder: Path, spec):
    tf = import_tf()
    loaded = tf.saved_model.load(str(folder))
    fn = loaded.signatures[SIGNATURE]

    def run(feeds):
        args = {k: tf.constant(v) for k, v in feed_arrays(spec, feeds).items()}
        return conform(spec, {k: v.numpy() for k, v in fn(**args).items()})
    return run, f"tensorflow {tf.__version__} saved_model ({SIGNATURE} signature, tf.saved_model.load)"
