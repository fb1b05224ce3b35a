"""Fixtures of the project's own tests (helpers live in helpers.py)."""

from __future__ import annotations

import os

import pytest
from helpers import Project, load_numba_registries
from hypothesis import Phase, settings


def pytest_configure(config: pytest.Config) -> None:
    controller = config.getoption("numprocesses", default=None) and not hasattr(config, "workerinput")
    if not controller:  # the processes that run tests: before any in-process pytester run (see its docstring)
        load_numba_registries()


@pytest.fixture
def project(pytester: pytest.Pytester) -> Project:
    """A throw-away pytester project; copy bundled models in with `project.add_model`."""
    return Project(pytester)


if os.environ.get("TINYACCEL_MUTATION"):
    # Mutation testing (tests/mutation/run.py) runs the same 25 examples every time and reports the
    # first failing one as it is: shrinking it would cost seconds per killed mutant.
    settings.register_profile(
        "mutation",
        derandomize=True,
        deadline=None,
        database=None,
        max_examples=25,
        phases=(Phase.explicit, Phase.generate),
    )
    settings.load_profile("mutation")
