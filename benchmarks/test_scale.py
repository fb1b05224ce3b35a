"""Cost per model as a suite grows: 1, 200 and 1,000 generated model folders, collection and a cpu run.

Each folder holds a tiny MLP (8 -> 16 -> 3, its own seeded weights, fp32), its
manifest, 20 test samples labelled by the model itself, and a golden made once
in setup (`--tinyaccel-update-golden`, which also warms the build cache). Timed,
per suite size: `pytest --collect-only -q -m cpu`, and the cpu golden checks
with the Markdown report written. The summary prints, for 200 and 1,000 models,
the time per model beyond the one-model suite (which is start-up: Python,
pytest, the plugin's imports), and their ratio (target: at most 1.2x, flat).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import mlp_model_folder, record_figure, record_rate

SIZES = (1, 200, 1000)
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "test_models.py"]


def _pytest(root: Path, *args: str) -> None:
    done = subprocess.run([*PYTEST, *args], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]


@pytest.fixture(scope="module")
def suites(tmp_path_factory) -> dict[int, Path]:
    """A rootdir per size: model folders, goldens, the suite module."""
    roots = {}
    for size in SIZES:
        root = tmp_path_factory.mktemp(f"scale{size}")
        for i in range(size):
            mlp_model_folder(root / "models" / f"mlp{i:03d}", seed=i)
        (root / "test_models.py").write_text("from pytest_tinyaccel.suite import *  # noqa\n")
        (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
        _pytest(root, "-m", "cpu", "--tinyaccel-update-golden")
        roots[size] = root
    return roots


_one_model: dict[str, float] = {}


def _per_model(record, name: str, key: str, size: int, run) -> None:
    median = record(f"{key}_{size}", run, rounds=5)
    if size == 1:
        _one_model[name] = median
        record_rate(f"scale, {name}, start-up (1 model)", f"{median:.2f} s")
        return
    extra = 1e3 * (median - _one_model[name]) / (size - 1)
    record_figure(f"per_model_{key}_{size}", extra / 1e3)  # the ratio table's 1,000 / 200 pair
    record_rate(f"scale, {name}, {size} models", f"{extra:.1f} ms per model beyond the first ({median:.2f} s in all)")


@pytest.mark.parametrize("size", SIZES)
def test_scale_collection(record, suites, size):
    _per_model(record, "collection", "collection", size, lambda: _pytest(suites[size], "--collect-only", "-m", "cpu"))


@pytest.mark.parametrize("size", SIZES)
def test_scale_golden_run(record, suites, size):
    args = ("-m", "cpu", "-k", "golden", f"--tinyaccel-report={suites[size] / 'profile.md'}")
    _per_model(record, "cpu golden checks with report", "golden", size, lambda: _pytest(suites[size], *args))
