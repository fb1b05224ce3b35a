"""What a user of the plugin meets besides the standard checks: options grouped by concern
in --help, fixture docs with a usage example in --fixtures, report columns added by a
conftest hook, and their own tests on cases that could not run."""

from __future__ import annotations

import csv
import io
import json

import pytest
from helpers import Project

REFUSING_TARGET = """
from pytest_tinyaccel import Perf, RunResult, Target, TargetError
from pytest_tinyaccel.runtime import create_session, run_session

class Picky(Target):
    name = "picky"
    modes = ("sw_emu",)

    def build(self, build):
        if build.dtype == "int8":
            raise TargetError("picky refuses int8 models: no integer datapath")

    def run(self, build, inputs):
        outputs = run_session(create_session(build.onnx_path), inputs)
        return RunResult(outputs, Perf(simulator="picky sim", cycles=500.0, clock_hz=1e9, latency_ns=500.0))

def pytest_tinyaccel_targets(config):
    return [Picky]
"""

README_TEST = """
def test_fits_latency_budget(tinyaccel):
    perf = tinyaccel.outcome.perf
    assert perf.latency_ns is None or perf.latency_ns < 2e6
"""


def test_help_groups_the_options_by_concern(project: Project) -> None:
    result = project.run("--help")
    text = result.stdout.str()
    groups = [
        "pytest-tinyaccel: which cases run:",
        "pytest-tinyaccel: goldens and the upgrade review:",
        "pytest-tinyaccel: how and where cases run:",
        "pytest-tinyaccel: reports, traces and pre-merge gating:",
    ]
    positions = [text.index(g) for g in groups]
    assert positions == sorted(positions)
    reports = text[positions[3] :]
    assert "--tinyaccel-report" in reports and "--tinyaccel-max-regression" in reports and "sqnr=1dB" in reports


def test_fixtures_print_a_usage_example(project: Project) -> None:
    result = project.run("--fixtures")
    result.stdout.fnmatch_lines(
        [
            "tinyaccel -- *plugin.py*",
            "*One model x target x mode x dtype*",
            "*def test_fits_latency_budget(tinyaccel):*",
            "*perf = tinyaccel.outcome.perf*",
        ]
    )
    result.stdout.fnmatch_lines(["tinyaccel_upgrade_review -- *", "*tinyaccel_upgrade_review.check()*"])


def test_a_conftest_hook_adds_report_columns_everywhere(project: Project) -> None:
    project.add_model("ic")
    project.pytester.makeconftest(
        REFUSING_TARGET
        + """
def pytest_tinyaccel_report_row(config, case):
    if case.row is None:
        return {"Budget": "not run", "Owner": "npu team"}
    return {"Budget": "ok" if case.row.perf.latency_ns < 2e6 else "over", "Owner": "npu team"}
"""
    )
    reports = [f"--tinyaccel-report=out/profile.{s}" for s in ("md", "json", "csv", "html")]
    result = project.run("-m", "picky", *reports)
    result.assert_outcomes(passed=3, failed=3)
    result.stdout.fnmatch_lines(["*Status*Latency*Budget*Owner*", "ic*fp32*passed*500 cycles*ok*npu team*"])
    md = (project.path / "out" / "profile.md").read_text()
    assert "| Budget" in md and "| Owner" in md and "not run" in md
    data = json.loads((project.path / "out" / "profile.json").read_text())
    extra = {c["case"]: c["extra"] for c in data["cases"]}
    assert extra["ic-picky-sw_emu-fp32"] == {"Budget": "ok", "Owner": "npu team"}
    assert extra["ic-picky-sw_emu-int8"] == {"Budget": "not run", "Owner": "npu team"}
    rows = list(csv.DictReader(io.StringIO((project.path / "out" / "profile.csv").read_text())))
    assert {r["case"]: r["Budget"] for r in rows} == {"ic-picky-sw_emu-fp32": "ok", "ic-picky-sw_emu-int8": "not run"}
    assert "<th>Budget</th>" in (project.path / "out" / "profile.html").read_text()


def test_own_test_skips_with_the_case_reason_when_the_standard_checks_report_it(project: Project) -> None:
    project.add_model("ic")
    project.pytester.makeconftest(REFUSING_TARGET)
    project.pytester.makepyfile(test_budget=README_TEST)
    result = project.run("-m", "picky", "-rs")
    result.assert_outcomes(passed=4, failed=3, skipped=1)
    result.stdout.fnmatch_lines(
        ["SKIPPED*ic-picky-sw_emu-int8 could not run*picky refuses int8 models: no integer datapath*"]
    )
    assert "FAILED test_budget.py" not in result.stdout.str()


def test_own_test_alone_errors_with_the_case_reason(project: Project) -> None:
    """Without the standard checks nothing else would say why: the user's test errors, in setup."""
    project.add_model("ic")
    project.pytester.makeconftest(REFUSING_TARGET)
    (project.path / "test_suite.py").unlink()
    project.pytester.makepyfile(test_budget=README_TEST)
    result = project.run("-m", "picky")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_fits_latency_budget[[]ic-picky-sw_emu-int8[]]*",
            "*ic-picky-sw_emu-int8 could not run: *picky refuses int8 models: no integer datapath",
        ]
    )


@pytest.mark.parametrize(
    "ini, expected",
    [
        ('tinyaccel_upgrade_tolerance = "abc"', "ini tinyaccel_upgrade_tolerance = 'abc': 'abc' is not a number"),
        (
            'tinyaccel_max_regression = "ns=ten%"',
            "ini tinyaccel_max_regression = 'ns=ten%': key 'ns': 'ten%' is not a number",
        ),
    ],
)
def test_bad_ini_values_are_usage_errors_not_tracebacks(project: Project, ini: str, expected: str) -> None:
    (project.path / "pyproject.toml").write_text(f"[tool.pytest.ini_options]\n{ini}\n")
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{expected}*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
