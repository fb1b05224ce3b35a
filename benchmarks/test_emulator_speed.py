"""The tinyaccel NumPy emulator against ONNX Runtime on the same model and samples, one thread each.

Bundled models: the first 1000 test samples (fp32, and int8 quantized as the
plugin does). MLPerf Tiny references (../shared/mlperf_tiny, as shipped): inputs
on the int8 model's input grid (the shipped samples first, then seeded random
codes), fed as floats to the fp32 model and as codes to the int8 one; the int8
QDQ graphs run with qdq="ort", as the plugin runs them.

The two alternate run by run (`record_pair`), and BLAS is held to one thread
for the whole module (threadpoolctl comes with scikit-learn), so the emulator's
matrix products get no second core that ONNX Runtime (intra_op_num_threads = 1)
does not have.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from conftest import EMULATOR_CASES, REFERENCE, REFERENCE_MODELS, REPO
from pytest_tinyaccel.emulator import Graph
from pytest_tinyaccel.models import load_model
from pytest_tinyaccel.quantize import quantize_model
from pytest_tinyaccel.runtime import create_session, input_specs, run_session, to_model_inputs

REFERENCE_SAMPLES = {"kws_ref": 1000, "vww_ref": 100, "ic_ref": 200, "ad_ref": 1000}
"""Samples per reference model: about as much ONNX Runtime time as the bundled models take."""


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread() -> Iterator[None]:
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(model path, inputs, qdq mode) per case, built once."""
    cache: dict[tuple[str, str], tuple[Path, dict[str, np.ndarray], str]] = {}

    def get(name: str, dtype: str) -> tuple[Path, dict[str, np.ndarray], str]:
        if (name, dtype) in cache:
            return cache[name, dtype]
        if name in REFERENCE_MODELS:
            path = REFERENCE / REFERENCE_MODELS[name][0 if dtype == "fp32" else 1]
            qdq = "ort" if dtype == "int8" else "float"  # the int8 references are QDQ graphs
            cache[name, dtype] = (path, to_model_inputs(path, _reference_inputs(name)), qdq)
            return cache[name, dtype]
        model = load_model(REPO / "models" / name / "model.toml")
        path = model.onnx_path
        if dtype == "int8":
            path = tmp_path_factory.mktemp(name) / "int8.onnx"
            quantize_model(model.onnx_path, path, model.load_calibration(), model.quantization)
        cache[name, dtype] = (path, to_model_inputs(path, model.load_x(1000)), "float")
        return cache[name, dtype]

    return get


def _reference_inputs(name: str) -> np.ndarray:
    """Float inputs exactly on the int8 model's input grid, so that both dtypes see the same values."""
    _, int8_file, shipped = REFERENCE_MODELS[name]
    spec = input_specs(REFERENCE / int8_file)[0]
    assert spec.scale is not None and spec.zero_point is not None
    codes = np.random.default_rng(0).integers(-128, 128, size=(REFERENCE_SAMPLES[name], *spec.shape[1:]))
    if shipped:
        real = np.load(REFERENCE / shipped, allow_pickle=False).reshape(-1, *spec.shape[1:])
        if real.dtype.kind == "f":  # float features: onto the grid
            real = np.clip(np.rint(real / spec.scale) + spec.zero_point, -128, 127)
        codes[: len(real)] = real[: len(codes)]
    return ((codes - spec.zero_point) * spec.scale).astype(np.float32)


@pytest.mark.parametrize("name, dtype", EMULATOR_CASES)
def test_emulator_vs_onnxruntime(record_pair, prepared, name, dtype):
    """The emulator's time (the table's row); ONNX Runtime's (one intra-op thread) alternates with it."""
    path, feed, qdq = prepared(name, dtype)
    graph, session = Graph.load(path, qdq=qdq), create_session(path)
    record_pair(
        f"emulator_{name}_{dtype}",
        lambda: graph.run(feed),
        f"ort_{name}_{dtype}",
        lambda: run_session(session, feed),
        rounds=11,
    )
