"""Wall time of the bundled cpu suite: plugin vs plain script, cold vs warm, -n 2 vs serial; the main job
(every model on every target, with the report) warm; hls4ml's compilation at -O1 vs -O3."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ENV, PYTEST_WITHOUT_PLUGIN, REPO, run_pytest

CPU = ["-m", "cpu"]
EMULATED = ["-m", "cpu or aie or gemmini"]  # every bundled model on the shipped targets (warm: ZigZag cached)


def _pytest(root: Path, *args: str) -> None:
    """The bundled suite's cpu cases unless `args` select others."""
    run_pytest(root, *(args if "-m" in args else (*CPU, *args)))


def _quantized_models(root: Path) -> dict[str, str]:
    """The int8 models the plugin's (warm) cache holds, so the plain script needs no quantization."""
    found = {}
    for key in (root / ".pytest_cache" / "d" / "tinyaccel" / "quantized").glob("*/key.json"):
        found[key.parent.name.rsplit("-", 1)[0]] = str(key.parent / "model.onnx")
    return found


def _plain_script(root: Path) -> list[str]:
    """The plain script's command: the same ONNX Runtime calls as the cpu golden checks, on the cached int8 models."""
    quantized = json.dumps(_quantized_models(root))
    return [sys.executable, str(REPO / "benchmarks" / "plain_golden_check.py"), str(root), quantized]


def test_plugin_overhead(record_pair, suite_copy):
    """The plugin's cpu golden checks against the plain script, alternating run by run."""
    _pytest(suite_copy)  # warm: the int8 models and the goldens are in the cache
    script = _plain_script(suite_copy)
    record_pair(
        "pytest_cpu_golden",
        lambda: _pytest(suite_copy, "-k", "golden"),
        "plain_script",
        lambda: subprocess.run(script, check=True, env=ENV),
        rounds=7,
    )


def test_plugin_share_of_a_pytest_run(record_pair, suite_copy):
    """The same plain calls written as one pytest test, run by pytest without the plugin, against the
    plugin's checks: what the plugin adds beyond pytest's own start-up, collection and reporting."""
    _pytest(suite_copy)
    (suite_copy / "plain").mkdir(exist_ok=True)
    call = f"main(Path({str(suite_copy)!r}), json.loads({json.dumps(_quantized_models(suite_copy))!r}))"
    (suite_copy / "plain" / "test_plain.py").write_text(
        f"import json, sys\nfrom pathlib import Path\n\nsys.path.insert(0, {str(REPO / 'benchmarks')!r})\n"
        f"from plain_golden_check import main\n\n\ndef test_plain():\n    {call}\n"
    )
    record_pair(
        "plain_pytest",
        lambda: subprocess.run(
            [*PYTEST_WITHOUT_PLUGIN, "plain/test_plain.py"], cwd=suite_copy, check=True, env=ENV, capture_output=True
        ),
        "pytest_cpu_golden_again",
        lambda: _pytest(suite_copy, "-k", "golden"),
        rounds=7,
    )


def test_suite_cold(record, suite_copy):
    record("suite_cold", lambda: _pytest(suite_copy, "--cache-clear"))


def test_suite_warm(record, suite_copy):
    _pytest(suite_copy)
    record("suite_warm", lambda: _pytest(suite_copy))


def test_suite_serial(record, suite_copy):
    _pytest(suite_copy, *EMULATED)
    record("suite_serial", lambda: _pytest(suite_copy, *EMULATED))


def test_suite_n2(record, suite_copy):
    _pytest(suite_copy, *EMULATED)
    record("suite_n2", lambda: _pytest(suite_copy, *EMULATED, "-n", "2", "--dist", "loadgroup"))


def test_main_job_warm(record, suite_copy):
    """The README's main job (every bundled model on every target, with the report) again on a warm cache."""
    job = ("-m", "", "--tinyaccel-report", "profile.md")
    _pytest(suite_copy, *job)
    record("main_job_warm", lambda: _pytest(suite_copy, *job), rounds=5)


def test_hls4ml_compile_level(record_pair, suite_copy):
    """The bundled kws design's C simulation library compiled as the target does (CSIM_OPTIMISATION, -O1 on
    x86-64) against hls4ml's own -O3, alternating; each round from a fresh copy of the generated project."""
    from pytest_tinyaccel.targets.hls4ml.build import optimised, side_by_side

    _pytest(suite_copy, "-m", "hls4ml", "-k", "kws and sw_emu and fp32 and golden")
    project = next((suite_copy / ".pytest_cache" / "d" / "tinyaccel" / "builds").glob("kws-hls4ml-sw_emu-fp32-*/hls"))

    def compile_at(level: str) -> None:
        folder = suite_copy / f"compile{level}"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(project, folder)
        script = optimised((folder / "build_lib.sh").read_text(), level)
        (folder / "timed.sh").write_text(side_by_side(script) or script)
        subprocess.run(["bash", "timed.sh"], cwd=folder, check=True, capture_output=True)

    record_pair(
        "hls4ml_compile_O1", lambda: compile_at("-O1"), "hls4ml_compile_O3", lambda: compile_at("-O3"), rounds=3
    )
