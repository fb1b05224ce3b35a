"""One pytest run's cases and the case -> outcome cache: which cases exist, and building
and running each once (here, or on an executor's workers). What the run found goes
into its `RunRecord`; the checks (checks.py) and the pytest-facing views (views.py)
read outcomes from here.
"""

from __future__ import annotations

import warnings

from .baseline import Baseline
from .cache import keep_facts, save_facts
from .cases import BrokenCase, BrokenModel, Case
from .checks import CheckContext
from .config import ConfigError
from .errors import DataError
from .executor import Future, Remote, make_executor
from .goldens import store as golden_store
from .goldens.keeper import GoldenKeeper
from .models import Model, discover, listed_dtypes, load_model
from .options import OptionError, Options, check_selection
from .record import RunRecord
from .runner import Outcome, Runner, RunSettings, run_case
from .targets.base import Target


class TinyaccelSession:
    """The cases of one pytest run, each built and run once, and the run's record."""

    def __init__(self, options: Options, registry: dict[str, Target]) -> None:
        check_selection(options.selection, {name: target.modes for name, target in registry.items()})
        if options.loadgen:
            from .loadgen import unavailable

            reason = unavailable()
            if reason:
                raise OptionError(f"--tinyaccel-loadgen: {reason}")
        self.options = options
        self.registry = registry
        keep_facts(options.cache_dir)  # file hashes and graph facts of unchanged files, from earlier runs
        self.runner = Runner(
            RunSettings(options.cache_dir, options.samples, options.trace_dir, options.loadgen), registry
        )
        goldens = GoldenKeeper(
            options.golden_dir,
            options.cache_dir / "locks",
            self.runner.dtype_model,
            options.update_golden,
            options.dtypes,
        )
        baseline = Baseline(options.baseline) if options.baseline else None
        self.context = CheckContext(options, registry, goldens, baseline)
        self.record = RunRecord()
        executor = make_executor(options.executor, list(registry.values()))
        self.remote = Remote(executor, self._submit) if executor is not None else None
        self.reported: set[str] = set()
        """Cases whose error a failed check has said in full."""
        self.checked: set[str] = set()
        """Cases whose standard checks were collected (they report a case that could not run)."""
        self._models: list[Model] | None = None
        self.broken: list[BrokenModel] = []
        """Model folders whose manifest cannot be used (filled with `models`)."""
        self.warnings: list[Warning] = []
        """What loading the manifests warned about, for pytest to show once collection runs."""
        self._outcomes: dict[str, Outcome | BaseException] = {}
        self._availability: dict[tuple[str, str], str | None] = {}

    @property
    def models(self) -> list[Model]:
        """Every model folder whose manifest is valid; the others are in `broken`, each with its problem,
        so that one run reports every manifest error and the valid models still run."""
        if self._models is None:
            models, self.broken = [], []
            for path in discover(self.options.models_dir):
                try:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        models.append(load_model(path))
                    self.warnings += [w.message for w in caught if isinstance(w.message, Warning)]
                except ConfigError as exc:
                    self.broken.append(BrokenModel(path.parent.name, exc, listed_dtypes(path)))
            names = [m.name for m in models]
            for model in [m for m in models if names.count(m.name) > 1]:
                folders = ", ".join(f"{m.dir.name}/" for m in models if m.name == model.name)
                problem = f"model names must be unique; {folders} share the name {model.name!r}"
                error = ConfigError(model.manifest_path, "name", problem)
                self.broken.append(BrokenModel(model.dir.name, error, model.dtypes))
            self._models = [m for m in models if names.count(m.name) == 1]
        return self._models

    def cases(self, task: str | None = None) -> list[tuple[Case | BrokenCase, str | None]]:
        """Every selected case with its skip reason (None = runnable), then the cases of broken manifests
        (whatever the task: a broken manifest's task is unknown)."""
        found: list[tuple[Case | BrokenCase, str | None]] = []
        for model in self.models:
            if not task or model.task == task:
                found += [
                    (
                        Case(model, name, mode, dtype),
                        model.skip_reason(name) or reason or self.registry[name].case_availability(model, dtype, mode),
                    )
                    for name, mode, reason in self._selected_modes()
                    for dtype in self._selected(model.dtypes)
                ]
        for broken in self.broken:
            found += [
                (BrokenCase(broken, name, mode, dtype), reason)
                for name, mode, reason in self._selected_modes()
                for dtype in self._selected(broken.dtypes)
            ]
        return found

    def _selected_modes(self) -> list[tuple[str, str, str | None]]:
        """(target, mode, why it cannot run here or None) of every selected target mode."""
        sel, found = self.options.selection, []
        for name, target in sorted(self.registry.items()):
            for mode in target.modes:
                if sel and not any(t in (mode, name, f"{name}:{mode}") for t in sel):
                    continue
                if (name, mode) not in self._availability:
                    self._availability[(name, mode)] = target.availability(mode)
                found.append((name, mode, self._availability[(name, mode)]))
        return found

    def _selected(self, dtypes: tuple[str, ...]) -> list[str]:
        return [d for d in dtypes if not self.options.dtypes or d in self.options.dtypes]

    def prefetch(self, cases: list[Case]) -> None:
        """With a pool or a cluster: submit every case now (those already run are not resubmitted)."""
        if self.remote is not None:
            self.remote.prefetch([c for c in cases if c.id not in self._outcomes])

    def _submit(self, case: Case) -> Future:
        assert self.remote is not None
        golden = self.golden_or_none(case.model)
        return self.remote.executor.submit(run_case, self.runner.settings, self.registry, case, golden)

    def result(self, case: Case) -> Outcome | BaseException:
        """Build and run `case` once per session; later checks reuse the outcome (or the error)."""
        if case.id not in self._outcomes:
            try:
                if self.remote is not None:
                    outcome, work = self.remote.result(case)
                    self.record.merge(RunRecord(work=work))  # what the worker's caches did, for the summary
                else:
                    outcome = self.runner.run(case, self.golden_or_none(case.model))
                self.record.rows[case.id] = outcome.row
                self._outcomes[case.id] = outcome
            except BaseException as exc:
                self._outcomes[case.id] = exc
        return self._outcomes[case.id]

    def golden_or_none(self, model: Model) -> golden_store.Golden | None:
        """The model's golden ((re)written first with --tinyaccel-update-golden), None if missing."""
        try:
            return self.context.goldens.get(model)
        except (golden_store.GoldenError, DataError):
            return None

    def finish(self) -> RunRecord:
        """The record with this process's cache work and golden updates folded in: called once, at the end."""
        self.record.merge(RunRecord(work=self.runner.build_log(), golden_updates=self.context.goldens.updates))
        save_facts()
        return self.record

    def close(self) -> None:
        """Cancel what was submitted and not started (Ctrl-C, end of session)."""
        if self.remote is not None:
            self.remote.close()
