"""The profiling table: one row per model x target x mode x dtype, rendered for the
terminal (tabulate), and written as Markdown (the table teams keep by hand),
JSON (machine-readable, the baseline format) and CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from itertools import groupby
from pathlib import Path
from typing import Any

from tabulate import tabulate

from .cache import atomic_write_text
from .cases import case_id
from .metrics import format_quality
from .perf import Perf

JSON_FORMAT = "tinyaccel-profile/2"
SUFFIXES = (".csv", ".json", ".md", ".html")
"""Every --tinyaccel-report format: the tables, then the page (report_html, written by the session)."""
MD_HEADERS = [
    "Use Case",
    "Dtype",
    "Latency (cycles or ns)",
    "Throughput (instances/s)",
    "Resource Utilization",
    "Accuracy (first 1k)",
    "Quality Target",
    "Model",
]
_PERF_SCALARS = ("simulator", "cycles", "clock_hz", "latency_ns", "throughput", "efficiency")


@dataclass
class ProfileRow:
    """One model x target x mode x dtype: what the run measured or simulated, and the model's facts."""

    model: str
    target: str
    mode: str
    dtype: str
    use_case: str
    architecture: str
    link: str
    metric: str
    quality_target: float
    perf: Perf
    resource_columns: tuple[str, ...] = ()
    """The target's resource columns, in order (its section header)."""
    accuracy: float | None = None
    samples: int = 0
    agreement: float | None = None
    """Share of golden samples whose argmax matches ONNX Runtime's (classification)."""
    loadgen: dict[str, Any] | None = None
    """With --tinyaccel-loadgen: MLPerf LoadGen SingleStream p90 latency and Offline samples/s."""
    from_cache: bool = False
    """The simulated outputs and figures were reused from the result cache (same build, same inputs)."""

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.target, self.mode, self.model, self.dtype)

    @property
    def case_id(self) -> str:
        return case_id(self.model, self.target, self.mode, self.dtype)

    @property
    def simulator(self) -> str:
        return self.perf.simulator

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProfileRow:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["perf"] = Perf.from_dict(values["perf"])
        numbers = [values.get("accuracy"), values.get("quality_target")] + [
            getattr(values["perf"], k) for k in ("cycles", "clock_hz", "latency_ns", "throughput", "efficiency")
        ]
        if any(v is not None and (isinstance(v, bool) or not isinstance(v, int | float)) for v in numbers):
            raise TypeError(f"row {values.get('model')!r}: a figure is not a number")
        values["resource_columns"] = tuple(values.get("resource_columns", ()))
        return cls(**values)


def sort_rows(rows: list[ProfileRow]) -> list[ProfileRow]:
    dtype_order = {"fp32": 0, "int8": 1}
    return sorted(rows, key=lambda r: (r.target, r.mode, r.model, dtype_order.get(r.dtype, 9), r.dtype))


def fmt_latency(row: ProfileRow) -> str:
    text = _latency(row)
    return f"{text} (cached)" if row.from_cache and text != "-" else text


def _latency(row: ProfileRow) -> str:
    if row.loadgen:
        return f"{row.loadgen['p90_latency_ns']:.0f} ns (p90)"
    if row.perf.cycles is not None:
        return f"{row.perf.cycles:.0f} cycles"
    if row.perf.latency_ns is not None:
        return f"{row.perf.latency_ns:.0f} ns"
    return "-"


def fmt_throughput(row: ProfileRow) -> str:
    value = row.loadgen["offline_samples_per_s"] if row.loadgen else row.perf.throughput
    if value is None:
        return "-"
    text = f"{value:.0f}" if value >= 100 else f"{value:.3g}"
    return f"{text} (Offline)" if row.loadgen else text


def fmt_resources(row: ProfileRow) -> str:
    """Values in the target's column order ('-' for one it did not report); other keys by name."""
    res = row.perf.resources
    if not res:
        return "-"
    cells = "/".join(str(res.get(k, "-")) for k in row.resource_columns)
    rest = ", ".join(f"{k} {v}" for k, v in res.items() if k not in row.resource_columns)
    return "; ".join(p for p in (cells, rest) if p)


def resource_header(rows: list[ProfileRow]) -> str:
    columns = next((r.resource_columns for r in rows if r.resource_columns), ())
    return f"Resource Utilization ({'/'.join(columns)})" if columns else "Resource Utilization"


def fmt_accuracy(row: ProfileRow) -> str:
    if row.accuracy is None:
        return "-"
    text = format_quality(row.metric, row.accuracy)
    return text if row.samples == 1000 else f"{text[:-1]}, n={row.samples})"


def fmt_target(row: ProfileRow) -> str:
    return format_quality(row.metric, row.quality_target)


def _sections(rows: list[ProfileRow]) -> Iterator[tuple[str, list[ProfileRow]]]:
    for (target, mode), grouped in groupby(sort_rows(rows), key=lambda r: (r.target, r.mode)):
        group = list(grouped)
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
                now, then = r.perf, base.perf
                latency += (
                    _delta(now.cycles, then.cycles)
                    if now.cycles is not None
                    else _delta(now.latency_ns, then.latency_ns)
                )
                throughput += _delta(now.throughput, then.throughput)
                if r.accuracy is not None and base.accuracy is not None:
                    accuracy += f" ({100 * (r.accuracy - base.accuracy):+.2f} pts)"
            elif baseline is not None:
                latency += " (new)"
            table.append(
                [
                    r.model,
                    r.dtype,
                    latency,
                    throughput,
                    fmt_resources(r),
                    "-" if r.perf.efficiency is None else f"{100 * r.perf.efficiency:.1f}%",
                    accuracy,
                    fmt_target(r),
                    "-" if r.agreement is None else f"{100 * r.agreement:.0f}%",
                ]
            )
        parts.append(title)
        resources = resource_header(group).replace("Resource Utilization", "Resources")
        parts.append(
            tabulate(
                table,
                headers=[
                    "Model",
                    "Dtype",
                    "Latency",
                    "Throughput (/s)",
                    resources,
                    "Efficiency",
                    "Accuracy",
                    "Quality Target",
                    "Argmax = golden",
                ],
            )
        )
    return "\n\n".join(parts)


def markdown(rows: list[ProfileRow]) -> str:
    """One table per target and mode; one row per model with dtypes stacked by <br/>."""
    out = ["# Profiling", ""]
    for title, group in _sections(rows):
        out += [f"## {title}", ""]
        table = []
        for _, grouped in groupby(group, key=lambda r: r.model):
            model_rows = list(grouped)
            first = model_rows[0]

            def stack(fmt: Callable[[ProfileRow], str], model_rows: list[ProfileRow] = model_rows) -> str:
                return " <br/> ".join(fmt(r) for r in model_rows)

            name = (
                f"[{first.architecture or first.model}]({first.link})"
                if first.link
                else (first.architecture or first.model)
            )
            table.append(
                [
                    first.use_case,
                    stack(lambda r: r.dtype),
                    stack(fmt_latency),
                    stack(fmt_throughput),
                    stack(fmt_resources),
                    stack(fmt_accuracy),
                    fmt_target(first),
                    name,
                ]
            )
        headers = [resource_header(group) if h == "Resource Utilization" else h for h in MD_HEADERS]
        out.append(tabulate(table, headers=headers, tablefmt="github"))
        out.append("")
    return "\n".join(out)


def to_json(rows: list[ProfileRow], environment: dict[str, Any]) -> str:
    payload = {"format": JSON_FORMAT, "environment": environment, "rows": [r.to_dict() for r in sort_rows(rows)]}
    return json.dumps(payload, indent=1, sort_keys=True) + "\n"


def to_csv(rows: list[ProfileRow]) -> str:
    """One line per row: the row's scalars, the perf scalars, every resource, LoadGen figures."""
    buffer = io.StringIO()
    scalars = [f.name for f in fields(ProfileRow) if f.name not in ("perf", "resource_columns", "loadgen")]
    resources = list(dict.fromkeys(k for r in sort_rows(rows) for k in (*r.resource_columns, *r.perf.resources)))
    loadgen = ["p90_latency_ns", "offline_samples_per_s"]
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        scalars + list(_PERF_SCALARS) + [f"resources.{k}" for k in resources] + [f"loadgen.{k}" for k in loadgen]
    )
    for r in sort_rows(rows):
        writer.writerow(
            [getattr(r, c) for c in scalars]
            + [getattr(r.perf, c) for c in _PERF_SCALARS]
            + [r.perf.resources.get(k, "") for k in resources]
            + [(r.loadgen or {}).get(k, "") for k in loadgen]
        )
    return buffer.getvalue()


def write_report(path: Path, rows: list[ProfileRow], environment: dict[str, Any]) -> None:
    """Write by suffix: .md, .json or .csv (atomically)."""
    renderers = {
        ".md": lambda: markdown(rows),
        ".json": lambda: to_json(rows, environment),
        ".csv": lambda: to_csv(rows),
    }
    if path.suffix not in renderers:
        raise ValueError(f"{path}: report suffix must be one of {sorted(renderers)}")
    atomic_write_text(path, renderers[path.suffix]())


def load_json(path: Path) -> tuple[dict[str, Any], list[ProfileRow]]:
    """A saved profile (report or baseline); ValueError says what is wrong with it."""
    data = json.loads(path.read_text(encoding="utf-8"))
    found = data.get("format") if isinstance(data, dict) else None
    if found != JSON_FORMAT:
        hint = "; save it again with --tinyaccel-save-baseline" if str(found).startswith("tinyaccel-profile/") else ""
        raise ValueError(f"{path}: not a {JSON_FORMAT} profile (format {found!r}){hint}")
    environment, rows = data.get("environment"), data.get("rows")
    if not isinstance(environment, dict) or not isinstance(rows, list):
        raise ValueError(f"{path}: expected 'environment' (a table) and 'rows' (a list)")
    try:
        return environment, [ProfileRow.from_dict(r) for r in rows]
    except (TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"{path}: a row is not a profile row ({type(exc).__name__}: {exc})") from None
