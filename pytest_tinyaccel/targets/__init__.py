"""Targets: the API (base), where they come from (registry), one module per target."""

from ..perf import LayerPerf, Perf
from .base import MODES, Build, RunResult, Target, TargetError

__all__ = [
    "MODES",
    "Build",
    "LayerPerf",
    "Perf",
    "RunResult",
    "Target",
    "TargetError",
]
