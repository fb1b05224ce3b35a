"""The tinyaccel NumPy emulator against ONNX Runtime on the same model and samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO
from pytest_tinyaccel.emulator import Graph
from pytest_tinyaccel.models import load_model
from pytest_tinyaccel.quantize import quantize_model
from pytest_tinyaccel.runtime import create_session, run_session, to_model_inputs

CASES = [(m, d) for m in ("ic", "kws", "ad") for d in ("fp32", "int8") if (REPO / "models" / m / "model.toml").exists()]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    cache: dict[tuple[str, str], tuple[Path, dict]] = {}

    def get(name: str, dtype: str):
        if (name, dtype) not in cache:
            model = load_model(REPO / "models" / name / "model.toml")
            path = model.onnx_path
            if dtype == "int8":
                path = tmp_path_factory.mktemp(name) / "int8.onnx"
                quantize_model(model.onnx_path, path, model.load_calibration(), model.quantization)
            cache[name, dtype] = (path, to_model_inputs(path, model.load_x(1000)))
        return cache[name, dtype]

    return get


@pytest.mark.parametrize("name, dtype", CASES)
def test_onnxruntime(record, prepared, name, dtype):
    path, feed = prepared(name, dtype)
    session = create_session(path)
    record(f"ort_{name}_{dtype}", lambda: run_session(session, feed), rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("name, dtype", CASES)
def test_emulator(record, prepared, name, dtype):
    path, feed = prepared(name, dtype)
    graph = Graph.load(path)
    record(f"emulator_{name}_{dtype}", lambda: graph.run(feed), rounds=5, warmup_rounds=1)
