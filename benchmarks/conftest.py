"""Benchmarks (pytest-benchmark), not part of the test run:

    pytest benchmarks -p no:xdist --benchmark-only --benchmark-columns=median,min,max,rounds

Pairs measured side by side in one run are printed as ratios at the end.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

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
PYTEST_WITHOUT_PLUGIN = [sys.executable, "-m", "pytest", "-q", "-p", "pytest_benchmark.plugin", "-p", "xdist.plugin"]
"""pytest with the plugins of the plugin's dependencies (ENV turns off autoloading)."""
PYTEST = [*PYTEST_WITHOUT_PLUGIN, "-p", "tinyaccel", "test_models.py"]
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
"""Both sides as a user runs them: byte code cached, and pytest with the plugin and the plugins of its
dependencies only (this project's test extras add hypothesis, whose pytest plugin imports all of
hypothesis at the end of every run, about 0.6 s)."""


def run_pytest(root: Path, *args: str) -> None:
    """`PYTEST` in `root` with `args`, as a user runs it (`ENV`); it must pass."""
    done = subprocess.run([*PYTEST, *args], cwd=root, capture_output=True, text=True, env=ENV)
    assert done.returncode == 0, done.stdout[-3000:]


_medians: dict[str, float] = {}
_rates: dict[str, str] = {}

# (label, numerator benchmark, denominator benchmark, target: the ratio must stay at or under it; None: no target)
RATIOS: list[tuple[str, str, str, float | None]] = [
    # pytest's own start-up, collection and reporting are in this pair: reported, the share below is the target
    (
        "plugin overhead: pytest cpu golden checks / plain ONNX Runtime script",
        "pytest_cpu_golden",
        "plain_script",
        None,
    ),
    (
        "the plugin's share: pytest cpu golden checks / the plain calls as one test of a pytest run without the plugin",
        "pytest_cpu_golden_again",
        "plain_pytest",
        1.1,
    ),
    ("cold / warm (cached) bundled cpu suite", "suite_cold", "suite_warm", None),
    ("-n 2 / serial wall time, bundled models on cpu, aie, gemmini (warm cache)", "suite_n2", "suite_serial", None),
    # slow builds: the pool should take at most 1/1.6 of the serial time
    ("processes:2 executor / serial, 4 hls4ml builds cold", "hls4ml_processes", "hls4ml_serial", 0.625),
    # the cost per model must stay flat as a suite grows (test_scale.py)
    (
        "scale: collection, per model at 1,000 / at 200 models",
        "per_model_collection_1000",
        "per_model_collection_200",
        1.2,
    ),
    (
        "scale: cpu golden checks + report, per model at 1,000 / at 200 models",
        "per_model_golden_1000",
        "per_model_golden_200",
        1.2,
    ),
    ("-n 2 / serial, 4 hls4ml builds cold", "hls4ml_xdist", "hls4ml_serial_xdist_pair", 0.625),
    ("hls4ml C simulation library of kws: g++ -O1 / hls4ml's -O3", "hls4ml_compile_O1", "hls4ml_compile_O3", 1.0),
] + [
    (
        f"tinyaccel emulator / ONNX Runtime (1 thread), {model} {dtype}, same samples",
        f"emulator_{model}_{dtype}",
        f"ort_{model}_{dtype}",
        2.5,
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

    def run(name: str, fn, other_name: str, other, rounds: int, warmup: bool = True) -> None:
        if warmup:  # untimed; a pair of cold runs (--cache-clear) has nothing to warm
            fn(), other()
        times: list[float] = []

        def timed_other() -> None:
            start = time.perf_counter()
            other()
            times.append(time.perf_counter() - start)

        benchmark.pedantic(fn, setup=timed_other, rounds=rounds, iterations=1)
        _medians[name] = benchmark.stats.stats.median
        _medians[other_name] = statistics.median(times)

    return run


def record_figure(name: str, seconds: float) -> None:
    """A figure derived from medians (a time per model ...) for the ratio table."""
    _medians[name] = seconds


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


MLP_MANIFEST = """use_case = "Scale check"
task = "classification"
metric = "top1"
quality_target = 0.9
dtypes = ["fp32"]
ndata = 10
architecture = "MLP 8-16-3"
link = "https://example.invalid/generated"
"""


def mlp_model_folder(folder: Path, seed: int) -> None:
    """A tiny MLP with seeded weights, its manifest and 20 samples labelled with its own predictions."""
    rng = np.random.default_rng(seed)
    w1, b1 = rng.standard_normal((8, 16)).astype(np.float32), rng.standard_normal(16).astype(np.float32)
    w2, b2 = rng.standard_normal((16, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Add", ["h", "b1"], ["hb"]),
            helper.make_node("Relu", ["hb"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["o"]),
            helper.make_node("Add", ["o", "b2"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        ],
        f"mlp{seed}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(v, n) for n, v in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    folder.mkdir(parents=True)
    onnx.save(model, folder / "model.onnx")
    x = rng.standard_normal((20, 8)).astype(np.float32)
    logits = np.maximum(x @ w1 + b1, 0) @ w2 + b2
    np.save(folder / "X_test.npy", x)
    np.save(folder / "y_test.npy", logits.argmax(axis=1).astype(np.int64))
    (folder / "model.toml").write_text(MLP_MANIFEST)


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
