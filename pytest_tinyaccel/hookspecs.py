"""Hooks that conftests and plugins implement to extend pytest-tinyaccel."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .targets.base import Target


@pytest.hookspec
def pytest_tinyaccel_targets(config: pytest.Config) -> Iterable[type[Target] | Target]:  # type: ignore[empty-body]
    """Return targets to register (classes, instantiated with their
    [tool.tinyaccel.targets.<name>] settings, or ready instances).

    A target whose name is already registered replaces the earlier one.
    """
