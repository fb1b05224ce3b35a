"""What a target says about speed and size: the `Perf` record of one build, and
the per-layer (per-kernel) breakdown when the target knows it. Every figure is
measured or simulated; `simulator` says by what."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LayerPerf:
    """Cost of one layer or kernel in the simulated (or measured) schedule."""

    name: str
    op: str
    cycles: float | None = None
    start: float | None = None
    macs: int | None = None
    kernel_count: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Perf:
    """Timing and resources of one build; every figure measured or simulated."""

    simulator: str
    cycles: float | None = None
    clock_hz: float | None = None
    latency_ns: float | None = None
    throughput: float | None = None
    """Instances per second."""
    resources: dict[str, int] = field(default_factory=dict)
    efficiency: float | None = None
    """Ideal cycles at peak MACs / simulated cycles."""
    layers: list[LayerPerf] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Perf:
        data = dict(data)
        data["layers"] = [LayerPerf(**layer) for layer in data.get("layers", [])]
        return cls(**data)
