"""Wall time of the bundled cpu suite: plugin vs plain script, cold vs warm, -n 2 vs serial."""

from __future__ import annotations

import json
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
