"""The pytest-facing layer: what a test sees (the objects behind the `tinyaccel` and
`tinyaccel_upgrade_review` fixtures), the one place that turns a check's finding into
`pytest.fail` or `pytest.skip`, and the bridge from pytest's reports to the run record."""

from __future__ import annotations

import warnings
from typing import Any, NoReturn

import pytest

from . import checks
from .cases import BrokenCase, Case
from .goldens import store as golden_store
from .models import Model
from .record import Finding, RunRecord, TestResult
from .runner import USER_ERRORS, Outcome
from .session import TinyaccelSession

SUITE = "pytest_tinyaccel.suite"
"""The module of the standard checks."""
CASE_PARAM = "tinyaccel_case"
REVIEW_PARAM = "tinyaccel_upgrade_review_case"


def report(session: TinyaccelSession, finding: Finding | None) -> None:
    """A finding fails the test (a skip when the check could not judge); None passes."""
    if finding is not None:
        stop(session, finding)


def stop(session: TinyaccelSession, finding: Finding) -> NoReturn:
    """Skip, or fail and keep the finding in the record (the HTML page shows its detail)."""
    if finding.skipped:
        pytest.skip(finding.message)
    session.record.findings.append(finding)
    pytest.fail(finding.message, pytrace=False)


class CaseView:
    """What a test sees of its case (the `tinyaccel` fixture): outcome, golden, the standard checks."""

    def __init__(self, session: TinyaccelSession, case: Case, nodeid: str) -> None:
        self.session, self.case, self.nodeid = session, case, nodeid

    @property
    def outcome(self) -> Outcome:
        """The case's outputs, perf, quality and profile row (the case is built and run once)."""
        return self._outcome("outcome")

    @property
    def golden(self) -> golden_store.Golden:
        """The case's golden; the test fails when it is missing or stale, naming the command that makes it."""
        return self._golden("golden")

    def _golden(self, check: str) -> golden_store.Golden:
        found = checks.current_golden(self.session.context, self.case, check, self.nodeid)
        if isinstance(found, Finding):
            stop(self.session, found)
        return found

    def _outcome(self, check: str) -> Outcome:
        result = self.session.result(self.case)
        if isinstance(result, Outcome):
            return result
        said = self.case.id in self.session.reported
        self.session.reported.add(self.case.id)
        strict = self.session.options.strict_support
        stop(self.session, checks.could_not_run(self.case, check, result, said, strict))

    def check_golden(self) -> None:
        outcome = self._outcome("golden")
        golden = self._golden("golden")
        report(self.session, checks.golden(self.session.context, self.case, outcome, golden, self.nodeid))

    def check_accuracy(self) -> None:
        report(self.session, checks.accuracy(self.case, self._outcome("accuracy")))

    def check_top5(self) -> None:
        outcome = self._outcome("top5")
        golden = self._golden("top5")
        report(self.session, checks.top5(self.session.context, self.case, outcome, golden, self.nodeid))

    def check_baseline(self) -> None:
        report(self.session, checks.baseline(self.session.context, self.case, self._outcome("baseline")))


def case_view(session: TinyaccelSession, case: Case | BrokenCase, nodeid: str, function: Any) -> CaseView:
    """The `tinyaccel` fixture. A user's own test on a case that could not run is skipped with the
    case's reason when the case's standard checks report it, and errors with it otherwise: it never
    fails for a reason that belongs to another test."""
    if isinstance(case, BrokenCase):  # an error at setup: the manifest, not a check, is what is wrong
        pytest.fail(f"malformed model manifest: {case.broken.error}", pytrace=False)
    view = CaseView(session, case, nodeid)
    if getattr(function, "__module__", None) == SUITE:
        return view
    result = session.result(case)
    if isinstance(result, Outcome):
        return view
    reason = str(result).splitlines()[0] if str(result) else type(result).__name__
    if case.id not in session.checked and not isinstance(result, USER_ERRORS):
        raise result  # a crash, and no standard check to show it: its traceback, as an error here
    if case.id in session.checked:
        pytest.skip(f"{case.id} could not run, so there is nothing to check here: {reason} (its standard checks fail)")
    pytest.fail(f"{case.id} could not run: {result}", pytrace=False)


class UpgradeReviewView:
    """The `tinyaccel_upgrade_review` fixture: one model x dtype whose golden an older ONNX Runtime made."""

    def __init__(self, session: TinyaccelSession, model: Model, dtype: str, nodeid: str) -> None:
        self.session, self.model, self.dtype, self.nodeid = session, model, dtype, nodeid

    def check(self) -> None:
        finding, notes = checks.upgrade_review(self.session.context, self.model, self.dtype, self.nodeid)
        self.session.record.upgrade_notes += notes
        report(self.session, finding)


# ----- pytest's collection and reports -> the session and the record -------------------------


def collected(session: TinyaccelSession, items: list[pytest.Item]) -> None:
    """After collection: note which cases have standard checks, and submit every runnable case
    to a pool or cluster."""
    for warning in session.warnings:  # manifests are read before pytest collects warnings: said here, once
        warnings.warn(warning, stacklevel=1)
    session.warnings.clear()
    cases: dict[str, Case] = {}
    for item in items:
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get(CASE_PARAM) if callspec else None
        if not isinstance(case, Case):
            continue
        if getattr(getattr(item, "function", None), "__module__", None) == SUITE:
            session.checked.add(case.id)
        if not item.get_closest_marker("skip"):
            cases.setdefault(case.id, case)
    session.prefetch(list(cases.values()))


def tag(item: pytest.Item, test_report: pytest.TestReport) -> None:
    """Mark a report of one of the plugin's tests with its subject (pytest-xdist carries the
    attribute from a worker to the controller)."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return
    params = callspec.params
    check = getattr(item, "originalname", item.name).removeprefix("test_")
    if CASE_PARAM in params:
        value = params[CASE_PARAM]
        subject, kind = (
            (value.id, "case") if isinstance(value, Case | BrokenCase) else (f"{check}[{callspec.id}]", "placeholder")
        )
    elif REVIEW_PARAM in params:
        value = params[REVIEW_PARAM]
        subject, kind = (
            (f"{value[0].name}-{value[1]}", "upgrade_review") if value else (f"{check}[none]", "placeholder")
        )
    else:
        return
    test_report.tinyaccel = {"subject": subject, "kind": kind, "check": check}  # type: ignore[attr-defined]


def log(config: pytest.Config, session: TinyaccelSession, test_report: pytest.TestReport) -> None:
    """Add pytest's verdict on a tagged report to the record, in pytest's own words."""
    tagged = getattr(test_report, "tinyaccel", None)
    if not tagged:
        return
    category = config.hook.pytest_report_teststatus(report=test_report, config=config)[0]
    if not category:
        return
    outcome = "errors" if category == "error" else category
    session.record.tests.append(
        TestResult(
            test_report.nodeid,
            tagged["subject"],
            tagged["kind"],
            tagged["check"],
            outcome,
            test_report.when,
            _first_line(test_report, outcome, tagged["subject"]),
        )
    )


def _first_line(test_report: pytest.TestReport, outcome: str, subject: str) -> str:
    """Why a test failed or was skipped, or where it errored, in one line."""
    if outcome in ("xfailed", "xpassed"):
        return str(getattr(test_report, "wasxfail", ""))
    longrepr = test_report.longrepr
    if outcome == "skipped" and isinstance(longrepr, tuple):
        text = str(longrepr[2]).removeprefix("Skipped: ")
    elif outcome in ("failed", "errors"):
        crash = getattr(longrepr, "reprcrash", None)
        text = crash.message.removeprefix("Failed: ") if crash is not None else str(longrepr)
        if crash is not None and outcome == "errors":
            text += f" ({crash.path.rsplit('/', 1)[-1]}:{crash.lineno})"
    else:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line.removeprefix(f"{subject}: ")


def finish(config: pytest.Config, session: TinyaccelSession) -> RunRecord:
    """The run record at the end, with the columns conftests add (pytest_tinyaccel_report_row)."""
    record = session.finish()
    if not hasattr(config, "workerinput"):
        for case in record.cases():
            columns: dict[str, str] = {}
            for found in config.hook.pytest_tinyaccel_report_row(config=config, case=case):
                columns.update({str(k): str(v) for k, v in (found or {}).items()})
            if columns:
                record.extra[case.subject] = columns
    return record
