"""Indexing and data-dependent ops: gathers, scatters, top-k, one-hot, masks, triangles, cumulative sums.

Index inputs are read when the node runs; negative indices count from the end
of their axis, as ONNX specifies.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import numpy_dtype, type_name
from .core import (
    BuildContext,
    Kernel,
    Value,
    register,
)


def _wrap(index: Value, size: int) -> Value:
    index = np.asarray(index, dtype=np.int64)
    return np.where(index < 0, index + size, index)


@register("GatherElements")
def _gather_elements(ctx: BuildContext) -> Kernel:
    axis = int(ctx.attrs(axis=0)["axis"])

    def run(v: list[Value | None]) -> list[Value]:
        x, index = v[0], v[1]
        assert x is not None and index is not None
        ax = axis % x.ndim
        return [np.take_along_axis(x, _wrap(index, x.shape[ax]), axis=ax)]

    return run


@register("GatherND")
def _gather_nd(ctx: BuildContext) -> Kernel:
    batch_dims = int(ctx.attrs(batch_dims=0)["batch_dims"])

    def run(v: list[Value | None]) -> list[Value]:
        x, index = v[0], v[1]
        assert x is not None and index is not None
        lead = x.shape[:batch_dims]
        n = int(np.prod(lead, dtype=np.int64))
        xs = x.reshape(n, *x.shape[batch_dims:])
        idx = index.reshape(n, -1, index.shape[-1])
        depth = idx.shape[-1]
        parts = [xs[b][tuple(_wrap(idx[b, :, k], xs.shape[1 + k]) for k in range(depth))] for b in range(n)]
        out = np.stack(parts) if parts else np.empty((0,), x.dtype)
        return [out.reshape(*lead, *index.shape[batch_dims:-1], *x.shape[batch_dims + depth :])]

    return run


_REDUCTIONS = {"none": None, "add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


@register("ScatterElements", "Scatter")
def _scatter_elements(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(axis=0, reduction="none")
    if a["reduction"] not in _REDUCTIONS:
        ctx.unsupported_value("reduction", a["reduction"])
    axis, combine = int(a["axis"]), _REDUCTIONS[a["reduction"]]

    def run(v: list[Value | None]) -> list[Value]:
        x, index, updates = v[0], v[1], v[2]
        assert x is not None and index is not None and updates is not None
        ax = axis % x.ndim
        out = x.copy()
        where: list[Value] = list(np.indices(index.shape, sparse=True))
        where[ax] = _wrap(index, x.shape[ax])
        if combine is None:
            out[tuple(where)] = updates
        else:
            combine.at(out, tuple(where), updates)
        return [out]

    return run


@register("ScatterND")
def _scatter_nd(ctx: BuildContext) -> Kernel:
    reduction = ctx.attrs(reduction="none")["reduction"]
    if reduction not in _REDUCTIONS:
        ctx.unsupported_value("reduction", reduction)
    combine = _REDUCTIONS[reduction]

    def run(v: list[Value | None]) -> list[Value]:
        x, index, updates = v[0], v[1], v[2]
        assert x is not None and index is not None and updates is not None
        out = x.copy()
        depth = index.shape[-1]
        where = tuple(_wrap(index[..., k], x.shape[k]) for k in range(depth))
        if combine is None:
            out[where] = updates
        else:
            combine.at(out, where, updates)
        return [out]

    return run


@register("TopK")
def _topk(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(axis=-1, largest=1, sorted=1, k=None)
    axis, largest = int(a["axis"]), bool(a["largest"])

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        k = int(a["k"]) if ctx.opset < 10 else int(np.asarray(v[1]).reshape(-1)[0])
        ax = axis % x.ndim
        # Stable sort on a key that reverses the order for "largest", so equal values keep the lower index
        # first: -x for floats, ~x (-x - 1) for integers, which does not wrap around as -x does (uint, int min).
        key = (np.invert(x) if x.dtype.kind in "iub" else -x) if largest else x
        order = np.argsort(key, axis=ax, kind="stable")
        index = np.take(order, np.arange(k), axis=ax)
        return [np.take_along_axis(x, index, axis=ax), index.astype(np.int64)]

    return run


@register("OneHot")
def _onehot(ctx: BuildContext) -> Kernel:
    axis = int(ctx.attrs(axis=-1)["axis"])

    def run(v: list[Value | None]) -> list[Value]:
        index, depth, values = v[0], v[1], v[2]
        assert index is not None and depth is not None and values is not None
        d = int(np.asarray(depth).reshape(-1)[0])
        ax = axis % (index.ndim + 1)
        wrapped = np.where(index < 0, index + d, index).astype(np.int64)
        classes = np.arange(d).reshape([-1 if i == ax else 1 for i in range(index.ndim + 1)])
        hot = np.expand_dims(wrapped, ax) == classes
        return [np.where(hot, values[1], values[0]).astype(values.dtype)]

    return run


@register("NonZero")
def _nonzero(ctx: BuildContext) -> Kernel:
    ctx.attrs()
    return lambda v: [np.array(np.nonzero(v[0]), dtype=np.int64).reshape(np.ndim(v[0]), -1)]


@register("Compress")
def _compress(ctx: BuildContext) -> Kernel:
    axis = ctx.attrs(axis=None)["axis"]

    def run(v: list[Value | None]) -> list[Value]:
        x, cond = v[0], v[1]
        assert x is not None and cond is not None
        return [np.compress(cond.astype(bool), x, axis=None if axis is None else int(axis) % x.ndim)]

    return run


@register("Trilu")
def _trilu(ctx: BuildContext) -> Kernel:
    upper = bool(ctx.attrs(upper=1)["upper"])

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        k = int(np.asarray(v[1]).reshape(-1)[0]) if len(v) > 1 and v[1] is not None else 0
        return [np.triu(x, k) if upper else np.tril(x, k)]

    return run


@register("CumSum")
def _cumsum(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(exclusive=0, reverse=0)
    exclusive, reverse = bool(a["exclusive"]), bool(a["reverse"])

    def run(v: list[Value | None]) -> list[Value]:
        x, axis_in = v[0], v[1]
        assert x is not None and axis_in is not None
        ax = int(np.asarray(axis_in).reshape(-1)[0]) % x.ndim
        y = np.flip(x, ax) if reverse else x
        out = np.cumsum(y, axis=ax, dtype=x.dtype)
        if exclusive:  # shift by one along the axis, starting from 0
            out = np.concatenate([np.zeros_like(np.take(out, [0], axis=ax)), np.delete(out, -1, axis=ax)], axis=ax)
        return [np.flip(out, ax) if reverse else out]

    return run


@register("EyeLike")
def _eyelike(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(dtype=None, k=0)
    dtype = None if a["dtype"] is None else numpy_dtype(int(a["dtype"]))
    if a["dtype"] is not None and dtype is None:
        ctx.unsupported_value("dtype", type_name(int(a["dtype"])), "unsupported element type")
    k = int(a["k"])
    return lambda v: [np.eye(v[0].shape[0], v[0].shape[1], k, dtype=dtype or v[0].dtype)]


@register("ReverseSequence")
def _reverse_sequence(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(batch_axis=1, time_axis=0)
    batch_axis, time_axis = int(a["batch_axis"]), int(a["time_axis"])

    def run(v: list[Value | None]) -> list[Value]:
        x, lengths = v[0], v[1]
        assert x is not None and lengths is not None
        out = x.copy()
        for b, n in enumerate(np.asarray(lengths).reshape(-1)):
            index: list[slice | int] = [slice(None)] * x.ndim
            index[batch_axis] = b
            index[time_axis] = slice(0, int(n))
            out[tuple(index)] = np.flip(x[tuple(index)], axis=time_axis - (batch_axis < time_axis))
        return [out]

    return run
