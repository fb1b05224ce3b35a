"""Cycle-approximate cost models for the accelerator targets.

`aie` (the `aie/` package) is a kernel-level model of an AI Engine dataflow
graph: the model mapped to compute and data-movement kernels on a device
described as data (default: VCK190, first-generation AI Engine), per-kernel
cycles from a calibration fitted on aiesimulator logs (`python -m
pytest_tinyaccel.costmodel calibrate`). `gemmini` composes per-layer cycles
sequentially: by default predicted from the tiling Gemmini's own library picks on a
configuration file (`gemmini_config`, `gemmini_tiling`, `gemmini_timing`; constants
fitted on FireSim runs by `gemmini_fit`), or ZigZag's (zigzag-dse 3.9.1, the `zigzag`
extra; `zigzag_runner`, `zigzag_stages`) on the descriptions in `hardware/`; `trace`
writes Chrome traces. Nothing here imports pytest or a
target module, and ZigZag, PyYAML and SciPy are imported only where used, so
importing this package is cheap:

    from pytest_tinyaccel.costmodel import zigzag_unavailable, gemmini_perf, aie_perf, write_trace
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .zigzag_runner import INSTALL_HINT, zigzag_unavailable

if TYPE_CHECKING:  # pragma: no cover
    from .aie import aie_perf
    from .gemmini import gemmini_perf
    from .trace import write_trace
    from .zigzag_runner import run_zigzag

__all__ = [
    "INSTALL_HINT",
    "aie_perf",
    "gemmini_perf",
    "run_zigzag",
    "write_trace",
    "zigzag_unavailable",
]

_LAZY = {
    "aie_perf": ".aie",
    "gemmini_perf": ".gemmini",
    "write_trace": ".trace",
    "run_zigzag": ".zigzag_runner",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module, __name__), name)
