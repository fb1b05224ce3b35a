"""Golden comparison with a diagnosis: enough to start debugging without a re-run.

`describe_mismatch` streams both tensors through float64 in chunks that stay in
a core's cache, instead of building a dozen full-size float64 temporaries. The
first pass only counts mismatches; when there are some, a second pass collects
what the message shows over every element (largest errors, NaN/inf, the worst
elements). The results are those of the element-wise formula applied to the
whole arrays at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tabulate import tabulate

_CHUNK = 32 * 1024
"""Elements per chunk: a few float64 buffers of it fit in a core's L2 cache."""


def describe_mismatch(
    name: str, obtained: np.ndarray, expected: np.ndarray, atol: float, rtol: float, worst: int = 5
) -> str | None:
    """None when `obtained` is np.allclose to `expected`; else what differs and where.

    Element-wise in float64: abs err = |obtained - expected|, bad unless
    abs err <= atol + rtol * |expected| (so NaN is bad); as in np.allclose, an
    infinite expected value matches an equal infinity only. Integer tensors pass
    through the same rule, so with the default atol they must match exactly (a
    1-LSB error fails).
    """
    if obtained.shape != expected.shape:
        return f"output '{name}': shape {list(obtained.shape)} does not match the golden's {list(expected.shape)}"
    got, exp = obtained.reshape(-1), expected.reshape(-1)
    chunks = [(start, got[start : start + _CHUNK], exp[start : start + _CHUNK]) for start in range(0, got.size, _CHUNK)]
    buffers = _Buffers(min(_CHUNK, got.size))
    if all(buffers.count_bad(g, e, atol, rtol) == 0 for _, g, e in chunks):
        return None
    scan = _Scan(worst)
    for start, g, e in chunks:
        scan.add(buffers, start, g, e, atol, rtol)
    rows = []
    for flat in scan.worst_indices():
        idx = np.unravel_index(flat, obtained.shape)
        g64, e64 = np.float64(obtained[idx]), np.float64(expected[idx])
        abs_err = np.abs(g64 - e64) if g64 != e64 else np.float64(0.0)  # an equal infinity included
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_err = abs_err / np.abs(e64) if abs_err != 0 else np.float64(0.0)  # an exact zero matches
        rows.append([list(map(int, idx)), f"{g64:.7g}", f"{e64:.7g}", f"{abs_err:.3g}", f"{rel_err:.3g}"])
    lines = [
        f"output '{name}' differs from the ONNX Runtime golden (atol={atol:g}, rtol={rtol:g})",
        f"  mismatched elements: {scan.count} / {got.size} ({100.0 * scan.count / got.size:.2f}%)",
        f"  max abs error: {scan.abs_err.text()}   max rel error: {scan.rel_err.text()}",
    ]
    if scan.nan:
        lines.append(f"  obtained holds {scan.nan} NaN value(s)")
    lines.append("  worst elements:")
    table = tabulate(rows, headers=["index", "obtained", "expected", "abs err", "rel err"])
    lines.extend("    " + line for line in table.splitlines())
    return "\n".join(lines)


class _Buffers:
    """Reused float64 chunk buffers, and the mismatch test both passes share."""

    def __init__(self, size: int) -> None:
        self.err = np.empty(size, np.float64)
        self.scale = np.empty(size, np.float64)
        self.limit = np.empty(size, np.float64)
        self.ok = np.empty(size, np.bool_)

    def count_bad(self, got: np.ndarray, exp: np.ndarray, atol: float, rtol: float) -> int:
        """Mismatches in a chunk; leaves |got - exp| in `err` and |exp| in `scale` (first `got.size` elements)."""
        n = got.size
        err, scale, limit, ok = self.err[:n], self.scale[:n], self.limit[:n], self.ok[:n]
        with np.errstate(invalid="ignore"):  # inf - inf, 0 * inf: handled below
            np.subtract(got, exp, out=err, dtype=np.float64)
            np.abs(err, out=err)
            np.abs(exp, out=scale, dtype=np.float64)
            np.multiply(scale, rtol, out=limit)
            limit += atol
        np.less_equal(err, limit, out=ok)
        if exp.dtype.kind in "fc":
            # As np.allclose: an infinite expected value matches itself only (the limit atol + rtol * inf
            # would accept any finite value, and inf - inf is nan); an equal infinity is no error.
            inf = np.isinf(scale)
            if inf.any():
                ok[inf] = got[inf] == exp[inf]
                err[inf & ok] = 0.0
        return n - int(np.count_nonzero(ok))


@dataclass
class _Peak:
    """The largest value of an error array as the message shows it: "nan" if any is NaN, else "inf" if any
    is infinite, else the maximum. A chunk's `max` tells all three (NumPy's max propagates NaN)."""

    top: float = -np.inf
    nan: bool = False

    def add(self, err: np.ndarray) -> None:
        value = float(err.max())
        self.nan = self.nan or value != value
        self.top = max(self.top, value) if value == value else self.top

    def text(self) -> str:
        return "nan" if self.nan else "inf" if self.top == np.inf else f"{self.top:.4g}"


@dataclass
class _Scan:
    """The second pass: what the message shows, gathered chunk by chunk (flat element indices)."""

    worst: int
    count: int = 0
    nan: int = 0
    abs_err: _Peak = field(default_factory=_Peak)
    rel_err: _Peak = field(default_factory=_Peak)
    values: np.ndarray = field(default_factory=lambda: np.empty(0))
    indices: np.ndarray = field(default_factory=lambda: np.empty(0, np.intp))
    """The largest errors so far (NaN counted as inf), largest first, ties by index, and their flat indices."""

    def add(self, buffers: _Buffers, start: int, got: np.ndarray, exp: np.ndarray, atol: float, rtol: float) -> None:
        self.count += buffers.count_bad(got, exp, atol, rtol)
        err, scale = buffers.err[: got.size], buffers.scale[: got.size]
        if got.dtype.kind in "fc":
            self.nan += int(np.count_nonzero(np.isnan(got)))
        self.abs_err.add(err)
        rel = buffers.limit[: got.size]
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(err, scale, out=rel)
        rel[err == 0] = 0.0  # an exact match has no relative error, an exact zero included (0/0 is not nan here)
        self.rel_err.add(rel)
        ranked = np.where(np.isnan(err), np.inf, err) if self.abs_err.nan else err
        self._keep(ranked, start)

    def _keep(self, ranked: np.ndarray, start: int) -> None:
        """Merge the chunk's errors that can still be among the `worst` largest. Later chunks hold higher
        indices, so an error equal to the current last one cannot displace it (ties go to the lower index)."""
        if self.values.size == self.worst:
            chosen = np.flatnonzero(ranked > self.values[-1])
        else:
            chosen = np.arange(ranked.size)
        if chosen.size > self.worst:
            kth = np.partition(ranked[chosen], chosen.size - self.worst)[chosen.size - self.worst]
            chosen = chosen[ranked[chosen] >= kth]
        values = np.concatenate([self.values, ranked[chosen]])
        indices = np.concatenate([self.indices, chosen + start])
        order = np.lexsort((indices, -values))[: self.worst]
        self.values, self.indices = values[order], indices[order]

    def worst_indices(self) -> np.ndarray:
        """Flat indices of the `worst` largest errors, largest first, ties by index: the order a stable
        sort of all the errors, descending, gives."""
        return self.indices


def compare_top5(
    reference: list[list[list[float]]], probs: np.ndarray, tolerance: float, label: Callable[[int], str]
) -> tuple[int, str]:
    """Compare Top-5 lists per sample: same classes in the same order, values within
    `tolerance`. Classes whose reference probabilities lie within `tolerance` of each
    other are indistinguishable at that tolerance, so their order may differ: at a rank
    another class is accepted when its reference probability (or, for a class outside
    the reference Top-5, the 5th) is within `tolerance` of that rank's, and so is the
    obtained value. Returns the number of differing entries and a side-by-side table
    ("0.961574 Labrador retriever" on both sides) of every sample that differs."""
    from ..metrics import topk

    classes, values = topk(probs, 5)
    rows, bad = [], 0
    for i, ref in enumerate(reference):
        ref_prob = {int(c): p for c, p in ref}
        sample_rows, sample_bad = [], 0
        for rank, (ref_c, ref_p) in enumerate(ref):
            got_c, got_p = int(classes[i, rank]), float(values[i, rank])
            tie = abs(ref_prob.get(got_c, ref[-1][1]) - ref_p) <= tolerance
            ok = abs(got_p - ref_p) <= tolerance and (got_c == int(ref_c) or tie)
            sample_bad += not ok
            sample_rows.append(
                [
                    i,
                    rank + 1,
                    f"{ref_p:.6f} {label(int(ref_c))}",
                    f"{got_p:.6f} {label(got_c)}",
                    "" if ok else "<-- differs",
                ]
            )
        if sample_bad:
            rows += sample_rows
            bad += sample_bad
    return bad, tabulate(rows, headers=["sample", "rank", "reference Top 5", "obtained Top 5", ""]) if rows else ""
