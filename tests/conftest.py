"""Fixtures of the project's own tests (helpers live in helpers.py)."""

from __future__ import annotations

import os

import pytest
from helpers import Project, load_numba_registries
from hypothesis import Phase, settings


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before the first test that runs pytest in this process (pytester, set up after this hook), not
    at start-up: the bundled suite alone (tests/test_models.py) never pays numba's first compilation."""
    global _numba_loaded
    if not _numba_loaded and "pytester" in getattr(item, "fixturenames", ()):
        load_numba_registries()
        _numba_loaded = True


_numba_loaded = False


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
