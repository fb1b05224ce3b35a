"""Scale: pytest-xdist runs give the serial run's results and reports, and the
build cache and goldens stay whole when several processes want them at once."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest
from helpers import Project

from pytest_tinyaccel.cache import BuildCache

pytest.importorskip("xdist", reason="pytest-xdist is not installed (pip install -e '.[test]')")

SIM_TARGET = """
from pytest_tinyaccel import Perf, RunResult, Target
from pytest_tinyaccel.runtime import create_session, run_session

class SimTarget(Target):
    name = "sim"
    modes = ("sw_emu", "hw_emu")

    def run(self, build, inputs):
        outputs = run_session(create_session(build.onnx_path), inputs)
        cycles = 12345.0 if build.dtype == "int8" else 54321.0
        return RunResult(outputs, Perf(simulator="sim", cycles=cycles, clock_hz=1e9, latency_ns=cycles,
                                       throughput=1e9 / cycles, resources={"Kernels": 1, "Buffers": 2, "Stream": 3,
                                                                           "PLIO": 4, "GMIO": 5}))

def pytest_tinyaccel_targets(config):
    return [SimTarget]
"""

REPORTS = ("profile.md", "profile.json", "profile.csv")


def _run_with_reports(project: Project, out: str, *args: str) -> pytest.RunResult:
    reports = [a for name in REPORTS for a in ("--tinyaccel-report", f"{out}/{name}")]
    return project.pytester.runpytest_subprocess(*args, *reports)


def test_parallel_reports_are_byte_identical_to_serial(project: Project) -> None:
    project.add_model("ic")
    project.pytester.makeconftest(SIM_TARGET)
    # a cache per run: each builds and simulates afresh (else the later ones reuse results, marked cached)
    serial = _run_with_reports(project, "serial", "-m", "sim", "-o", "cache_dir=serial/cache")
    parallel = _run_with_reports(project, "parallel", "-m", "sim", "-n", "2", "-o", "cache_dir=parallel/cache")
    grouped = _run_with_reports(
        project, "grouped", "-m", "sim", "-n", "2", "--dist", "loadgroup", "-o", "cache_dir=grouped/cache"
    )
    for result in (serial, parallel, grouped):
        assert result.parseoutcomes()["passed"] == 12
    for name in REPORTS:
        expected = (project.path / "serial" / name).read_bytes()
        assert (project.path / "parallel" / name).read_bytes() == expected, name
        assert (project.path / "grouped" / name).read_bytes() == expected, name
    table = [line for line in serial.outlines if line.startswith("ic ")]
    assert len(table) == 4 and table == [line for line in parallel.outlines if line.startswith("ic ")]


def test_bundled_suite_in_parallel_matches_serial_apart_from_wall_clock(project: Project) -> None:
    project.add_model("ic")
    serial = _run_with_reports(project, "serial", "-m", "cpu")
    parallel = _run_with_reports(project, "parallel", "-m", "cpu", "-n", "2", "--tinyaccel-update-golden")
    assert serial.parseoutcomes()["passed"] == parallel.parseoutcomes()["passed"] == 6

    def without_wall_clock(path: Path) -> dict:
        data = json.loads(path.read_text())
        for row in data["rows"]:
            perf = row["perf"]
            assert perf["latency_ns"] > 0 and perf["throughput"] > 0
            perf["latency_ns"] = perf["throughput"] = None
            row["error_stats"] = None  # against the committed golden, and the one the parallel run rewrote here
        return data

    assert without_wall_clock(project.path / "serial" / "profile.json") == without_wall_clock(
        project.path / "parallel" / "profile.json"
    )


def _build_once(args: tuple[str, str]) -> str:
    root, log = args
    cache = BuildCache(Path(root))

    def produce(folder: Path) -> None:
        with open(log, "a") as handle:
            handle.write("built\n")
        time.sleep(0.3)  # a slow compile: others arrive while it runs
        (folder / "part1").write_text("a" * 1000)
        (folder / "part2").write_text("b" * 1000)

    folder = cache.get("builds", "model", {"model": "same"}, produce)
    # whoever returns must see a complete build, never a half-written one
    assert (folder / "part1").read_text() == "a" * 1000 and (folder / "part2").read_text() == "b" * 1000
    return str(folder)


def test_concurrent_processes_build_once_and_never_see_half_a_build(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        folders = pool.map(_build_once, [(str(tmp_path / "cache"), str(log))] * 12)
    assert len(set(folders)) == 1
    assert log.read_text().splitlines() == ["built"]


def _failing_build(root: str) -> str:
    cache = BuildCache(Path(root))

    def produce(folder: Path) -> None:
        (folder / "partial").write_text("x")
        raise RuntimeError("compiler crashed")

    try:
        cache.get("builds", "model", {"model": "broken"}, produce)
    except RuntimeError as exc:
        return str(exc)
    return "no error"


def test_a_crashed_build_leaves_nothing_that_looks_complete(tmp_path: Path) -> None:
    assert _failing_build(str(tmp_path)) == "compiler crashed"
    leftovers = [p for p in (tmp_path / "builds").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []
    calls = []
    folder = BuildCache(tmp_path).get("builds", "model", {"model": "broken"}, lambda d: calls.append(d))
    assert calls == [folder] and (folder / ".complete").exists()


def test_concurrent_golden_updates_agree(project: Project) -> None:
    """Two workers updating the same model's golden at once: one writes, the other reuses it."""
    project.add_model("ic", golden=False)
    result = project.pytester.runpytest_subprocess(
        "-m", "cpu", "-n", "2", "--dist", "load", "--tinyaccel-update-golden"
    )
    assert result.parseoutcomes()["passed"] == 6
    assert result.stdout.str().count("golden ic: created") == 1
    assert project.pytester.runpytest_subprocess("-m", "cpu").parseoutcomes()["passed"] == 6


def test_parallel_summary_counts_each_build_and_result_once(project: Project) -> None:
    """The checks of one case land on both workers, and each worker looks its build and result up:
    the summary still counts every build and every reused result once, as the serial run does."""
    project.add_model("ic")
    project.pytester.makeconftest(SIM_TARGET)
    project.pytester.runpytest_subprocess("-m", "sim").assert_outcomes(passed=12)  # builds and simulates
    serial = project.pytester.runpytest_subprocess("-m", "sim")
    parallel = project.pytester.runpytest_subprocess("-m", "sim", "-n", "2")

    def counts(result: pytest.RunResult) -> list[str]:
        return [line for line in result.outlines if line.startswith(("builds:", "results:"))]

    assert counts(serial) == [
        "builds: 0 built, 9 reused from the cache",  # per case, and the int8 model and its quantization
        "results: 4 simulated case(s) reused from the result cache (same build and inputs; their figures are "
        "marked 'cached'); --cache-clear simulates again",
    ]
    assert counts(parallel) == counts(serial)
