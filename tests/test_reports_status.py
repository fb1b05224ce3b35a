"""Every report tells the same truth as pytest: a run with passing, failing, refused,
crashing, erroring, skipped and expected-to-fail cases writes Markdown, JSON, CSV and
HTML reports whose counts equal pytest's own, serially, under pytest-xdist and on a
process pool; each case carries its status, and figures of a case whose checks did
not all pass are marked."""

from __future__ import annotations

import csv
import io
import json
import re
from html import unescape
from pathlib import Path

import pytest
from helpers import Project

from pytest_tinyaccel.record import OUTCOMES

# mix: sw_emu is right; hw_emu reverses fp32 outputs and refuses int8 at build time; hw has no board.
# flaky: sw_emu reverses its outputs (its Top-5 check is an expected failure); hw_emu crashes.
MIXED_CONFTEST = """
import numpy as np
from pytest_tinyaccel import Perf, RunResult, Target, TargetError
from pytest_tinyaccel.runtime import create_session, run_session

def _run(build, inputs, reverse):
    outputs = run_session(create_session(build.onnx_path), inputs)
    if reverse:
        outputs = {k: v[:, ::-1].copy() for k, v in outputs.items()}
    return RunResult(outputs, Perf(simulator="mixsim", cycles=1234.0, clock_hz=1e9, latency_ns=1234.0))

class Mix(Target):
    name = "mix"
    modes = ("sw_emu", "hw_emu", "hw")

    def availability(self, mode):
        return "no mix board is attached to this machine" if mode == "hw" else None

    def build(self, build):
        if build.mode == "hw_emu" and build.dtype == "int8":
            raise TargetError("mix refuses this model: QLinearConv has no mapping on its tiles")

    def run(self, build, inputs):
        return _run(build, inputs, reverse=build.mode == "hw_emu")

class Flaky(Target):
    name = "flaky"
    modes = ("sw_emu", "hw_emu")

    def run(self, build, inputs):
        if build.mode == "hw_emu":
            raise RuntimeError("flaky simulator crashed")
        return _run(build, inputs, reverse=True)

def pytest_tinyaccel_targets(config):
    return [Mix, Flaky]
"""

# A user's own test; its fixture errors (in setup) on one case.
USER_TESTS = """
import pytest

@pytest.fixture
def budget(tinyaccel):
    if tinyaccel.case.target == "mix" and tinyaccel.case.mode == "sw_emu" and tinyaccel.case.dtype == "int8":
        raise RuntimeError("no latency budget is written down for int8")
    return 2e6

def test_fits_latency_budget(tinyaccel, budget):
    perf = tinyaccel.outcome.perf
    assert perf.latency_ns is None or perf.latency_ns < budget
"""

REPORTS = ("profile.md", "profile.json", "profile.csv", "profile.html")
EXPECTED = {"passed": 10, "failed": 14, "skipped": 11, "errors": 1, "xfailed": 4}


def _mixed(project: Project) -> None:
    project.add_model("ic")
    project.pytester.makeconftest(MIXED_CONFTEST)
    project.pytester.makepyfile(test_budget=USER_TESTS)
    project.append_manifest("ic", '[targets.flaky]\nxfail = { top5 = "flaky reverses its outputs (known)" }')


def _run(project: Project, out: str, *args: str) -> pytest.RunResult:
    reports = [f"--tinyaccel-report={out}/{name}" for name in REPORTS]
    return project.pytester.runpytest_subprocess("-m", "mix or flaky", "-rs", "-p", "no:cacheprovider", *reports, *args)


def _pytest_counts(result: pytest.RunResult) -> dict[str, int]:
    counts = {k: v for k, v in result.parseoutcomes().items() if k in OUTCOMES}
    return {k: counts.get(k, 0) for k in OUTCOMES}


def _words(text: str) -> dict[str, int]:
    """'10 passed, 1 error' -> counts in pytest's words."""
    found = {("errors" if word == "error" else word): int(n) for n, word in re.findall(r"(\d+) (\w+)", text)}
    return {k: found.get(k, 0) for k in OUTCOMES}


def _report_counts(folder: Path) -> dict[str, dict[str, int]]:
    md = (folder / "profile.md").read_text()
    (line,) = [line for line in md.splitlines() if line.startswith("**Tests:**")]
    data = json.loads((folder / "profile.json").read_text())
    rows = list(csv.DictReader(io.StringIO((folder / "profile.csv").read_text())))
    html = (folder / "profile.html").read_text()
    badges = {k: int(n) for k, n in re.findall(r'data-outcome="(\w+)" data-count="(\d+)"', html)}
    return {
        "md": _words(line),
        "json": data["summary"],
        "csv": {k: sum(int(r[k]) for r in rows) for k in OUTCOMES},
        "html": {k: badges.get(k, 0) for k in OUTCOMES},
    }


def _statuses(folder: Path) -> dict[str, tuple[str, str]]:
    data = json.loads((folder / "profile.json").read_text())
    return {c["case"]: (c["status"], c["detail"]) for c in data["cases"]}


def test_every_report_counts_the_mixed_run_as_pytest_does(project: Project) -> None:
    _mixed(project)
    result = _run(project, "serial")
    result.assert_outcomes(**EXPECTED)
    counts = _pytest_counts(result)
    for fmt, found in _report_counts(project.path / "serial").items():
        assert found == counts, fmt

    statuses = _statuses(project.path / "serial")
    assert statuses["ic-mix-sw_emu-fp32"] == ("passed", "")
    status, detail = statuses["ic-mix-hw_emu-int8"]  # refused: every check fails with the target's reason
    assert status == "failed" and "golden, top5: mix refuses this model: QLinearConv has no mapping" in detail
    assert {"accuracy", "golden", "top5"} == set(detail.split(":")[0].split(", "))  # named together, said once
    status, detail = statuses["ic-mix-sw_emu-int8"]  # the user's fixture errored in setup
    assert status == "error" and detail.startswith("fits_latency_budget (setup): RuntimeError: no latency budget")
    assert statuses["ic-mix-hw-fp32"] == ("skipped", "no mix board is attached to this machine")
    status, detail = statuses["ic-flaky-hw_emu-int8"]  # a crash: failed checks, the top5 one expected
    assert status == "failed" and "RuntimeError: flaky simulator crashed" in detail
    assert statuses["ic-mix-hw_emu-fp32"][0] == "failed" and statuses["ic-flaky-sw_emu-fp32"][0] == "failed"

    # cases without figures are listed under the terminal table with why; passing upgrade reviews are not
    result.stdout.fnmatch_lines(["no figures (the case did not run to the end):", "  ic-flaky-hw_emu-fp32: failed*"])
    listed = result.stdout.str().split("no figures (the case did not run to the end):")[1].split("tinyaccel tests:")[0]
    assert sorted(line.split(":")[0].strip() for line in listed.strip().splitlines()) == [
        "ic-flaky-hw_emu-fp32",
        "ic-flaky-hw_emu-int8",
        "ic-mix-hw_emu-int8",
    ]

    # the user's own test never fails for a reason that belongs to the case's standard checks
    result.stdout.fnmatch_lines(["*SKIPPED*ic-mix-hw_emu-int8 could not run*mix refuses this model*"])
    assert "FAILED test_budget.py" not in result.stdout.str()

    md = (project.path / "serial" / "profile.md").read_text()
    section = md[md.index("## mix hw_emu") : md.index("## mix sw_emu")]
    (line,) = [line for line in section.splitlines() if line.startswith("| Image Classification")]
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[1:4] == ["fp32", "failed (accuracy, golden, top5)", "1234 cycles †"]
    assert "1234 cycles <br/> 1234 cycles †" in md[md.index("## mix sw_emu") :]  # passed: fp32; error: int8
    assert "| ic-mix-hw_emu-int8 " in md and "mix refuses this model" in md  # listed though it has no figures
    html = unescape((project.path / "serial" / "profile.html").read_text())
    table = html[html.index('<section id="cases-status">') :]
    order = re.findall(r'data-status="(\w+)"', table[: table.index("</section>")])
    assert order[0] == "error" and order[-1] == "skipped" and order == sorted(order, key=STATUS_ORDER.index)
    rows = json.loads((project.path / "serial" / "profile.json").read_text())["rows"]
    assert {r["status"] for r in rows if r["target"] == "mix" and r["mode"] == "hw_emu"} == {"failed"}


STATUS_ORDER = ["error", "failed", "xpassed", "xfailed", "passed", "skipped"]


@pytest.mark.parametrize("where", [("-n", "2"), ("--tinyaccel-executor=processes:2",)], ids=["xdist", "processes"])
def test_parallel_and_pooled_runs_count_as_pytest_does(project: Project, where: tuple[str, ...]) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is not installed (pip install -e '.[test]')")
    _mixed(project)
    serial, other = _run(project, "serial"), _run(project, "other", *where)
    serial.assert_outcomes(**EXPECTED)
    other.assert_outcomes(**EXPECTED)
    counts = _pytest_counts(other)
    for fmt, found in _report_counts(project.path / "other").items():
        assert found == counts, fmt
    expected, found = _statuses(project.path / "serial"), _statuses(project.path / "other")
    if where[0] != "-n":  # on a pool a crash reaches the check as the pool's message, not as a traceback
        crash = "ic-flaky-hw_emu-fp32", "ic-flaky-hw_emu-int8"
        assert all("flaky simulator crashed" in found[c][1] for c in crash)
        expected = {k: v for k, v in expected.items() if k not in crash}
        found = {k: v for k, v in found.items() if k not in crash}
    assert found == expected
