"""Build, run and score one case, without pytest: the work behind every check.

`Runner.run(case, golden)` resolves the dtype's model (quantizing it once, cached),
builds it for the target (cached by content hash), runs the test samples through
the build, measures accuracy and returns an `Outcome` holding the case's profile
row. It raises only errors a user can act on (`USER_ERRORS`); the session turns
them into failed tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .cache import BuildCache, file_sha256
from .cases import Case
from .config import ConfigError
from .errors import DataError
from .errorstats import ErrorStats, error_stats
from .goldens.store import Golden, GoldenError
from .metrics import check_labels, quality
from .modelfiles import model_sha256
from .models import Model
from .perf import Perf
from .record import BuildLog, ProfileRow
from .runnable import make_runnable, needs_changes
from .runtime import create_session, dequantized, input_specs, output_specs, to_model_inputs
from .targets.base import Build, RunResult, Target, TargetError

USER_ERRORS = (DataError, TargetError, GoldenError, ConfigError)
"""Errors whose message says what is wrong and what to do: a failed test, not a traceback."""


@dataclass
class Outcome:
    """What running a case produced: raw and float outputs of every sample run, perf, quality, row."""

    build: Build
    outputs: dict[str, np.ndarray]
    float_outputs: dict[str, np.ndarray]
    perf: Perf
    samples: int
    quality: float | None
    quality_error: str | None
    row: ProfileRow
    feed: dict[str, np.ndarray] = field(repr=False)
    worker: str = ""
    """host:pid of the process that built and ran the case."""


@dataclass
class RunSettings:
    """The run-wide choices a runner needs (from the command line and ini)."""

    cache_dir: Path
    samples: int | None = None
    trace_dir: Path | None = None
    loadgen: bool = False


class Runner:
    """Builds and runs cases of one session; caches quantized models and builds on disk."""

    def __init__(self, settings: RunSettings, registry: dict[str, Target]) -> None:
        self.settings = settings
        self.registry = registry
        self.cache = BuildCache(settings.cache_dir)
        self.results_reused: list[str] = []
        """Cases whose simulated outputs and figures came from the result cache."""
        self._dtype_models: dict[tuple[str, str], Path] = {}

    def build_log(self) -> BuildLog:
        """What this runner's caches did, for the run record."""
        cache = self.cache
        return BuildLog(
            built=cache.built,
            reused=cache.reused,
            failed=cache.failed,
            refused=cache.refused,
            repaired=cache.repaired,
            results_reused=self.results_reused,
        )

    def dtype_model(self, model: Model, dtype: str) -> Path:
        """The ONNX file that defines `dtype`: the float model (runnable.py: with ZipMap outputs unwrapped),
        or its int8 version (the author's, or ONNX Runtime's static quantization of it, cached)."""
        key = (model.name, dtype)
        if key not in self._dtype_models:
            input_specs(model.onnx_path)  # a corrupt model fails here, with its name, before any tool sees it
            if dtype == "fp32":
                path = self._runnable(model, model.onnx_path)
            elif model.int8_onnx_path is not None:
                path = self._runnable(model, model.int8_onnx_path)
            else:
                import onnxruntime

                parts = {
                    "model_sha256": model.sha256,
                    "calibration_sha256": file_sha256(model.calibration_path) if model.calibration_path else "",
                    "settings": model.quantization,
                    "onnxruntime": onnxruntime.__version__,
                }
                source = self._runnable(model, model.onnx_path)
                folder = self.cache.get(
                    "quantized", model.name, parts, lambda d: _quantize(model, source, d / "model.onnx")
                )
                path = folder / "model.onnx"
            self._dtype_models[key] = path
        return self._dtype_models[key]

    def _runnable(self, model: Model, path: Path) -> Path:
        """`path`, or its runnable form (runnable.py: ZipMap unwrapped, QONNX as QCDQ), cached by content."""
        if not needs_changes(path):
            return path
        parts = {"model_sha256": model_sha256(path), "runnable": RUNNABLE_VERSION}

        def produce(folder: Path) -> None:
            note = make_runnable(path, folder / "model.onnx")
            if note:
                (folder / RUNNABLE_NOTE).write_text(note + "\n")

        return self.cache.get("runnable", model.name, parts, produce) / "model.onnx"

    def _simulate(
        self, target: Target, build: Build, case: Case, feed: dict[str, np.ndarray]
    ) -> tuple[RunResult, bool]:
        """`target.run`, or the result it gave before: a simulated result is a deterministic function
        of the build and the inputs, so an unchanged case is not simulated again. Measured modes
        (`Target.deterministic`) always run. Returns the result and whether it was reused."""
        if not target.deterministic(case.mode):
            return target.run(build, feed), False
        parts = {
            "build": build.dir.name,
            "inputs": _inputs_digest(feed),
            "target_version": target.version,
            "int8_accumulation": build.int8_accumulation,
        }
        fresh: list[RunResult] = []

        def produce(folder: Path) -> None:
            fresh.append(target.run(build, feed))
            _save_result(folder, fresh[0])

        folder = self.cache.get("results", case.id, parts, produce)
        if fresh:
            return fresh[0], False
        self.results_reused.append(case.id)
        return _load_result(folder), True

    def run(self, case: Case, golden: Golden | None) -> Outcome:
        """Build (once) and run `case`; `golden` (None when missing) gives the reference's
        int8 arithmetic and the argmax agreement."""
        model, target = case.model, self.registry[case.target]
        onnx_path = self.dtype_model(model, case.dtype)
        parts = {
            "model_sha256": model_sha256(onnx_path),
            "dtype": case.dtype,
            "mode": case.mode,
            "target": target.name,
            "target_version": target.version,
            "settings": target.cache_settings(model, case.dtype, case.mode),
        }
        accumulation = str(golden.meta.get("int8_accumulation", "exact")) if golden is not None else "exact"
        build = Build(
            model=model,
            dtype=case.dtype,
            mode=case.mode,
            onnx_path=onnx_path,
            dir=Path(),
            shared_dir=self.settings.cache_dir / "shared" / target.name,
            int8_accumulation=accumulation,
        )
        folder = self.cache.get("builds", case.id, parts, lambda d: target.build(replace(build, dir=d)))
        build = replace(build, dir=folder)

        y = model.load_y()
        labelled = y is not None
        n = min(self.settings.samples or model.samples_for(case.target), len(y)) if y is not None else model.ndata
        x = model.load_x(max(n, model.ndata))
        if len(x) < max(n, model.ndata):
            raise DataError(
                f"{model.x_test_path.name} has {len(x)} samples; need {max(n, model.ndata)} "
                f"(ndata={model.ndata} golden samples and one input per label used for accuracy)"
            )
        feed = to_model_inputs(onnx_path, x)
        result, reused = self._simulate(target, build, case, feed)
        _validate_outputs(case, onnx_path, result.outputs, len(x))
        floats = dequantized(onnx_path, result.outputs)
        prediction = model.scored(floats)  # the manifest's scored output ([outputs]), not the first one
        value, error = None, None
        if y is None:
            error = f"{model.name} has no labelled test set (y_test): accuracy is not measured"
        else:
            n_classes = int(np.prod(prediction.shape[1:])) if prediction.ndim > 1 else 1
            problem = check_labels(model.metric, y[:n], n_classes)
            if problem:
                raise DataError(f"{model.y_test_path}: {problem}")
            try:
                # float16/float32 data as it is (its float32 values are exact; AUC reads it in float64)
                inputs = x[:n] if x.dtype in (np.float16, np.float32) else x[:n].astype(np.float32)
                value = quality(model.metric, prediction[:n], y[:n], inputs, model.scored_role)
            except ValueError as exc:
                error = f"{model.metric} cannot be computed: {exc}"
        perf = result.perf or Perf(simulator=target.simulator(case.mode))
        for note in (onnx_path.parent / QUANTIZATION_NOTE, onnx_path.parent / RUNNABLE_NOTE):
            if note.is_file():
                perf.simulator += "; " + note.read_text().strip()
        reference, made_by = golden_reference(golden, case, target, build)
        if made_by:
            perf.simulator += f"; int8 goldens checked against their {target.int8_arithmetic(build)} outputs"
        if self.settings.trace_dir is not None and perf.layers:
            from .costmodel.trace import write_trace

            write_trace(perf, self.settings.trace_dir / f"{case.id}.json", process_name=case.id)
        row = ProfileRow(
            model=model.name,
            target=case.target,
            mode=case.mode,
            dtype=case.dtype,
            use_case=model.use_case,
            architecture=model.architecture,
            link=model.link,
            metric=model.metric,
            quality_target=model.quality_target,
            bits=model.int8_bits if case.dtype == "int8" else "",
            perf=perf,
            from_cache=reused,
            resource_columns=target.resource_columns,
            accuracy=value,
            samples=n if labelled else 0,
            agreement=_argmax_agreement(model, prediction, reference),
            loadgen=_loadgen(target, build, feed) if self.settings.loadgen else None,
            error_stats=_error_stats(case, result.outputs, reference),
        )
        return Outcome(build, result.outputs, floats, perf, n, value, error, row, feed, _here())


def run_case(
    settings: RunSettings, registry: dict[str, Target], case: Case, golden: Golden | None
) -> tuple[Outcome, BuildLog]:
    """The unit of work an executor ships to another process or machine: build, run and score
    `case` there, and return its outcome with what the worker's build cache did."""
    runner = Runner(settings, registry)
    outcome = runner.run(case, golden)
    return outcome, runner.build_log()


def _here() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


RESULT = "result.json"


def _save_result(folder: Path, result: RunResult) -> None:
    names = list(result.outputs)
    for i, name in enumerate(names):
        np.save(folder / f"output-{i}.npy", np.ascontiguousarray(result.outputs[name]), allow_pickle=False)
    perf = result.perf.to_dict() if result.perf is not None else None
    # not sort_keys: the order of Perf.resources is the order the report shows them in
    (folder / RESULT).write_text(json.dumps({"outputs": names, "perf": perf}))


def _load_result(folder: Path) -> RunResult:
    data = json.loads((folder / RESULT).read_text())
    outputs = {name: np.load(folder / f"output-{i}.npy", allow_pickle=False) for i, name in enumerate(data["outputs"])}
    return RunResult(outputs, Perf.from_dict(data["perf"]) if data["perf"] is not None else None)


def _inputs_digest(feed: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(feed):
        array = np.ascontiguousarray(feed[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


RUNNABLE_VERSION = 2
"""Bumped when `runnable.make_runnable` changes what it writes."""
RUNNABLE_NOTE = "runnable-note.txt"
"""Beside a runnable model: what was done to the user's model to run it (the report says it)."""
QUANTIZATION_NOTE = "quantization-note.txt"
"""Beside a quantized model: how its quantization left ONNX Runtime's recommended path (the report says it)."""


def _quantize(model: Model, source: Path, dst: Path) -> None:
    """ONNX Runtime's static quantization of the model's runnable form, its failures said in one sentence."""
    from .quantize import quantize_model

    create_session(source)  # the float model must load in ONNX Runtime before it is quantized
    calibration = model.load_calibration()
    try:
        note = quantize_model(source, dst, calibration, model.quantization)
    except DataError:
        raise
    except Exception as exc:  # onnx / onnxruntime raise many types here
        raise DataError(
            f"{model.onnx_path.name}: ONNX Runtime's quantizer failed ({type(exc).__name__}: {exc}); fix the model "
            "or the [quantization] settings, or give a pre-quantized model_int8"
        ) from exc
    if note:
        (dst.parent / QUANTIZATION_NOTE).write_text(note + "\n")


def _loadgen(target: Target, build: Build, feed: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """MLPerf LoadGen SingleStream p90 latency and Offline samples/s (real-time targets only)."""
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
    return {
        "p90_latency_ns": results["SingleStream"]["p90_latency_ns"],
        "offline_samples_per_s": results["Offline"]["samples_per_second"],
        "valid": all(r["valid"] for r in results.values()),
    }


def golden_reference(
    golden: Golden | None, case: Case, target: Target, build: Build
) -> tuple[dict[str, np.ndarray], str | None]:
    """The golden outputs a case is compared with: for int8, those of the arithmetic the target follows where the
    golden keeps them apart (with what made them), else the main ones ({} without a golden for the dtype)."""
    if golden is None or case.dtype not in golden.outputs:
        return {}, None
    # the target's int8 arithmetic matters only where the golden keeps another one's outputs apart
    arithmetic = target.int8_arithmetic(build) if golden.variants.get(case.dtype) else None
    return golden.expected(case.dtype, arithmetic)


def _argmax_agreement(model: Model, prediction: np.ndarray, expected: dict[str, np.ndarray]) -> float | None:
    """Share of golden samples whose argmax equals ONNX Runtime's: the gate that
    matters when a fixed-point target cannot meet float tolerances."""
    if not model.is_classification:
        return None
    reference = expected.get(model.scored_output)
    if reference is None:
        return None
    ours = prediction[: len(reference)]
    if ours.shape != reference.shape:
        return None
    return float(np.mean(ours.reshape(len(ours), -1).argmax(1) == reference.reshape(len(reference), -1).argmax(1)))


def _error_stats(case: Case, outputs: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> dict[str, ErrorStats]:
    """Per output compared with the golden (not the ignored ones): the statistics teams compare across tools."""
    ndata = case.model.ndata
    found = {}
    for name, reference in expected.items():
        if name in outputs and case.model.role(name) != "ignore":
            stats = error_stats(outputs[name][:ndata], reference)
            if stats is not None:
                found[name] = stats
    return found


def _validate_outputs(case: Case, onnx_path: Path, outputs: dict[str, np.ndarray], count: int) -> None:
    for spec in output_specs(onnx_path):
        value = outputs.get(spec.name)
        if value is None:
            raise TargetError(
                f"target {case.target!r} returned outputs {sorted(outputs)}, missing the model's output '{spec.name}'"
            )
        if not isinstance(value, np.ndarray) or value.shape[:1] != (count,):
            shape = getattr(value, "shape", type(value).__name__)
            raise TargetError(
                f"target {case.target!r} returned output '{spec.name}' with shape {shape}; expected {count} "
                f"samples on the first axis"
            )
