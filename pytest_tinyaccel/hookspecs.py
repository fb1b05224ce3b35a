"""Hooks that conftests and plugins implement to extend pytest-tinyaccel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import pytest

if TYPE_CHECKING:
    from .targets.base import Target


@pytest.hookspec
def pytest_tinyaccel_targets(config: pytest.Config) -> "Iterable[type[Target] | Target]":
    """Return targets to register (classes, instantiated with their
    [tool.tinyaccel.targets.<name>] settings, or ready instances).

    A target whose name is already registered replaces the earlier one.
    """
