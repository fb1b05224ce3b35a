"""Everything one page shows, as plain data (`PageData`): the run record (statuses,
rows, failed checks with their detail), and what the baseline and the traces add."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..baseline import Change
from ..record import ProfileRow, RunRecord


@dataclass
class PageData:
    """Everything one page shows; built at the end of the run."""

    record: RunRecord
    environment: dict[str, Any]
    baseline_path: Path | None = None
    baseline: dict[str, ProfileRow] = field(default_factory=dict)
    """Baseline rows by case id (empty without --tinyaccel-baseline)."""
    changes: dict[str, list[Change]] = field(default_factory=dict)
    """Per case id: every gated metric against the baseline, with the case's margins."""
    traces: dict[str, Path] = field(default_factory=dict)
    """Per case id: the Chrome trace this run wrote."""
