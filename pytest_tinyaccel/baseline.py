"""Pre-merge gating: compare a run's profile rows with a saved baseline profile.

Margins are per metric. Latency (`cycles`, `ns`) and `throughput` margins are
relative ("10%": may get 10 % worse); `accuracy` is absolute, in percentage
points of accuracy or AUC x 100 ("0.5": may drop by half a point). Simulated
cycles are deterministic, so their default margin is 0 %; wall-clock figures
are not, so theirs is generous.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .report import ProfileRow, load_json

DEFAULT_MARGINS = {"cycles": 0.0, "ns": 25.0, "throughput": 25.0, "accuracy": 0.5}


class BaselineError(Exception):
    """An unreadable baseline or a malformed margin specification."""


def parse_margins(spec: str | dict, where: str) -> dict[str, float]:
    """'cycles=0%,ns=10%,accuracy=0.5' (or a TOML table) -> {metric: number}."""
    items = spec.items() if isinstance(spec, dict) else (
        part.split("=", 1) if "=" in part else (part, None) for part in spec.split(",") if part.strip())
    margins = {}
    for key, value in items:
        key = key.strip()
        if key not in DEFAULT_MARGINS:
            raise BaselineError(f"{where}: unknown metric {key!r}; use {', '.join(DEFAULT_MARGINS)}")
        text = str(value).strip() if value is not None else ""
        percent = text.endswith("%")
        if key == "accuracy" and percent:
            raise BaselineError(f"{where}: accuracy margin is in points (e.g. accuracy=0.5), not a percentage")
        if key != "accuracy" and not percent:
            raise BaselineError(f"{where}: {key} margin must be a percentage, e.g. {key}=10%")
        try:
            number = float(text.rstrip("%"))
        except ValueError as exc:
            raise BaselineError(f"{where}: {key}={text!r} is not a number") from exc
        if number < 0:
            raise BaselineError(f"{where}: {key} margin must not be negative")
        margins[key] = number
    return margins


@dataclass
class Change:
    metric: str
    unit: str
    baseline: float
    now: float
    allowed: float
    higher_is_better: bool

    @property
    def delta(self) -> float:
        """Relative change in % for latency/throughput, points for accuracy."""
        if self.metric == "accuracy":
            return 100 * (self.now - self.baseline)
        return 100 * (self.now - self.baseline) / self.baseline if self.baseline else 0.0

    @property
    def regressed(self) -> bool:
        worse = -self.delta if self.higher_is_better else self.delta
        return worse > self.allowed + 1e-9

    def describe(self) -> str:
        sign = f"{self.delta:+.2f}{' pts' if self.metric == 'accuracy' else '%'}"
        allowed = f"{self.allowed:g}{' pts' if self.metric == 'accuracy' else '%'}"
        return f"{self.metric}: baseline {_fmt(self.baseline, self.unit)}, now {_fmt(self.now, self.unit)} ({sign}; allowed {allowed})"


def _fmt(value: float, unit: str) -> str:
    return f"{100 * value:.2f}%" if unit == "%" else f"{value:.6g} {unit}".strip()


def compare(now: ProfileRow, base: ProfileRow, margins: dict[str, float]) -> list[Change]:
    """The metrics both rows have, with their change and allowed margin."""
    changes = []
    if now.cycles is not None and base.cycles is not None:
        changes.append(Change("cycles", "cycles", base.cycles, now.cycles, margins["cycles"], False))
    elif now.latency_ns is not None and base.latency_ns is not None:
        changes.append(Change("ns", "ns", base.latency_ns, now.latency_ns, margins["ns"], False))
    if now.throughput is not None and base.throughput is not None:
        # A simulated throughput is as deterministic as the cycles it comes from.
        margin = margins["cycles"] if now.cycles is not None else margins["throughput"]
        changes.append(Change("throughput", "/s", base.throughput, now.throughput, margin, True))
    if now.accuracy is not None and base.accuracy is not None:
        unit = "" if now.metric == "auc" else "%"
        changes.append(Change("accuracy", unit, base.accuracy, now.accuracy, margins["accuracy"], True))
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
