"""MLPerf LoadGen scenarios in an isolated worker: real runs on the ic model's cpu
build and through a command target in hw mode; a SUT factory or SUT that
raises, and a SUT that hangs, end as LoadgenError instead of killing or
hanging pytest."""

from __future__ import annotations

import shutil
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import MODELS

from pytest_tinyaccel import loadgen
from pytest_tinyaccel.loadgen import LoadgenError
from pytest_tinyaccel.models import load_model
from pytest_tinyaccel.runtime import to_model_inputs
from pytest_tinyaccel.targets.base import Build
from pytest_tinyaccel.targets.command import CommandTarget
from pytest_tinyaccel.targets.cpu import CpuTarget

pytestmark = pytest.mark.skipif(loadgen.unavailable() is not None, reason=str(loadgen.unavailable()))

TINY = {"min_query_count": 50, "min_duration_ms": 200}

SUTS = """
import time
import numpy as np

def broken_factory(**kwargs):
    raise RuntimeError("no accelerator card found")

def flaky(fail_after):
    calls = [0]
    def infer(batch):
        calls[0] += 1
        if calls[0] > fail_after:
            raise ValueError(f"DMA timeout on call {calls[0]}")
        return batch.sum()
    return infer

def stuck(hang_after):
    calls = [0]
    def infer(batch):
        calls[0] += 1
        if calls[0] > hang_after:
            time.sleep(3600)
        return batch.sum()
    return infer
"""


@pytest.fixture(scope="module")
def ic() -> tuple:
    model = load_model(MODELS / "ic" / "model.toml")
    feed = to_model_inputs(model.onnx_path, model.load_x(100))
    return model, feed


@pytest.fixture(scope="module")
def cpu_build(ic, tmp_path_factory) -> tuple[CpuTarget, Build]:
    model, _ = ic
    folder = tmp_path_factory.mktemp("cpu-build")
    target = CpuTarget()
    build = Build(model, "fp32", "hw", model.onnx_path, folder)
    target.build(build)
    return target, build


@pytest.fixture
def suts(tmp_path: Path) -> list[str]:
    (tmp_path / "lg_suts.py").write_text(SUTS)
    return [str(tmp_path)]


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    path = tmp_path / "samples.npy"
    np.save(path, np.random.default_rng(0).random((16, 4), dtype=np.float32))
    return path


@pytest.mark.parametrize("scenario", ["SingleStream", "Offline"])
def test_real_run_on_the_cpu_build(cpu_build, ic, scenario: str, tmp_path: Path) -> None:
    target, build = cpu_build
    start = time.monotonic()
    result = loadgen.measure_target(target, build, ic[1], scenario, TINY, timeout=60, log_dir=tmp_path / "logs")
    assert time.monotonic() - start < 20
    assert result["scenario"] == scenario and result["p90_latency_ns"] > 0 and result["samples_per_second"] > 0
    assert result["valid"] is True, result  # calibrated expected latency / QPS: min duration and queries met
    assert result["loadgen_version"].startswith("6.0.17")
    if scenario == "SingleStream":
        assert result["query_count"] >= 50 and result["settings"]["batch"] == 1
    else:
        assert result["query_count"] == 1 and result["settings"]["batch"] == 64
    summary = (tmp_path / "logs" / f"{scenario}.mlperf_log_summary.txt").read_text()
    assert f"Scenario : {scenario}" in summary and "Result is : VALID" in summary


def test_factory_that_raises_is_a_clean_error(suts, samples) -> None:
    with pytest.raises(
        LoadgenError, match="the SUT factory lg_suts:broken_factory failed: RuntimeError: no accelerator card found"
    ):
        loadgen.measure("lg_suts:broken_factory", {}, samples, "SingleStream", TINY, timeout=60, pythonpath=suts)


@pytest.mark.parametrize("scenario", ["SingleStream", "Offline"])
def test_sut_that_raises_mid_run_is_a_clean_error(suts, samples, scenario: str) -> None:
    settings = {**TINY, "calibrate": False, "expected_latency_ns": 100_000, "expected_qps": 1000, "offline_batch": 4}
    with pytest.raises(LoadgenError, match=r"the SUT raised ValueError: DMA timeout on call 3 \(query of \d+ sample"):
        loadgen.measure("lg_suts:flaky", {"fail_after": 2}, samples, scenario, settings, timeout=60, pythonpath=suts)


def test_sut_that_hangs_hits_the_timeout(suts, samples) -> None:
    settings = {**TINY, "calibrate": False, "expected_latency_ns": 100_000}
    start = time.monotonic()
    with pytest.raises(LoadgenError, match="did not finish within 4 s .*process group was killed"):
        loadgen.measure(
            "lg_suts:stuck", {"hang_after": 5}, samples, "SingleStream", settings, timeout=4, pythonpath=suts
        )
    assert time.monotonic() - start < 15


def test_settings_and_scenario_are_checked(samples) -> None:
    with pytest.raises(LoadgenError, match="scenario must be one of SingleStream, Offline"):
        loadgen.measure("x:y", {}, samples, "Server")
    with pytest.raises(LoadgenError, match="unexpected keyword argument 'min_querys'"):
        loadgen.measure("x:y", {}, samples, "Offline", {"min_querys": 3})


def test_missing_loadgen_is_an_error_with_the_install_hint(monkeypatch, samples) -> None:
    monkeypatch.setattr(
        loadgen, "unavailable", lambda: "mlcommons-loadgen is not installed (pip install 'pytest-tinyaccel[loadgen]')"
    )
    with pytest.raises(LoadgenError, match=r"pip install 'pytest-tinyaccel\[loadgen\]'"):
        loadgen.measure("x:y", {}, samples, "Offline")


def test_command_target_in_hw_runs_its_command_per_query(ic, tmp_path: Path) -> None:
    """hw mode: every LoadGen query runs the configured run command once."""
    model, feed = ic
    tool = tmp_path / "board.py"
    tool.write_text(
        textwrap.dedent("""
        import sys, numpy as np
        x = np.load(sys.argv[1])
        np.save(sys.argv[2] + "/probs.npy", np.full((len(x), 10), 0.1, np.float32))
        with open(sys.argv[3], "a") as log:
            log.write(f"{len(x)}\\n")
    """)
    )
    calls = tmp_path / "calls.txt"
    target = CommandTarget(
        "board",
        {
            "kind": "command",
            "hw": {"run": ["{python}", str(tool), "{inputs}", "{outputs}", str(calls)]},
            "sw_emu": {"run": ["{python}", str(tool)]},
        },
    )
    build = Build(model, "fp32", "hw", model.onnx_path, tmp_path / "build")
    build.dir.mkdir()
    target.build(build)
    assert target.loadgen_factory(Build(model, "fp32", "sw_emu", model.onnx_path, build.dir)) is None
    result = loadgen.measure_target(
        target, build, feed, "SingleStream", {"min_query_count": 3, "min_duration_ms": 0}, timeout=60
    )
    assert result["p90_latency_ns"] > 1e6 and result["query_count"] >= 3  # a process per query: milliseconds
    lines = calls.read_text().split()
    assert len(lines) == result["sut_calls"] + 4 and set(lines) == {"1"}  # + warm-up and 3 calibration calls
    assert not any((build.dir / "runs").glob("loadgen-*/query-*"))  # successful queries leave no folders behind
    shutil.rmtree(build.dir)


def test_plugin_option_reports_loadgen_figures(project) -> None:
    """--tinyaccel-loadgen: the cpu rows carry SingleStream p90 and Offline samples/s, in the table and the JSON."""
    import json

    project.add_model("ic")
    result = project.run("-m", "cpu", "-k", "accuracy", "--tinyaccel-loadgen", "--tinyaccel-report", "profile.json")
    assert result.parseoutcomes()["passed"] == 2
    result.stdout.fnmatch_lines(["ic*fp32*ns (p90)*(Offline)*99.4% (Top 1, n=540)*"])
    for row in json.loads((project.path / "profile.json").read_text())["rows"]:
        assert row["loadgen"]["p90_latency_ns"] > 0 and row["loadgen"]["offline_samples_per_s"] > 0
        assert row["loadgen"]["valid"] is True, row["loadgen"]
