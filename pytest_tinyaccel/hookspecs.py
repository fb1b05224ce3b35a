"""Hooks that conftests and plugins implement to extend pytest-tinyaccel."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .record import CaseResult
    from .targets.base import Target


@pytest.hookspec
def pytest_tinyaccel_targets(config: pytest.Config) -> Iterable[type[Target] | Target]:  # type: ignore[empty-body]
    """Return targets to register (classes, instantiated with their
    [tool.tinyaccel.targets.<name>] settings, or ready instances).

    A target whose name is already registered replaces the earlier one.
    """


@pytest.hookspec
def pytest_tinyaccel_report_row(config: pytest.Config, case: CaseResult) -> dict[str, object] | None:
    """Return extra report columns for one case, {column: value}, or None.

    Called once per case at the end of the run (on the pytest-xdist controller), with
    its status, tests and profile row (`case.row`, None when it produced no figures).
    The columns appear in the terminal table and in every --tinyaccel-report format::

        def pytest_tinyaccel_report_row(config, case):
            if case.row is not None and case.row.perf.latency_ns is not None:
                return {"Budget": "ok" if case.row.perf.latency_ns < 2e6 else "over"}
    """
