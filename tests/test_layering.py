"""The import layering of docs/design.md holds, and the check that guards it bites:
the import-linter contracts in pyproject.toml pass on the package, name every
module of it, and fail on a copy with one import that points up the layers or a
new module that imports pytest."""

from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from helpers import REPO

import pytest_tinyaccel

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
    models = _copy(tmp_path) / "models.py"
    models.write_text(models.read_text() + "\nfrom . import session  # noqa: E402  (an upward import)\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert "pytest_tinyaccel.models is not allowed to import pytest_tinyaccel.session" in result.stdout


def test_every_module_sits_in_a_layer() -> None:
    """A module left out of the layers contract could import anything: no circle may hide there."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in config if c["type"] == "layers"]
    named = {name.strip() for layer in layers for name in layer.split("|")}
    modules = {f"pytest_tinyaccel.{m.name}" for m in pkgutil.iter_modules(pytest_tinyaccel.__path__)}
    assert modules - named == set()


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(
        REPO / "pytest_tinyaccel", tmp_path / "pytest_tinyaccel", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path / "pytest_tinyaccel"


def test_a_new_module_that_imports_pytest_breaks_the_pytest_contract(tmp_path: Path) -> None:
    (_copy(tmp_path) / "targets" / "newcomer.py").write_text("import pytest\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert "pytest_tinyaccel.targets.newcomer -> pytest" in result.stdout
