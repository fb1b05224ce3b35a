"""The error statistics teams compare across tools, for one tensor against its reference:
max abs error, RMSE, SQNR (dB), cosine similarity and, for integer tensors, the share
of elements within 1 LSB. A leaf module (NumPy only): the golden check, the run record
and a first-diverging-layer diagnosis all use the same numbers.

SQNR = 10 log10(sum(expected^2) / sum((obtained - expected)^2)): infinite when the
tensors are equal, as for a bit-exact int8 target.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ErrorStats:
    """One output (or layer) against its golden; every figure computed in float64."""

    max_abs: float
    rmse: float
    sqnr_db: float
    """inf when obtained equals expected; nan when obtained holds NaN."""
    cosine: float
    """1.0 for equal tensors or identical directions; nan when one side alone is all zeros, or NaN."""
    within_1lsb: float | None = None
    """Integer tensors: share of elements with |obtained - expected| <= 1."""
    elements: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: non-finite figures as the strings 'inf', '-inf', 'nan'."""
        return {k: _json_number(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorStats:
        values: dict[str, Any] = {
            k: (float(v) if isinstance(v, str) else v) for k, v in data.items() if k in cls.__dataclass_fields__
        }
        for key in ("max_abs", "rmse", "sqnr_db", "cosine"):
            if not isinstance(values.get(key), int | float) or isinstance(values.get(key), bool):
                raise TypeError(f"error statistics: {key} is not a number")
        return cls(**values)

    def describe(self) -> str:
        """'max abs 0.0123, RMSE 0.00412, SQNR 41.2 dB, cosine 0.99991[, 98.7% within 1 LSB]'."""
        text = (
            f"max abs {self.max_abs:.4g}, RMSE {self.rmse:.4g}, SQNR {format_db(self.sqnr_db)}, "
            f"cosine {self.cosine:.6g}"
        )
        if self.within_1lsb is not None:
            text += f", {100 * self.within_1lsb:.1f}% within 1 LSB"
        return text


def format_db(value: float) -> str:
    return "inf dB (exact)" if value == math.inf else f"{value:.1f} dB"


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def error_stats(obtained: np.ndarray, expected: np.ndarray) -> ErrorStats | None:
    """The statistics of `obtained` against `expected` (None when their shapes differ),
    streamed in chunks so no full-size float64 temporaries are built."""
    if obtained.shape != expected.shape:
        return None
    got, exp = obtained.reshape(-1), expected.reshape(-1)
    integer = got.dtype.kind in "iub" and exp.dtype.kind in "iub"
    max_abs, err2, sig2, got2, dot, close = 0.0, 0.0, 0.0, 0.0, 0.0, 0
    nan = False
    for start in range(0, got.size, _CHUNK):
        g = got[start : start + _CHUNK].astype(np.float64)
        e = exp[start : start + _CHUNK].astype(np.float64)
        diff = np.abs(g - e)
        if np.isnan(diff).any():
            nan = True
            continue
        max_abs = max(max_abs, float(diff.max(initial=0.0)))
        err2 += float(np.dot(diff, diff))
        sig2 += float(np.dot(e, e))
        got2 += float(np.dot(g, g))
        dot += float(np.dot(g, e))
        close += int(np.count_nonzero(diff <= 1))
    n = got.size
    if nan:
        return ErrorStats(math.nan, math.nan, math.nan, math.nan, None, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        sqnr = math.inf if err2 == 0 else float(10 * np.log10(np.float64(sig2) / err2))
        if err2 == 0:
            cosine = 1.0  # equal tensors, zeros included
        else:
            cosine = float(dot / np.sqrt(np.float64(got2) * sig2)) if got2 > 0 and sig2 > 0 else math.nan
    return ErrorStats(
        max_abs=max_abs,
        rmse=math.sqrt(err2 / n) if n else 0.0,
        sqnr_db=sqnr,
        cosine=float(min(1.0, cosine)) if math.isfinite(cosine) else cosine,
        within_1lsb=(close / n if n else 1.0) if integer else None,
        elements=n,
    )
