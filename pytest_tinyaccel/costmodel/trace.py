"""Chrome trace (Perfetto-viewable) of a simulated schedule, in real units.

`write_trace(perf, path)` writes one complete event (`"ph": "X"`) per entry of
`perf.layers` (a layer on Gemmini, a kernel on AIE-ML). Trace viewers read
`ts`/`dur` as microseconds, so they hold simulated time: cycles / `perf.clock_hz`,
in microseconds (a 19,574-cycle inference at 1.25 GHz lasts 15.7 us on the
viewer's axis, not 19.6 ms). Each event's `args` keep the exact `cycles` and
`start_cycle`; `otherData` says the unit and the clock. A target that gives no
clock leaves cycles as they are, and `otherData.time_unit` says so.

Each tile (LayerPerf.extra["tile"]) gets its own track (thread); entries without
a tile share track 0. The file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..cache import atomic_write_text
from ..perf import Perf

ARG_KEYS = ("layer", "kernel", "kernels_in_layer", "rule", "buffer_bytes", "spatial_mapping", "ideal_cycles")
"""LayerPerf.extra entries copied into each event's args (those a target sets)."""


def trace_events(perf: Perf, *, process_name: str | None = None) -> dict[str, Any]:
    """The trace as a dict (`traceEvents`, `displayTimeUnit`, `otherData`)."""
    us_per_cycle = 1e6 / perf.clock_hz if perf.clock_hz else 1.0
    pid = 1
    events: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": process_name or perf.simulator}}
    ]
    tracks: dict[int, str] = {}
    for layer in perf.layers:
        tid = int(layer.extra.get("tile", 0))
        tracks.setdefault(tid, f"tile {tid}" if "tile" in layer.extra else "accelerator")
        start, cycles = float(layer.start or 0.0), float(layer.cycles or 0.0)
        args: dict[str, Any] = {"op": layer.op, "macs": layer.macs, "cycles": cycles, "start_cycle": start}
        args.update((key, layer.extra[key]) for key in ARG_KEYS if key in layer.extra)
        events.append(
            {
                "name": layer.name,
                "cat": layer.op,
                "ph": "X",
                "ts": start * us_per_cycle,
                "dur": cycles * us_per_cycle,
                "pid": pid,
                "tid": tid,
                "args": args,
            }
        )
    for tid, name in sorted(tracks.items()):
        events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}})
        events.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": tid}})
    unit = (
        f"microseconds of simulated time: cycles / clock_hz ({perf.clock_hz:g} Hz); args.cycles holds the cycles"
        if perf.clock_hz
        else "simulated cycles (the target gave no clock): ts and dur are cycles, shown by viewers as microseconds"
    )
    return {
        "traceEvents": events,
        "displayTimeUnit": "ns",
        "otherData": {
            "time_unit": unit,
            "clock_hz": perf.clock_hz,
            "simulator": perf.simulator,
            "cycles": perf.cycles,
            "latency_ns": perf.latency_ns,
            "throughput_per_s": perf.throughput,
            "efficiency": perf.efficiency,
            "resources": dict(perf.resources),
        },
    }


def write_trace(perf: Perf, path: str | Path, *, process_name: str | None = None) -> Path:
    """Write the Chrome trace of `perf` to `path` atomically; returns the path."""
    path = Path(path)
    data = trace_events(perf, process_name=process_name)
    atomic_write_text(path, json.dumps(data, indent=None, separators=(",", ":")))
    return path
