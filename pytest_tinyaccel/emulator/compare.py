"""Find the first layer whose output leaves the tolerance.

A golden test that fails on the model's output says nothing about where the
error entered; comparing every node's output with ONNX Runtime's intermediate
tensors in execution order does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np


class _Fields(NamedTuple):
    node: str
    op_type: str
    tensor: str
    max_abs_err: float
    n_mismatch: int


class Divergence(_Fields):
    """The first node whose output differs: a 5-tuple (node, op_type, tensor,
    max_abs_err, n_mismatch), plus `n_total`, the tensor's element count, for shares."""

    n_total: int

    def __new__(cls, node: str, op_type: str, tensor: str, max_abs_err: float, n_mismatch: int, n_total: int = 0):
        self = super().__new__(cls, node, op_type, tensor, max_abs_err, n_mismatch)
        self.n_total = n_total
        return self

    def describe(self) -> str:
        share = f" of {self.n_total} ({self.n_mismatch / self.n_total:.2%})" if self.n_total else ""
        return (
            f"first diverging layer: node '{self.node}' ({self.op_type}), tensor '{self.tensor}': "
            f"{self.n_mismatch}{share} elements differ, max abs error {self.max_abs_err:g}"
        )


def first_divergence(
    emulated: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
    order: Sequence[Sequence],
    atol: float = 1e-5,
    rtol: float = 1e-3,
) -> Divergence | None:
    """Walk `order` (Node objects or (name, op_type, outputs) tuples) and return the
    first node with an output tensor that leaves np.allclose(atol, rtol).

    Integer tensors (quantized activations) must be equal exactly. Tensors missing
    from either side are skipped (ORT cannot always type every intermediate).
    """
    for entry in order:
        name, op_type, outputs = entry[0], entry[1], entry[2]
        for tensor in outputs:
            if not tensor or tensor not in emulated or tensor not in reference:
                continue
            got, want = np.asarray(emulated[tensor]), np.asarray(reference[tensor])
            if got.shape != want.shape:
                return Divergence(
                    name, op_type, tensor, float("inf"), max(got.size, want.size), max(got.size, want.size)
                )
            if got.dtype.kind in "iub" or want.dtype.kind in "iub":
                diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
                bad = diff != 0
            else:
                g, w = got.astype(np.float64), want.astype(np.float64)
                diff = np.abs(g - w)
                bad = ~np.isclose(g, w, atol=atol, rtol=rtol, equal_nan=True)
            n_bad = int(bad.sum())
            if n_bad:
                finite = np.where(np.isnan(diff), np.inf, diff)
                return Divergence(name, op_type, tensor, float(finite.max()), n_bad, int(got.size))
    return None
