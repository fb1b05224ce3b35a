"""What the HTML page shows beyond the profile rows, as plain data: the checks that
failed (`Finding`, with Top-5 side by side for classification), and everything one
page needs (`PageData`). Findings travel from pytest-xdist workers to the
controller as dicts, so a parallel run's page equals a serial one's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..baseline import Change
from ..goldens.compare import compare_top5
from ..metrics import topk
from ..report import ProfileRow


@dataclass
class Top5Sample:
    """One golden sample whose Top-5 differs: reference and obtained, best first, as (label, probability)."""

    sample: int
    reference: list[tuple[str, float]]
    obtained: list[tuple[str, float]]


@dataclass
class Finding:
    """A failed check of one case (or, for the upgrade review, one model and dtype)."""

    case: str
    check: str
    """golden, top5 or upgrade review."""
    message: str
    """The test's failure message, as pytest shows it."""
    where: str | None = None
    """The first diverging layer, when the target could localize a golden mismatch."""
    top5: list[Top5Sample] = field(default_factory=list)
    tolerance: float | None = None
    """The Top-5 probability tolerance the check used."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        samples = [Top5Sample(s["sample"], _pairs(s["reference"]), _pairs(s["obtained"])) for s in data.get("top5", [])]
        return cls(data["case"], data["check"], data["message"], data.get("where"), samples, data.get("tolerance"))


def _pairs(items: list[Any]) -> list[tuple[str, float]]:
    """(label, probability) pairs back from JSON lists."""
    return [(str(label), float(p)) for label, p in items]


def top5_samples(
    reference: list[list[list[float]]], probs: np.ndarray, tolerance: float, label: Callable[[int], str]
) -> list[Top5Sample]:
    """The samples whose Top-5 the check rejects (its own rule, `compare_top5`), with labels on both sides."""
    classes, values = topk(probs, 5)
    found = []
    for i, ref in enumerate(reference):
        bad, _ = compare_top5([ref], probs[i : i + 1], tolerance, label)
        if bad:
            found.append(
                Top5Sample(
                    i,
                    [(label(int(c)), float(p)) for c, p in ref],
                    [(label(int(c)), float(p)) for c, p in zip(classes[i], values[i])],
                )
            )
    return found


@dataclass
class PageData:
    """Everything one page shows; built by the session at the end of the run."""

    rows: list[ProfileRow]
    environment: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)
    baseline_path: Path | None = None
    baseline: dict[str, ProfileRow] = field(default_factory=dict)
    """Baseline rows by case id (empty without --tinyaccel-baseline)."""
    changes: dict[str, list[Change]] = field(default_factory=dict)
    """Per case id: every gated metric against the baseline, with the case's margins."""
    traces: dict[str, Path] = field(default_factory=dict)
    """Per case id: the Chrome trace this run wrote."""
    notes: list[str] = field(default_factory=list)
    """Upgrade review notes (what changed with the installed ONNX Runtime)."""
