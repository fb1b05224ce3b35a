"""Golden comparison with a diagnosis: enough to start debugging without a re-run."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tabulate import tabulate


def describe_mismatch(
    name: str, obtained: np.ndarray, expected: np.ndarray, atol: float, rtol: float, worst: int = 5
) -> str | None:
    """None when `obtained` is np.allclose to `expected`; else what differs and where.

    Integer tensors pass through the same rule, so with the default atol they
    must match exactly (a 1-LSB error fails).
    """
    if obtained.shape != expected.shape:
        return f"output '{name}': shape {list(obtained.shape)} does not match the golden's {list(expected.shape)}"
    got = obtained.astype(np.float64, copy=False)
    exp = expected.astype(np.float64, copy=False)
    abs_err = np.abs(got - exp)
    bad = ~(abs_err <= atol + rtol * np.abs(exp))  # NaN compares False, so it counts as bad
    count = int(bad.sum())
    if count == 0:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_err = abs_err / np.abs(exp)
    finite_abs = np.where(np.isnan(abs_err), np.inf, abs_err)
    order = np.argsort(-finite_abs, axis=None, kind="stable")[:worst]
    rows = []
    for flat in order:
        idx = np.unravel_index(flat, got.shape)
        rows.append(
            [list(map(int, idx)), f"{got[idx]:.7g}", f"{exp[idx]:.7g}", f"{abs_err[idx]:.3g}", f"{rel_err[idx]:.3g}"]
        )
    lines = [
        f"output '{name}' differs from the ONNX Runtime golden (atol={atol:g}, rtol={rtol:g})",
        f"  mismatched elements: {count} / {bad.size} ({100.0 * count / bad.size:.2f}%)",
        f"  max abs error: {_maxfmt(abs_err)}   max rel error: {_maxfmt(rel_err)}",
    ]
    nan = int(np.isnan(got).sum())
    if nan:
        lines.append(f"  obtained holds {nan} NaN value(s)")
    lines.append("  worst elements:")
    table = tabulate(rows, headers=["index", "obtained", "expected", "abs err", "rel err"])
    lines.extend("    " + line for line in table.splitlines())
    return "\n".join(lines)


def _maxfmt(err: np.ndarray) -> str:
    finite = err[np.isfinite(err)]
    if np.isnan(err).any():
        return "nan"
    if finite.size < err.size:
        return "inf"
    return f"{finite.max():.4g}"


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
