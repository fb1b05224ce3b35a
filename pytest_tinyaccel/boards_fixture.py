"""The `tinyaccel_board` fixture: a board of the current case's pool, leased for one test.

For checks of a team's own on the board (a firmware command of theirs, a power monitor read
while it infers). A pytest plugin of its own (entry point `tinyaccel_boards`), so that the
plugin module keeps the suite's hooks only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from .targets.base import TargetError
from .targets.dut.protocol import BoardFault, Session
from .targets.dut.target import DutTarget
from .targets.dut.transport import SerialLink
from .views import CaseView


@dataclass
class LeasedBoard:
    """A connected board, held for the test: its label, port, `name%` answer and protocol session."""

    label: str
    port: str
    name: str
    session: Session

    def command(self, text: str, timeout: float | None = None) -> list[str]:
        """Send a command (without its `%`); the answer's lines up to `m-ready`."""
        return [line for line, _ in self.session.command(text, timeout)]


@pytest.fixture
def tinyaccel_board(tinyaccel: CaseView) -> Iterator[LeasedBoard]:
    """A board of the case's pool, leased for this test and connected; released after it.

    The case's own run comes first (it leases a board of the same pool), so the test sees both
    the outcome (`tinyaccel.outcome`) and a board."""
    case = tinyaccel.case
    target = tinyaccel.session.registry[case.target]
    if not isinstance(target, DutTarget):
        pytest.skip(f"tinyaccel_board: {case.id} does not run on a board")
    assert tinyaccel.outcome is not None  # the case's run, before this test holds a board
    xdist = os.environ.get("PYTEST_XDIST_WORKER")
    try:
        with target.leased(case.model, f"{tinyaccel.nodeid} (xdist {xdist})" if xdist else tinyaccel.nodeid) as held:
            board, _ = held
            link = SerialLink(board.port, board.baud)
            try:
                session = Session(link, board.timeout)
                yield LeasedBoard(board.label, board.port, session.handshake(), session)
            finally:
                link.close()
    except (TargetError, BoardFault) as exc:
        pytest.fail(f"tinyaccel_board: {exc}", pytrace=False)
