"""Error statistics against the golden: the figures themselves, their place in the golden
failure message and in every report, and a baseline that gates on SQNR."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
from helpers import Project

from pytest_tinyaccel.errorstats import ErrorStats, error_stats
from pytest_tinyaccel.margins import parse_margins


def test_figures_by_hand() -> None:
    s = error_stats(np.array([3.0, 5.0], np.float32), np.array([3.0, 4.0], np.float32))
    assert s is not None
    assert s.max_abs == 1.0 and s.rmse == pytest.approx(math.sqrt(0.5))
    assert s.sqnr_db == pytest.approx(10 * math.log10(25 / 1))
    assert s.cosine == pytest.approx((9 + 20) / (math.sqrt(34) * 5))
    assert s.within_1lsb is None  # float outputs have no LSB
    same = error_stats(np.zeros(4, np.int8), np.zeros(4, np.int8))
    assert same is not None and same.sqnr_db == math.inf and same.cosine == 1.0 and same.within_1lsb == 1.0
    off = error_stats(np.array([1, 2, 5, -128], np.int8), np.array([1, 3, 3, 127], np.int8))
    assert off is not None and off.within_1lsb == 0.5 and off.max_abs == 255.0  # no int8 wrap-around
    assert error_stats(np.zeros(3), np.zeros(4)) is None
    nan = error_stats(np.array([np.nan, 1.0]), np.array([1.0, 1.0]))
    assert nan is not None and math.isnan(nan.sqnr_db) and math.isnan(nan.rmse)


def test_chunked_figures_equal_the_whole_array_formula() -> None:
    rng = np.random.default_rng(7)
    expected = rng.normal(size=(3, 70_001)).astype(np.float32)  # several chunks, the last one short
    obtained = expected + rng.normal(scale=1e-3, size=expected.shape).astype(np.float32)
    s = error_stats(obtained, expected)
    e, g = expected.astype(np.float64).ravel(), obtained.astype(np.float64).ravel()
    assert s is not None
    assert s.max_abs == np.abs(g - e).max()
    assert s.rmse == pytest.approx(np.sqrt(np.mean((g - e) ** 2)), rel=1e-12)
    assert s.sqnr_db == pytest.approx(10 * np.log10(np.sum(e**2) / np.sum((g - e) ** 2)), rel=1e-12)
    assert s.cosine == pytest.approx(g @ e / (np.linalg.norm(g) * np.linalg.norm(e)), rel=1e-12)


def test_non_finite_figures_survive_json() -> None:
    s = ErrorStats(0.0, 0.0, math.inf, 1.0, 1.0, 10)
    text = json.dumps(s.to_dict(), allow_nan=False)  # strict JSON: no Infinity literal
    assert ErrorStats.from_dict(json.loads(text)) == s
    with pytest.raises(TypeError, match="sqnr_db is not a number"):
        ErrorStats.from_dict({"max_abs": 0, "rmse": 0, "sqnr_db": None, "cosine": 1})


def test_sqnr_margin_is_in_db() -> None:
    assert parse_margins("sqnr=1dB,ns=10%", "x") == {"sqnr": 1.0, "ns": 10.0}
    assert parse_margins("sqnr = 0.5 dB", "x") == {"sqnr": 0.5}
    with pytest.raises(Exception, match="sqnr margin is in dB"):
        parse_margins("sqnr=1%", "x")


NOISY_TARGET = """
import os
import numpy as np
from pytest_tinyaccel import Perf, RunResult, Target
from pytest_tinyaccel.runtime import create_session, run_session

class Noisy(Target):
    name = "noisy"
    modes = ("sw_emu",)

    def deterministic(self, mode):
        return False  # its outputs follow NOISE, which no cache key sees

    def run(self, build, inputs):
        outputs = run_session(create_session(build.onnx_path), inputs)
        noise = float(os.environ.get("NOISE", "0"))
        rng = np.random.default_rng(0)
        outputs = {k: (v + noise * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in outputs.items()}
        return RunResult(outputs, Perf(simulator="noisy sim", cycles=100.0, clock_hz=1e9))

def pytest_tinyaccel_targets(config):
    return [Noisy]
"""


def test_golden_failure_and_every_report_carry_the_statistics(project: Project, monkeypatch) -> None:
    project.add_model("ic")
    project.pytester.makeconftest(NOISY_TARGET)
    monkeypatch.setenv("NOISE", "1e-3")
    reports = [f"--tinyaccel-report=out/profile.{s}" for s in ("md", "json", "csv", "html")]
    result = project.run("-m", "noisy", "--tinyaccel-dtype=fp32", "-k", "golden", *reports)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*output 'probs' differs from the ONNX Runtime golden*",
            "*error statistics: max abs *, RMSE *, SQNR * dB, cosine 0.99*",
        ]
    )
    data = json.loads((project.path / "out" / "profile.json").read_text())
    (row,) = data["rows"]
    stats = ErrorStats.from_dict(row["error_stats"]["probs"])
    assert 20 < stats.sqnr_db < 80 and stats.rmse == pytest.approx(1e-3, rel=0.2) and stats.elements == 100
    md = (project.path / "out" / "profile.md").read_text()
    assert "## Error statistics against the golden" in md and f"{stats.sqnr_db:.1f} dB" in md
    (line,) = list(csv.DictReader(io.StringIO((project.path / "out" / "profile.csv").read_text())))
    assert float(line["probs.sqnr_db"]) == pytest.approx(stats.sqnr_db)
    html = (project.path / "out" / "profile.html").read_text()
    assert '<section id="error-stats">' in html and f"{stats.sqnr_db:.1f} dB" in html


def test_baseline_gates_on_sqnr_when_asked(project: Project, monkeypatch) -> None:
    project.add_model("ic")
    project.pytester.makeconftest(NOISY_TARGET)
    select = ("-m", "noisy", "--tinyaccel-dtype=fp32", "-k", "baseline")
    monkeypatch.setenv("NOISE", "1e-4")
    project.run("-m", "noisy", "--tinyaccel-dtype=fp32", "--tinyaccel-save-baseline=base.json")
    monkeypatch.setenv("NOISE", "1e-3")  # 20 dB worse
    ungated = project.run(*select, "--tinyaccel-baseline=base.json")
    ungated.assert_outcomes(passed=1)
    gated = project.run(*select, "--tinyaccel-baseline=base.json", "--tinyaccel-max-regression=sqnr=1dB")
    gated.assert_outcomes(failed=1)
    gated.stdout.fnmatch_lines(["*REGRESSED sqnr probs: baseline * dB, now * dB (-*dB; allowed 1 dB)"])
    monkeypatch.setenv("NOISE", "1e-4")
    same = project.run(*select, "--tinyaccel-baseline=base.json", "--tinyaccel-max-regression=sqnr=1dB")
    same.assert_outcomes(passed=1)
