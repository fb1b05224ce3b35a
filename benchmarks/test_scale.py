"""Cost per model as a suite grows: 1, 50 and 200 generated model folders, collection and a cpu run.

Each folder holds a tiny MLP (8 -> 16 -> 3, its own seeded weights, fp32), its
manifest, 20 test samples labelled by the model itself, and a golden made once
in setup (`--tinyaccel-update-golden`, which also warms the build cache). Timed,
per suite size: `pytest --collect-only -q -m cpu`, and the cpu golden checks
with the Markdown report written. The summary prints, for 50 and 200 models,
the time per model beyond the one-model suite (which is start-up: Python,
pytest, the plugin's imports): equal figures mean the cost per model is flat.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import record_rate

SIZES = (1, 50, 200)
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "test_models.py"]
MANIFEST = """use_case = "Scale check"
task = "classification"
metric = "top1"
quality_target = 0.9
dtypes = ["fp32"]
ndata = 10
architecture = "MLP 8-16-3"
link = "https://example.invalid/generated"
"""


def _model_folder(folder: Path, seed: int) -> None:
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
    (folder / "model.toml").write_text(MANIFEST)


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
            _model_folder(root / "models" / f"mlp{i:03d}", seed=i)
        (root / "test_models.py").write_text("from pytest_tinyaccel.suite import *  # noqa\n")
        (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
        _pytest(root, "-m", "cpu", "--tinyaccel-update-golden")
        roots[size] = root
    return roots


_one_model: dict[str, float] = {}


def _per_model(record, name: str, size: int, run) -> None:
    median = record(f"{name}_{size}", run, rounds=5)
    if size == 1:
        _one_model[name] = median
        record_rate(f"scale, {name}, start-up (1 model)", f"{median:.2f} s")
        return
    extra = 1e3 * (median - _one_model[name]) / (size - 1)
    record_rate(f"scale, {name}, {size} models", f"{extra:.1f} ms per model beyond the first ({median:.2f} s in all)")


@pytest.mark.parametrize("size", SIZES)
def test_scale_collection(record, suites, size):
    _per_model(record, "collection", size, lambda: _pytest(suites[size], "--collect-only", "-m", "cpu"))


@pytest.mark.parametrize("size", SIZES)
def test_scale_golden_run(record, suites, size):
    args = ("-m", "cpu", "-k", "golden", f"--tinyaccel-report={suites[size] / 'profile.md'}")
    _per_model(record, "cpu golden checks with report", size, lambda: _pytest(suites[size], *args))
