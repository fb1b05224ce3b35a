"""Latency and throughput by MLPerf's rules: LoadGen SingleStream (90th-percentile
latency) and Offline (samples/s) for targets that run in real time, i.e. those
whose `Target.loadgen_factory(build)` names a factory (`cpu`, and a `command`
target in `hw` mode). This module knows no target: it runs the factory it is given.

Optional extra: `pip install pytest-tinyaccel[loadgen]` (mlcommons-loadgen).

LoadGen runs in a child process (pytest_tinyaccel.loadgen_worker, started through
pytest_tinyaccel.process) with a timeout, because an exception escaping the SUT
callback kills the process and a SUT that never completes a query hangs LoadGen
forever; and in a private working folder with a non-existent audit path, because
an `audit.config` in the working directory silently overrides the settings. The
child builds its inference callable from an importable factory:

    factory(**factory_kwargs) -> infer(batch: np.ndarray [B, ...]) -> anything

The entry points:

    measure(factory, factory_kwargs, samples_path, scenario, settings, timeout) -> dict
    measure_target(target, build, inputs, scenario, settings, timeout) -> dict | None
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .process import run_process

SCENARIOS = ("SingleStream", "Offline")
LOG_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")


class RealTimeTarget(Protocol):
    """What `measure_target` needs of a target (`Target.loadgen_factory`)."""

    def loadgen_factory(self, build: Any) -> tuple[str, dict[str, Any]] | None: ...


class LoadgenError(Exception):
    """The LoadGen run failed (the SUT raised, hung past the timeout, crashed ...)."""


@dataclass
class LoadgenSettings:
    """How long to measure. MLPerf's submission minimums (SingleStream: 1024
    queries and 600 s) are far above what a regression run wants; these
    defaults give a stable p90 in about a second, and LoadGen marks the result
    VALID against the settings actually used."""

    min_query_count: int = 100
    min_duration_ms: int = 1000
    max_duration_ms: int = 0
    """0 = no limit."""
    max_query_count: int = 0
    offline_batch: int = 64
    """Offline: samples per call of the inference callable."""
    calibrate: bool = True
    """Time a few calls first to set LoadGen's expected latency / QPS (keeps results VALID)."""
    expected_latency_ns: int | None = None
    expected_qps: float | None = None
    target_latency_percentile: float = 0.9
    performance_sample_count: int | None = None
    """Samples LoadGen keeps loaded (default: all given)."""

    @classmethod
    def coerce(cls, value: LoadgenSettings | dict[str, Any] | None) -> LoadgenSettings:
        if value is None:
            return cls()
        if isinstance(value, LoadgenSettings):
            return value
        try:
            return cls(**value)
        except TypeError as exc:
            raise LoadgenError(f"LoadGen settings: {exc}") from None


def unavailable() -> str | None:
    """None when mlcommons-loadgen can be imported here, else why not (a skip reason)."""
    try:
        import mlperf_loadgen  # noqa: F401
    except ImportError as exc:
        return f"mlcommons-loadgen is not installed (pip install 'pytest-tinyaccel[loadgen]'): {exc}"
    return None


def measure(
    factory: str,
    factory_kwargs: dict[str, Any] | None,
    samples_path: str | Path,
    scenario: str,
    settings: LoadgenSettings | dict[str, Any] | None = None,
    timeout: float = 120.0,
    log_dir: str | Path | None = None,
    pythonpath: list[str] | None = None,
) -> dict[str, Any]:
    """Run one LoadGen scenario in a child process and return its figures:

    - `scenario`, `valid` (LoadGen's result validity), `validity`, `invalid_reason`;
    - SingleStream: `p90_latency_ns` (the scenario's metric), `samples_per_second`
      (queries/s including LoadGen's overhead); Offline: `samples_per_second`
      (the scenario's metric), `p90_latency_ns` (of the one big query);
    - `mean_latency_ns`, `p99_latency_ns`, `query_count`, `duration_s`,
      `loadgen_version`, `settings` (effective), `loadgen_errors`.

    `samples_path`: a .npy [N, ...] of model-ready inputs (the model input's
    dtype). `log_dir`: keep LoadGen's summary and detail logs there.
    `pythonpath`: extra import paths for the factory's module.
    Raises LoadgenError: not installed, the factory or the SUT raised, timeout
    (the whole process group is killed), crash.
    """
    reason = unavailable()
    if reason:
        raise LoadgenError(reason)
    if scenario not in SCENARIOS:
        raise LoadgenError(f"scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
    opts = LoadgenSettings.coerce(settings)
    workdir = Path(tempfile.mkdtemp(prefix=f"tinyaccel-loadgen-{scenario}-"))
    request = {
        "factory": factory,
        "factory_kwargs": factory_kwargs or {},
        "samples_path": str(Path(samples_path).resolve()),
        "scenario": scenario,
        "settings": asdict(opts),
        "pythonpath": [str(p) for p in pythonpath or []],
    }
    (workdir / "request.json").write_text(json.dumps(request, indent=1, default=str))
    keep = False
    try:
        proc = run_process(
            [sys.executable, "-m", "pytest_tinyaccel.loadgen_worker", str(workdir / "request.json")],
            workdir,
            None,
            timeout,
            workdir / "worker.stdout.log",
            workdir / "worker.stderr.log",
            kill_grace=2.0,
        )
        result_path = workdir / "result.json"
        result = json.loads(result_path.read_text()) if result_path.is_file() and not proc.timed_out else None
        if proc.timed_out:
            keep = True
            raise LoadgenError(
                f"LoadGen {scenario} did not finish within {timeout:g} s (a SUT that never completes "
                f"its queries?); the worker's process group was killed. Logs: {workdir}"
            )
        if result is None:
            keep = True
            raise LoadgenError(
                f"the LoadGen {scenario} worker {proc.status()} without a result (crash in the SUT?); "
                f"logs: {workdir}\n{proc.tails()}"
            )
        if "error" in result:
            keep = True
            tail = "\n".join(result.get("traceback", "").rstrip().splitlines()[-6:])
            raise LoadgenError(f"LoadGen {scenario}: {result['error']}\n{tail}\n(logs: {workdir})")
        if log_dir is not None:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            for name in LOG_FILES:
                if (workdir / name).is_file():
                    shutil.copyfile(workdir / name, Path(log_dir) / f"{scenario}.{name}")
            result["log_dir"] = str(log_dir)
        return result
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def measure_target(
    target: RealTimeTarget,
    build: Any,
    inputs: dict[str, np.ndarray] | np.ndarray,
    scenario: str,
    settings: LoadgenSettings | dict[str, Any] | None = None,
    timeout: float = 120.0,
    log_dir: str | Path | None = None,
) -> dict[str, Any] | None:
    """`measure` for a finished build of `target` on `inputs` (the model-ready
    feed the session passes to `target.run`, or its single array). None when the
    target has no LoadGen factory (`Target.loadgen_factory`)."""
    spec = target.loadgen_factory(build)
    if spec is None:
        return None
    if isinstance(inputs, dict):
        if len(inputs) != 1:
            raise LoadgenError(f"LoadGen runs single-input models; got inputs {sorted(inputs)}")
        (inputs,) = inputs.values()
    with tempfile.TemporaryDirectory(prefix="tinyaccel-loadgen-samples-") as folder:
        path = Path(folder) / "samples.npy"
        np.save(path, np.ascontiguousarray(inputs), allow_pickle=False)
        return measure(spec[0], spec[1], path, scenario, settings, timeout, log_dir)
