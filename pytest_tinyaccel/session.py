"""One pytest session's worth of tinyaccel: which cases exist, building and running
each once, goldens, the checks, and the profile rows the runs produce.

The plugin module only wires this into pytest's hooks and fixtures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from . import report, report_html
from .baseline import Baseline, Change
from .baseline import compare as compare_rows
from .cases import Case
from .config import ConfigError
from .errors import DataError
from .executor import Future, Remote, make_executor
from .goldens import store as golden_store
from .goldens.compare import compare_top5, describe_mismatch
from .goldens.diagnosis import diagnose
from .goldens.keeper import ACCUMULATION_ADVICE, GoldenKeeper, label_for
from .margins import parse_margins
from .metrics import format_quality
from .models import Model, discover, load_model
from .options import Options
from .report import ProfileRow
from .runner import USER_ERRORS, Outcome, Runner, RunSettings, run_case
from .targets.base import Target


class TinyaccelSession:
    """The cases of one pytest run, their checks, the terminal text and the xdist state."""

    def __init__(self, options: Options, registry: dict[str, Target]) -> None:
        self.options = options
        self.registry = registry
        self.runner = Runner(
            RunSettings(options.cache_dir, options.samples, options.trace_dir, options.loadgen), registry
        )
        self.cache = self.runner.cache
        self.rows: dict[tuple[str, str, str, str], ProfileRow] = {}
        self._models: list[Model] | ConfigError | None = None
        self._outcomes: dict[str, Outcome | BaseException] = {}
        executor = make_executor(options.executor)
        self.remote = Remote(executor, self._submit) if executor is not None else None
        self._reported: set[str] = set()
        self._availability: dict[tuple[str, str], str | None] = {}
        self._validate_selection()
        if options.loadgen:
            from .loadgen import unavailable

            reason = unavailable()
            if reason:
                raise pytest.UsageError(f"--tinyaccel-loadgen: {reason}")
        self.goldens = GoldenKeeper(
            options.golden_dir,
            options.cache_dir / "locks",
            self.runner.dtype_model,
            options.update_golden,
            options.dtypes,
        )
        self.baseline = Baseline(options.baseline) if options.baseline else None
        self.new_rows: set[str] = set()
        self.upgrade_notes: list[str] = []
        self.findings: list[report_html.Finding] = []
        """Failed golden and Top-5 checks and upgrade reviews, as data for the HTML page."""
        self._html_extras: set[str] = set()

    # ----- selection -----------------------------------------------------------------

    def _validate_selection(self) -> None:
        modes = {m for t in self.registry.values() for m in t.modes}
        for token in self.options.selection:
            target, _, mode = token.partition(":")
            ok = (
                (token in modes or token in self.registry)
                if not mode
                else (target in self.registry and mode in self.registry[target].modes)
            )
            if not ok:
                choices = (
                    sorted(modes)
                    + sorted(self.registry)
                    + [f"{n}:{m}" for n, t in self.registry.items() for m in t.modes]
                )
                raise pytest.UsageError(
                    f"--target {token!r}: not a mode, target or target:mode; choose from {', '.join(choices)}"
                )

    def selected(self, target: str, mode: str) -> bool:
        sel = self.options.selection
        return not sel or any(t in (mode, target, f"{target}:{mode}") for t in sel)

    @property
    def models(self) -> list[Model]:
        """Every model folder, validated; a manifest error is raised on every access, never cached away."""
        if self._models is None:
            try:
                models = [load_model(path) for path in discover(self.options.models_dir)]
                names = [m.name for m in models]
                dup = sorted({n for n in names if names.count(n) > 1})
                if dup:
                    folders = ", ".join(f"{m.dir.name}/ ({m.name})" for m in models if m.name in dup)
                    raise ConfigError(
                        self.options.models_dir, "name", f"model names must be unique; {folders} share a name"
                    )
                self._models = models
            except ConfigError as exc:
                self._models = exc
        if isinstance(self._models, ConfigError):
            raise self._models
        return self._models

    def availability(self, target: str, mode: str) -> str | None:
        key = (target, mode)
        if key not in self._availability:
            self._availability[key] = self.registry[target].availability(mode)
        return self._availability[key]

    def cases(self, task: str | None = None) -> list[tuple[Case, str | None]]:
        """Every selected case with its skip reason (None = runnable)."""
        found = []
        for model in self.models:
            if task and model.task != task:
                continue
            for name, target in sorted(self.registry.items()):
                for mode in target.modes:
                    if not self.selected(name, mode):
                        continue
                    for dtype in model.dtypes:
                        if self.options.dtypes and dtype not in self.options.dtypes:
                            continue
                        reason = model.skip_reason(name) or self.availability(name, mode)
                        found.append((Case(model, name, mode, dtype), reason))
        return found

    # ----- running ---------------------------------------------------------------------

    def prefetch(self, cases: list[Case]) -> None:
        """With a pool or a cluster: submit every case now (those already run are not resubmitted)."""
        if self.remote is not None:
            self.remote.prefetch([c for c in cases if c.id not in self._outcomes])

    def _submit(self, case: Case) -> Future:
        assert self.remote is not None
        return self.remote.executor.submit(
            run_case, self.runner.settings, self.registry, case, self._golden_or_none(case.model)
        )

    def _remote(self, case: Case) -> Outcome:
        assert self.remote is not None
        outcome, stats = self.remote.result(case)
        for key, names in stats.items():  # what the worker's build cache did, for the summary
            (self.runner.results_reused if key == "results_reused" else getattr(self.cache, key)).extend(names)
        return outcome

    def close(self) -> None:
        """Cancel what was submitted and not started (Ctrl-C, end of session)."""
        if self.remote is not None:
            self.remote.close()

    def outcome(self, case: Case) -> Outcome:
        """Build and run `case` once per session; later checks reuse the result (or the error)."""
        if case.id not in self._outcomes:
            try:
                if self.remote is not None:
                    outcome = self._remote(case)
                else:
                    outcome = self.runner.run(case, self._golden_or_none(case.model))
                self.rows[outcome.row.key] = outcome.row
                self._outcomes[case.id] = outcome
            except BaseException as exc:
                self._outcomes[case.id] = exc
        result = self._outcomes[case.id]
        if isinstance(result, USER_ERRORS):
            if case.id in self._reported:  # said in full once per case; later checks point there
                first = str(result).splitlines()[0]
                pytest.fail(
                    f"{case.id}: {first[:200]} (the full message is in this case's first failed check)", pytrace=False
                )
            self._reported.add(case.id)
            pytest.fail(f"{case.id}: {result}", pytrace=False)
        if isinstance(result, BaseException):
            raise result
        return result

    def _golden_or_none(self, model: Model) -> golden_store.Golden | None:
        """The model's golden ((re)written first with --tinyaccel-update-golden), None if missing."""
        try:
            return self.goldens.get(model)
        except (golden_store.GoldenError, DataError):
            return None

    def current_golden(self, case: Case, nodeid: str) -> golden_store.Golden:
        """The golden for `case`, failing the test when it is missing or stale."""
        try:
            golden: golden_store.Golden | None = self.goldens.get(case.model)
            problem = ""
        except (golden_store.GoldenError, DataError) as exc:
            golden, problem = None, str(exc)
        if golden is None:  # failed outside the except block: no chained traceback in the report
            pytest.fail(f"{case.id}: {problem}\n  to create it: {self.update_command(nodeid)}", pytrace=False)
        problems = self.goldens.stale(case.model, case.dtype, golden)
        if problems:
            pytest.fail(
                f"{case.id}: golden {self.options.golden_dir / case.model.name} is stale: "
                + "; ".join(problems)
                + f"\n  review, then run: {self.update_command(nodeid)}",
                pytrace=False,
            )
        return golden

    def update_command(self, nodeid: str) -> str:
        """The command that rewrites this test's golden, with the user's own path options."""
        return " ".join([f"pytest '{nodeid}'", *self.options.path_args, "--tinyaccel-update-golden"])

    # ----- checks ------------------------------------------------------------------------

    def check_golden(self, case: Case, nodeid: str) -> None:
        outcome = self.outcome(case)
        golden = self.current_golden(case, nodeid)
        target = self.registry[case.target]
        arithmetic = target.int8_arithmetic(outcome.build) if case.dtype != "fp32" else None
        reference, made_by = golden.expected(case.dtype, arithmetic)
        tols = {name: self.tolerance(case, name) for name in reference}
        tol = self.tolerance(case, case.model.scored_output)  # what the first-diverging-layer search uses
        ndata = case.model.ndata
        problems = [
            p
            for name, expected in reference.items()
            if case.model.role(name) != "ignore"  # [outputs."<name>"] role = "ignore"
            and (
                p := describe_mismatch(
                    name, outcome.outputs[name][:ndata], expected, tols[name]["atol"], tols[name]["rtol"]
                )
            )
        ]
        if problems:
            where = target.localize(
                outcome.build, {k: v[:ndata] for k, v in outcome.feed.items()}, tol, golden.layers(case.dtype)
            )
            checked = f" (its {arithmetic} int8 outputs, made by {made_by})" if made_by else ""
            message = f"{case.id}: outputs on the {ndata} golden samples do not match ONNX Runtime{checked}\n"
            message += "\n".join(problems)
            if where:
                message += "\n" + where
            obtained = {k: v[:ndata] for k, v in outcome.outputs.items()}
            message += "\n" + diagnose(golden, case.dtype, outcome.build.onnx_path, obtained, arithmetic, tols)
            drift = self.goldens.drift(golden.meta, case.dtype)
            if drift:
                if any(d.startswith("int8 sums") for d in drift):
                    drift.append(ACCUMULATION_ADVICE)
                message += (
                    "\nnote: " + "; ".join(drift) + ".\n  The upgrade review (pytest -k upgrade_review) compares "
                    f"both runtimes on this model; after review, regenerate: {self.update_command(nodeid)}"
                )
            self.findings.append(report_html.Finding(case.id, "golden", message, where=where or None))
            pytest.fail(message, pytrace=False)

    def tolerance(self, case: Case, output: str | None = None) -> dict[str, float]:
        """atol/rtol of the case, for `output` when given (its [outputs."<name>"] tolerances)."""
        target = self.registry[case.target]
        return case.model.tolerance_for(
            case.target, case.dtype, {case.dtype: target.default_tolerance_for(case.model, case.dtype)}, output
        )

    def check_accuracy(self, case: Case) -> None:
        outcome = self.outcome(case)
        model = case.model
        if model.y_test_path is None:
            pytest.skip(outcome.quality_error or f"{model.name} has no labelled test set")
        if outcome.quality is None:
            pytest.fail(f"{case.id}: {outcome.quality_error}", pytrace=False)
        if outcome.quality < model.quality_target:
            pytest.fail(
                f"{case.id}: {format_quality(model.metric, outcome.quality)} on the first {outcome.samples} "
                f"test samples is below the quality target {format_quality(model.metric, model.quality_target)}",
                pytrace=False,
            )

    def check_top5(self, case: Case, nodeid: str) -> None:
        outcome = self.outcome(case)
        model = case.model
        reference = self.current_golden(case, nodeid).top5(case.dtype)
        if reference is None:
            pytest.fail(
                f"{case.id}: the golden holds no Top-5 reference for {case.dtype}; "
                f"regenerate it: {self.update_command(nodeid)}",
                pytrace=False,
            )
        probs = model.scored(outcome.float_outputs)[: model.ndata]  # the declared output ([outputs])
        # A target allowed to be atol off cannot be held to a tighter probability tolerance.
        tol = max(model.top5_tolerance, self.tolerance(case, model.scored_output)["atol"])
        bad, table = compare_top5(reference, probs, tol, lambda c: label_for(model, c))
        if bad:
            message = (
                f"{case.id}: Top-5 differs from the golden reference in {bad} place(s) "
                f"(same classes in order, probabilities within {tol:g} required)\n{table}"
            )
            samples = report_html.top5_samples(reference, probs, tol, lambda c: label_for(model, c))
            self.findings.append(report_html.Finding(case.id, "top5", message, top5=samples, tolerance=tol))
            pytest.fail(message, pytrace=False)

    def check_baseline(self, case: Case) -> None:
        """Latency, throughput and accuracy no worse than the baseline by more than the margins."""
        if self.baseline is None:
            pytest.skip("no --tinyaccel-baseline given")
        self.outcome(case)
        now = self.rows[(case.target, case.mode, case.model.name, case.dtype)]
        base = self.baseline.get(case.id)
        if base is None:
            self.new_rows.add(case.id)
            pytest.skip(f"new: {case.id} has no row in the baseline {self.baseline.path}")
        margins = self.margins_for(case)
        changes = compare_rows(now, base, margins)
        regressed = [c for c in changes if c.regressed]
        if regressed:
            lines = [f"{'REGRESSED ' if c.regressed else 'ok        '}{c.describe()}" for c in changes]
            pytest.fail(
                f"{case.id}: worse than the baseline {self.baseline.path}\n  " + "\n  ".join(lines), pytrace=False
            )

    def margins_for(self, case: Case) -> dict[str, float]:
        """Built-in defaults < ini/command line < the manifest's [targets.<target>] max_regression."""
        margins = dict(self.options.margins)
        spec = case.model.targets.get(case.target, {}).get("max_regression")
        if spec is not None:
            margins.update(parse_margins(spec, f"{case.model.manifest_path}: targets.{case.target}.max_regression"))
        return margins

    def check_upgrade(self, model: Model, dtype: str, nodeid: str) -> None:
        """After an ONNX Runtime upgrade: the stored golden against the new version's outputs."""
        try:
            problems, notes = self.goldens.review(
                model, dtype, self.options.upgrade_tolerance, self.options.margins["accuracy"]
            )
        except USER_ERRORS as exc:
            problems, notes = [f"{model.name} {dtype}: {exc}"], []
        self.upgrade_notes += notes
        self.findings += [report_html.Finding(f"{model.name}-{dtype}", "upgrade review", p) for p in problems]
        if problems:
            pytest.fail("\n".join(problems) + f"\n  after review: {self.update_command(nodeid)}", pytrace=False)

    # ----- terminal --------------------------------------------------------------------

    def header_lines(self) -> list[str]:
        import onnxruntime

        o = self.options
        targets = ", ".join(f"{name}[{','.join(t.modes)}]" for name, t in sorted(self.registry.items()))
        lines = [
            f"tinyaccel: models {o.models_dir}, goldens {o.golden_dir}, ONNX Runtime {onnxruntime.__version__}",
            f"tinyaccel: targets {targets}" + (f"; selected {','.join(o.selection)}" if o.selection else ""),
        ]
        if o.update_golden:
            lines.append("tinyaccel: --tinyaccel-update-golden: goldens of the models that run will be rewritten")
        if self.remote is not None:
            lines.append(
                f"tinyaccel: builds and runs on {self.remote.executor.describe()}, all submitted after collection"
            )
        try:
            upgrade = self.goldens.upgrade_header(self.models, o.upgrade_tolerance)
        except ConfigError as exc:
            upgrade = f"tinyaccel: malformed model manifest (collection fails): {exc}"
        if upgrade:
            lines.append(upgrade)
        if self.baseline is not None:
            lines.append(
                f"tinyaccel: baseline {self.baseline.path} ({len(self.baseline.rows)} rows), margins "
                + ", ".join(f"{k}={v:g}{'' if k == 'accuracy' else '%'}" for k, v in o.margins.items())
            )
        return lines

    def no_cases_reason(self, task: str | None) -> str:
        if not self.models:
            return f"no model folders with a model.toml under {self.options.models_dir} (see --tinyaccel-models)"
        if task and all(m.task != task for m in self.models):
            return f"no {task} models under {self.options.models_dir}"
        return "no model x target x mode x dtype matches the selection (--target / --tinyaccel-dtype)"

    def summary_lines(self, report_paths: list[str]) -> list[str]:
        lines = []
        if self.rows:
            base = self.baseline.rows if self.baseline else None
            lines += report.terminal(list(self.rows.values()), base).splitlines()
        # Under xdist two workers may each look up one build or result (checks of a case on both): count
        # each once, and a build one worker made and the other then found as made, not as reused.
        cache = self.cache
        built, failed = set(cache.built), set(cache.failed)
        reused_builds = set(cache.reused) - built - failed
        if built or reused_builds or failed:
            line = f"builds: {len(built)} built, {len(reused_builds)} reused from the cache"
            line += f", {len(failed)} failed" if failed else ""
            if cache.repaired:
                line += f" ({len(set(cache.repaired))} rebuilt: their cached files had changed)"
            lines.append(line)
        reused = set(self.runner.results_reused)
        if reused:
            lines.append(
                f"results: {len(reused)} simulated case(s) reused from the result cache (same build and "
                "inputs; their figures are marked 'cached'); --cache-clear simulates again"
            )
        lines += self.goldens.updates
        lines += [f"upgrade review: {note}" for note in self.upgrade_notes]
        if self.baseline is not None:
            ran = {r.case_id for r in self.rows.values()}
            missing = sorted(set(self.baseline.rows) - ran)
            lines.append(f"baseline {self.baseline.path}: {len(ran & set(self.baseline.rows))} rows compared")
            if self.new_rows:
                lines.append(f"  new (not in the baseline): {', '.join(sorted(self.new_rows))}")
            if missing:
                lines.append(f"  in the baseline but not run: {', '.join(missing)}")
        lines += [f"report written: {path}" for path in report_paths]
        return lines

    # ----- reports -----------------------------------------------------------------------

    def write_report(self, path: Path, environment: dict[str, Any]) -> None:
        """One --tinyaccel-report file: a table by suffix, or the HTML page, which also shows the
        failed checks, the changes against the baseline and this run's traces."""
        rows = list(self.rows.values())
        if path.suffix != report_html.SUFFIX:
            report.write_report(path, rows, environment)
            return
        trace_dir = self.options.trace_dir
        traces = {r.case_id: trace_dir / f"{r.case_id}.json" for r in rows} if trace_dir else {}
        page = report_html.PageData(
            rows,
            environment,
            findings=self.findings,
            baseline_path=self.baseline.path if self.baseline else None,
            baseline=self.baseline.rows if self.baseline else {},
            changes=self.baseline_changes(),
            traces={case: trace for case, trace in traces.items() if trace.is_file()},
            notes=self.upgrade_notes,
        )
        report_html.write_page(path, page)

    def baseline_changes(self) -> dict[str, list[Change]]:
        """Per case id: every gated metric against the baseline, with the case's own margins."""
        baseline = self.baseline.rows if self.baseline else {}
        compared = [(row, baseline[row.case_id]) for row in self.rows.values() if row.case_id in baseline]
        models = {m.name: m for m in self.models} if compared else {}
        return {
            row.case_id: compare_rows(
                row, base, self.margins_for(Case(models[row.model], row.target, row.mode, row.dtype))
            )
            for row, base in compared
            if row.model in models
        }

    def html_summary(self) -> str:
        """For pytest-html's summary: the profiling tables, with the changes against the baseline."""
        return report_html.tables_fragment(list(self.rows.values()), self.baseline_changes())

    def html_extra(self, case: Case) -> str | None:
        """For pytest-html: the case's profile line and charts, once per case (None before it ran)."""
        row = self.rows.get((case.target, case.mode, case.model.name, case.dtype))
        if row is None or row.case_id in self._html_extras:
            return None
        self._html_extras.add(row.case_id)
        return report_html.case_fragment(row, self.baseline.get(row.case_id) if self.baseline else None)

    # ----- aggregation -------------------------------------------------------------------

    def export_state(self) -> dict[str, Any]:
        """What an xdist worker sends to the controller."""
        return {
            "rows": [r.to_dict() for r in self.rows.values()],
            "built": self.cache.built,
            "failed": self.cache.failed,
            "repaired": self.cache.repaired,
            "reused": self.cache.reused,
            "results_reused": self.runner.results_reused,
            "golden_updates": self.goldens.updates,
            "new_rows": sorted(self.new_rows),
            "upgrade_notes": self.upgrade_notes,
            "findings": [f.to_dict() for f in self.findings],
        }

    def merge_state(self, state: dict[str, Any]) -> None:
        for data in state["rows"]:
            row = ProfileRow.from_dict(data)
            known = self.rows.get(row.key)
            # Two workers may run one case (one per check); the one that simulated it in this run
            # wins over the one that reused that result, so the report matches a serial run's.
            if known is None or (known.from_cache and not row.from_cache):
                self.rows[row.key] = row
        self.cache.built += state["built"]
        self.cache.reused += state["reused"]
        self.cache.failed += state["failed"]
        self.cache.repaired += state["repaired"]
        self.runner.results_reused += state["results_reused"]
        self.goldens.updates += state["golden_updates"]
        self.new_rows.update(state["new_rows"])
        self.upgrade_notes += state["upgrade_notes"]
        self.findings += [report_html.Finding.from_dict(f) for f in state["findings"]]
