"""What a test sees: the objects behind the `tinyaccel` and `tinyaccel_review` fixtures,
thin views that hand the checks to the session."""

from __future__ import annotations

from .cases import Case
from .goldens import store as golden_store
from .models import Model
from .runner import Outcome
from .session import TinyaccelSession


class UpgradeView:
    """The `tinyaccel_upgrade` fixture: one model x dtype whose golden predates the installed ONNX Runtime."""

    def __init__(self, session: TinyaccelSession, model: Model, dtype: str, nodeid: str) -> None:
        self.session, self.model, self.dtype, self.nodeid = session, model, dtype, nodeid

    def check(self) -> None:
        self.session.check_upgrade(self.model, self.dtype, self.nodeid)


class CaseView:
    """What a test sees of its case (the `tinyaccel` fixture): outcome, golden, checks."""

    def __init__(self, session: TinyaccelSession, case: Case, nodeid: str) -> None:
        self.session, self.case, self.nodeid = session, case, nodeid

    @property
    def outcome(self) -> Outcome:
        return self.session.outcome(self.case)

    @property
    def golden(self) -> golden_store.Golden:
        return self.session.current_golden(self.case, self.nodeid)

    def check_golden(self) -> None:
        self.session.check_golden(self.case, self.nodeid)

    def check_accuracy(self) -> None:
        self.session.check_accuracy(self.case)

    def check_top5(self) -> None:
        self.session.check_top5(self.case, self.nodeid)

    def check_baseline(self) -> None:
        self.session.check_baseline(self.case)
