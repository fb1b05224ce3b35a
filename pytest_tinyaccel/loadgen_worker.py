"""The process that runs one MLPerf LoadGen scenario (see pytest_tinyaccel.loadgen).

    python -m pytest_tinyaccel.loadgen_worker REQUEST.json

Runs in a private working folder (LoadGen writes its logs there, and an
`audit.config` lying in the working directory would silently change the
settings; the audit path passed is one that does not exist). Writes
`result.json` next to the request: the figures, or {"error": ...}.

The SUT never lets an exception escape into LoadGen (that would kill the
process): the first error is recorded, every query still gets completed so the
test ends, and the error is reported instead of figures.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .readers.mlperf import loadgen_detail


def load_factory(spec: str) -> Callable[..., Any]:
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"factory {spec!r} must be 'package.module:function'")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _calibrate(infer: Callable[[np.ndarray], Any], samples: np.ndarray, batch: int, repeats: int = 3) -> float:
    """Seconds per call of `infer` on `batch` samples (median of a few, after a warm-up)."""
    x = samples[np.arange(batch) % len(samples)]
    infer(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        infer(x)
        times.append(time.perf_counter() - start)
    return float(sorted(times)[len(times) // 2])


def run(request: dict[str, Any], workdir: Path) -> dict[str, Any]:
    import mlperf_loadgen as lg

    for entry in reversed(request.get("pythonpath", [])):
        sys.path.insert(0, entry)
    scenario = request["scenario"]
    s = request["settings"]
    samples = np.load(request["samples_path"], allow_pickle=False)
    if samples.ndim < 1 or len(samples) == 0:
        return {"error": f"{request['samples_path']} holds no samples"}
    try:
        infer = load_factory(request["factory"])(**request.get("factory_kwargs", {}))
    except Exception as exc:
        return {
            "error": f"the SUT factory {request['factory']} failed: {type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }
    batch = 1 if scenario == "SingleStream" else max(1, int(s["offline_batch"]))

    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, scenario)
    settings.mode = lg.TestMode.PerformanceOnly
    settings.min_query_count = int(s["min_query_count"])
    settings.min_duration_ms = int(s["min_duration_ms"])
    if s.get("max_duration_ms"):
        settings.max_duration_ms = int(s["max_duration_ms"])
    if s.get("max_query_count"):
        settings.max_query_count = int(s["max_query_count"])
    calibration = None
    try:
        if s.get("calibrate", True):
            calibration = _calibrate(infer, samples, batch)
    except Exception as exc:
        return {
            "error": f"the SUT raised {type(exc).__name__}: {exc} (calibration call on {batch} sample(s))",
            "traceback": traceback.format_exc(),
        }
    if scenario == "SingleStream":
        # Too low an estimate only makes LoadGen schedule more queries than it issues
        # (it stops once min_duration and min_query_count are met); too high a
        # one ends the run early (INVALID). Halve the measured figure.
        expected = s.get("expected_latency_ns") or (calibration * 1e9 / 2 if calibration else None)
        if expected:
            settings.single_stream_expected_latency_ns = max(1, int(expected))
        settings.single_stream_target_latency_percentile = float(s.get("target_latency_percentile", 0.9))
    else:
        qps = s.get("expected_qps") or (batch / calibration if calibration else None)
        if qps:
            # LoadGen sizes the single Offline query from this. Twice the measured rate keeps
            # the run past min_duration (a VALID result) even when the calibration ran on a
            # busier machine than the run itself (seen with pytest-xdist on two cores).
            settings.offline_expected_qps = float(qps) * 2.0

    failure: dict[str, Any] = {}
    calls = [0]

    def issue(query_samples: list[Any]) -> None:
        for start in range(0, len(query_samples), batch):
            chunk = query_samples[start : start + batch]
            if not failure:
                try:
                    infer(samples[[q.index for q in chunk]])
                    calls[0] += 1
                except BaseException as exc:  # never into LoadGen: it would abort the process
                    failure.update(
                        error=f"the SUT raised {type(exc).__name__}: {exc} (query of {len(chunk)} sample(s))",
                        traceback=traceback.format_exc(),
                    )
            lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0) for q in chunk])

    def flush() -> None:
        pass

    sut = lg.ConstructSUT(issue, flush)
    count = len(samples)
    loaded = min(count, int(s.get("performance_sample_count") or count))
    qsl = lg.ConstructQSL(count, loaded, lambda _: None, lambda _: None)
    log = lg.LogSettings()
    log.log_output.outdir = str(workdir)
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = False
    start = time.monotonic()
    try:
        lg.StartTestWithLogSettings(sut, qsl, settings, log, str(workdir / "no-audit.config"))
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    seconds = time.monotonic() - start
    if failure:
        return failure
    detail = loadgen_detail((workdir / "mlperf_log_detail.txt").read_text(encoding="utf-8", errors="replace"))
    expectation = (
        {"expected_latency_ns": settings.single_stream_expected_latency_ns}
        if scenario == "SingleStream"
        else {"expected_qps": settings.offline_expected_qps}
    )
    return {
        "scenario": scenario,
        "valid": detail.get("result_validity") == "VALID",
        "validity": detail.get("result_validity"),
        "invalid_reason": (detail.get("result_invalid_reason") or "").strip() or None,
        "min_duration_met": detail.get("result_min_duration_met"),
        "min_queries_met": detail.get("result_min_queries_met"),
        "query_count": detail.get("result_query_count"),
        "mean_latency_ns": detail.get("result_mean_latency_ns"),
        "p90_latency_ns": detail.get("result_90.00_percentile_latency_ns"),
        "p99_latency_ns": detail.get("result_99.00_percentile_latency_ns"),
        "samples_per_second": (
            detail.get("result_samples_per_second")
            if scenario == "Offline"
            else detail.get("result_qps_with_loadgen_overhead")
        ),
        "sut_calls": calls[0],
        "calibration_s_per_call": calibration,
        "duration_s": round(seconds, 3),
        "loadgen_version": detail.get("loadgen_version"),
        "settings": {
            "min_query_count": settings.min_query_count,
            "min_duration_ms": settings.min_duration_ms,
            "samples": count,
            "batch": batch,
            **expectation,
        },
        "loadgen_errors": detail.get("errors", []),
    }


def main(argv: list[str]) -> int:
    request_path = Path(argv[1])
    request = json.loads(request_path.read_text())
    workdir = request_path.parent
    try:
        result = run(request, workdir)
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    (workdir / "result.json").write_text(json.dumps(result, indent=1, default=str))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
