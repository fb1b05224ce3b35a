"""Shape and data movement: reshapes, slices, gathers, pads, casts, constants."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from .core import (
    BuildContext,
    Kernel,
    Value,
    register,
)

# =========================================================================== shape and data movement


def _int_list(value: Value | Sequence[int] | None) -> list[int]:
    return [] if value is None else [int(x) for x in np.asarray(value).reshape(-1)]


@register("Flatten")
def _flatten(ctx: BuildContext) -> Kernel:
    axis = ctx.attrs(axis=1)["axis"]

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        ax = axis % x.ndim if x.ndim else 0
        return [x.reshape(int(np.prod(x.shape[:ax])), -1)]

    return run


@register("Reshape")
def _reshape(ctx: BuildContext) -> Kernel:
    allowzero = ctx.attrs(allowzero=0)["allowzero"] if ctx.opset >= 14 else ctx.attrs(shape=None)["shape"] and 0
    if ctx.opset < 5:
        ctx.fail("Reshape-1 (shape as an attribute) is not supported by the tinyaccel emulator")

    def run(v: list[Value | None]) -> list[Value]:
        x, shape = v[0], _int_list(v[1])
        assert x is not None
        if not allowzero:
            shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return [x.reshape(shape)]

    return run


@register("Transpose")
def _transpose(ctx: BuildContext) -> Kernel:
    perm = ctx.attrs(perm=None)["perm"]
    # A view: kernels accept any memory layout (an NHWC input transposed to NCHW costs nothing).
    return lambda v: [np.transpose(v[0], perm)]


@register("Squeeze", "Unsqueeze")
def _squeeze(ctx: BuildContext) -> Kernel:
    if ctx.opset >= 13:
        ctx.attrs()
        axes = _int_list(ctx.const(1, "axes")) if ctx.has(1) else None
    else:
        axes = ctx.attrs(axes=None)["axes"]
    unsq = ctx.op == "Unsqueeze"
    if unsq and not axes:
        ctx.fail("Unsqueeze needs axes")

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        if unsq:
            assert axes is not None
            rank = x.ndim + len(axes)
            return [np.expand_dims(x, tuple(sorted(a % rank for a in axes)))]
        if axes is None:
            return [np.squeeze(x)]
        return [np.squeeze(x, axis=tuple(a % x.ndim for a in axes))]

    return run


@register("Concat")
def _concat(ctx: BuildContext) -> Kernel:
    axis = ctx.attrs(axis=None)["axis"]
    if axis is None:
        ctx.fail("attribute axis is required")
    return lambda v: [np.concatenate([x for x in v if x is not None], axis=axis)]


@register("Shape")
def _shape(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(start=0, end=None)
    return lambda v: [np.array(v[0].shape[a["start"] : a["end"]], dtype=np.int64)]


@register("Gather")
def _gather(ctx: BuildContext) -> Kernel:
    axis = ctx.attrs(axis=0)["axis"]

    def run(v: list[Value | None]) -> list[Value]:
        x, idx = v[0], v[1]
        assert x is not None and idx is not None
        ax = axis % x.ndim
        idx = np.where(idx < 0, idx + x.shape[ax], idx)
        return [np.take(x, idx, axis=ax)]

    return run


_ONNX_TO_NP = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT16: np.int16,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.UINT16: np.uint16,
    onnx.TensorProto.BOOL: np.bool_,
}


@register("Cast")
def _cast(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(to=None, saturate=1)
    if a["to"] not in _ONNX_TO_NP:
        ctx.unsupported_value("to", a["to"])
    dtype = _ONNX_TO_NP[a["to"]]
    return lambda v: [np.asarray(v[0]).astype(dtype)]


@register("Constant")
def _constant(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(value=None, value_float=None, value_floats=None, value_int=None, value_ints=None, sparse_value=None)
    if a["sparse_value"] is not None:
        ctx.unsupported_value("sparse_value", "<sparse>")
    if a["value"] is not None:
        value = np.asarray(a["value"])
    elif a["value_float"] is not None:
        value = np.array(a["value_float"], dtype=np.float32)
    elif a["value_floats"] is not None:
        value = np.array(a["value_floats"], dtype=np.float32)
    elif a["value_int"] is not None:
        value = np.array(a["value_int"], dtype=np.int64)
    elif a["value_ints"] is not None:
        value = np.array(a["value_ints"], dtype=np.int64)
    else:
        ctx.fail("Constant without a value")
    return lambda v: [value]


@register("ConstantOfShape")
def _constant_of_shape(ctx: BuildContext) -> Kernel:
    value = ctx.attrs(value=None)["value"]
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return lambda v: [np.full(_int_list(v[0]), fill[0], dtype=fill.dtype)]


@register("Slice")
def _slice(ctx: BuildContext) -> Kernel:
    if ctx.opset < 10:
        a = ctx.attrs(starts=None, ends=None, axes=None)
        fixed = (a["starts"], a["ends"], a["axes"], None)
    else:
        ctx.attrs()
        fixed = None

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        if fixed is not None:
            starts, ends, axes, steps = fixed
        else:
            starts, ends = _int_list(v[1]), _int_list(v[2])
            axes = _int_list(v[3]) if len(v) > 3 and v[3] is not None else None
            steps = _int_list(v[4]) if len(v) > 4 and v[4] is not None else None
        axes = list(range(len(starts))) if axes is None else axes
        steps = [1] * len(starts) if steps is None else steps
        index = [slice(None)] * x.ndim
        for s, e, ax, st in zip(starts, ends, axes, steps):
            index[ax % x.ndim] = slice(s, e, st)  # Python clamps out-of-range starts/ends as ONNX does
        return [x[tuple(index)]]

    return run


@register("Pad")
def _pad(ctx: BuildContext) -> Kernel:
    if ctx.opset < 11:
        a = ctx.attrs(mode="constant", pads=None, value=0.0)
        pads_c: list[int] | None = a["pads"]
        value_c: Value | None = np.asarray(a["value"], np.float32)
        axes_c = None
    else:
        a = ctx.attrs(mode="constant")
        pads_c = _int_list(ctx.const(1, "pads"))
        value_c = ctx.const(2, "constant_value") if ctx.has(2) else None
        axes_c = _int_list(ctx.const(3, "axes")) if ctx.has(3) else None
    mode = a["mode"]
    if mode not in ("constant", "reflect", "edge"):
        ctx.unsupported_value("mode", mode)

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None and pads_c is not None
        axes = list(range(x.ndim)) if axes_c is None else [ax % x.ndim for ax in axes_c]
        n = len(axes)
        width = [(0, 0)] * x.ndim
        for i, ax in enumerate(axes):
            width[ax] = (pads_c[i], pads_c[i + n])
        if any(b < 0 or e < 0 for b, e in width):
            index = tuple(slice(-b if b < 0 else None, e if e < 0 else None) for b, e in width)
            x = x[index]
            width = [(max(b, 0), max(e, 0)) for b, e in width]
        if mode == "constant":
            fill = value_c.reshape(()).astype(x.dtype) if value_c is not None else x.dtype.type(0)
            return [np.pad(x, width, mode="constant", constant_values=fill)]
        return [np.pad(x, width, mode=mode)]

    return run
