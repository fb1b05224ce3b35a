"""Benchmarks (pytest-benchmark), not part of the test run:

    pytest benchmarks -p no:xdist --benchmark-only --benchmark-columns=median,min,max,rounds

Pairs measured side by side in one run are printed as ratios at the end.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_medians: dict[str, float] = {}
_rates: dict[str, str] = {}

# (label, numerator benchmark, denominator benchmark)
RATIOS = [
    ("plugin overhead: pytest cpu golden checks / plain ONNX Runtime script", "pytest_cpu_golden", "plain_script"),
    ("cold / warm (cached) bundled cpu suite", "suite_cold", "suite_warm"),
    ("-n 2 / serial wall time, bundled models on cpu, aie, gemmini (warm cache)", "suite_n2", "suite_serial"),
] + [
    (
        f"tinyaccel emulator / ONNX Runtime (1 thread), {model} {dtype}, same samples",
        f"emulator_{model}_{dtype}",
        f"ort_{model}_{dtype}",
    )
    for model in ("ic", "kws", "ad")
    for dtype in ("fp32", "int8")
]


@pytest.fixture
def record(benchmark):
    """Run `benchmark.pedantic` and remember the median under `name` for the ratio table."""

    def run(name: str, fn, rounds: int = 3, **kwargs):
        result = benchmark.pedantic(
            fn, rounds=rounds, iterations=1, warmup_rounds=kwargs.pop("warmup_rounds", 0), **kwargs
        )
        _medians[name] = benchmark.stats.stats.median
        return result

    return run


def record_rate(name: str, text: str) -> None:
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


def pytest_terminal_summary(terminalreporter):
    lines = [
        f"{label}: {_medians[a] / _medians[b]:.2f}x ({_medians[a]:.3f} s / {_medians[b]:.3f} s)"
        for label, a, b in RATIOS
        if a in _medians and b in _medians
    ]
    lines += [f"{name}: {text}" for name, text in _rates.items()]
    if lines:
        terminalreporter.write_sep("=", "tinyaccel benchmark ratios (medians, same run)")
        for line in lines:
            terminalreporter.write_line(line)
