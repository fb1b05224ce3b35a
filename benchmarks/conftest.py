"""Benchmarks (pytest-benchmark), not part of the test run:

    pytest benchmarks -p no:xdist --benchmark-only --benchmark-columns=median,min,max,rounds

Pairs measured side by side in one run are printed as ratios at the end.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO.parent / "shared" / "mlperf_tiny"
REFERENCE_MODELS = {
    "kws_ref": ("kws_ref_model_float32.onnx", "kws_ref_model_int8.onnx", "kws_sample_int8.npy"),
    "vww_ref": ("vww_96_float.onnx", "vww_96_int8.onnx", None),
    "ic_ref": ("pretrainedResnet_float.onnx", "pretrainedResnet_quant.onnx", None),
    "ad_ref": ("ad01_fp32.onnx", "ad01_int8.onnx", "ad_sample_float.npy"),
}
"""MLPerf Tiny reference models: (float file, int8 file, shipped samples or None)."""
EMULATOR_CASES = [
    (model, dtype)
    for model in [m for m in ("ic", "kws", "ad") if (REPO / "models" / m / "model.toml").exists()]
    + (list(REFERENCE_MODELS) if REFERENCE.is_dir() else [])
    for dtype in ("fp32", "int8")
]
_medians: dict[str, float] = {}
_rates: dict[str, str] = {}

# (label, numerator benchmark, denominator benchmark, target: the ratio must stay at or under it; None: no target)
RATIOS: list[tuple[str, str, str, float | None]] = [
    ("plugin overhead: pytest cpu golden checks / plain ONNX Runtime script", "pytest_cpu_golden", "plain_script", 1.1),
    ("cold / warm (cached) bundled cpu suite", "suite_cold", "suite_warm", None),
    ("-n 2 / serial wall time, bundled models on cpu, aie, gemmini (warm cache)", "suite_n2", "suite_serial", None),
] + [
    (
        f"tinyaccel emulator / ONNX Runtime (1 thread), {model} {dtype}, same samples",
        f"emulator_{model}_{dtype}",
        f"ort_{model}_{dtype}",
        3.0,
    )
    for model, dtype in EMULATOR_CASES
]


@pytest.fixture
def record(benchmark):
    """Run `benchmark.pedantic`, remember the median under `name` for the ratio table and return it (seconds)."""

    def run(name: str, fn, rounds: int = 3, **kwargs) -> float:
        benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=kwargs.pop("warmup_rounds", 0), **kwargs)
        _medians[name] = benchmark.stats.stats.median
        return _medians[name]

    return run


@pytest.fixture
def record_pair(benchmark):
    """Benchmark `fn` (the table's row) with `other` run and timed once before every round, untimed by
    pytest-benchmark: the two alternate, so load that comes and goes on a shared machine hits both alike.
    Remembers both medians (`name`, `other_name`) for the ratio table."""

    def run(name: str, fn, other_name: str, other, rounds: int) -> None:
        fn(), other()  # warm-up, untimed
        times: list[float] = []

        def timed_other() -> None:
            start = time.perf_counter()
            other()
            times.append(time.perf_counter() - start)

        benchmark.pedantic(fn, setup=timed_other, rounds=rounds, iterations=1)
        _medians[name] = benchmark.stats.stats.median
        _medians[other_name] = statistics.median(times)

    return run


def record_rate(name: str, text: str) -> None:
    """A line for the summary (a rate, a time per model ...), printed after the ratios; a line
    recorded again moves to the end."""
    _rates.pop(name, None)
    _rates[name] = text


@pytest.fixture
def suite_copy(tmp_path_factory) -> Path:
    """The bundled models, goldens and suite module in a throw-away rootdir (its own cache)."""
    root = tmp_path_factory.mktemp("suite")
    shutil.copytree(REPO / "models", root / "models", ignore=shutil.ignore_patterns("*.py"))
    shutil.copytree(REPO / "golden", root / "golden")
    (root / "test_models.py").write_text("from pytest_tinyaccel.suite import *  # noqa\n")
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    return root


def _verdict(a: str, b: str, target: float | None) -> str:
    if target is None:
        return ""
    return f" [target <= {target:g}x: {'ok' if _medians[a] / _medians[b] <= target else 'OVER'}]"


def pytest_terminal_summary(terminalreporter):
    lines = [
        f"{label}: {_medians[a] / _medians[b]:.2f}x ({_medians[a]:.3f} s / {_medians[b]:.3f} s){_verdict(a, b, target)}"
        for label, a, b, target in RATIOS
        if a in _medians and b in _medians
    ]
    lines += [f"{name}: {text}" for name, text in _rates.items()]
    if lines:
        terminalreporter.write_sep("=", "tinyaccel benchmark ratios (medians, same run)")
        for line in lines:
            terminalreporter.write_line(line)
