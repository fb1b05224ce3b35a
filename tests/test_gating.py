"""Pre-merge gating with baselines, and the ONNX Runtime upgrade review."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import Project

from pytest_tinyaccel.config import ConfigError
from pytest_tinyaccel.margins import parse_margins

# A deterministic simulated target whose cycle count a test can inflate.
SCALED_TARGET = """
import os
from pytest_tinyaccel import Perf, RunResult, Target
from pytest_tinyaccel.runtime import create_session, run_session

class SimTarget(Target):
    name = "sim"
    modes = ("hw_emu",)

    def run(self, build, inputs):
        outputs = run_session(create_session(build.onnx_path), inputs)
        cycles = 100000.0 * float(os.environ.get("SIM_SLOWDOWN", "1"))
        return RunResult(outputs, Perf(simulator="sim", cycles=cycles, clock_hz=1e9,
                                       latency_ns=cycles, throughput=1e9 / cycles))

    def deterministic(self, mode):
        return False  # its figures follow SIM_SLOWDOWN, which no cache key sees

def pytest_tinyaccel_targets(config):
    return [SimTarget]
"""


def outcomes(result: pytest.RunResult) -> dict[str, int]:
    counts = result.parseoutcomes()
    counts.pop("deselected", None)
    return counts


@pytest.fixture
def sim_project(project: Project) -> Project:
    project.add_model("ic")
    project.pytester.makeconftest(SCALED_TARGET)
    return project


def test_save_baseline_then_5_percent_slower_fails_exactly_that_check(sim_project: Project, monkeypatch) -> None:
    saved = sim_project.run("-m", "sim", "--tinyaccel-save-baseline", "base.json")
    assert outcomes(saved) == {"passed": 6}
    data = json.loads((sim_project.path / "base.json").read_text())
    assert data["format"] == "tinyaccel-profile/3" and {"onnxruntime", "machine", "python"} <= set(data["environment"])
    assert {r["perf"]["cycles"] for r in data["rows"]} == {100000.0}

    same = sim_project.run("-m", "sim", "--tinyaccel-baseline", "base.json")
    assert outcomes(same) == {"passed": 8}
    same.stdout.fnmatch_lines(
        [
            "*baseline *base.json (2 rows), margins cycles=0%, ns=25%, throughput=25%, accuracy=0.5",
            "ic*fp32*100000 cycles (+0.0%)*(+0.00 pts)*",
        ]
    )

    monkeypatch.setenv("SIM_SLOWDOWN", "1.05")
    slower = sim_project.run("-m", "sim", "--tinyaccel-baseline", "base.json")
    assert outcomes(slower) == {"passed": 6, "failed": 2}
    slower.stdout.fnmatch_lines(
        [
            "FAILED test_suite.py::test_baseline[[]ic-sim-hw_emu-fp32[]]*",
            "FAILED test_suite.py::test_baseline[[]ic-sim-hw_emu-int8[]]*",
        ]
    )
    slower.stdout.fnmatch_lines(
        [
            "*ic-sim-hw_emu-fp32: worse than the baseline *base.json",
            "*REGRESSED cycles: baseline 100000 cycles, now 105000 cycles (+5.00%; allowed 0%)",
            "*REGRESSED throughput: baseline 10000 /s, now 9523.81 /s (-4.76%; allowed 0%)",
            "*ok        accuracy: baseline 99.44%, now 99.44% (+0.00 pts; allowed 0.5 pts)",
        ]
    )
    slower.stdout.fnmatch_lines(["ic*fp32*105000 cycles (+5.0%)*9524 (-4.8%)*"])

    # a margin that admits it, from the command line or from the manifest
    allowed = sim_project.run(
        "-m", "sim", "--tinyaccel-baseline", "base.json", "--tinyaccel-max-regression", "cycles=6%"
    )
    assert outcomes(allowed) == {"passed": 8}
    sim_project.append_manifest("ic", '[targets.sim]\nmax_regression = "cycles=5.5%"')
    per_model = sim_project.run("-m", "sim", "--tinyaccel-baseline", "base.json")
    assert outcomes(per_model) == {"passed": 8}


def test_new_and_missing_rows_are_reported(sim_project: Project) -> None:
    sim_project.run("-m", "sim", "--tinyaccel-dtype", "fp32", "--tinyaccel-save-baseline", "base.json")
    result = sim_project.run("-m", "sim", "--tinyaccel-dtype", "int8", "--tinyaccel-baseline", "base.json", "-rs")
    assert outcomes(result) == {"passed": 3, "skipped": 1}
    result.stdout.fnmatch_lines(
        [
            "ic*int8*100000 cycles (new)*",
            "*baseline *base.json: 0 rows compared",
            "*new (not in the baseline): ic-sim-hw_emu-int8",
            "*in the baseline but not run: ic-sim-hw_emu-fp32",
            "*SKIPPED*new: ic-sim-hw_emu-int8 has no row in the baseline*",
        ]
    )


def test_unreadable_baseline_and_bad_margins_are_usage_errors(sim_project: Project) -> None:
    (sim_project.path / "bad.json").write_text("{}")
    result = sim_project.run("--tinyaccel-baseline", "bad.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--tinyaccel-baseline *bad.json: cannot read it as a tinyaccel profile*"])
    result = sim_project.run("--tinyaccel-max-regression", "cycles=5")
    result.stderr.fnmatch_lines(
        ["*--tinyaccel-max-regression: key 'cycles': cycles margin must be a percentage, e.g. cycles=10%"]
    )


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("cycles=0%,ns=10%,accuracy=0.5", {"cycles": 0.0, "ns": 10.0, "accuracy": 0.5}),
        ({"throughput": "15%"}, {"throughput": 15.0}),
        ("", {}),
    ],
)
def test_parse_margins(spec, expected) -> None:
    assert parse_margins(spec, "x") == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("latency=5%", "key 'latency': unknown metric"),
        ("accuracy=1%", "accuracy margin is in points"),
        ("ns=fast%", "is not a number"),
        ("ns=-1%", "must not be negative"),
        ("ns=nan%", "must be a finite number"),
        ("throughput=inf%", "must be a finite number"),
    ],
)
def test_parse_margins_errors(spec, message) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_margins(spec, "x")


def _pretend_old_runtime(project: Project, version: str = "1.20.0") -> None:
    meta_path = project.path / "golden" / "ic" / "golden.json"
    meta = json.loads(meta_path.read_text())
    meta["onnxruntime"] = version
    meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def test_upgrade_review_passes_when_top5_is_kept(project: Project) -> None:
    project.add_model("ic")
    _pretend_old_runtime(project)
    result = project.run("-k", "upgrade")
    result.stdout.fnmatch_lines(
        ["tinyaccel: goldens were made with ONNX Runtime 1.20.0, * int8 sums (ic), installed is *: upgrade review on*"]
    )
    assert outcomes(result) == {"passed": 2}


def test_upgrade_review_fails_with_side_by_side_top5(project: Project) -> None:
    project.add_model("ic")
    _pretend_old_runtime(project)
    meta_path = project.path / "golden" / "ic" / "golden.json"
    meta = json.loads(meta_path.read_text())
    # the "old runtime" ranked sample 0 differently, with other probabilities
    meta["dtypes"]["fp32"]["top5"][0][0] = [4, 0.961574]
    meta["dtypes"]["fp32"]["top5"][0][1] = [1, 0.02]
    meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    result = project.run("-k", "upgrade")
    assert outcomes(result) == {"passed": 1, "failed": 1}
    result.stdout.fnmatch_lines(
        [
            "*ic fp32: ONNX Runtime 1.20.0 -> *: Top-5 changed in 2 place(s) (classes in order, probabilities "
            "within 0.01)",
            "*sample*rank*reference Top 5*obtained Top 5*",
            "*0*1*0.961574 4*0.998299 1*<-- differs",
            "*0*2*0.020000 1*0.001595 4*<-- differs",
            "*after review: pytest 'test_suite.py::test_upgrade_review[[]ic-fp32[]]' --tinyaccel-update-golden",
        ]
    )


def test_upgrade_review_reports_requantization(project: Project) -> None:
    """A new ONNX Runtime that quantizes differently: said so, with the accuracy change."""
    project.add_model("ic")
    _pretend_old_runtime(project)
    meta_path = project.path / "golden" / "ic" / "golden.json"
    meta = json.loads(meta_path.read_text())
    meta["dtypes"]["int8"]["model_sha256"] = "0" * 64
    meta["dtypes"]["int8"]["quality"]["value"] = 0.9999
    meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    result = project.run("-k", "upgrade")
    assert outcomes(result) == {"passed": 1, "failed": 1}
    result.stdout.fnmatch_lines(
        [
            "*ic int8: ONNX Runtime 1.20.0 -> *: the int8 model changed (sha256 000000000000 -> *); "
            "100.0% (Top 1) -> 99.4% (Top 1) (-0.55 pts) on the first 540 samples, more than the allowed 0.5 pts*"
        ]
    )
    # within the accuracy margin it passes, and the note is printed in the summary
    meta["dtypes"]["int8"]["quality"]["value"] = 0.996
    meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    result = project.run("-k", "upgrade")
    assert outcomes(result) == {"passed": 2}
    result.stdout.fnmatch_lines(
        ["upgrade review: ic int8: ONNX Runtime 1.20.0 -> *: the int8 model changed*(-0.16 pts)*"]
    )


def test_upgrade_review_compares_quality_when_only_the_runtime_changed(project: Project) -> None:
    """Same int8 model bytes, different outputs from the runtime's kernels, accuracy down by
    more than the margin: the review fails and says so (it used to look only at model hashes)."""
    project.add_model("ic")
    _pretend_old_runtime(project, "1.31.1")
    golden = project.path / "golden" / "ic"
    meta = json.loads((golden / "golden.json").read_text())
    # what the "old runtime" answered: another value on the golden samples, 0.7 points more accuracy
    out = np.load(golden / "int8.0.npy")
    out[1, 6] = np.float32(0.5)
    meta["dtypes"]["int8"]["quality"]["value"] = round(meta["dtypes"]["int8"]["quality"]["value"] + 0.007, 6)
    from pytest_tinyaccel.goldens import store

    store.write(
        golden,
        meta,
        np.load(golden / "inputs.npy"),
        {"fp32": {"probs": np.load(golden / "fp32.0.npy")}, "int8": {"probs": out}},
        {},
    )
    result = project.run("-k", "upgrade and int8")
    assert outcomes(result) == {"failed": 1}
    result.stdout.fnmatch_lines(
        [
            "*ic int8: ONNX Runtime 1.31.1 -> *: the int8 model is byte-identical; * -> * (-0.70 pts) on the "
            "first 540 samples, "
            "more than the allowed 0.5 pts",
            "*after review: pytest 'test_suite.py::test_upgrade_review[[]ic-int8[]]' --tinyaccel-update-golden",
        ]
    )


def test_update_after_review_prints_what_changed(project: Project) -> None:
    project.add_model("ic")
    _pretend_old_runtime(project)
    golden = project.path / "golden" / "ic"
    old = np.load(golden / "fp32.0.npy")
    result = project.run("-m", "cpu", "--tinyaccel-update-golden")
    assert outcomes(result)["passed"] == 6
    result.stdout.fnmatch_lines(
        [
            "golden ic: rewritten *golden/ic",
            "  onnxruntime: 1.20.0 -> *",
            "  fp32: 'probs' max |change| *, * of 100 values changed; Top-5 classes changed in 0 place(s); top1 "
            "0.9944 -> 0.9944",
        ]
    )
    # fp32 digits past the 7th follow the CPU's kernels: the reported change is what this CPU's ONNX Runtime gives
    new = np.load(golden / "fp32.0.npy")
    change = float(np.abs(new.astype(np.float64) - old).max())
    assert f"'probs' max |change| {change:.3g}, {int((new != old).sum())} of 100 values changed" in result.stdout.str()
    np.testing.assert_allclose(new, old, rtol=1e-6, atol=1e-7)
    assert "upgrade review on" not in project.run("-m", "cpu").stdout.str()
