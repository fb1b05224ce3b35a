"""Fixtures of the project's own tests (helpers live in helpers.py)."""

from __future__ import annotations

import pytest
from helpers import Project, load_numba_registries


def pytest_configure(config: pytest.Config) -> None:
    controller = config.getoption("numprocesses", default=None) and not hasattr(config, "workerinput")
    if not controller:  # the processes that run tests: before any in-process pytester run (see its docstring)
        load_numba_registries()


@pytest.fixture
def project(pytester: pytest.Pytester) -> Project:
    """A throw-away pytester project; copy bundled models in with `project.add_model`."""
    return Project(pytester)
