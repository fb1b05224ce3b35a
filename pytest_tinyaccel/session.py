"""One pytest session's worth of tinyaccel: which cases exist, building and running
each once, goldens, the checks, and the profile rows the runs produce.

The plugin module only wires this into pytest's hooks and fixtures.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from . import __version__, golden as golden_store
from .references import ACCUMULATION_ADVICE, GoldenKeeper, label_for
from .baseline import DEFAULT_MARGINS, Baseline, compare as compare_rows, parse_margins
from .cache import BuildCache
from .compare import compare_top5, describe_mismatch
from .errors import DataError
from .metrics import format_quality, quality
from .models import Model, ManifestError, discover, file_sha256, load_model
from . import report
from .report import ProfileRow
from .runtime import dequantized, input_specs, output_specs, to_model_inputs
from .targets.base import Build, Perf, Target, TargetError

USER_ERRORS = (DataError, TargetError, golden_store.GoldenError, ManifestError)


@dataclass(frozen=True)
class Case:
    """One model x target x mode x dtype; its id is the test id."""

    model: Model
    target: str
    mode: str
    dtype: str

    @property
    def id(self) -> str:
        return f"{self.model.name}-{self.target}-{self.mode}-{self.dtype}"


@dataclass
class Outcome:
    """What running a case produced: raw and float outputs for the first samples, perf, quality."""

    build: Build
    outputs: dict[str, np.ndarray]
    float_outputs: dict[str, np.ndarray]
    perf: Perf | None
    samples: int
    quality: float | None
    quality_error: str | None
    feed: dict[str, np.ndarray] = field(repr=False)


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
    def __init__(self, options: Options, registry: dict[str, Target]) -> None:
        self.options = options
        self.registry = registry
        self.cache = BuildCache(options.cache_dir)
        self.rows: dict[tuple[str, str, str, str], ProfileRow] = {}
        self._models: list[Model] | None = None
        self._outcomes: dict[str, Outcome | BaseException] = {}
        self._dtype_models: dict[tuple[str, str], Path] = {}
        self._availability: dict[tuple[str, str], str | None] = {}
        self._validate_selection()
        if options.loadgen:
            from .loadgen import unavailable

            reason = unavailable()
            if reason:
                raise pytest.UsageError(f"--tinyaccel-loadgen: {reason}")
        self.goldens = GoldenKeeper(options.golden_dir, options.cache_dir / "locks", self.dtype_model, options.update_golden)
        self.baseline = Baseline(options.baseline) if options.baseline else None
        self.new_rows: set[str] = set()
        self.upgrade_notes: list[str] = []

    # ----- selection -----------------------------------------------------------------

    def _validate_selection(self) -> None:
        modes = {m for t in self.registry.values() for m in t.modes}
        for token in self.options.selection:
            target, _, mode = token.partition(":")
            ok = (token in modes or token in self.registry) if not mode else (
                target in self.registry and mode in self.registry[target].modes)
            if not ok:
                choices = sorted(modes) + sorted(self.registry) + [f"{n}:{m}" for n, t in self.registry.items() for m in t.modes]
                raise pytest.UsageError(f"--target {token!r}: not a mode, target or target:mode; choose from {', '.join(choices)}")

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
                raise ManifestError(self.options.models_dir, "name", f"model names must be unique, repeated: {sorted(dup)}")
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

    # ----- building and running ------------------------------------------------------

    def dtype_model(self, model: Model, dtype: str) -> Path:
        """The ONNX file that defines `dtype`: the float model, or its int8 version
        (the author's, or ONNX Runtime's static quantization, cached)."""
        key = (model.name, dtype)
        if key not in self._dtype_models:
            input_specs(model.onnx_path)  # a corrupt model fails here, with its name, before any tool sees it
            if dtype == "fp32":
                path = model.onnx_path
            elif model.int8_onnx_path is not None:
                path = model.int8_onnx_path
            else:
                import onnxruntime

                from .quantize import quantize_model

                parts = {"model_sha256": model.sha256,
                         "calibration_sha256": file_sha256(model.calibration_path),
                         "settings": model.quantization, "onnxruntime": onnxruntime.__version__}
                folder = self.cache.get("quantized", model.name, parts, lambda d: quantize_model(
                    model.onnx_path, d / "model.onnx", model.load_calibration(), model.quantization))
                path = folder / "model.onnx"
            self._dtype_models[key] = path
        return self._dtype_models[key]

    def outcome(self, case: Case) -> Outcome:
        """Build and run `case` once per session; later checks reuse the result (or the error)."""
        if case.id not in self._outcomes:
            try:
                self._outcomes[case.id] = self._run(case)
            except BaseException as exc:
                self._outcomes[case.id] = exc
        result = self._outcomes[case.id]
        if isinstance(result, USER_ERRORS):
            pytest.fail(f"{case.id}: {result}", pytrace=False)
        if isinstance(result, BaseException):
            raise result
        return result

    def _run(self, case: Case) -> Outcome:
        model, target = case.model, self.registry[case.target]
        onnx_path = self.dtype_model(model, case.dtype)
        parts = {"model_sha256": file_sha256(onnx_path), "dtype": case.dtype, "mode": case.mode,
                 "target": target.name, "target_version": target.version,
                 "settings": target.cache_settings(model, case.dtype, case.mode)}
        build = Build(model=model, dtype=case.dtype, mode=case.mode, onnx_path=onnx_path, dir=Path(),
                      shared_dir=self.options.cache_dir / "shared" / target.name,
                      int8_accumulation=self.goldens.int8_accumulation(model))
        folder = self.cache.get("builds", case.id, parts, lambda d: target.build(replace(build, dir=d)))
        build = replace(build, dir=folder)

        y = model.load_y()
        labelled = y is not None
        n = min(self.options.samples or model.samples_for(case.target), len(y)) if labelled else model.ndata
        x = model.load_x(max(n, model.ndata))
        if len(x) < max(n, model.ndata):
            raise DataError(f"{model.x_test_path.name} has {len(x)} samples; need {max(n, model.ndata)} "
                            f"(ndata={model.ndata} golden samples and one input per label used for accuracy)")
        feed = to_model_inputs(onnx_path, x)
        result = target.run(build, feed)
        self._validate_outputs(case, onnx_path, result.outputs, len(x))
        floats = dequantized(onnx_path, result.outputs)
        prediction = next(iter(floats.values()))
        value, error = None, None
        if not labelled:
            error = f"{model.name} has no labelled test set (y_test): accuracy is not measured"
        else:
            try:
                value = quality(model.metric, prediction[:n], y[:n], x[:n].astype(np.float32))
            except ValueError as exc:
                error = f"{model.metric} cannot be computed: {exc}"
        agreement = self._argmax_agreement(model, case.dtype, prediction)
        perf = result.perf
        scenarios = self._loadgen(target, build, feed) if self.options.loadgen else None
        if self.options.trace_dir is not None and perf is not None and perf.layers:
            from .costmodel.trace import write_trace

            write_trace(perf, self.options.trace_dir / f"{case.id}.json", process_name=case.id)
        self.rows[(case.target, case.mode, model.name, case.dtype)] = ProfileRow(
            model=model.name, target=case.target, mode=case.mode, dtype=case.dtype,
            use_case=model.use_case, architecture=model.architecture, link=model.link,
            simulator=perf.simulator if perf else target.simulator(case.mode),
            metric=model.metric, quality_target=model.quality_target, accuracy=value, samples=n if labelled else 0,
            cycles=perf and perf.cycles, clock_hz=perf and perf.clock_hz, latency_ns=perf and perf.latency_ns,
            throughput=perf and perf.throughput, efficiency=perf and perf.efficiency,
            resources=dict(perf.resources) if perf else {}, agreement=agreement, loadgen=scenarios)
        return Outcome(build, result.outputs, floats, perf, n, value, error, feed)

    @staticmethod
    def _loadgen(target: Target, build: Build, feed: dict[str, np.ndarray]) -> dict[str, Any] | None:
        """MLPerf LoadGen SingleStream p90 latency and Offline samples/s (measured targets only)."""
        from .loadgen import SCENARIOS, LoadgenError, measure_target

        results = {}
        for scenario in SCENARIOS:
            try:
                result = measure_target(target, build, feed, scenario)
            except LoadgenError as exc:
                raise TargetError(f"LoadGen {scenario}: {exc}") from exc
            if result is None:
                return None  # not a real-time target: LoadGen does not apply
            results[scenario] = result
        return {"p90_latency_ns": results["SingleStream"]["p90_latency_ns"],
                "offline_samples_per_s": results["Offline"]["samples_per_second"],
                "valid": all(r["valid"] for r in results.values())}

    def _argmax_agreement(self, model: Model, dtype: str, prediction: np.ndarray) -> float | None:
        """Share of golden samples whose argmax equals ONNX Runtime's: the gate that
        matters when a fixed-point target cannot meet float tolerances."""
        if not model.is_classification:
            return None
        try:
            expected = self.goldens.get(model).outputs.get(dtype)
        except (golden_store.GoldenError, DataError):
            return None
        if not expected:
            return None
        reference = next(iter(expected.values()))
        ours = prediction[: len(reference)]
        if ours.shape != reference.shape:
            return None
        return float(np.mean(ours.reshape(len(ours), -1).argmax(1) == reference.reshape(len(reference), -1).argmax(1)))

    def _validate_outputs(self, case: Case, onnx_path: Path, outputs: dict[str, np.ndarray], count: int) -> None:
        for spec in output_specs(onnx_path):
            value = outputs.get(spec.name)
            if value is None:
                raise TargetError(f"target {case.target!r} returned outputs {sorted(outputs)}, missing the model's output '{spec.name}'")
            if not isinstance(value, np.ndarray) or value.shape[:1] != (count,):
                shape = getattr(value, "shape", type(value).__name__)
                raise TargetError(f"target {case.target!r} returned output '{spec.name}' with shape {shape}; expected {count} samples on the first axis")

    def current_golden(self, case: Case, nodeid: str) -> golden_store.Golden:
        """The golden for `case`, failing the test when it is missing or stale."""
        try:
            golden = self.goldens.get(case.model)
        except golden_store.GoldenError as exc:
            pytest.fail(f"{case.id}: {exc}\n  to create it: pytest '{nodeid}' --tinyaccel-update-golden", pytrace=False)
        problems = self.goldens.stale(case.model, case.dtype, golden)
        if problems:
            pytest.fail(f"{case.id}: golden {self.options.golden_dir / case.model.name} is stale: " + "; ".join(problems)
                        + f"\n  review, then run: pytest '{nodeid}' --tinyaccel-update-golden", pytrace=False)
        return golden

    # ----- checks ------------------------------------------------------------------------

    def check_golden(self, case: Case, nodeid: str) -> None:
        outcome = self.outcome(case)
        golden = self.current_golden(case, nodeid)
        target = self.registry[case.target]
        tol = self.tolerance(case)
        ndata = case.model.ndata
        problems = [p for name, expected in golden.outputs[case.dtype].items()
                    if (p := describe_mismatch(name, outcome.outputs[name][:ndata], expected, tol["atol"], tol["rtol"]))]
        if problems:
            where = target.localize(outcome.build, {k: v[:ndata] for k, v in outcome.feed.items()}, tol,
                                    golden.layers(case.dtype))
            message = f"{case.id}: outputs on the {ndata} golden samples do not match ONNX Runtime\n" + "\n".join(problems)
            if where:
                message += "\n" + where
            drift = self.goldens.drift(golden.meta, case.dtype)
            if drift:
                if any(d.startswith("int8 sums") for d in drift):
                    drift.append(ACCUMULATION_ADVICE)
                message += ("\nnote: " + "; ".join(drift) + ".\n  The upgrade review (pytest -k upgrade_review) compares "
                            f"both runtimes on this model; after review, regenerate: pytest '{nodeid}' --tinyaccel-update-golden")
            pytest.fail(message, pytrace=False)

    def tolerance(self, case: Case) -> dict[str, float]:
        target = self.registry[case.target]
        return case.model.tolerance_for(case.target, case.dtype,
                                        {case.dtype: target.default_tolerance_for(case.model, case.dtype)})

    def check_accuracy(self, case: Case) -> None:
        outcome = self.outcome(case)
        model = case.model
        if model.y_test_path is None:
            pytest.skip(outcome.quality_error)
        if outcome.quality is None:
            pytest.fail(f"{case.id}: {outcome.quality_error}", pytrace=False)
        if outcome.quality < model.quality_target:
            pytest.fail(f"{case.id}: {format_quality(model.metric, outcome.quality)} on the first {outcome.samples} "
                        f"test samples is below the quality target {format_quality(model.metric, model.quality_target)}",
                        pytrace=False)

    def check_top5(self, case: Case, nodeid: str) -> None:
        outcome = self.outcome(case)
        model = case.model
        reference = self.current_golden(case, nodeid).top5(case.dtype)
        probs = next(iter(outcome.float_outputs.values()))[: model.ndata]
        # A target allowed to be atol off cannot be held to a tighter probability tolerance.
        tol = max(model.top5_tolerance, self.tolerance(case)["atol"])
        bad, table = compare_top5(reference, probs, tol, lambda c: label_for(model, c))
        if bad:
            pytest.fail(f"{case.id}: Top-5 differs from the golden reference in {bad} place(s) "
                        f"(same classes in order, probabilities within {tol:g} required)\n{table}",
                        pytrace=False)

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
            pytest.fail(f"{case.id}: worse than the baseline {self.baseline.path}\n  " + "\n  ".join(lines), pytrace=False)

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
            problems, notes = self.goldens.review(model, dtype, self.options.upgrade_tolerance, self.options.margins["accuracy"])
        except golden_store.GoldenError as exc:
            pytest.fail(f"{model.name}: {exc}", pytrace=False)
        self.upgrade_notes += notes
        if problems:
            pytest.fail("\n".join(problems) + f"\n  after review: pytest '{nodeid}' --tinyaccel-update-golden", pytrace=False)

    # ----- terminal --------------------------------------------------------------------

    def header_lines(self) -> list[str]:
        import onnxruntime

        o = self.options
        targets = ", ".join(f"{name}[{','.join(t.modes)}]" for name, t in sorted(self.registry.items()))
        lines = [f"tinyaccel: models {o.models_dir}, goldens {o.golden_dir}, ONNX Runtime {onnxruntime.__version__}",
                 f"tinyaccel: targets {targets}" + (f"; selected {','.join(o.selection)}" if o.selection else "")]
        if o.update_golden:
            lines.append("tinyaccel: --tinyaccel-update-golden: goldens of the models that run will be rewritten")
        try:
            upgrade = self.goldens.upgrade_header(self.models, o.upgrade_tolerance)
        except ManifestError:
            upgrade = None  # reported as a collection error, with the file and key
        if upgrade:
            lines.append(upgrade)
        if self.baseline is not None:
            lines.append(f"tinyaccel: baseline {self.baseline.path} ({len(self.baseline.rows)} rows), margins "
                         + ", ".join(f"{k}={v:g}{'' if k == 'accuracy' else '%'}" for k, v in o.margins.items()))
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
        from dataclasses import asdict

        return {"rows": [asdict(r) for r in self.rows.values()], "built": self.cache.built,
                "reused": self.cache.reused, "golden_updates": self.goldens.updates,
                "new_rows": sorted(self.new_rows), "upgrade_notes": self.upgrade_notes}

    def merge_state(self, state: dict[str, Any]) -> None:
        for data in state["rows"]:
            row = ProfileRow.from_dict(data)
            self.rows.setdefault(row.key, row)
        self.cache.built += state["built"]
        self.cache.reused += state["reused"]
        self.goldens.updates += state["golden_updates"]
        self.new_rows.update(state["new_rows"])
        self.upgrade_notes += state["upgrade_notes"]


def environment(root: Path) -> dict[str, Any]:
    """Machine, tool and package versions, and the git commit: what a baseline was measured on."""
    import onnx
    import onnxruntime

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "tinyaccel": __version__,
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "numpy": np.__version__,
    }
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            env["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return env


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or sys.platform


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
