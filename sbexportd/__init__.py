"""sbexportd: read, inspect, run and export Stable Baselines 2 agents without TensorFlow 1.

Pipeline: read (file -> Archive) -> understand (Archive -> PolicySpec) -> realize
(NumPy / TensorFlow 2 / PyTorch) -> export -> serve.
"""
__version__ = "0.1.0"


def load(path, vecnormalize=None, **kwargs):
    """Read and understand an SB2 model file: see sbexportd.model.load."""
    from .model import load as _load
    return _load(path, vecnormalize, **kwargs)


__all__ = ["load", "__version__"]
