"""Chrome trace (Perfetto-viewable) of a simulated schedule.

`write_trace(perf, path)` writes one complete event (`"ph": "X"`) per entry of
`perf.layers` (a layer on Gemmini, a kernel on AIE-ML), timed in simulated
cycles: `ts` = start cycle, `dur` = cycles. Trace viewers read `ts`/`dur` as
microseconds, so "1 us" on the viewer's axis is one cycle; `otherData` says so
and carries the clock to convert. Each tile (LayerPerf.extra["tile"]) gets its
own track (thread); entries without a tile share track 0. `args` carry the op,
MACs and cycles of the event. The file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..cache import atomic_write_text
from ..perf import Perf


def trace_events(perf: Perf, *, process_name: str | None = None) -> dict[str, Any]:
    """The trace as a dict (`traceEvents`, `displayTimeUnit`, `otherData`)."""
    pid = 1
    events: list[dict[str, Any]] = [
        {
            "name": "process_name",
            "ph": "M",
            "pid": pid,
            "tid": 0,
            "args": {"name": process_name or perf.simulator},
        }
    ]
    tracks: dict[int, str] = {}
    for layer in perf.layers:
        tid = int(layer.extra.get("tile", 0)) if layer.extra else 0
        if tid not in tracks:
            if layer.extra and "tile" in layer.extra:
                tracks[tid] = f"tile {tid}"
            else:
                tracks[tid] = "accelerator"
        args: dict[str, Any] = {"op": layer.op, "macs": layer.macs, "cycles": layer.cycles}
        for key in ("layer", "kernel", "kernels_in_layer", "rule", "buffer_bytes", "spatial_mapping"):
            if layer.extra and key in layer.extra:
                args[key] = layer.extra[key]
        events.append(
            {
                "name": layer.name,
                "cat": layer.op,
                "ph": "X",
                "ts": float(layer.start or 0.0),
                "dur": float(layer.cycles or 0.0),
                "pid": pid,
                "tid": tid,
                "args": args,
            }
        )
    for tid, name in sorted(tracks.items()):
        events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}})
        events.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": tid}})
    return {
        "traceEvents": events,
        "displayTimeUnit": "ns",
        "otherData": {
            "time_unit": "simulated cycles: ts and dur are cycles (shown by viewers as microseconds)",
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
