"""Pre-merge gating: compare a run's profile rows with a saved baseline profile,
metric by metric, against the margins of `margins.py`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .record import ProfileRow
from .report import load_json


class BaselineError(Exception):
    """A baseline file that cannot be read as a tinyaccel profile."""


@dataclass
class Change:
    metric: str
    unit: str
    baseline: float
    now: float
    allowed: float
    higher_is_better: bool
    output: str = ""
    """For sqnr: the output it was measured on."""

    @property
    def delta(self) -> float:
        """Relative change in % for latency/throughput, points for accuracy, dB for sqnr."""
        if self.metric == "accuracy":
            return 100 * (self.now - self.baseline)
        if self.metric == "sqnr":
            return 0.0 if self.now == self.baseline else self.now - self.baseline  # inf - inf is no change
        return 100 * (self.now - self.baseline) / self.baseline if self.baseline else 0.0

    @property
    def regressed(self) -> bool:
        worse = -self.delta if self.higher_is_better else self.delta
        return worse > self.allowed + 1e-9

    @property
    def suffix(self) -> str:
        """The unit of `delta` and `allowed`."""
        return {"accuracy": " pts", "sqnr": " dB"}.get(self.metric, "%")

    @property
    def label(self) -> str:
        return f"{self.metric} {self.output}" if self.output else self.metric

    def describe(self) -> str:
        sign = f"{self.delta:+.2f}{self.suffix}"
        allowed = f"{self.allowed:g}{self.suffix}"
        return (
            f"{self.label}: baseline {_fmt(self.baseline, self.unit)}, now {_fmt(self.now, self.unit)} "
            f"({sign}; allowed {allowed})"
        )


def _fmt(value: float, unit: str) -> str:
    return f"{100 * value:.2f}%" if unit == "%" else f"{value:.6g} {unit}".strip()


def compare(now: ProfileRow, base: ProfileRow, margins: dict[str, float]) -> list[Change]:
    """The metrics both rows have, with their change and allowed margin."""
    changes = []
    p, b = now.perf, base.perf
    if p.cycles is not None and b.cycles is not None:
        changes.append(Change("cycles", "cycles", b.cycles, p.cycles, margins["cycles"], False))
    elif p.latency_ns is not None and b.latency_ns is not None:
        changes.append(Change("ns", "ns", b.latency_ns, p.latency_ns, margins["ns"], False))
    if p.throughput is not None and b.throughput is not None:
        # A simulated throughput is as deterministic as the cycles it comes from.
        margin = margins["cycles"] if p.cycles is not None else margins["throughput"]
        changes.append(Change("throughput", "/s", b.throughput, p.throughput, margin, True))
    if now.accuracy is not None and base.accuracy is not None:
        unit = "" if now.metric == "auc" else "%"
        changes.append(Change("accuracy", unit, base.accuracy, now.accuracy, margins["accuracy"], True))
    if "sqnr" in margins:  # gated only when asked for (sqnr=1dB)
        for name, stats in now.error_stats.items():
            then = base.error_stats.get(name)
            if then is not None and not math.isnan(then.sqnr_db):
                db = -math.inf if math.isnan(stats.sqnr_db) else stats.sqnr_db  # NaN outputs: worse than any
                changes.append(Change("sqnr", "dB", then.sqnr_db, db, margins["sqnr"], True, name))
    return changes


class Baseline:
    """A saved profile, indexed by case id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.environment, rows = load_json(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BaselineError(f"--tinyaccel-baseline {path}: cannot read it as a tinyaccel profile ({exc})") from exc
        self.rows = {row.case_id: row for row in rows}

    def get(self, case_id: str) -> ProfileRow | None:
        return self.rows.get(case_id)
