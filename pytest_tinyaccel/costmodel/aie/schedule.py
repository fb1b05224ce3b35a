"""The `Perf` record of a mapped graph: the token-level simulation's figures (pipeline.py).

* **Per kernel** (`layers`): in-graph start and duration (what the kernel's own
  cycle print would show: its timer runs while it waits on its streams), and in
  `extra` its own cycles (loop nest), stall cycles, exposed cycles (end minus the
  latest end of its producers), its template, and its class's held-out error.
* **Latency** (one inference, first kernel start to last kernel end, as the flow
  measures it): the simulated first inference.
* **Throughput** (steady state): the interval between the last two of the
  simulated back-to-back inferences; ``throughput = clock / interval``.
* **Ideal bound**: a kernel ends its MACs at the device's peak rate after the
  last of its inputs ends (data movement free); ``efficiency = ideal / latency``.
* **Resources**: Kernels (one tile each); Buffers (input windows and weights
  kept in data memory); Stream (kernel-to-kernel connections plus PLIO and GMIO
  ports); PLIO (graph inputs and outputs, streamed from/to the programmable
  logic); GMIO (kernels whose weights are streamed from DDR).
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

from ...perf import LayerPerf, Perf
from . import pipeline
from .calibration import Calibration
from .device import Device
from .graph import ModelGraph
from .mapping import Mapping

MODEL = "AIE dataflow model"


def schedule(mapping: Mapping, cycles: dict[str, float]) -> dict[str, float]:
    """End cycle of every kernel when each ends `cycles` after its last input (topological order)."""
    end: dict[str, float] = {}
    for k in mapping.kernels:
        end[k.name] = max((end[p] for p in k.preds), default=0.0) + cycles[k.name]
    return end


def perf(mapping: Mapping, device: Device, cal: Calibration, graph: ModelGraph, extra: dict | None = None) -> Perf:
    """The Perf record of `mapping` (of `graph`) on `device`; `cal` costs the kernels
    that have no onnx2versal template."""
    timing, tl = pipeline.run(mapping, graph, device, cal)
    ideal = {k.name: k.macs / device.peak_macs_per_cycle[mapping.dtype] for k in mapping.kernels}
    ideal_end = schedule(mapping, {k: max(v, 0.0) for k, v in ideal.items()})
    t0 = min((t.start for t in timing.values()), default=0.0)
    latency = max((t.end for t in timing.values()), default=0.0) - t0
    ideal_latency = max(ideal_end.values(), default=0.0)
    errors = heldout_errors()
    layers = []
    for tile, k in enumerate(mapping.kernels):
        t = timing[k.name]
        ready = max((timing[p].end for p in k.preds), default=t0)
        key = f"{k.kind}.{mapping.dtype}"
        layers.append(
            LayerPerf(
                name=k.name,
                op=k.kind,
                cycles=t.end - t.start,
                start=t.start - t0,
                macs=k.macs,
                extra={
                    "layer": k.layer,
                    "tile": tile,
                    "kernel": k.part,
                    "kernels_in_layer": k.parts,
                    "template": t.template,
                    "own_cycles": t.own,
                    "stall_cycles": t.stall,
                    "exposed_cycles": max(t.end - ready, 0.0),
                    "end": t.end - t0,
                    "ideal_cycles": ideal[k.name],
                    "features": k.features,
                    "weights": "gmio" if k.streamed_weight_bytes else ("tile" if k.weight_bytes else "none"),
                    "rule": t.rule,
                    "heldout_error": errors.get(key),
                },
            )
        )
    busiest = max(timing, key=lambda n: timing[n].own) if timing else None
    overall = errors.get("all")
    return Perf(
        simulator=simulator_name(device, overall),
        cycles=latency,
        clock_hz=device.clock_hz,
        latency_ns=latency / device.clock_hz * 1e9 if latency else None,
        throughput=device.clock_hz / tl.interval if tl.interval else None,
        resources=resources(mapping),
        efficiency=ideal_latency / latency if latency and ideal_latency else None,
        layers=layers,
        extra={
            "unit": "cycles",
            "figure": "predicted",
            "model": MODEL,
            "ideal_cycles": ideal_latency,
            "ideal_rule": "every compute kernel at the device's peak MAC rate, data movement free, same graph",
            "initiation_interval_cycles": tl.interval,
            "throughput_rule": f"steady state of {pipeline.INFERENCES} simulated back-to-back inferences",
            "busiest_kernel": busiest,
            "total_macs": sum(k.macs for k in mapping.kernels),
            "peak_macs_per_cycle": device.peak_macs_per_cycle[mapping.dtype],
            "device": device.name,
            "device_sha256": device.sha256,
            "kernel_constants": "onnx2versal_isolated (kernel headers at 392b325)",
            "fallback_calibration": cal.name,
            "calibration_file": str(cal.path) if cal.path else None,
            "heldout_error": overall,
            "tiles_available": device.tiles,
            "mapping_notes": mapping.notes,
            **(extra or {}),
        },
    )


def resources(mapping: Mapping) -> dict[str, int]:
    """Kernels/Buffers/Stream/PLIO/GMIO of the mapping."""
    gmio = sum(1 for k in mapping.kernels if k.streamed_weight_bytes)
    return {
        "Kernels": len(mapping.kernels),
        "Buffers": sum(k.buffers for k in mapping.kernels),
        "Stream": sum(len(k.preds) for k in mapping.kernels) + mapping.plio + gmio,
        "PLIO": mapping.plio,
        "GMIO": gmio,
    }


def simulator_name(device: Device, error: dict | None = None) -> str:
    """The report's section header: what the figures are, by which model, on which device,
    with which constants, and the model's held-out median error per kernel."""
    band = f", held-out median error per kernel x{error['median']:.2f}" if error else ""
    return (
        f"tinyaccel emulator + {MODEL} on {device.title}: predicted cycles, "
        f"kernel loop nests with constants fitted on onnx2versal's isolated kernel runs{band}"
    )


ERRORS = Path(__file__).resolve().parent / "kernels" / "heldout_errors.toml"


@functools.lru_cache(maxsize=1)
def heldout_errors() -> dict[str, dict]:
    """Per kernel class (and 'all'): the model's held-out |error| on the logged kernels, as
    benchmarks/aie_validation.py --write-errors measured it ({} before it is written)."""
    try:
        data = tomllib.loads(ERRORS.read_text())
    except OSError:
        return {}
    return {k: dict(v) for k, v in data.get("class", {}).items()}
