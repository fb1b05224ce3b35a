"""The import layering of DESIGN.md holds, and the check that guards it bites:
the import-linter contracts in pyproject.toml pass on the package and fail on a
copy of it with one import that points up the layers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

LINT = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
pytestmark = pytest.mark.skipif(LINT is None, reason="import-linter is not installed (pip install -e '.[dev]')")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_contracts_hold() -> None:
    result = lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " kept, 0 broken." in result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    shutil.copytree(
        REPO / "pytest_tinyaccel", tmp_path / "pytest_tinyaccel", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    models = tmp_path / "pytest_tinyaccel" / "models.py"
    models.write_text(models.read_text() + "\nfrom . import session  # noqa: E402  (an upward import)\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert "pytest_tinyaccel.models is not allowed to import pytest_tinyaccel.session" in result.stdout
