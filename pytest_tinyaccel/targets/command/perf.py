"""The command target's perf figures: each configured parser (`[[...perf]]`) reads
one file the flow wrote and fills fields of the run's `Perf` record, which become
the profiling table's latency, throughput, cycles and resources.

The parsing itself is in `pytest_tinyaccel.readers.simlogs` (pure functions over
text); this module is the glue: which reader, which field, and what happens when
a figure is missing (a failure when `required`, else a note in `extra`).
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from ...perf import LayerPerf, Perf
from ...readers import simlogs
from ...runtime import TensorSpec
from .schema import SCALAR_FIELDS, IOConfig, PerfSpec


def apply_perf(perf: Perf, spec: PerfSpec, path: Path, default_vpi: int | None = None) -> None:
    """Fill `perf` from one configured parser over `path`. `default_vpi`: values per
    instance of the `aiesim_stream` parser when the spec gives none."""
    if not path.is_file():
        if spec.required:
            raise FileNotFoundError(f"{path} was not written (needed by the {spec.parser} parser)")
        perf.extra.setdefault("perf_missing", []).append(f"{spec.parser}: {path} not written")
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    found = False
    if spec.parser == "aiesim_stream":
        vpi = spec.values_per_instance or default_vpi
        timing = simlogs.stream_timing(simlogs.read_stream(text), vpi, spec.start_ns)
        perf.latency_ns = timing.latency_ns
        if timing.throughput is not None:
            perf.throughput = timing.throughput
        perf.extra.update(aiesim_instances=timing.instances, aiesim_period_ns=timing.period_ns)
        found = True
    elif spec.parser == "aie_kernel_cycles":
        prints = simlogs.aie_kernel_cycles(text)
        if prints:
            total, kernels, iterations = simlogs.summarize_kernel_cycles(prints)
            perf.cycles = total
            perf.layers = [
                LayerPerf(
                    name=k.name,
                    op=k.name.split("<")[0],
                    cycles=float(k.total),
                    start=None if k.start is None else float(k.start),
                )
                for k in kernels
            ]
            perf.extra["aie_kernel_iterations"] = iterations
            found = True
    elif spec.parser == "ort_profile":
        profile = simlogs.ort_profile(text)
        perf.latency_ns = profile.latency_us * 1e3
        perf.layers = [
            LayerPerf(name=n.name, op=n.op, extra={"us": round(n.mean_us, 3), "calls": n.calls, "provider": n.provider})
            for n in profile.nodes
        ]
        perf.extra.update(
            ort_runs=len(profile.runs_us), ort_by_op_us={k: round(v, 3) for k, v in profile.by_op.items()}
        )
        found = True
    else:
        value = (
            simlogs.cycles_line(text, spec.reduce)
            if spec.parser == "cycles"
            else simlogs.regex_value(text, spec.regex or "", spec.reduce)
        )
        if value is not None:
            _set_field(perf, spec.field or "cycles", value * spec.scale)
            found = True
    if not found:
        what = f"regex {spec.regex!r}" if spec.parser == "regex" else f"the {spec.parser} parser"
        if spec.required:
            raise ValueError(f"{what} found nothing in {path}")
        perf.extra.setdefault("perf_missing", []).append(f"{spec.parser}: nothing found in {path}")


def values_per_instance(spec: TensorSpec, io: IOConfig) -> int | None:
    """Values of one output sample in a text output file, padding included (None: symbolic shape)."""
    shape = [d for d in spec.shape[1:] if d is not None]
    if not shape or len(shape) < len(spec.shape) - 1:
        return None
    return int(np.prod(shape[:-1], dtype=np.int64)) * simlogs.padded_size(shape[-1], io.pad)


def combine(perfs: list[Perf]) -> Perf:
    """One record for several invocations (`batch`): the median of each scalar figure."""
    if len(perfs) == 1:
        return perfs[0]
    first = perfs[0]
    for name in SCALAR_FIELDS:
        values = [getattr(p, name) for p in perfs if getattr(p, name) is not None]
        setattr(first, name, float(statistics.median(values)) if values else None)
    first.extra["invocations"] = len(perfs)
    first.extra["wall_s"] = round(sum(p.extra.get("wall_s", 0.0) for p in perfs), 3)
    return first


def _set_field(perf: Perf, name: str, value: float) -> None:
    """`name` is a scalar field, resources.<Name> (an integer count) or extra.<name>."""
    if name in SCALAR_FIELDS:
        setattr(perf, name, float(value))
    elif name.startswith("resources."):
        perf.resources[name.split(".", 1)[1]] = int(round(value))
    else:
        perf.extra[name.split(".", 1)[1]] = value
