"""Regression margins for pre-merge gating: how much worse a metric may get.

Latency (`cycles`, `ns`) and `throughput` margins are relative ("10%": may get
10 % worse); `accuracy` is absolute, in percentage points of accuracy or AUC x 100
("0.5": may drop by half a point); `sqnr` is absolute, in dB ("1dB": the SQNR of
an output against its golden may drop by 1 dB; not gated unless given). Simulated
cycles are deterministic, so their default margin is 0 %; wall-clock figures are
not, so theirs is generous.
A leaf module: manifests, options and the baseline comparison all parse margins here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .config import ConfigError

DEFAULT_MARGINS = {"cycles": 0.0, "ns": 25.0, "throughput": 25.0, "accuracy": 0.5}
METRICS = (*DEFAULT_MARGINS, "sqnr")
"""Every metric a margin may name; `sqnr` has no default (not gated unless given)."""


def parse_margins(spec: str | Mapping[str, object], where: str) -> dict[str, float]:
    """'cycles=0%,ns=10%,accuracy=0.5,sqnr=1dB' (or a TOML table) -> {metric: number}; ConfigError naming `where`."""
    if isinstance(spec, Mapping):
        items = [(str(k), v) for k, v in spec.items()]
    elif isinstance(spec, str):
        items = [(p.split("=", 1)[0], p.split("=", 1)[1] if "=" in p else None) for p in spec.split(",") if p.strip()]
    else:
        raise ConfigError(
            where, "max_regression", f'expected a string like "ns=10%,accuracy=0.5" or a table, got {spec!r}'
        )
    margins = {}
    for key, value in items:
        key = key.strip()
        if key not in METRICS:
            raise ConfigError(where, key, f"unknown metric; use {', '.join(METRICS)}")
        text = str(value).strip() if value is not None else ""
        percent = text.endswith("%")
        if key == "accuracy" and percent:
            raise ConfigError(where, key, "accuracy margin is in points (e.g. accuracy=0.5), not a percentage")
        if key == "sqnr":
            if not text.lower().endswith("db"):
                raise ConfigError(where, key, "sqnr margin is in dB, e.g. sqnr=1dB")
            text = text[:-2].strip()
        elif key != "accuracy" and not percent:
            raise ConfigError(where, key, f"{key} margin must be a percentage, e.g. {key}=10%")
        try:
            number = float(text.rstrip("%"))
        except ValueError:
            raise ConfigError(where, key, f"{text!r} is not a number") from None
        if not math.isfinite(number) or number < 0:
            raise ConfigError(where, key, f"margin must be a finite number and must not be negative, got {text!r}")
        margins[key] = number
    return margins
