"""Kernel cycles and the dataflow schedule of one inference; the `Perf` record.

* **Kernel cycles** = the calibration's parameters for the kernel's class and
  dtype applied to its work features (`Calibration.cycles`): the cycles the
  kernel adds after its inputs are complete, as they were fitted. A kernel whose
  weights are streamed takes at least ``streamed bytes / stream bytes per
  cycle``. No kernel is faster than its ideal bound.
* **Ideal bound** of a kernel = its MACs at the device's peak MAC rate for the
  dtype (data-movement kernels: 0).
* **Latency** (one inference, first kernel start to last kernel end, as the
  flow measures it): a kernel ends ``cycles`` after the last of its inputs ends;
  graph inputs are there at cycle 0. The same schedule with every kernel at its
  ideal bound gives the **ideal latency**; ``efficiency = ideal latency /
  latency``.
* **Throughput** (steady state): kernels work on successive inferences at the
  same time, so one inference leaves every ``II`` cycles, ``II`` = the slowest
  kernel's cycles; ``throughput = clock / II``.
* **Resources**: Kernels (one tile each); Buffers (input windows and weights
  kept in data memory); Stream (kernel-to-kernel connections plus PLIO and GMIO
  ports); PLIO (graph inputs and outputs, streamed from/to the programmable
  logic); GMIO (kernels whose weights are streamed from DDR).
"""

from __future__ import annotations

from ...perf import LayerPerf, Perf
from .calibration import Calibration
from .device import Device
from .mapping import Mapping

MODEL = "AIE dataflow model"


def kernel_cycles(mapping: Mapping, device: Device, cal: Calibration) -> dict[str, tuple[float, float]]:
    """{kernel name: (predicted cycles, ideal cycles)}."""
    peak = device.peak_macs_per_cycle[mapping.dtype]
    out = {}
    for k in mapping.kernels:
        ideal = k.macs / peak
        cycles = cal.cycles(k.kind, mapping.dtype, k.features, peak=peak)
        if k.streamed_weight_bytes:
            cycles = max(cycles, k.streamed_weight_bytes / device.stream_bytes_per_cycle)
        out[k.name] = (max(cycles, ideal, 1.0), ideal)
    return out


def schedule(mapping: Mapping, cycles: dict[str, float]) -> dict[str, float]:
    """End cycle of every kernel (kernels are in topological order)."""
    end: dict[str, float] = {}
    for k in mapping.kernels:
        end[k.name] = max((end[p] for p in k.preds), default=0.0) + cycles[k.name]
    return end


def perf(mapping: Mapping, device: Device, cal: Calibration, extra: dict | None = None) -> Perf:
    """The Perf record of `mapping` on `device` with calibration `cal`."""
    costs = kernel_cycles(mapping, device, cal)
    end = schedule(mapping, {k: c for k, (c, _) in costs.items()})
    ideal_end = schedule(mapping, {k: i for k, (_, i) in costs.items()})
    latency = max(end.values(), default=0.0)
    ideal = max(ideal_end.values(), default=0.0)
    slowest = max(mapping.kernels, key=lambda k: costs[k.name][0]) if mapping.kernels else None
    ii = costs[slowest.name][0] if slowest else 0.0
    layers = []
    for tile, k in enumerate(mapping.kernels):
        c, i = costs[k.name]
        layers.append(
            LayerPerf(
                name=k.name,
                op=k.kind,
                cycles=c,
                start=end[k.name] - c,
                macs=k.macs,
                extra={
                    "layer": k.layer,
                    "tile": tile,
                    "kernel": k.part,
                    "kernels_in_layer": k.parts,
                    "ideal_cycles": i,
                    "features": k.features,
                    "weights": "gmio" if k.streamed_weight_bytes else ("tile" if k.weight_bytes else "none"),
                    "rule": "calibrated",
                },
            )
        )
    gmio = sum(1 for k in mapping.kernels if k.streamed_weight_bytes)
    resources = {
        "Kernels": len(mapping.kernels),
        "Buffers": sum(k.buffers for k in mapping.kernels),
        "Stream": sum(len(k.preds) for k in mapping.kernels) + mapping.plio + gmio,
        "PLIO": mapping.plio,
        "GMIO": gmio,
    }
    total_macs = sum(k.macs for k in mapping.kernels)
    return Perf(
        simulator=simulator_name(device, cal),
        cycles=latency,
        clock_hz=device.clock_hz,
        latency_ns=latency / device.clock_hz * 1e9 if latency else None,
        throughput=device.clock_hz / ii if ii else None,
        resources=resources,
        efficiency=ideal / latency if latency and ideal else None,
        layers=layers,
        extra={
            "unit": "cycles",
            "ideal_cycles": ideal,
            "ideal_rule": "every kernel at the device's peak MAC rate, data movement free, same schedule",
            "initiation_interval_cycles": ii,
            "slowest_kernel": slowest.name if slowest else None,
            "total_macs": total_macs,
            "peak_macs_per_cycle": device.peak_macs_per_cycle[mapping.dtype],
            "device": device.name,
            "device_sha256": device.sha256,
            "calibration": cal.name,
            "calibration_file": str(cal.path) if cal.path else None,
            "tiles_available": device.tiles,
            "mapping_notes": mapping.notes,
            **(extra or {}),
        },
    )


def simulator_name(device: Device, cal: Calibration) -> str:
    """The report's section header: which model, on which device, calibrated on what."""
    return f"tinyaccel emulator + {MODEL} on {device.title}, calibrated on {cal.name}"
