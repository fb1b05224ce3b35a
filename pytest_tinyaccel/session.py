"""One pytest session's worth of tinyaccel: which cases exist, building and running
each once, goldens, the checks, and the profile rows the runs produce.

The plugin module only wires this into pytest's hooks and fixtures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import report
from .baseline import Baseline
from .baseline import compare as compare_rows
from .cases import Case
from .config import ConfigError
from .errors import DataError
from .goldens import store as golden_store
from .goldens.compare import compare_top5, describe_mismatch
from .goldens.keeper import ACCUMULATION_ADVICE, GoldenKeeper, label_for
from .margins import DEFAULT_MARGINS, parse_margins
from .metrics import format_quality
from .models import Model, discover, load_model
from .report import ProfileRow
from .runner import USER_ERRORS, Outcome, Runner, RunSettings
from .targets.base import Target


@dataclass
class Options:
    models_dir: Path
    golden_dir: Path
    cache_dir: Path
    selection: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    samples: int | None = None
    update_golden: bool = False
    baseline: Path | None = None
    margins: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MARGINS))
    upgrade_tolerance: float = 0.01
    trace_dir: Path | None = None
    loadgen: bool = False


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
        self._models: list[Model] | None = None
        self._outcomes: dict[str, Outcome | BaseException] = {}
        self._availability: dict[tuple[str, str], str | None] = {}
        self._validate_selection()
        if options.loadgen:
            from .loadgen import unavailable

            reason = unavailable()
            if reason:
                raise pytest.UsageError(f"--tinyaccel-loadgen: {reason}")
        self.goldens = GoldenKeeper(
            options.golden_dir, options.cache_dir / "locks", self.runner.dtype_model, options.update_golden
        )
        self.baseline = Baseline(options.baseline) if options.baseline else None
        self.new_rows: set[str] = set()
        self.upgrade_notes: list[str] = []

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
        if self._models is None:
            self._models = [load_model(path) for path in discover(self.options.models_dir)]
            names = [m.name for m in self._models]
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ConfigError(
                    self.options.models_dir, "name", f"model names must be unique, repeated: {sorted(dup)}"
                )
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

    def outcome(self, case: Case) -> Outcome:
        """Build and run `case` once per session; later checks reuse the result (or the error)."""
        if case.id not in self._outcomes:
            try:
                outcome = self.runner.run(case, self._golden_or_none(case.model))
                self.rows[outcome.row.key] = outcome.row
                self._outcomes[case.id] = outcome
            except BaseException as exc:
                self._outcomes[case.id] = exc
        result = self._outcomes[case.id]
        if isinstance(result, USER_ERRORS):
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
            golden = self.goldens.get(case.model)
        except golden_store.GoldenError as exc:
            pytest.fail(f"{case.id}: {exc}\n  to create it: pytest '{nodeid}' --tinyaccel-update-golden", pytrace=False)
        problems = self.goldens.stale(case.model, case.dtype, golden)
        if problems:
            pytest.fail(
                f"{case.id}: golden {self.options.golden_dir / case.model.name} is stale: "
                + "; ".join(problems)
                + f"\n  review, then run: pytest '{nodeid}' --tinyaccel-update-golden",
                pytrace=False,
            )
        return golden

    # ----- checks ------------------------------------------------------------------------

    def check_golden(self, case: Case, nodeid: str) -> None:
        outcome = self.outcome(case)
        golden = self.current_golden(case, nodeid)
        target = self.registry[case.target]
        tol = self.tolerance(case)
        ndata = case.model.ndata
        problems = [
            p
            for name, expected in golden.outputs[case.dtype].items()
            if (p := describe_mismatch(name, outcome.outputs[name][:ndata], expected, tol["atol"], tol["rtol"]))
        ]
        if problems:
            where = target.localize(
                outcome.build, {k: v[:ndata] for k, v in outcome.feed.items()}, tol, golden.layers(case.dtype)
            )
            message = f"{case.id}: outputs on the {ndata} golden samples do not match ONNX Runtime\n" + "\n".join(
                problems
            )
            if where:
                message += "\n" + where
            drift = self.goldens.drift(golden.meta, case.dtype)
            if drift:
                if any(d.startswith("int8 sums") for d in drift):
                    drift.append(ACCUMULATION_ADVICE)
                message += (
                    "\nnote: " + "; ".join(drift) + ".\n  The upgrade review (pytest -k upgrade_review) compares "
                    f"both runtimes on this model; after review, regenerate: pytest '{nodeid}' "
                    f"--tinyaccel-update-golden"
                )
            pytest.fail(message, pytrace=False)

    def tolerance(self, case: Case) -> dict[str, float]:
        target = self.registry[case.target]
        return case.model.tolerance_for(
            case.target, case.dtype, {case.dtype: target.default_tolerance_for(case.model, case.dtype)}
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
                f"regenerate it: pytest '{nodeid}' --tinyaccel-update-golden",
                pytrace=False,
            )
        probs = next(iter(outcome.float_outputs.values()))[: model.ndata]
        # A target allowed to be atol off cannot be held to a tighter probability tolerance.
        tol = max(model.top5_tolerance, self.tolerance(case)["atol"])
        bad, table = compare_top5(reference, probs, tol, lambda c: label_for(model, c))
        if bad:
            pytest.fail(
                f"{case.id}: Top-5 differs from the golden reference in {bad} place(s) "
                f"(same classes in order, probabilities within {tol:g} required)\n{table}",
                pytrace=False,
            )

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
        except golden_store.GoldenError as exc:
            pytest.fail(f"{model.name}: {exc}", pytrace=False)
        self.upgrade_notes += notes
        if problems:
            pytest.fail(
                "\n".join(problems) + f"\n  after review: pytest '{nodeid}' --tinyaccel-update-golden", pytrace=False
            )

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
        try:
            upgrade = self.goldens.upgrade_header(self.models, o.upgrade_tolerance)
        except ConfigError:
            upgrade = None  # reported as a collection error, with the file and key
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
        built, reused = len(self.cache.built), len(self.cache.reused)
        if built or reused:
            lines.append(f"builds: {built} built, {reused} reused from the cache")
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

    # ----- aggregation -------------------------------------------------------------------

    def export_state(self) -> dict[str, Any]:
        """What an xdist worker sends to the controller."""
        return {
            "rows": [r.to_dict() for r in self.rows.values()],
            "built": self.cache.built,
            "reused": self.cache.reused,
            "golden_updates": self.goldens.updates,
            "new_rows": sorted(self.new_rows),
            "upgrade_notes": self.upgrade_notes,
        }

    def merge_state(self, state: dict[str, Any]) -> None:
        for data in state["rows"]:
            row = ProfileRow.from_dict(data)
            self.rows.setdefault(row.key, row)
        self.cache.built += state["built"]
        self.cache.reused += state["reused"]
        self.goldens.updates += state["golden_updates"]
        self.new_rows.update(state["new_rows"])
        self.upgrade_notes += state["upgrade_notes"]


class UpgradeView:
    """The `tinyaccel_upgrade` fixture: one model x dtype whose golden predates the installed ONNX Runtime."""

    def __init__(self, session: TinyaccelSession, model: Model, dtype: str, nodeid: str) -> None:
        self.session, self.model, self.dtype, self.nodeid = session, model, dtype, nodeid

    def check(self) -> None:
        self.session.check_upgrade(self.model, self.dtype, self.nodeid)


class CaseView:
    """What a test sees of its case (the `tinyaccel` fixture): outcome, golden, checks."""

    def __init__(self, session: TinyaccelSession, case: Case, nodeid: str) -> None:
        self.session, self.case, self.nodeid = session, case, nodeid

    @property
    def outcome(self) -> Outcome:
        return self.session.outcome(self.case)

    @property
    def golden(self) -> golden_store.Golden:
        return self.session.current_golden(self.case, self.nodeid)

    def check_golden(self) -> None:
        self.session.check_golden(self.case, self.nodeid)

    def check_accuracy(self) -> None:
        self.session.check_accuracy(self.case)

    def check_top5(self) -> None:
        self.session.check_top5(self.case, self.nodeid)

    def check_baseline(self) -> None:
        self.session.check_baseline(self.case)
