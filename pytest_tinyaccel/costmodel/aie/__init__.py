"""AI Engine timing: a kernel-level model of the dataflow graph an AIE flow builds.

    ONNX model (float, QOperator or QDQ int8)
      -> graph.py       the layers that become kernels, shapes, producers
      -> mapping.py     compute and data-movement kernels per layer (pad, split,
                        parts, concat tree, quantize ...), weights in tiles or GMIO
      -> o2v.py         each kernel's onnx2versal template and arguments
      -> templates.py   the template's loop nest, ports, rows
      -> levels.py      own cycles: counted level costs x a scale fitted on isolated
                        kernel runs (kernels/onnx2versal_isolated.toml)
      -> pipeline.py, tokensim.py   the graph simulated row by row (streams, windows,
                        FIFOs, PLIO, GMIO): in-graph start/end/stall per kernel,
                        latency, steady-state throughput
      -> schedule.py    the Perf record (ideal bound, resources, error band)
    device.py       the device as data (devices/*.toml; default: VCK190)
    calibration.py  per-kernel-class parameters (the baseline; kernels with no template)
    logs.py, fit.py per-class calibration from aiesimulator per-kernel cycle logs
    loggraph.py, validate.py   logged graphs rebuilt and predicted kernel by kernel

`aie_perf(model, dtype, device="vck190", calibration=None)` is the entry point
(`calibration`: the per-class file for kernels without a template);
`python -m pytest_tinyaccel.costmodel calibrate LOGS... -o calibration.toml`
fits a calibration from a team's own logs. docs/aie-model.md describes the model
and how well it predicts. Nothing here imports pytest, a target or ZigZag.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from ...perf import Perf
from . import calibration as calibration_mod
from .device import load_device
from .graph import load as load_graph
from .mapping import map_graph
from .schedule import perf

__all__ = ["aie_perf"]


def aie_perf(
    model: str | Path | bytes | onnx.ModelProto,
    dtype: str = "int8",
    *,
    device: str = "vck190",
    calibration: str | Path | calibration_mod.Calibration | None = None,
    cache_dir: str | Path | None = None,
    weights: str | None = None,
) -> Perf:
    """Timing and resources of `model` (the model the target runs: quantized for int8)
    on `device` with `calibration` (default: the shipped VCK190 calibration).
    `weights` ('int8' | 'uint8') overrides the 8-bit weight type read from the model (a
    flow that requantizes the model with its own quantizer).
    `cache_dir` is accepted for the cost-model interface; this model needs no cache."""
    dev = load_device(device)
    cal = calibration if isinstance(calibration, calibration_mod.Calibration) else calibration_mod.load(calibration)
    graph = load_graph(model, dtype)
    if weights is not None:
        if weights not in ("int8", "uint8"):
            raise ValueError(f"weights must be 'int8' or 'uint8', not {weights!r}")
        graph.weight_type = weights
    return perf(map_graph(graph, dev), dev, cal, graph, {"model_sha256": graph.sha256, "dtype": graph.dtype})
