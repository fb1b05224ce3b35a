"""Slow builds: four generated MLPs on hls4ml sw_emu (qonnx + hls4ml conversion in one Python
process, then the design and its bridge compiled by two g++ side by side), cold each round
(`--cache-clear`), serial against `--tinyaccel-executor=processes:2` and against `-n 2`, each pair
alternating run by run."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from conftest import mlp_model_folder, run_pytest

MODELS = 4
HLS4ML = ["-m", "hls4ml", "--target", "sw_emu", "--cache-clear"]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("hls4ml") is None or shutil.which("g++") is None,
    reason="needs the hls4ml extra (pip install -e '.[hls4ml]') and g++",
)


@pytest.fixture(scope="module")
def hls_suite(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hls4ml_suite")
    for i in range(MODELS):
        mlp_model_folder(root / "models" / f"mlp{i}", seed=i)
    (root / "test_models.py").write_text("from pytest_tinyaccel.suite import *  # noqa\n")
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    run_pytest(root, "-m", "cpu", "--tinyaccel-update-golden")
    return root


def test_hls4ml_builds_on_a_process_pool(record_pair, hls_suite):
    record_pair(
        "hls4ml_processes",
        lambda: run_pytest(hls_suite, *HLS4ML, "--tinyaccel-executor=processes:2"),
        "hls4ml_serial",
        lambda: run_pytest(hls_suite, *HLS4ML),
        rounds=3,
        warmup=False,
    )


def test_hls4ml_builds_on_xdist_workers(record_pair, hls_suite):
    record_pair(
        "hls4ml_xdist",
        lambda: run_pytest(hls_suite, *HLS4ML, "-n", "2"),
        "hls4ml_serial_xdist_pair",
        lambda: run_pytest(hls_suite, *HLS4ML),
        rounds=3,
        warmup=False,
    )
