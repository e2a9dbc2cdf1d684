"""Exporting: PolicySpec -> files for every runtime users deploy to."""
from .core import TargetResult, export, resolve_targets
from .targets import TARGETS

__all__ = ["export", "resolve_targets", "TARGETS", "TargetResult"]
