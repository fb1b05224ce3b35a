"""Simulated results are kept: an unchanged sw_emu/hw_emu case is not simulated again, and the
report says which figures came from the cache; measured targets are always measured afresh."""

from __future__ import annotations

from helpers import Project


def test_simulated_results_are_reused_and_marked(project: Project) -> None:
    project.add_model("ic")
    args = ("--target", "aie:hw_emu,cpu:hw", "-k", "accuracy and int8")
    first = project.run(*args)
    first.assert_outcomes(passed=2)
    assert "(cached)" not in first.stdout.str()
    second = project.run(*args)
    second.assert_outcomes(passed=2)
    second.stdout.fnmatch_lines(
        [
            "ic*int8*cycles (cached)*",
            "results: 1 simulated case(s) reused from the result cache*",
        ]
    )
    cpu = [line for line in second.stdout.lines if line.startswith("ic") and " ns " in line]
    assert cpu and all("(cached)" not in line for line in cpu), "measured figures must be measured again"


def test_other_inputs_simulate_again(project: Project) -> None:
    project.add_model("ic")
    args = ("-m", "aie", "--target", "sw_emu", "-k", "accuracy and fp32")
    project.run(*args).assert_outcomes(passed=1)
    again = project.run(*args, "--tinyaccel-samples", "100")
    again.assert_outcomes(passed=1)
    assert "reused from the result cache" not in again.stdout.str()
