"""The run record: one data structure for everything a run found, and the only input
of the terminal summary, every report file and the merge of pytest-xdist workers and
executor workers.

During the run it gathers facts: pytest's own verdict on every test of the plugin
(`TestResult`, from pytest's reports, so it cannot disagree with pytest), the profile
row of every case that ran (`ProfileRow`, keyed by the case id of `cases.py`), the
detail of failed checks (`Finding`) and what the build cache did (`BuildLog`). At the
end, `RunRecord.cases()` derives each case's status from those facts, worst first:
error (where), failed (which checks, first line of each message), xfailed, passed,
skipped (why). `to_dict`, `from_dict` and `merge` walk the dataclass fields, so a new
field travels between processes without a hand-written list.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .cases import case_id
from .errorstats import ErrorStats
from .perf import Perf
from .quantinfo import other_than_8_bit

OUTCOMES = ("passed", "failed", "skipped", "errors", "xfailed", "xpassed")
"""pytest's words for test outcomes, as its summary line and `assert_outcomes` use them."""
STATUSES = ("error", "failed", "xpassed", "xfailed", "passed", "skipped")
"""A case's status, worst first: the worst outcome among its tests."""
_STATUS_OF = {"errors": "error", "failed": "failed", "xpassed": "xpassed", "xfailed": "xfailed", "passed": "passed"}


@dataclass
class ProfileRow:
    """One model x target x mode x dtype: what the run measured or simulated, and the model's facts."""

    model: str
    target: str
    mode: str
    dtype: str
    use_case: str
    architecture: str
    link: str
    metric: str
    quality_target: float | None
    perf: Perf
    resource_columns: tuple[str, ...] = ()
    """The target's resource columns, in order (its section header)."""
    accuracy: float | None = None
    samples: int = 0
    agreement: float | None = None
    """Share of golden samples whose argmax matches ONNX Runtime's (classification)."""
    loadgen: dict[str, Any] | None = None
    """With --tinyaccel-loadgen: MLPerf LoadGen SingleStream p90 latency and Offline samples/s."""
    from_cache: bool = False
    """The simulated outputs and figures were reused from the result cache (same build, same inputs)."""
    error_stats: dict[str, ErrorStats] = field(default_factory=dict)
    """Per output: the outputs on the golden samples against the golden (empty without a golden)."""
    bits: str = ""
    """int8 rows: the bit widths the model's own quantization gives ("w4a8"; empty when the plugin quantized)."""

    @property
    def case_id(self) -> str:
        return case_id(self.model, self.target, self.mode, self.dtype)

    @property
    def dtype_label(self) -> str:
        """The Dtype cell: the dtype, and the bit widths when they are not 8-bit throughout ("int8 (w4a8)")."""
        return f"{self.dtype} ({self.bits})" if other_than_8_bit(self.bits) else self.dtype

    @property
    def simulator(self) -> str:
        return self.perf.simulator

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["error_stats"] = {name: stats.to_dict() for name, stats in self.error_stats.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProfileRow:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["perf"] = Perf.from_dict(values["perf"])
        numbers = [values.get("accuracy"), values.get("quality_target")] + [
            getattr(values["perf"], k) for k in ("cycles", "clock_hz", "latency_ns", "throughput", "efficiency")
        ]
        if any(v is not None and (isinstance(v, bool) or not isinstance(v, int | float)) for v in numbers):
            raise TypeError(f"row {values.get('model')!r}: a figure is not a number")
        values["resource_columns"] = tuple(values.get("resource_columns", ()))
        values["error_stats"] = {k: ErrorStats.from_dict(v) for k, v in (values.get("error_stats") or {}).items()}
        return cls(**values)

    def supersedes(self, other: ProfileRow) -> bool:
        """Two xdist workers may run one case (one per check): the one that simulated it in this run
        wins over the one that reused that result, so the report matches a serial run's."""
        return other.from_cache and not self.from_cache


@dataclass
class Top5Sample:
    """One golden sample whose Top-5 differs: reference and obtained, best first, as (label, probability)."""

    sample: int
    reference: list[tuple[str, float]]
    obtained: list[tuple[str, float]]


@dataclass
class Finding:
    """What a check found wrong (or why it could not judge): the message the test shows, and
    the detail the HTML page shows beside it."""

    case: str
    """The case id (for the upgrade review: '<model>-<dtype>')."""
    check: str
    """golden, accuracy, top5, baseline or upgrade_review."""
    message: str
    skipped: bool = False
    """The check could not judge (nothing to compare with): a skip, not a failure."""
    where: str | None = None
    """The first diverging layer, when the target could localize a golden mismatch."""
    top5: list[Top5Sample] = field(default_factory=list)
    tolerance: float | None = None
    """The Top-5 probability tolerance the check used."""


@dataclass
class TestResult:
    """pytest's verdict on one phase of one of the plugin's tests (the phases pytest counts)."""

    nodeid: str
    subject: str
    """The case id; '<model>-<dtype>' for an upgrade review; the parameter id of a placeholder."""
    kind: str
    """case, upgrade_review or placeholder (a skip that says why a check is off)."""
    check: str
    """The test function's name without 'test_': golden, accuracy, ..., or a user's own test."""
    outcome: str
    """One of OUTCOMES, as pytest's summary counts it."""
    when: str
    message: str = ""
    """First line of why it failed or was skipped, or where it errored."""


@dataclass
class BuildLog:
    """What the build and result caches did (one name per case or model, repeated when it happened twice)."""

    built: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    """Builds the target declined (unsupported model): their cases are skips."""
    repaired: list[str] = field(default_factory=list)
    results_reused: list[str] = field(default_factory=list)


@dataclass
class CaseResult:
    """A case (or upgrade review) at the end of the run: its status and what it rests on."""

    subject: str
    kind: str
    status: str
    tests: list[TestResult]
    row: ProfileRow | None = None
    extra: dict[str, str] = field(default_factory=dict)
    """Report columns users add with the pytest_tinyaccel_report_row hook."""

    @property
    def clean(self) -> bool:
        """Figures that may be shown without a mark: every check of the case passed."""
        return self.status == "passed"

    @property
    def detail(self) -> str:
        """Which checks failed (with the first line of each message), why it was skipped, or where it errored."""
        wanted = {"error": "errors", "failed": "failed", "xpassed": "xpassed", "xfailed": "xfailed"}.get(self.status)
        if wanted is None:
            skipped = [t for t in self.tests if t.outcome == "skipped"]
            return skipped[0].message if self.status == "skipped" and skipped else ""
        by_message: dict[str, list[str]] = {}  # checks that say the same thing are named together, once
        for t in self.tests:
            if t.outcome == wanted:
                where = f" ({t.when})" if t.outcome == "errors" else ""
                by_message.setdefault(t.message, []).append(f"{t.check}{where}")
        return "; ".join(
            f"{', '.join(dict.fromkeys(checks))}: {message}" if message else ", ".join(dict.fromkeys(checks))
            for message, checks in by_message.items()
        )

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(t.outcome for t in self.tests)
        return {k: found[k] for k in OUTCOMES}


@dataclass
class RunRecord:
    """Everything one run found (see the module docstring)."""

    tests: list[TestResult] = field(default_factory=list)
    rows: dict[str, ProfileRow] = field(default_factory=dict)
    """By case id."""
    findings: list[Finding] = field(default_factory=list)
    work: BuildLog = field(default_factory=BuildLog)
    golden_updates: list[str] = field(default_factory=list)
    upgrade_notes: list[str] = field(default_factory=list)
    extra: dict[str, dict[str, str]] = field(default_factory=dict)
    """By case id: columns from the pytest_tinyaccel_report_row hook (filled at the end)."""

    def counts(self) -> dict[str, int]:
        """pytest's count of the plugin's tests, by outcome (every outcome, zeros included)."""
        found = Counter(t.outcome for t in self.tests)
        return {k: found[k] for k in OUTCOMES}

    def cases(self) -> list[CaseResult]:
        """Every case, upgrade review and placeholder with a test or a row, with its status."""
        tests: dict[str, list[TestResult]] = {}
        kinds: dict[str, str] = {}
        phases = ("setup", "call", "teardown")
        # by test id and phase, not by arrival: pytest-xdist workers report in any order
        for t in sorted(self.tests, key=lambda t: (t.nodeid, phases.index(t.when) if t.when in phases else 3)):
            tests.setdefault(t.subject, []).append(t)
            kinds[t.subject] = t.kind
        for subject in self.rows:
            tests.setdefault(subject, [])
            kinds.setdefault(subject, "case")
        return [
            CaseResult(
                subject,
                kinds[subject],
                status_of(found),
                found,
                self.rows.get(subject),
                self.extra.get(subject, {}),
            )
            for subject, found in tests.items()
        ]

    def to_dict(self) -> dict[str, Any]:
        return _encode(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        return _decode(cls, data)

    def merge(self, other: RunRecord) -> None:
        """Add what another process recorded (an xdist worker, an executor's worker)."""
        _merge(self, other)


def status_of(tests: list[TestResult]) -> str:
    """The worst outcome among a case's tests; 'skipped' when every test was skipped (or none ran)."""
    found = {_STATUS_OF[t.outcome] for t in tests if t.outcome in _STATUS_OF}
    return next((s for s in STATUSES if s in found), "skipped")


# ----- field-walking codec: dataclasses <-> JSON-able dicts, and merge ----------------------


def _encode(value: Any) -> Any:
    if hasattr(value, "to_dict") and not isinstance(value, RunRecord):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(kind: Any, data: Any) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        return _decode(next(a for a in args if a is not type(None)), data)
    if origin in (list, tuple):
        items = [_decode(args[0], v) for v in data]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        return {k: _decode(args[1], v) for k, v in data.items()}
    if isinstance(kind, type) and hasattr(kind, "from_dict") and kind is not RunRecord:
        return kind.from_dict(data)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        return kind(
            **{f.name: _decode(hints[f.name], data[f.name]) for f in dataclasses.fields(kind) if f.name in data}
        )
    return data


def _merge(mine: Any, theirs: Any) -> None:
    for f in dataclasses.fields(mine):
        a, b = getattr(mine, f.name), getattr(theirs, f.name)
        if isinstance(a, list):
            a.extend(b)
        elif isinstance(a, dict):
            for key, value in b.items():
                known = a.get(key)
                if known is None or (hasattr(value, "supersedes") and value.supersedes(known)):
                    a[key] = value
        elif dataclasses.is_dataclass(a):
            _merge(a, b)
