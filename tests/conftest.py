"""Fixtures of the project's own tests (helpers live in helpers.py)."""

from __future__ import annotations

import pytest
from helpers import Project


@pytest.fixture
def project(pytester: pytest.Pytester) -> Project:
    """A throw-away pytester project; copy bundled models in with `project.add_model`."""
    return Project(pytester)
