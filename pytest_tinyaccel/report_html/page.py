"""The HTML profile page: one self-contained file (inline CSS and SVG, no script, a
Content-Security-Policy that forbids loading anything) that a reviewer opens from
a CI artifact. It shows, in this order: pytest's count of the plugin's tests, what
it ran on, every case with its status (failed and erroring cases first, coloured),
failed checks (first diverging layer, Top-5 side by side), the change of every gated
metric against the baseline, the profiling table per simulator section (the Markdown
report's columns, with each case's status; figures of a case whose checks did not
all pass are marked), per-case per-layer charts and timelines, and the trace files.

Every text that comes from a model, a target or a message is escaped; links are
relative (traces) or http(s) (a model's provenance), never resources to load.
"""

from __future__ import annotations

import json
import os
import re
from html import escape
from itertools import groupby
from pathlib import Path
from urllib.parse import quote, urlsplit

from ..baseline import Change
from ..cache import atomic_write_text
from ..record import OUTCOMES, CaseResult, Finding, ProfileRow, RunRecord, Top5Sample
from ..report import (
    MARK,
    MARK_NOTE,
    MD_HEADERS,
    STATS_HEADERS,
    _sections,
    error_table,
    extra_columns,
    fmt_accuracy,
    fmt_latency,
    fmt_resources,
    fmt_status,
    fmt_target,
    fmt_throughput,
    resource_header,
    sort_cases,
    sort_rows,
    summary,
)
from . import charts
from .data import PageData

SUFFIX = ".html"
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
CSS = """
.tinyaccel{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;margin:0 auto;
 max-width:1280px;padding:0 16px 48px}
.tinyaccel h1{font-size:22px;margin:20px 0 4px}.tinyaccel h2{font-size:18px;margin:28px 0 8px;
 border-bottom:1px solid #d8dce3;padding-bottom:4px}.tinyaccel h3{font-size:15px;margin:18px 0 6px}
.tinyaccel table{border-collapse:collapse;margin:6px 0 12px}
.tinyaccel th,.tinyaccel td{border:1px solid #d8dce3;padding:3px 8px;text-align:left;vertical-align:top}
.tinyaccel th{background:#f2f4f7;font-weight:600}.tinyaccel td.num{text-align:right;white-space:nowrap}
.tinyaccel .bad{background:#fde2e1;color:#8a1c1c}.tinyaccel .good{color:#1e6b33}
.tinyaccel .delta{font-size:12px;display:block}.tinyaccel .muted{color:#667085}
.tinyaccel .badge{display:inline-block;border-radius:10px;padding:1px 9px;margin-right:6px;background:#e8ecf2}
.tinyaccel .badge.bad{background:#fde2e1}.tinyaccel .notice{background:#fff6d6;border:1px solid #f0d68a;
 padding:6px 10px}
.tinyaccel .where{font-weight:600;color:#8a1c1c}.tinyaccel pre{background:#f6f8fa;padding:8px;overflow-x:auto;
 font-size:12px}
.tinyaccel figure{margin:8px 0 16px}.tinyaccel figcaption{font-size:12px;color:#667085}
.tinyaccel svg{max-width:100%;height:auto}.tinyaccel .top5{display:inline-table;margin-right:16px}
.tinyaccel dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px}.tinyaccel dt{color:#667085}
.tinyaccel dd{margin:0}
.tinyaccel .status-passed{background:#e3f4e8}.tinyaccel .status-failed{background:#fde2e1}
.tinyaccel .status-error{background:#f9c9c6}.tinyaccel .status-xfailed,.tinyaccel .status-xpassed{background:#fff1c7}
.tinyaccel .status-skipped{background:#eef0f3;color:#667085}.tinyaccel td.status{font-weight:600;white-space:nowrap}
"""
ENV_LABELS = {
    "tinyaccel": "pytest-tinyaccel",
    "git_commit": "commit",
    "onnxruntime": "ONNX Runtime",
    "onnx": "ONNX",
    "numpy": "NumPy",
    "python": "Python",
    "platform": "platform",
    "machine": "machine",
    "cpu": "CPU",
}
CHECK_TITLES = {
    "golden": "outputs differ from the golden",
    "top5": "Top-5 differs from the reference",
    "upgrade_review": "upgrade review",
}


def write_page(path: Path, data: PageData) -> None:
    """Write the page atomically; links to traces are relative to `path`'s folder."""
    atomic_write_text(path, render_page(data, path))


def render_page(data: PageData, path: Path) -> str:
    """The whole page as text."""
    record = data.record
    rows = sort_rows(list(record.rows.values()))
    cases = {c.subject: c for c in record.cases()}
    regressions = sum(c.regressed for changes in data.changes.values() for c in changes)
    counts = record.counts()
    badges = [
        f'<span class="badge status-{_status_of_outcome(k)}" data-outcome="{k}" data-count="{n}">{n} {escape(k)}</span>'
        for k, n in counts.items()
        if n
    ]
    if data.baseline_path is not None:
        badges.append(_badge(f"{regressions} regression(s) against the baseline", bool(regressions)))
    body = [
        "<h1>tinyaccel profile</h1>",
        f'<p class="summary" title="pytest\'s count of the plugin\'s tests">tests: {escape(summary(counts))}</p>',
        f"<p>{''.join(badges)}</p>",
        _run_section(data.environment),
        _status_section(list(cases.values()), extra_columns(record)),
        _findings_section(record.findings, record.upgrade_notes),
        _baseline_section(data, rows) if data.baseline_path is not None else "",
        '<section id="profile"><h2>Profiling table</h2>',
        profile_tables(rows, data.changes, {r.case_id for r in rows if _has_case_section(r)}, cases),
        "</section>",
        _stats_section(record),
        _cases_section(rows, data, path.parent),
        _traces_section(data.traces, path.parent),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>tinyaccel profile</title>\n<style>{CSS}</style></head>\n"
        '<body class="tinyaccel">\n' + "\n".join(part for part in body if part) + "\n</body></html>\n"
    )


def profile_tables(
    rows: list[ProfileRow], changes: dict[str, list[Change]], linked: set[str], cases: dict[str, CaseResult]
) -> str:
    """One table per target and mode (the Markdown report's columns), one line per dtype with
    its case's status (coloured; figures of a case that did not pass marked); with a baseline,
    each figure's change under it; dtypes link to their case's charts."""
    out = []
    for title, group in _sections(rows):
        headers = [resource_header(group) if h == "Resource Utilization" else h for h in MD_HEADERS]
        out.append(f"<h3>{escape(title)}</h3>")
        out.append('<table class="profile"><thead><tr>' + "".join(f"<th>{escape(h)}</th>" for h in headers))
        out.append("</tr></thead><tbody>")
        for _, grouped in groupby(group, key=lambda r: r.model):
            model_rows = list(grouped)
            for i, r in enumerate(model_rows):
                out.append(_profile_row(r, i, model_rows, changes, r.case_id in linked, cases.get(r.case_id)))
        out.append("</tbody></table>")
        if any(r.case_id in cases and not cases[r.case_id].clean for r in group):
            out.append(f'<p class="muted">{escape(MARK_NOTE)}</p>')
    return "\n".join(out)


def _profile_row(
    r: ProfileRow,
    i: int,
    model_rows: list[ProfileRow],
    changes: dict[str, list[Change]],
    linked: bool,
    case: CaseResult | None,
) -> str:
    moved = {c.metric: c for c in changes.get(r.case_id, [])}
    latency = moved.get("cycles") or moved.get("ns")
    dtype = _link(f"#{_anchor(r.case_id)}", r.dtype_label) if linked else escape(r.dtype_label)
    below = r.accuracy is not None and r.quality_target is not None and r.accuracy < r.quality_target
    mark = MARK if case is not None and not case.clean else ""
    status = case.status if case is not None else "unknown"
    cells = [
        f'<td class="status status-{status}">{escape(fmt_status(case))}</td>',
        f'<td class="num">{escape(fmt_latency(r))}{mark}{_delta(latency)}</td>',
        f'<td class="num">{escape(fmt_throughput(r))}{mark}{_delta(moved.get("throughput"))}</td>',
        f"<td>{escape(fmt_resources(r))}</td>",
        f'<td class="num{" bad" if below else ""}">{escape(fmt_accuracy(r))}{mark if r.accuracy is not None else ""}'
        f"{_delta(moved.get('accuracy'))}</td>",
    ]
    span = f' rowspan="{len(model_rows)}"'
    first = model_rows[0]
    head = [f"<td{span}>{escape(first.use_case)}</td>"] if i == 0 else []
    tail = [f"<td{span}>{escape(fmt_target(first))}</td>", f"<td{span}>{_model_name(first)}</td>"]
    return (
        f'<tr data-case="{escape(r.case_id)}" data-status="{status}">'
        + "".join(head + [f"<td>{dtype}</td>"] + cells + (tail if i == 0 else []))
        + "</tr>"
    )


def case_fragment(row: ProfileRow, baseline: ProfileRow | None = None) -> str:
    """One case's profile line and charts, for another report (pytest-html's extras)."""
    missing = charts.unavailable()
    notice = f'<p class="notice">{escape(missing)}</p>' if missing else ""
    body = _case_body(row, baseline, None, charts_ok=not missing)
    table = profile_tables([row], {}, set(), {})
    return f'<div class="tinyaccel"><style>{CSS}</style>{table}{notice}{body}</div>'


def tables_fragment(record: RunRecord, changes: dict[str, list[Change]]) -> str:
    """The profiling tables alone, for another report (pytest-html's summary)."""
    cases = {c.subject: c for c in record.cases()}
    tables = profile_tables(sort_rows(list(record.rows.values())), changes, set(), cases)
    return f'<div class="tinyaccel"><style>{CSS}</style>{tables}</div>'


# ----- sections --------------------------------------------------------------------------


def _run_section(env: dict[str, object]) -> str:
    keys = [k for k in ENV_LABELS if k in env] + sorted(k for k in env if k not in ENV_LABELS)
    items = "".join(f"<dt>{escape(ENV_LABELS.get(k, k))}</dt><dd>{escape(_text(env[k]))}</dd>" for k in keys)
    return f'<section id="run"><h2>Run</h2><dl>{items}</dl></section>' if items else ""


def _status_of_outcome(outcome: str) -> str:
    return {"errors": "error"}.get(outcome, outcome)


def _status_section(cases: list[CaseResult], extra: list[str]) -> str:
    """Every case (and upgrade review, and placeholder) with its status, failed and erroring first;
    then the columns of the pytest_tinyaccel_report_row hook."""
    if not cases:
        return ""
    out = [
        '<section id="cases-status"><h2>Cases</h2><table class="status"><thead><tr><th>Case</th><th>Status</th>'
        + "".join(f"<th>{escape(k)}</th>" for k in (*OUTCOMES, "Detail", *extra))
        + "</tr></thead><tbody>"
    ]
    for c in sort_cases(cases):
        counts = "".join(f'<td class="num" data-outcome="{k}">{c.counts[k]}</td>' for k in OUTCOMES)
        columns = "".join(f"<td>{escape(c.extra.get(k, ''))}</td>" for k in extra)
        out.append(
            f'<tr class="status-{c.status}" data-case="{escape(c.subject)}" data-status="{c.status}">'
            f'<td>{escape(c.subject)}</td><td class="status">{escape(fmt_status(c))}</td>{counts}'
            f"<td>{escape(c.detail)}</td>{columns}</tr>"
        )
    out.append("</tbody></table></section>")
    return "\n".join(out)


def _stats_section(record: RunRecord) -> str:
    """Per case and output: max abs error, RMSE, SQNR, cosine and the share within 1 LSB against the golden."""
    table = error_table(record)
    if not table:
        return ""
    head = "".join(f"<th>{escape(h)}</th>" for h in STATS_HEADERS)
    body = "".join(
        f'<tr data-case="{escape(row[0])}">'
        + "".join(
            f"<td>{escape(cell)}</td>" if i < 2 else f'<td class="num">{escape(cell)}</td>'
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in table
    )
    return (
        '<section id="error-stats"><h2>Error statistics against the golden</h2><p class="muted">Outputs on the '
        "golden samples against ONNX Runtime's; SQNR = 10 log10(signal energy / error energy), inf when equal.</p>"
        f'<table class="stats"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>'
    )


def _findings_section(findings: list[Finding], notes: list[str]) -> str:
    if not findings and not notes:
        return ""
    out = ['<section id="findings"><h2>Failed checks</h2>']
    if not findings:
        out.append('<p class="muted">none</p>')
    for f in sorted(findings, key=lambda f: (f.case, f.check, f.message)):
        out.append(f'<article class="finding" data-case="{escape(f.case)}" data-check="{escape(f.check)}">')
        out.append(f"<h3>{escape(f.case)}: {escape(CHECK_TITLES.get(f.check, f.check))}</h3>")
        if f.where:
            out.append(f'<p class="where">{escape(f.where)}</p>')
        if f.top5:
            out.append("".join(_top5_table(s, f.tolerance) for s in f.top5))
        out.append(f"<details{' open' if not (f.where or f.top5) else ''}><summary>message</summary>")
        out.append(f"<pre>{escape(f.message)}</pre></details></article>")
    if notes:
        out.append("<h3>Upgrade review</h3><ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    out.append("</section>")
    return "\n".join(out)


def _top5_table(sample: Top5Sample, tolerance: float | None) -> str:
    """Reference and obtained Top-5 side by side; a rank whose class or probability moved is marked."""
    tol = tolerance if tolerance is not None else 0.0
    rows = []
    for rank, ((ref_c, ref_p), (got_c, got_p)) in enumerate(zip(sample.reference, sample.obtained), start=1):
        moved = ref_c != got_c or abs(ref_p - got_p) > tol
        css = ' class="bad"' if moved else ""
        rows.append(
            f'<tr{css}><td class="num">{rank}</td>'
            f'<td class="num">{ref_p:.6f}</td><td>{escape(ref_c)}</td>'
            f'<td class="num">{got_p:.6f}</td><td>{escape(got_c)}</td></tr>'
        )
    return (
        f'<table class="top5"><caption>sample {sample.sample}</caption><thead><tr><th>rank</th>'
        '<th colspan="2">reference Top 5</th><th colspan="2">obtained Top 5</th></tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table>"
    )


def _baseline_section(data: PageData, rows: list[ProfileRow]) -> str:
    out = [
        f'<section id="baseline"><h2>Against the baseline</h2><p class="muted">{escape(str(data.baseline_path))}'
        " (margins per model and target as the gate applies them)</p>",
        '<table class="changes"><thead><tr><th>Case</th><th>Metric</th><th>Baseline</th><th>Now</th>'
        "<th>Change</th><th>Allowed</th><th></th></tr></thead><tbody>",
    ]
    for r in rows:
        for c in data.changes.get(r.case_id, []):
            verdict = "REGRESSED" if c.regressed else ("better" if _better(c) else "ok")
            css = ' class="bad"' if c.regressed else (' class="good"' if _better(c) else "")
            out.append(
                f"<tr{css}><td>{escape(r.case_id)}</td><td>{escape(c.metric)}</td>"
                f'<td class="num">{escape(_value(c.baseline, c.unit))}</td>'
                f'<td class="num">{escape(_value(c.now, c.unit))}</td><td class="num">{escape(_change(c))}</td>'
                f'<td class="num">{escape(_allowed(c))}</td><td>{verdict}</td></tr>'
            )
    out.append("</tbody></table>")
    moved = [line for r in rows if (line := _other_changes(r, data.baseline.get(r.case_id)))]
    if moved:
        out.append("<h3>Other changes (not gated)</h3><ul>" + "".join(moved) + "</ul>")
    new = [r.case_id for r in rows if r.case_id not in data.baseline]
    missing = sorted(set(data.baseline) - {r.case_id for r in rows})
    if new:
        out.append(f"<p>new (not in the baseline): {escape(', '.join(new))}</p>")
    if missing:
        out.append(f"<p>in the baseline but not run: {escape(', '.join(missing))}</p>")
    out.append("</section>")
    return "\n".join(out)


def _other_changes(row: ProfileRow, base: ProfileRow | None) -> str:
    """Resources and efficiency that changed: not gated, but what a reviewer wants to see moving."""
    if base is None:
        return ""
    now, then = row.perf, base.perf
    parts = [
        f"{k} {then.resources.get(k, '-')} → {now.resources.get(k, '-')}"
        for k in dict.fromkeys([*then.resources, *now.resources])
        if then.resources.get(k) != now.resources.get(k)
    ]
    if now.efficiency is not None and then.efficiency is not None and abs(now.efficiency - then.efficiency) > 5e-4:
        parts.append(f"efficiency {100 * then.efficiency:.1f}% → {100 * now.efficiency:.1f}%")
    return f"<li>{escape(row.case_id)}: {escape('; '.join(parts))}</li>" if parts else ""


def _cases_section(rows: list[ProfileRow], data: PageData, folder: Path) -> str:
    shown = [r for r in rows if _has_case_section(r)]
    if not shown:
        return ""
    missing = charts.unavailable()
    out = ['<section id="cases"><h2>Per-layer charts</h2>']
    if missing:
        out.append(f'<p class="notice">{escape(missing)}. The tables above do not need it.</p>')
    for r in shown:
        trace = _relative(data.traces[r.case_id], folder) if r.case_id in data.traces else None
        out.append(
            f'<article class="case" id="{_anchor(r.case_id)}" data-case="{escape(r.case_id)}" '
            f'data-mode="{escape(r.mode)}"><h3>{escape(r.case_id)}</h3>'
            + _case_body(r, data.baseline.get(r.case_id), trace, charts_ok=not missing)
            + "</article>"
        )
    out.append("</section>")
    return "\n".join(out)


def _case_body(row: ProfileRow, baseline: ProfileRow | None, trace: str | None, *, charts_ok: bool) -> str:
    """The case's figures (latency, the bound beside it, efficiency, trace link) and its charts."""
    perf = row.perf
    facts = [f"<dt>simulator</dt><dd>{escape(perf.simulator)}</dd>"]
    if perf.cycles is not None:
        facts.append(f"<dt>latency</dt><dd>{perf.cycles:,.0f} cycles{_time(perf.latency_ns)}</dd>")
    elif perf.latency_ns is not None:
        facts.append(f"<dt>latency</dt><dd>{perf.latency_ns:,.0f} ns</dd>")
    ideal = perf.extra.get("ideal_cycles")
    if isinstance(ideal, int | float) and ideal > 0 and perf.cycles:
        ratio = perf.cycles / ideal
        facts.append(f"<dt>bound</dt><dd>{ideal:,.0f} cycles (ideal); the prediction is {ratio:.2f}× the bound</dd>")
    if perf.efficiency is not None:
        facts.append(f"<dt>efficiency</dt><dd>{100 * perf.efficiency:.1f}% of peak MACs</dd>")
    if trace:
        facts.append(f"<dt>trace</dt><dd>{_link(trace, trace)} (Perfetto / chrome://tracing)</dd>")
    out = [f"<dl>{''.join(facts)}</dl>"]
    if not charts.layer_values(perf)[0]:
        out.append('<p class="muted">the target gave no per-layer breakdown</p>')
    elif charts_ok:
        for kind, svg in (("layers", charts.layer_chart(row, baseline)), ("timeline", charts.timeline_chart(row))):
            if svg:
                out.append(f'<figure class="chart" data-kind="{kind}">{svg}<figcaption>{_caption(kind, baseline)}')
                out.append("</figcaption></figure>")
    return "\n".join(out)


def _traces_section(traces: dict[str, Path], folder: Path) -> str:
    if not traces:
        return ""
    items = "".join(f"<li>{_link(_relative(traces[case], folder), case)}</li>" for case in sorted(traces))
    return (
        '<section id="traces"><h2>Traces</h2><p class="muted">Chrome traces of this run, one event per '
        "layer/kernel in simulated microseconds (cycles in each event's args); open them in Perfetto or "
        f"chrome://tracing.</p><ul>{items}</ul></section>"
    )


# ----- pieces ------------------------------------------------------------------------------


def _has_case_section(row: ProfileRow) -> bool:
    """hw_emu and measured (hw) cases get charts; functional (sw_emu) ones have no timing."""
    return row.mode != "sw_emu"


def _caption(kind: str, baseline: ProfileRow | None) -> str:
    if kind == "timeline":
        return "Kernels over simulated time, one track per tile (the dataflow schedule the latency comes from)."
    parts = ["Bars: this run", "|: the bound (ideal cycles) where the target gives one"]
    if baseline is not None:
        parts.append("◇: the baseline")
    return "; ".join(parts) + "."


def _delta(change: Change | None) -> str:
    if change is None:
        return ""
    css = "bad" if change.regressed else ("good" if _better(change) else "muted")
    return f'<span class="delta {css}">{escape(_change(change))}</span>'


def _better(change: Change) -> bool:
    return (change.delta > 1e-9) if change.higher_is_better else (change.delta < -1e-9)


def _change(change: Change) -> str:
    return f"{change.delta:+.2f}{change.suffix}"


def _allowed(change: Change) -> str:
    return f"{change.allowed:g}{change.suffix}"


def _value(value: float, unit: str) -> str:
    return f"{100 * value:.2f}%" if unit == "%" else f"{value:,.6g} {unit}".strip()


def _time(latency_ns: float | None) -> str:
    return "" if latency_ns is None else f" = {latency_ns / 1e3:,.3f} µs simulated"


def _model_name(row: ProfileRow) -> str:
    name = row.architecture or row.model
    return _link(row.link, name) if urlsplit(row.link).scheme in ("http", "https") else escape(name)


def _link(href: str, text: str) -> str:
    return f'<a href="{escape(href)}">{escape(text)}</a>'


def _relative(path: Path, folder: Path) -> str:
    """A link from the page's folder to `path`: relative, so the pair can be moved together."""
    try:
        return quote(Path(os.path.relpath(path, folder)).as_posix())
    except ValueError:  # another drive (Windows)
        return path.resolve().as_uri()


def _anchor(case_id: str) -> str:
    return "case-" + re.sub(r"[^A-Za-z0-9_.-]", "_", case_id)


def _badge(text: str, bad: bool = False) -> str:
    return f'<span class="badge{" bad" if bad else ""}">{escape(text)}</span>'


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
