"""The profiling table: one row per model x target x mode x dtype, rendered for the
terminal (tabulate), and written as Markdown (the table teams keep by hand),
JSON (machine-readable, the baseline format) and CSV."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field, fields
from itertools import groupby
from pathlib import Path
from typing import Any

from tabulate import tabulate

from .cache import atomic_write_text
from .metrics import format_quality
from .targets.base import RESOURCE_KEYS

JSON_FORMAT = "tinyaccel-profile/1"
SUFFIXES = (".csv", ".json", ".md")
MD_HEADERS = [
    "Use Case", "Dtype", "Latency (cycles or ns)", "Throughput (instances/s)",
    "Resource Utilization (Kernels/Buffers/Stream/PLIO/GMIO)", "Accuracy (first 1k)",
    "Quality Target", "Model",
]


@dataclass
class ProfileRow:
    model: str
    target: str
    mode: str
    dtype: str
    use_case: str
    architecture: str
    link: str
    simulator: str
    metric: str
    quality_target: float
    accuracy: float | None = None
    samples: int = 0
    cycles: float | None = None
    clock_hz: float | None = None
    latency_ns: float | None = None
    throughput: float | None = None
    efficiency: float | None = None
    resources: dict[str, int] = field(default_factory=dict)
    agreement: float | None = None
    """Share of golden samples whose argmax matches ONNX Runtime's (classification)."""
    loadgen: dict[str, Any] | None = None
    """With --tinyaccel-loadgen: MLPerf LoadGen SingleStream p90 latency and Offline samples/s."""

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.target, self.mode, self.model, self.dtype)

    @property
    def case_id(self) -> str:
        return f"{self.model}-{self.target}-{self.mode}-{self.dtype}"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ProfileRow":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def sort_rows(rows: list[ProfileRow]) -> list[ProfileRow]:
    dtype_order = {"fp32": 0, "int8": 1}
    return sorted(rows, key=lambda r: (r.target, r.mode, r.model, dtype_order.get(r.dtype, 9), r.dtype))


def fmt_latency(row: ProfileRow) -> str:
    if row.loadgen:
        return f"{row.loadgen['p90_latency_ns']:.0f} ns (p90)"
    if row.cycles is not None:
        return f"{row.cycles:.0f} cycles"
    if row.latency_ns is not None:
        return f"{row.latency_ns:.0f} ns"
    return "-"


def fmt_throughput(row: ProfileRow) -> str:
    value = row.loadgen["offline_samples_per_s"] if row.loadgen else row.throughput
    if value is None:
        return "-"
    text = f"{value:.0f}" if value >= 100 else f"{value:.3g}"
    return f"{text} (Offline)" if row.loadgen else text


def fmt_resources(row: ProfileRow) -> str:
    res = row.resources
    if not res:
        return "-"
    if all(k in res for k in RESOURCE_KEYS):
        return "/".join(str(res[k]) for k in RESOURCE_KEYS)
    return ", ".join(f"{k} {v}" for k, v in res.items())


def fmt_accuracy(row: ProfileRow) -> str:
    if row.accuracy is None:
        return "-"
    text = format_quality(row.metric, row.accuracy)
    return text if row.samples == 1000 else f"{text[:-1]}, n={row.samples})"


def fmt_target(row: ProfileRow) -> str:
    return format_quality(row.metric, row.quality_target)


def _sections(rows: list[ProfileRow]):
    for (target, mode), group in groupby(sort_rows(rows), key=lambda r: (r.target, r.mode)):
        group = list(group)
        # distinct parts, first-seen order: "emulator; int8 note" and "emulator" read "emulator; int8 note"
        parts = dict.fromkeys(p for r in sorted(group, key=lambda r: r.simulator) for p in r.simulator.split("; "))
        yield f"{target} {mode}: {'; '.join(parts)}", group


def _delta(now: float | None, base: float | None) -> str:
    if now is None or base is None or not base:
        return ""
    return f" ({100 * (now - base) / base:+.1f}%)"


def terminal(rows: list[ProfileRow], baseline: dict[str, ProfileRow] | None = None) -> str:
    """Tables per target and mode, one line per model and dtype; with a baseline,
    the change against it beside each figure ('new' for rows it lacks)."""
    parts = []
    for title, group in _sections(rows):
        table = []
        for r in group:
            base = baseline.get(r.case_id) if baseline is not None else None
            latency, throughput, accuracy = fmt_latency(r), fmt_throughput(r), fmt_accuracy(r)
            if base is not None:
                latency += _delta(r.cycles, base.cycles) if r.cycles is not None else _delta(r.latency_ns, base.latency_ns)
                throughput += _delta(r.throughput, base.throughput)
                if r.accuracy is not None and base.accuracy is not None:
                    accuracy += f" ({100 * (r.accuracy - base.accuracy):+.2f} pts)"
            elif baseline is not None:
                latency += " (new)"
            table.append([r.model, r.dtype, latency, throughput, fmt_resources(r),
                          "-" if r.efficiency is None else f"{100 * r.efficiency:.1f}%", accuracy, fmt_target(r),
                          "-" if r.agreement is None else f"{100 * r.agreement:.0f}%"])
        parts.append(title)
        parts.append(tabulate(table, headers=["Model", "Dtype", "Latency", "Throughput (/s)", "Resources",
                                              "Efficiency", "Accuracy", "Quality Target", "Argmax = golden"]))
    return "\n\n".join(parts)


def markdown(rows: list[ProfileRow]) -> str:
    """One table per target and mode; one row per model with dtypes stacked by <br/>."""
    out = ["# Profiling", ""]
    for title, group in _sections(rows):
        out += [f"## {title}", ""]
        table = []
        for _, model_rows in groupby(group, key=lambda r: r.model):
            model_rows = list(model_rows)
            first = model_rows[0]

            def stack(fmt) -> str:
                return " <br/> ".join(fmt(r) for r in model_rows)

            name = f"[{first.architecture or first.model}]({first.link})" if first.link else (first.architecture or first.model)
            table.append([first.use_case, stack(lambda r: r.dtype), stack(fmt_latency), stack(fmt_throughput),
                          stack(fmt_resources), stack(fmt_accuracy), fmt_target(first), name])
        out.append(tabulate(table, headers=MD_HEADERS, tablefmt="github"))
        out.append("")
    return "\n".join(out)


def to_json(rows: list[ProfileRow], environment: dict[str, Any]) -> str:
    payload = {"format": JSON_FORMAT, "environment": environment,
               "rows": [asdict(r) for r in sort_rows(rows)]}
    return json.dumps(payload, indent=1, sort_keys=True) + "\n"


def to_csv(rows: list[ProfileRow]) -> str:
    buffer = io.StringIO()
    columns = ([f.name for f in fields(ProfileRow) if f.name not in ("resources", "loadgen")]
               + [f"resources.{k}" for k in RESOURCE_KEYS] + ["loadgen.p90_latency_ns", "loadgen.offline_samples_per_s"])
    extra = sorted({k for r in rows for k in r.resources} - set(RESOURCE_KEYS))
    columns += [f"resources.{k}" for k in extra]
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for r in sort_rows(rows):
        data = asdict(r)
        nested = {"resources": data.pop("resources"), "loadgen": data.pop("loadgen") or {}}
        writer.writerow([data[c] if c in data else nested[c.split(".", 1)[0]].get(c.split(".", 1)[1], "")
                         for c in columns])
    return buffer.getvalue()


def write_report(path: Path, rows: list[ProfileRow], environment: dict[str, Any]) -> None:
    """Write by suffix: .md, .json or .csv (atomically)."""
    renderers = {".md": lambda: markdown(rows), ".json": lambda: to_json(rows, environment), ".csv": lambda: to_csv(rows)}
    if path.suffix not in renderers:
        raise ValueError(f"{path}: report suffix must be one of {sorted(renderers)}")
    atomic_write_text(path, renderers[path.suffix]())


def load_json(path: Path) -> tuple[dict[str, Any], list[ProfileRow]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != JSON_FORMAT:
        raise ValueError(f"{path}: not a tinyaccel profile ({JSON_FORMAT})")
    return data["environment"], [ProfileRow.from_dict(r) for r in data["rows"]]
