"""The run record as tables: the profiling table (one row per model x target x mode x
dtype) with each case's status, rendered for the terminal (tabulate) and written as
Markdown (the table teams keep by hand), JSON (machine-readable, the baseline format)
and CSV. Every writer reads the `RunRecord` alone, so every report counts the tests
as pytest does and marks the figures of a case whose checks did not all pass."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import fields
from itertools import groupby
from pathlib import Path
from typing import Any

from tabulate import tabulate

from .cache import atomic_write_text
from .errorstats import format_db
from .metrics import format_quality
from .record import OUTCOMES, STATUSES, CaseResult, ProfileRow, RunRecord

JSON_FORMAT = "tinyaccel-profile/3"
READABLE_FORMATS = ("tinyaccel-profile/2", JSON_FORMAT)
"""Saved profiles this version reads as baselines (format 2 has no statuses)."""
MD_HEADERS = [
    "Use Case",
    "Dtype",
    "Status",
    "Latency (cycles or ns)",
    "Throughput (instances/s)",
    "Resource Utilization",
    "Accuracy (first 1k)",
    "Quality Target",
    "Model",
]
MARK = " †"
"""After a figure of a case whose checks did not all pass."""
MARK_NOTE = "† a check of this case did not pass (see its status): the figure is not a clean result."
_PERF_SCALARS = ("simulator", "cycles", "clock_hz", "latency_ns", "throughput", "efficiency")
_STATS = ("max_abs", "rmse", "sqnr_db", "cosine", "within_1lsb")


def sort_rows(rows: list[ProfileRow]) -> list[ProfileRow]:
    dtype_order = {"fp32": 0, "int8": 1}
    return sorted(rows, key=lambda r: (r.target, r.mode, r.model, dtype_order.get(r.dtype, 9), r.dtype))


def sort_cases(cases: list[CaseResult]) -> list[CaseResult]:
    """Worst status first (errors, failures, ...), then by id."""
    return sorted(cases, key=lambda c: (STATUSES.index(c.status), c.subject))


def summary(counts: dict[str, int]) -> str:
    """'12 passed, 2 failed, 1 error': pytest's words for the plugin's tests."""
    words = [f"{n} {'error' if k == 'errors' and n == 1 else k}" for k, n in counts.items() if n]
    return ", ".join(words) or "no tests ran"


def fmt_status(case: CaseResult | None) -> str:
    """'passed', 'failed (golden, top5)', 'error (setup of budget)', 'skipped'."""
    if case is None:
        return "-"
    wanted = {"error": "errors", "failed": "failed"}.get(case.status)
    if wanted is None:
        return case.status
    checks = dict.fromkeys(
        t.check + (f" {t.when}" if wanted == "errors" else "") for t in case.tests if t.outcome == wanted
    )
    return f"{case.status} ({', '.join(checks)})" if checks else case.status


def _marked(text: str, case: CaseResult | None) -> str:
    return text + MARK if text != "-" and case is not None and not case.clean else text


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
    return "-" if row.quality_target is None else format_quality(row.metric, row.quality_target)


def fmt_sqnr(row: ProfileRow) -> str:
    """The lowest SQNR over the outputs compared with the golden ('-' without a golden)."""
    values = [s.sqnr_db for s in row.error_stats.values()]
    return format_db(min(values)).replace(" (exact)", "") if values else "-"


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


def _by_case(record: RunRecord) -> dict[str, CaseResult]:
    return {c.subject: c for c in record.cases()}


def terminal(record: RunRecord, baseline: dict[str, ProfileRow] | None = None) -> str:
    """Tables per target and mode, one line per model and dtype with its status; with a baseline,
    the change against it beside each figure ('new' for rows it lacks); then the cases that
    produced no figures, and pytest's count of the plugin's tests."""
    cases = _by_case(record)
    parts = []
    for title, group in _sections(list(record.rows.values())):
        table = []
        for r in group:
            case = cases.get(r.case_id)
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
                    r.dtype_label,
                    fmt_status(case),
                    _marked(latency, case),
                    _marked(throughput, case),
                    fmt_resources(r),
                    "-" if r.perf.efficiency is None else f"{100 * r.perf.efficiency:.1f}%",
                    _marked(accuracy, case),
                    fmt_sqnr(r),
                    fmt_target(r),
                    "-" if r.agreement is None else f"{100 * r.agreement:.0f}%",
                    *[(case.extra if case else {}).get(k, "") for k in extra_columns(record)],
                ]
            )
        parts.append(title)
        resources = resource_header(group).replace("Resource Utilization", "Resources")
        headers = ["Model", "Dtype", "Status", "Latency", "Throughput (/s)", resources, "Efficiency"]
        headers += ["Accuracy", "SQNR", "Quality Target", "Argmax = golden", *extra_columns(record)]
        parts.append(tabulate(table, headers=headers))
    unrun = [
        c
        for c in sort_cases(list(cases.values()))
        if c.kind == "case" and c.row is None and c.status not in ("passed", "skipped")
    ]
    if unrun:
        parts.append(
            "no figures (the case did not run to the end):\n"
            + "\n".join(f"  {c.subject}: {fmt_status(c)}: {c.detail}" for c in unrun)
        )
    if record.tests:
        parts.append(f"tinyaccel tests: {summary(record.counts())}")
    return "\n\n".join(parts)


def extra_columns(record: RunRecord) -> list[str]:
    """The columns the pytest_tinyaccel_report_row hook added, in first-seen order."""
    return list(dict.fromkeys(k for columns in record.extra.values() for k in columns))


def markdown(record: RunRecord) -> str:
    """pytest's count; every case with its status, worst first; then one profiling table per target
    and mode, one row per model with dtypes stacked by <br/>, figures of unclean cases marked."""
    cases = _by_case(record)
    extra = extra_columns(record)
    out = ["# Profiling", "", f"**Tests:** {summary(record.counts())}", "", "## Cases", ""]
    table = [
        [c.subject, fmt_status(c), c.detail.replace("|", "\\|") or "-", *[c.extra.get(k, "") for k in extra]]
        for c in sort_cases(list(cases.values()))
    ]
    out += [tabulate(table, headers=["Case", "Status", "Detail", *extra], tablefmt="github"), ""]
    for title, group in _sections(list(record.rows.values())):
        out += [f"## {title}", ""]
        table = [_md_model_row(list(rows), cases, extra) for _, rows in groupby(group, key=lambda r: r.model)]
        headers = [resource_header(group) if h == "Resource Utilization" else h for h in MD_HEADERS] + extra
        out.append(tabulate(table, headers=headers, tablefmt="github"))
        if any(not cases[r.case_id].clean for r in group if r.case_id in cases):
            out += ["", MARK_NOTE]
        out.append("")
    stats = error_table(record)
    if stats:
        out += ["## Error statistics against the golden", "", tabulate(stats, headers=STATS_HEADERS, tablefmt="github")]
        out.append("")
    return "\n".join(out)


STATS_HEADERS = ["Case", "Output", "Max abs error", "RMSE", "SQNR", "Cosine", "Within 1 LSB"]


def error_table(record: RunRecord) -> list[list[str]]:
    """Per case and output compared with the golden: the statistics teams compare across tools."""
    table = []
    for r in sort_rows(list(record.rows.values())):
        for name, s in r.error_stats.items():
            lsb = "-" if s.within_1lsb is None else f"{100 * s.within_1lsb:.2f}%"
            table.append(
                [r.case_id, name, f"{s.max_abs:.4g}", f"{s.rmse:.4g}", format_db(s.sqnr_db), f"{s.cosine:.6f}", lsb]
            )
    return table


def _md_model_row(rows: list[ProfileRow], cases: dict[str, CaseResult], extra: list[str]) -> list[str]:
    """One model's line of a Markdown table: its dtypes stacked by <br/>."""

    def stack(fmt: Callable[[ProfileRow], str], mark: bool = False) -> str:
        return " <br/> ".join(_marked(fmt(r), cases.get(r.case_id)) if mark else fmt(r) for r in rows)

    def column(key: str) -> Callable[[ProfileRow], str]:
        return lambda r: cases[r.case_id].extra.get(key, "") if r.case_id in cases else ""

    first = rows[0]
    name = first.architecture or first.model
    return [
        first.use_case,
        stack(lambda r: r.dtype_label),
        stack(lambda r: fmt_status(cases.get(r.case_id))),
        stack(fmt_latency, mark=True),
        stack(fmt_throughput, mark=True),
        stack(fmt_resources),
        stack(fmt_accuracy, mark=True),
        fmt_target(first),
        f"[{name}]({first.link})" if first.link else name,
        *[stack(column(k)) for k in extra],
    ]


def to_json(record: RunRecord, environment: dict[str, Any]) -> str:
    """Format 3: pytest's count, every case with its status and tests, and the profile rows (each
    with its case's status); the rows are what a baseline reads."""
    cases = _by_case(record)
    payload = {
        "format": JSON_FORMAT,
        "environment": environment,
        "summary": record.counts(),
        "cases": [
            {
                "case": c.subject,
                "kind": c.kind,
                "status": c.status,
                "detail": c.detail,
                "counts": c.counts,
                "tests": [
                    {"nodeid": t.nodeid, "check": t.check, "outcome": t.outcome, "when": t.when, "message": t.message}
                    for t in c.tests
                ],
                "extra": c.extra,
            }
            for c in sort_cases(list(cases.values()))
        ],
        "rows": [
            {**r.to_dict(), "status": cases[r.case_id].status if r.case_id in cases else "-"}
            for r in sort_rows(list(record.rows.values()))
        ],
    }
    return json.dumps(payload, indent=1, sort_keys=True) + "\n"


def to_csv(record: RunRecord) -> str:
    """One line per case (and upgrade review, and placeholder): status, pytest's count of its tests,
    then the profile row's scalars, perf scalars, resources, LoadGen figures and error statistics."""
    buffer = io.StringIO()
    cases = sort_cases(record.cases())
    rows = [c.row for c in cases if c.row is not None]
    extra = extra_columns(record)
    scalars = [
        f.name for f in fields(ProfileRow) if f.name not in ("perf", "resource_columns", "loadgen", "error_stats")
    ]
    resources = list(dict.fromkeys(k for r in sort_rows(rows) for k in (*r.resource_columns, *r.perf.resources)))
    outputs = list(dict.fromkeys(name for r in sort_rows(rows) for name in r.error_stats))
    loadgen = ["p90_latency_ns", "offline_samples_per_s"]
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["case", "status", "detail", *OUTCOMES, *extra]
        + scalars
        + list(_PERF_SCALARS)
        + [f"resources.{k}" for k in resources]
        + [f"loadgen.{k}" for k in loadgen]
        + [f"{name}.{stat}" for name in outputs for stat in _STATS]
    )
    for c in cases:
        r = c.row
        head = [c.subject, c.status, c.detail, *[c.counts[k] for k in OUTCOMES], *[c.extra.get(k, "") for k in extra]]
        if r is None:
            writer.writerow(head)
            continue
        stats = {name: s.to_dict() for name, s in r.error_stats.items()}
        writer.writerow(
            head
            + [getattr(r, k) for k in scalars]
            + [getattr(r.perf, k) for k in _PERF_SCALARS]
            + [r.perf.resources.get(k, "") for k in resources]
            + [(r.loadgen or {}).get(k, "") for k in loadgen]
            + [_cell(stats.get(name, {}).get(stat)) for name in outputs for stat in _STATS]
        )
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    return "" if value is None else value


def write_report(path: Path, record: RunRecord, environment: dict[str, Any]) -> None:
    """Write by suffix: .md, .json or .csv (atomically)."""
    renderers = {
        ".md": lambda: markdown(record),
        ".json": lambda: to_json(record, environment),
        ".csv": lambda: to_csv(record),
    }
    if path.suffix not in renderers:
        raise ValueError(f"{path}: report suffix must be one of {sorted(renderers)}")
    atomic_write_text(path, renderers[path.suffix]())


def load_json(path: Path) -> tuple[dict[str, Any], list[ProfileRow]]:
    """A saved profile (report or baseline; format 3 or the older 2); ValueError says what is wrong with it."""
    data = json.loads(path.read_text(encoding="utf-8"))
    found = data.get("format") if isinstance(data, dict) else None
    if found not in READABLE_FORMATS:
        hint = "; save it again with --tinyaccel-save-baseline" if str(found).startswith("tinyaccel-profile/") else ""
        raise ValueError(f"{path}: not a {JSON_FORMAT} profile (format {found!r}){hint}")
    environment, rows = data.get("environment"), data.get("rows")
    if not isinstance(environment, dict) or not isinstance(rows, list):
        raise ValueError(f"{path}: expected 'environment' (a table) and 'rows' (a list)")
    try:
        return environment, [ProfileRow.from_dict(r) for r in rows]
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        raise ValueError(f"{path}: a row is not a profile row ({type(exc).__name__}: {exc})") from None
