"""What a run prints and writes, without pytest: the header at the start, and at the end,
from the run record alone, the terminal summary and every --tinyaccel-report file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import report
from .baseline import Change
from .baseline import compare as compare_rows
from .cases import Case
from .config import ConfigError
from .record import RunRecord
from .session import TinyaccelSession


def header_lines(session: TinyaccelSession) -> list[str]:
    import onnxruntime

    o, ctx = session.options, session.context
    targets = ", ".join(f"{name}[{','.join(t.modes)}]" for name, t in sorted(session.registry.items()))
    lines = [
        f"tinyaccel: models {o.models_dir}, goldens {o.golden_dir}, ONNX Runtime {onnxruntime.__version__}",
        f"tinyaccel: targets {targets}" + (f"; selected {','.join(o.selection)}" if o.selection else ""),
    ]
    if o.update_golden:
        lines.append("tinyaccel: --tinyaccel-update-golden: goldens of the models that run will be rewritten")
    if session.remote is not None:
        lines.append(
            f"tinyaccel: builds and runs on {session.remote.executor.describe()}, all submitted after collection"
        )
    try:
        upgrade = ctx.goldens.upgrade_header(session.models, o.upgrade_tolerance)
    except ConfigError as exc:
        upgrade = f"tinyaccel: malformed model manifest (collection fails): {exc}"
    if upgrade:
        lines.append(upgrade)
    if ctx.baseline is not None:
        lines.append(
            f"tinyaccel: baseline {ctx.baseline.path} ({len(ctx.baseline.rows)} rows), margins "
            + ", ".join(f"{k}={v:g}{_unit(k)}" for k, v in o.margins.items())
        )
    return lines


def _unit(metric: str) -> str:
    return {"accuracy": "", "sqnr": "dB"}.get(metric, "%")


def no_cases_reason(session: TinyaccelSession, task: str | None) -> str:
    models_dir = session.options.models_dir
    if not session.models:
        return f"no model folders with a model.toml under {models_dir} (see --tinyaccel-models)"
    if task and all(m.task != task for m in session.models):
        return f"no {task} models under {models_dir}"
    return "no model x target x mode x dtype matches the selection (--target / --tinyaccel-dtype)"


def summary_lines(session: TinyaccelSession, record: RunRecord, report_paths: list[str]) -> list[str]:
    baseline = session.context.baseline
    lines = []
    if record.rows or record.tests:
        lines += report.terminal(record, baseline.rows if baseline else None).splitlines()
    # Under xdist two workers may each look up one build or result (checks of a case on both): count
    # each once, and a build one worker made and the other then found as made, not as reused.
    work = record.work
    built, failed, refused = set(work.built), set(work.failed), set(work.refused)
    reused_builds = set(work.reused) - built - failed - refused
    if built or reused_builds or failed or refused:
        line = f"builds: {len(built)} built, {len(reused_builds)} reused from the cache"
        line += f", {len(failed)} failed" if failed else ""
        line += f", {len(refused)} refused by their target (unsupported model)" if refused else ""
        if work.repaired:
            line += f" ({len(set(work.repaired))} rebuilt: their cached files had changed)"
        lines.append(line)
    reused = set(work.results_reused)
    if reused:
        lines.append(
            f"results: {len(reused)} simulated case(s) reused from the result cache (same build and "
            "inputs; their figures are marked 'cached'); --cache-clear simulates again"
        )
    lines += record.golden_updates
    lines += [f"upgrade review: {note}" for note in record.upgrade_notes]
    if baseline is not None:
        ran = set(record.rows)
        new = sorted(ran - set(baseline.rows))
        missing = sorted(set(baseline.rows) - ran)
        lines.append(f"baseline {baseline.path}: {len(ran & set(baseline.rows))} rows compared")
        if new:
            lines.append(f"  new (not in the baseline): {', '.join(new)}")
        if missing:
            lines.append(f"  in the baseline but not run: {', '.join(missing)}")
    lines += [f"report written: {path}" for path in report_paths]
    return lines


def write_report(session: TinyaccelSession, record: RunRecord, path: Path, environment: dict[str, Any]) -> None:
    """One --tinyaccel-report file: a table by suffix, or the HTML page, which also shows the
    failed checks, the changes against the baseline and this run's traces."""
    from . import report_html  # the page's code loads only when a page is written

    if path.suffix != report_html.SUFFIX:
        report.write_report(path, record, environment)
        return
    baseline, trace_dir = session.context.baseline, session.options.trace_dir
    traces = {case: trace_dir / f"{case}.json" for case in record.rows} if trace_dir else {}
    page = report_html.PageData(
        record,
        environment,
        baseline_path=baseline.path if baseline else None,
        baseline=baseline.rows if baseline else {},
        changes=baseline_changes(session, record),
        traces={case: trace for case, trace in traces.items() if trace.is_file()},
    )
    report_html.write_page(path, page)


def baseline_changes(session: TinyaccelSession, record: RunRecord) -> dict[str, list[Change]]:
    """Per case id: every gated metric against the baseline, with the case's own margins."""
    baseline = session.context.baseline.rows if session.context.baseline else {}
    compared = [(row, baseline[case]) for case, row in record.rows.items() if case in baseline]
    models = {m.name: m for m in session.models} if compared else {}
    return {
        row.case_id: compare_rows(
            row, base, session.context.margins_for(Case(models[row.model], row.target, row.mode, row.dtype))
        )
        for row, base in compared
        if row.model in models
    }


def html_summary(session: TinyaccelSession) -> str:
    """For pytest-html's summary: the profiling tables, with the changes against the baseline."""
    from . import report_html

    return report_html.tables_fragment(session.record, baseline_changes(session, session.record))


def html_extra(session: TinyaccelSession, case: Case, shown: set[str]) -> str | None:
    """For pytest-html: the case's profile line and charts, once per case (None before it ran)."""
    row = session.record.rows.get(case.id)
    if row is None or case.id in shown:
        return None
    shown.add(case.id)
    baseline = session.context.baseline
    from . import report_html

    return report_html.case_fragment(row, baseline.get(case.id) if baseline else None)
