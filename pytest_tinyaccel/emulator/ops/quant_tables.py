"""The QOperator kernels ONNX Runtime's quantizer emits that run through lookup tables or ONNX Runtime's own
table formula: QLinearSoftmax, QLinearSigmoid, QLinearLeakyRelu, QLinearConcat (bit-exact with ORT).

The tables are built at load time from the constant scales and zero points, as ORT builds them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .. import kernels as K
from .core import _MS, BuildContext, Kernel, Value, register
from .quant import QParams, _check_input_dtype, _qparams


@register("QLinearSoftmax", domain=_MS, requantizes=True)
def _qlinear_softmax(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(axis=None, opset=None)
    if a["opset"] is None:
        ctx.fail("attribute opset is required")
    legacy = int(a["opset"]) < 13
    axis = a["axis"] if a["axis"] is not None else (1 if legacy else -1)
    xq, yq = _qparams(ctx, 1, 2, "x"), _qparams(ctx, 3, 4, "y")
    if xq.dtype not in (np.dtype(np.uint8), np.dtype(np.int8)):
        ctx.fail(f"input type {xq.dtype} is not supported (uint8, int8)")
    x_scale = float(xq.scale)
    # ONNX Runtime multiplies by floor(1 / y_scale), not by 1 / y_scale.
    y_mult = np.float32(math.floor(np.float32(1.0) / yq.scale))
    zp, rounding = int(yq.zero_point), ctx.rounding

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        ax = axis % x.ndim
        if legacy:
            rows = x.reshape(int(np.prod(x.shape[:ax])), -1)
        else:
            rows = np.moveaxis(x, ax, -1)
        flat = rows.reshape(-1, rows.shape[-1]).astype(np.int32)
        table = _softmax_table(x_scale, flat.shape[1])
        # Index 255 + x - max(x): the table holds exp((i - 255 + shift) * x_scale).
        vals = table[255 + flat - flat.max(axis=1, keepdims=True)]
        vsum = np.zeros(flat.shape[0], np.float32)
        for j in range(flat.shape[1]):  # sequential float32 sum, as ORT does (loop over classes)
            vsum += vals[:, j]
        q = K.round_to_int((vals * y_mult) / vsum[:, None], rounding) + np.float32(zp)
        out = K.saturate(q, yq.dtype).reshape(rows.shape)
        return [out.reshape(x.shape) if legacy else np.ascontiguousarray(np.moveaxis(out, -1, ax))]

    return run


def _softmax_table(x_scale: float, reduce_len: int) -> Value:
    """ORT's QLinearSoftmax table: float32(exp((i - 255 + shift) * x_scale)), shift keeping sums finite."""
    bit_shift = math.log(float(np.float32(np.finfo(np.float32).max) / np.float32(reduce_len)))
    bit_shift = max(0.0, bit_shift - 5) / x_scale
    i = np.arange(256, dtype=np.float64)
    return np.exp((i - 255 + bit_shift) * x_scale).astype(np.float32)


def _byte_table(ctx: BuildContext, xq: QParams, yq: QParams, fn: Callable[[Value], Value]) -> Value:
    """256-entry table over the raw input bytes: quantize(fn(dequantize(x))), as ORT builds it."""
    raw = np.arange(256, dtype=np.uint8).view(xq.dtype) if xq.dtype.itemsize == 1 else None
    if raw is None:
        ctx.fail(f"lookup-table ops need 8-bit inputs, got {xq.dtype}")
    deq = xq.scale * (raw.astype(np.int32) - np.int32(xq.zero_point)).astype(np.float32)
    q = K.quantize_linear(fn(deq.astype(np.float32)), yq.scale, yq.zero_point, yq.dtype, ctx.rounding)
    return q


@register("QLinearSigmoid", "QLinearLeakyRelu", domain=_MS, requantizes=True)
def _qlinear_table_op(ctx: BuildContext) -> Kernel:
    if ctx.op == "QLinearLeakyRelu":
        alpha = np.float32(ctx.attrs(alpha=0.01)["alpha"])

        def fn(x: Value) -> Value:
            return np.where(x >= 0, x, x * alpha).astype(np.float32)

    else:
        ctx.attrs()
        fn = K.logistic_mlas
    xq, yq = _qparams(ctx, 1, 2, "X"), _qparams(ctx, 3, 4, "Y")
    table = _byte_table(ctx, xq, yq, fn)

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        _check_input_dtype(ctx, x, xq, "X")
        return [K.lookup(table, x)]

    return run


@register("QLinearConcat", domain=_MS, requantizes=True)
def _qlinear_concat(ctx: BuildContext) -> Kernel:
    axis = ctx.attrs(axis=None)["axis"]
    if axis is None:
        ctx.fail("attribute axis is required")
    n = len(ctx.node.input)
    if n < 5 or (n - 2) % 3:
        ctx.fail("inputs must be Y_scale, Y_zero_point, then (X, X_scale, X_zero_point) tuples")
    yq = _qparams(ctx, 0, 1, "Y")
    tables: list[Value | None] = []
    for i in range(2, n, 3):
        xq = _qparams(ctx, i + 1, i + 2, f"X{(i - 2) // 3}")
        if xq.dtype != yq.dtype:
            ctx.fail("inputs and output must have the same quantized type")
        same = float(xq.scale) == float(yq.scale) and int(xq.zero_point) == int(yq.zero_point)
        tables.append(None if same else _byte_table(ctx, xq, yq, lambda x: x))

    def run(v: list[Value | None]) -> list[Value]:
        parts = []
        for k, table in enumerate(tables):
            x = v[2 + 3 * k]
            assert x is not None
            parts.append(x if table is None else K.lookup(table, x))
        return [np.concatenate(parts, axis=axis)]

    return run
