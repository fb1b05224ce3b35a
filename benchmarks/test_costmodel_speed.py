"""Cost models cold: one model and dtype per fresh process, no cache (target: 10 s each).

Gemmini (its ZigZag timing, per layer) takes the float model; the AIE model takes the model
the target runs (the quantized one for int8). ZigZag's import (about a second)
is timed apart: the figure is the cost model's own work.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EMULATOR_CASES, REFERENCE, REFERENCE_MODELS, REPO, record_rate
from pytest_tinyaccel.models import load_model
from pytest_tinyaccel.quantize import quantize_model

TARGET_S = 10.0
COLD = """
import json, sys, time
from pytest_tinyaccel.costmodel import aie_perf, gemmini_perf
from pytest_tinyaccel.costmodel.zigzag_runner import load_stages
t0 = time.perf_counter(); load_stages(); t1 = time.perf_counter()
gemmini = gemmini_perf(sys.argv[1], sys.argv[3], timing="zigzag"); t2 = time.perf_counter()
aie = aie_perf(sys.argv[2], sys.argv[3]); t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "gemmini": t2 - t1, "aie": t3 - t2, "cycles": [gemmini.cycles, aie.cycles]}))
"""
_worst: dict[str, float] = {}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(float model, model the AIE target runs) per case."""

    def get(name: str, dtype: str) -> tuple[Path, Path]:
        if name in REFERENCE_MODELS:
            float_file, int8_file, _ = REFERENCE_MODELS[name]
            return REFERENCE / float_file, REFERENCE / (float_file if dtype == "fp32" else int8_file)
        model = load_model(REPO / "models" / name / "model.toml")
        if dtype == "fp32":
            return model.onnx_path, model.onnx_path
        quantized = tmp_path_factory.mktemp(name) / "int8.onnx"
        quantize_model(model.onnx_path, quantized, model.load_calibration(), model.quantization)
        return model.onnx_path, quantized

    return get


@pytest.mark.parametrize("name, dtype", EMULATOR_CASES)
def test_cost_models_cold(record, models, name, dtype):
    float_model, aie_model = models(name, dtype)
    argv = [sys.executable, "-c", COLD, str(float_model), str(aie_model), dtype]
    runs: list[dict[str, float]] = []

    def cold() -> None:
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.splitlines()[-1]))

    record(f"costmodel_{name}_{dtype}", cold, rounds=1)
    (run,) = runs
    for model in ("gemmini", "aie"):
        _worst[model] = max(_worst.get(model, 0.0), run[model])
    record_rate(
        f"cost models cold, {name} {dtype}",
        f"gemmini {run['gemmini']:.2f} s, aie {run['aie']:.2f} s (ZigZag import {run['import']:.1f} s apart)",
    )
    worst = max(_worst.values())
    record_rate(
        "cost models cold, slowest so far",
        f"{worst:.2f} s [target <= {TARGET_S:g} s: {'ok' if worst <= TARGET_S else 'OVER'}]",
    )
