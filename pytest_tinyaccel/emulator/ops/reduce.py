"""Reductions (ReduceMean/Sum/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare) and ArgMax/ArgMin.

`axes` is an attribute up to opset 17 (12 for ReduceSum) and an optional input
after that; the input may be an initializer or a graph input, read when the node
runs. Reducing an empty axis gives the reduction's identity (-inf for a max, 0
for a sum ...), as ONNX specifies.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .core import (
    BuildContext,
    Kernel,
    Value,
    register,
)


def _extreme(x: Value, lowest: bool) -> float | int | bool:
    """The reduction identity of max (lowest=True) or min for x's type."""
    if x.dtype.kind == "f":
        return -np.inf if lowest else np.inf
    if x.dtype.kind == "b":
        return not lowest
    info = np.iinfo(x.dtype)
    return int(info.min if lowest else info.max)


def _log_sum_exp(x: Value, axis: tuple[int, ...] | None, keepdims: bool) -> Value:
    if x.size == 0:
        return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0)
    out = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
    return out if keepdims else np.squeeze(out, axis=axis)


_REDUCERS: dict[str, Callable[[Value, tuple[int, ...] | None, bool], Value]] = {
    "ReduceMean": lambda x, ax, k: np.mean(x, axis=ax, keepdims=k),
    "ReduceSum": lambda x, ax, k: np.sum(x, axis=ax, keepdims=k),
    "ReduceMax": lambda x, ax, k: np.max(x, axis=ax, keepdims=k, initial=_extreme(x, True)),
    "ReduceMin": lambda x, ax, k: np.min(x, axis=ax, keepdims=k, initial=_extreme(x, False)),
    "ReduceProd": lambda x, ax, k: np.prod(x, axis=ax, keepdims=k),
    "ReduceL1": lambda x, ax, k: np.sum(np.abs(x), axis=ax, keepdims=k),
    "ReduceL2": lambda x, ax, k: np.sqrt(np.sum(np.square(x), axis=ax, keepdims=k)),
    "ReduceLogSum": lambda x, ax, k: np.log(np.sum(x, axis=ax, keepdims=k)),
    "ReduceLogSumExp": _log_sum_exp,
    "ReduceSumSquare": lambda x, ax, k: np.sum(np.square(x), axis=ax, keepdims=k),
}


@register(*_REDUCERS)
def _reduce(ctx: BuildContext) -> Kernel:
    axes_as_input = ctx.opset >= 18 or (ctx.op == "ReduceSum" and ctx.opset >= 13)
    if axes_as_input:
        a = ctx.attrs(keepdims=1, noop_with_empty_axes=0)
        ctx.n_inputs(1, 2)
        fixed_axes = None
    else:
        a = ctx.attrs(keepdims=1, axes=None)
        ctx.n_inputs(1, 1)
        fixed_axes = a["axes"]
    keep, noop = bool(a["keepdims"]), bool(a.get("noop_with_empty_axes"))
    fn = _REDUCERS[ctx.op]

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        given = v[1] if axes_as_input and len(v) > 1 else fixed_axes
        axes = [int(i) for i in np.asarray(given).reshape(-1)] if given is not None else []
        if not axes and noop:
            return [x]
        axis = tuple(i % x.ndim for i in axes) if axes else None
        with np.errstate(divide="ignore", invalid="ignore"):
            out = fn(x, axis, keep)
        return [np.asarray(out).astype(x.dtype, copy=False)]

    return run


@register("ArgMax", "ArgMin")
def _arg(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(axis=0, keepdims=1, select_last_index=0)
    axis, keep, last = int(a["axis"]), bool(a["keepdims"]), bool(a["select_last_index"])
    pick = np.argmax if ctx.op == "ArgMax" else np.argmin

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        ax = axis % x.ndim
        if last:  # the last occurrence: search the reversed axis, then map the index back
            index = x.shape[ax] - 1 - pick(np.flip(x, axis=ax), axis=ax)
        else:
            index = pick(x, axis=ax)
        index = index.astype(np.int64)
        return [np.expand_dims(index, ax) if keep else index]

    return run
