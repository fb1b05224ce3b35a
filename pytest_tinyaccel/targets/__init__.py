"""Targets: the API (base), where they come from (registry), one module per target."""

from .base import (
    MODES,
    RESOURCE_KEYS,
    Build,
    LayerPerf,
    Perf,
    RunResult,
    Target,
    TargetError,
)

__all__ = [
    "MODES",
    "RESOURCE_KEYS",
    "Build",
    "LayerPerf",
    "Perf",
    "RunResult",
    "Target",
    "TargetError",
]
