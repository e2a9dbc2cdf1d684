"""Realizing: PolicySpec -> a runtime that computes it, one backend per runtime
(backends.py lists them; numpy_backend.py is the reference every other is held to)."""
from .backends import BACKENDS, REFERENCE, Backend, BackendInfo

__all__ = ["BACKENDS", "REFERENCE", "Backend", "BackendInfo"]
