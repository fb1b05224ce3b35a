"""Wall time of the bundled cpu suite: plugin vs plain script, cold vs warm, -n 2 vs serial."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ENV, PYTEST, REPO

CPU = ["-m", "cpu"]
EMULATED = ["-m", "cpu or aie or gemmini"]  # every bundled model on the shipped targets (warm: ZigZag cached)


def _pytest(root: Path, *args: str) -> None:
    args = args if "-m" in args else (*CPU, *args)
    result = subprocess.run([*PYTEST, *args], cwd=root, capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stdout[-3000:]


def _quantized_models(root: Path) -> dict[str, str]:
    """The int8 models the plugin's (warm) cache holds, so the plain script needs no quantization."""
    found = {}
    for key in (root / ".pytest_cache" / "d" / "tinyaccel" / "quantized").glob("*/key.json"):
        found[key.parent.name.rsplit("-", 1)[0]] = str(key.parent / "model.onnx")
    return found


def test_pytest_cpu_golden_checks(record, suite_copy):
    _pytest(suite_copy)  # warm the cache
    record("pytest_cpu_golden", lambda: _pytest(suite_copy, "-k", "golden"), rounds=5)


def test_plain_script(record, suite_copy):
    _pytest(suite_copy)
    quantized = json.dumps(_quantized_models(suite_copy))
    script = [sys.executable, str(REPO / "benchmarks" / "plain_golden_check.py"), str(suite_copy), quantized]
    record("plain_script", lambda: subprocess.run(script, check=True, env=ENV), rounds=5)


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
