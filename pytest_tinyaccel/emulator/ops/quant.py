"""The QOperator kernels ONNX Runtime's quantizer emits (QLinearConv, QGemm, QLinearAdd ...), bit-exact with ORT.

Their weights, scales and zero points must be constants: the kernels fold them
at load time (weights minus zero points, requantization multipliers, lookup
tables), as an accelerator does when it is programmed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .. import accumulation as A
from .. import kernels as K
from .. import vnni
from ..conv import Finish, conv2d
from .core import (
    _I8,
    _MS,
    _U8,
    BuildContext,
    Kernel,
    Value,
    _f32,
    _qdtype,
    _scalar,
    register,
)
from .spatial import _as_2d, _check_rank, _conv_attrs, _from_2d, _pool_attrs

# =========================================================================== quantization: QOperator kernels


@dataclass(frozen=True)
class QParams:
    """Scale (float32) and zero point of one quantized tensor."""

    scale: Value
    zero_point: Value
    dtype: np.dtype


def _qparams(
    ctx: BuildContext, scale_i: int, zp_i: int, what: str, per_channel: bool = False, default: np.dtype = _U8
) -> QParams:
    scale = _f32(ctx.const(scale_i, f"{what}_scale"))
    zp = ctx.opt_const(zp_i, f"{what}_zero_point")
    dtype = _qdtype(ctx, zp, default)
    zp = np.zeros((), dtype) if zp is None else zp
    if not per_channel:
        scale, zp = _scalar(ctx, scale, f"{what}_scale"), _scalar(ctx, zp, f"{what}_zero_point")
    return QParams(scale.reshape(-1) if per_channel else scale, zp.reshape(-1) if per_channel else zp, dtype)


def _check_input_dtype(ctx: BuildContext, x: Value, q: QParams, what: str) -> None:
    if x.dtype != q.dtype:
        raise ValueError(f"{ctx.model}: node '{ctx.name}' ({ctx.op}): {what} is {x.dtype}, its zero point is {q.dtype}")


def _int_operand(x: Value, zp: Value, dtype: type[np.generic] = np.float64) -> Value:
    """x - zero point as exact integers in `dtype` (float32/float64 for BLAS, int32 for taps), in one pass."""
    return np.subtract(x, zp, dtype=dtype)


_F32_EXACT = 2.0**24
"""float32 holds every integer below this exactly."""


def _x_abs_max(xq: QParams) -> float:
    """The largest |x - zero point| of the input's quantized type."""
    info = np.iinfo(xq.dtype)
    return float(max(abs(info.min - int(xq.zero_point)), abs(info.max - int(xq.zero_point))))


def _acc_dtype(xq: QParams, w_int: Value, out_axis: int, depthwise: bool = False) -> type[np.generic]:
    """Accumulator type that holds the exact integer dot products.

    Products of 8-bit operands are exact in float32, and so is every partial sum
    below 2^24, whatever order BLAS adds them in; larger layers use float64
    (exact below 2^53), larger depthwise ones int32.
    """
    if _acc_bound(xq, w_int, out_axis) < _F32_EXACT:
        return np.float32
    return np.int32 if depthwise else np.float64


def _acc_bound(xq: QParams, w_int: Value, out_axis: int) -> float:
    """The largest magnitude a partial sum of the layer's integer products can reach."""
    return K.accumulator_bound(_x_abs_max(xq), w_int, out_axis)


def _add_bias(acc: Value, bias: Value) -> Value:
    """acc + int32 bias, exactly: as an int32 accumulator (acc holds exact integers)."""
    if acc.dtype == np.float64:
        return acc + bias.astype(np.float64)
    out = acc.astype(np.int32)
    out += bias
    return out


def _requantizer(
    scale: Value, yq: QParams, rounding: str, bias: Value | None, channels: int, acc_bound: float = _F32_EXACT
) -> Finish:
    """An epilogue: the accumulator plus the int32 bias, requantized into the output in one compiled pass,
    bit for bit `_add_bias` and then `K.requantize` (`compiled.finish`).

    `scale` (float32) and `bias` hold one value, or one per output channel: the last axis of the
    accumulator chunks, which are C-contiguous. `rounding` is one of `K.ROUNDING_MODES` (`Graph.load`
    checks every node's rule). When no accumulator (at most `acc_bound`) plus bias can reach 2^24, the
    sum is exact in float32 and the bias is kept as float32 (a float32 accumulator is then added in
    float32, twice as many lanes as float64).
    """
    from ..compiled import REQUANTIZE, REQUANTIZE_HALF_AWAY

    scales = np.ascontiguousarray(np.broadcast_to(scale.astype(np.float32).reshape(-1), (channels,)))
    biases = np.zeros(channels) if bias is None else np.broadcast_to(bias.astype(np.float64).reshape(-1), (channels,))
    if acc_bound + float(np.abs(biases).max(initial=0.0)) < _F32_EXACT:
        biases = biases.astype(np.float32)
    info, zero_point = np.iinfo(yq.dtype), int(yq.zero_point)
    bounds = (float(zero_point), float(info.min - zero_point), float(info.max - zero_point))
    mode = REQUANTIZE_HALF_AWAY if rounding == "half_away" else REQUANTIZE
    return Finish(mode, np.ascontiguousarray(biases), scales, bounds)


def _vnni_weights(xq: QParams, w_int: Value) -> vnni.Packed | None:
    """Integer weights (M, C, KH, KW) packed for the CPU's VNNI product of an 8-bit input (`vnni.pack`, rows
    in im2col order); None where the CPU has no VNNI form or the weights do not fit it."""
    if xq.dtype.itemsize != 1:
        return None
    return vnni.pack(w_int.transpose(2, 3, 1, 0).reshape(-1, w_int.shape[0]))


@register("QLinearConv", requantizes=True)
def _qlinear_conv(ctx: BuildContext) -> Kernel:
    ctx.n_inputs(8, 9)
    xq = _qparams(ctx, 1, 2, "x")
    w = ctx.const(3, "w")
    wq = _qparams(ctx, 4, 5, "w", per_channel=True, default=_I8)
    yq = _qparams(ctx, 6, 7, "y")
    bias = ctx.opt_const(8, "B")
    win, group = _conv_attrs(ctx, w, w_index=3)
    m = w.shape[0]
    if wq.scale.size not in (1, m) or wq.zero_point.size not in (1, m):
        ctx.fail(f"w_scale/w_zero_point must have 1 or {m} (output channels) values")
    depthwise = group > 1 and w.shape[1] == 1
    w_int = _int_operand(
        w,
        wq.zero_point.reshape(-1, *([1] * (w.ndim - 1))) if wq.zero_point.size > 1 else wq.zero_point.reshape(()),
        np.float64,
    )
    acc_bound = _acc_bound(xq, w_int, 0)
    acc_dtype = _acc_dtype(xq, w_int, 0, depthwise)
    b = None if bias is None else bias.astype(np.int32).reshape(-1)
    # ONNX Runtime: output_scale[i] = x_scale * w_scale[i] / y_scale, in float32 (one per output channel).
    scale = (xq.scale * wq.scale / yq.scale).astype(np.float32).reshape(-1)
    w_int = _as_2d(w_int.astype(acc_dtype), win.rank)
    offset = xq.zero_point.astype(acc_dtype)
    rounding = ctx.rounding
    w_raw = _as_2d(w, win.rank)
    saturating = (
        not depthwise and A.saturates(ctx.accumulation, xq.dtype, w.dtype) and A.conv_can_saturate(w_raw, group)
    )
    ctx.saturating = saturating
    packed = None if saturating or group > 1 else _vnni_weights(xq, w_int)
    if packed is not None:  # the VNNI product keeps the zero point: its correction goes into the bias
        b_vnni = (0 if b is None else b.astype(np.int64)) + vnni.correction(packed, xq.zero_point, xq.dtype)
        requantize = _requantizer(scale, yq, ctx.rounding, b_vnni, m, packed.bound)
    else:
        requantize = _requantizer(scale, yq, ctx.rounding, b, m, acc_bound)

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        _check_rank(ctx, x, win)
        _check_input_dtype(ctx, x, xq, "x")
        x2 = _as_2d(x, win.rank)
        pads = win.pads_for(x2.shape[2:], w_int.shape[2:])
        if not saturating:
            y = conv2d(
                x2,
                w_int,
                win.strides,
                pads,
                win.dilations,
                group,
                acc_dtype if packed is None else vnni.accumulator(packed).type,
                offset=offset,
                epilogue=requantize,
                out_dtype=yq.dtype,
                packed=packed,
            )
            return [_from_2d(y, win.rank)]
        acc = conv2d(x2, w_int, win.strides, pads, win.dilations, group, acc_dtype, offset=offset)
        fix = A.conv_correction(x2, int(xq.zero_point), w_raw, win.strides, pads, win.dilations, group, acc.shape[2:])
        acc = acc if fix is None else acc.astype(np.float64) + K.nchw(fix)
        if b is not None:
            acc = _add_bias(acc, b.reshape(1, -1, 1, 1))
        return [
            _from_2d(K.requantize(acc, scale.reshape(1, -1, 1, 1), int(yq.zero_point), yq.dtype, rounding), win.rank)
        ]

    return run


@register("QGemm", domain=_MS, requantizes=True)
def _qgemm(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(alpha=1.0, transA=0, transB=0)
    aq = _qparams(ctx, 1, 2, "a")
    b = ctx.const(3, "B")
    bq = _qparams(ctx, 4, 5, "b", per_channel=True, default=_I8)
    c = ctx.opt_const(6, "C")
    has_y = ctx.has(7)
    yq = _qparams(ctx, 7, 8, "y") if has_y else None
    tb = bool(a["transB"])
    n = b.shape[0] if tb else b.shape[1]
    if bq.scale.size not in (1, n):
        ctx.fail(f"b_scale must have 1 or {n} values")
    b_zp = (
        bq.zero_point.reshape(-1, 1)
        if (tb and bq.zero_point.size > 1)
        else (bq.zero_point if bq.zero_point.size > 1 else bq.zero_point.reshape(()))
    )
    b_int = _int_operand(b, b_zp)
    b_int = b_int.T if tb else b_int
    acc_bound = _acc_bound(aq, b_int, 1)
    acc_dtype = _acc_dtype(aq, b_int, 1)
    b_int = np.ascontiguousarray(b_int.astype(acc_dtype))
    # ONNX Runtime: output_scale[i] = alpha * a_scale * b_scale[i] (/ y_scale), float32 left to right.
    scale = (np.float32(a["alpha"]) * aq.scale * bq.scale).astype(np.float32)
    if yq is not None:
        scale = (scale / yq.scale).astype(np.float32)
    scale = scale if scale.size > 1 else scale.reshape(())
    c_int = None if c is None else c.astype(np.int32)
    ta = bool(a["transA"])
    bias_rows = c_int is not None and c_int.ndim > 1  # added to the accumulator first; a vector: in the epilogue
    b_raw = b.T if tb else b
    saturating = A.saturates(ctx.accumulation, aq.dtype, b.dtype) and A.gemm_can_saturate(b_raw)
    ctx.saturating = saturating
    packed = None if saturating or ta or bias_rows or aq.dtype.itemsize != 1 else vnni.pack(b_int)
    c_vnni = np.zeros(0, np.int64)
    if packed is not None:  # the VNNI product keeps the zero point: its correction goes into the bias
        c_vnni = (0 if c_int is None else c_int.astype(np.int64)) + vnni.correction(packed, aq.zero_point, aq.dtype)
    requantize = None
    if yq is not None and packed is not None:
        requantize = _requantizer(scale, yq, ctx.rounding, c_vnni, n, packed.bound)
    elif yq is not None:
        requantize = _requantizer(scale, yq, ctx.rounding, None if bias_rows else c_int, n, acc_bound)

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        _check_input_dtype(ctx, x, aq, "A")
        if packed is not None:
            return [_qgemm_vnni(x, packed, requantize, c_vnni, scale, yq)]
        xa = _int_operand(x, aq.zero_point, acc_dtype)
        acc = np.matmul(xa.T if ta else xa, b_int)
        if saturating:
            fix = A.gemm_correction(x.T if ta else x, b_raw)
            acc = acc if fix is None else acc.astype(np.float64) + fix
        if requantize is None:
            acc = acc if c_int is None else _add_bias(acc, c_int)
            return [acc.astype(np.float32) * scale]
        assert yq is not None
        if bias_rows:
            assert c_int is not None
            acc = _add_bias(acc, c_int)
        out = np.empty(acc.shape, yq.dtype)
        requantize(acc, out)
        return [out]

    return run


def _qgemm_vnni(
    x: Value, packed: vnni.Packed, requantize: Finish | None, bias: Value, scale: Value, yq: QParams | None
) -> Value:
    """QGemm on the CPU's VNNI unit: the exact product of x's bytes, then `requantize` (with y) or, without,
    + `bias` (which holds the zero point's correction) times `scale` in float32."""
    acc = np.empty((x.shape[0], packed.m), vnni.accumulator(packed))
    vnni.matmul(np.ascontiguousarray(x), packed, acc)
    if requantize is None:
        return (acc + bias).astype(np.float32) * scale
    assert yq is not None
    out = np.empty(acc.shape, yq.dtype)
    requantize(acc, out)
    return out


@register("QLinearAdd", "QLinearMul", domain=_MS, requantizes=True)
def _qlinear_binary(ctx: BuildContext) -> Kernel:
    ctx.attrs()
    aq, bq, cq = _qparams(ctx, 1, 2, "A"), _qparams(ctx, 4, 5, "B"), _qparams(ctx, 6, 7, "C")
    if aq.dtype.itemsize != 1 or bq.dtype != aq.dtype:
        ctx.fail(f"inputs must share one 8-bit type, got {aq.dtype} and {bq.dtype}")
    # Two 8-bit inputs have 65536 combinations: evaluate the exact formula once for all
    # of them and look the outputs up (bit-identical, and fast on large tensors).
    raw = np.arange(256, dtype=np.uint8).view(aq.dtype)
    a_all, b_all = np.meshgrid(raw, raw, indexing="ij")
    if ctx.op == "QLinearAdd":
        tables = (
            _qladd(a_all, b_all, aq, bq, cq, False, ctx.rounding),
            _qladd(a_all, b_all, aq, bq, cq, True, ctx.rounding),
        )
    else:
        table = _qlmul(a_all, b_all, aq, bq, cq, ctx.rounding)
        tables = (table, table)

    def run(v: list[Value | None]) -> list[Value]:
        x, y = v[0], v[3]
        assert x is not None and y is not None
        _check_input_dtype(ctx, x, aq, "A")
        _check_input_dtype(ctx, y, bq, "B")
        index = np.left_shift(x.view(np.uint8), 8, dtype=np.uint16) | y.view(np.uint8)
        table = tables[1] if x.size < y.size else tables[0]
        return [table.reshape(-1)[index]]

    return run


def _qladd(a: Value, b: Value, aq: QParams, bq: QParams, cq: QParams, a_broadcast: bool, rounding: str) -> Value:
    """ONNX Runtime's x86 (AVX2) QLinearAdd, which works on raw, not zero-point-shifted, values:

        ra = sa / sc, rb = sb / sc,  fixed = zc - fma(ra, za, rb * zb),  c = fma(a, ra, fma(b, rb, fixed))

    (the compiler contracts the scalar setup into an FMA too). When A is the broadcast
    operand, ORT swaps the operands, which changes the rounding; so do we.
    """
    za, zb, zc = (np.float32(int(q.zero_point)) for q in (aq, bq, cq))
    ra, rb = np.float32(aq.scale / cq.scale), np.float32(bq.scale / cq.scale)
    af, bf = a.astype(np.float32), b.astype(np.float32)
    if a_broadcast:
        fixed = np.float32(zc - K.fma32(rb, zb, np.float32(ra * za)))
        value = K.fma32(bf, rb, K.fma32(af, ra, fixed))
    else:
        fixed = np.float32(zc - K.fma32(ra, za, np.float32(rb * zb)))
        value = K.fma32(af, ra, K.fma32(bf, rb, fixed))
    return K.saturate(K.round_to_int(value, rounding), cq.dtype)


def _qlmul(a: Value, b: Value, aq: QParams, bq: QParams, cq: QParams, rounding: str) -> Value:
    """ONNX Runtime's QLinearMul (SSE2 kernel): float32((a-za)*(b-zb)) * (sa*sb/sc) + zc, no FMA."""
    prod = (a.astype(np.int32) - np.int32(aq.zero_point)) * (b.astype(np.int32) - np.int32(bq.zero_point))
    ratio = np.float32(aq.scale * bq.scale / cq.scale)
    value = prod.astype(np.float32) * ratio + np.float32(int(cq.zero_point))
    return K.saturate(K.round_to_int(value, rounding), cq.dtype)


@register("QLinearGlobalAveragePool", domain=_MS, requantizes=True)
def _qlinear_gap(ctx: BuildContext) -> Kernel:
    channels_last = bool(ctx.attrs(channels_last=0)["channels_last"])
    xq, yq = _qparams(ctx, 1, 2, "x"), _qparams(ctx, 3, 4, "y")
    rounding = ctx.rounding

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        _check_input_dtype(ctx, x, xq, "x")
        axes = tuple(range(1, x.ndim - 1)) if channels_last else tuple(range(2, x.ndim))
        return [_global_avg_int(x, axes, xq, yq, rounding)]

    return run


def _global_avg_int(x: Value, axes: tuple[int, ...], xq: QParams, yq: QParams, rounding: str) -> Value:
    """MLAS QLinearGlobalAveragePool: int32 sum - zp*size, requantized by x_scale/(y_scale*size)."""
    size = int(np.prod([x.shape[a] for a in axes]))
    acc = _pixel_sums(x, axes) - int(xq.zero_point) * size
    scale = np.asarray(xq.scale / (yq.scale * np.float32(size)), np.float32)
    return K.requantize(acc, scale, int(yq.zero_point), yq.dtype, rounding)


def _pixel_sums(x: Value, axes: tuple[int, ...]) -> Value:
    """The integers of x summed over `axes` (kept, with length 1), in int64: one compiled pass when the axes
    left are the batch and the channels, and the channels lie last in memory (channels-last data)."""
    kept = [a for a in range(x.ndim) if a not in axes]
    if len(kept) == 2 and kept[0] == 0 and x.dtype.kind in "iu":
        rows = np.moveaxis(x, kept[1], -1)
        if rows.flags.c_contiguous:
            from ..compiled import pixel_sums  # numba's import, on first use

            n, c = x.shape[0], x.shape[kept[1]]
            sums = np.empty((n, c), np.int64)
            pixel_sums(rows.reshape(n, -1, c), sums)
            return sums.reshape([n if a == 0 else (c if a == kept[1] else 1) for a in range(x.ndim)])
    return x.sum(axis=axes, keepdims=True, dtype=np.int64)


@register("QLinearAveragePool", domain=_MS, requantizes=True)
def _qlinear_avgpool(ctx: BuildContext) -> Kernel:
    win, a = _pool_attrs(ctx, {"count_include_pad": 0, "channels_last": 0})
    xq, yq = _qparams(ctx, 1, 2, "x"), _qparams(ctx, 3, 4, "y")
    if a["dilations"] and any(d != 1 for d in a["dilations"]):
        ctx.unsupported_value("dilations", a["dilations"])
    assert win.kernel is not None
    kernel, channels_last, rounding = win.kernel, bool(a["channels_last"]), ctx.rounding
    count: Literal["inside", "kernel"] = "kernel" if a["count_include_pad"] else "inside"

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        _check_input_dtype(ctx, x, xq, "x")
        if channels_last:
            x = np.moveaxis(x, -1, 1)
        _check_rank(ctx, x, win)
        x2 = _as_2d(x, win.rank)
        pads = win.pads_for(x2.shape[2:], kernel)
        if tuple(x2.shape[2:]) == tuple(kernel) and not any(pads):
            # ONNX Runtime falls back to its integer global average pool here.
            y = _global_avg_int(x2, (2, 3), xq, yq, rounding)
        else:
            xf = K.dequantize_linear(x2, xq.scale, xq.zero_point)
            total, n = K.avg_pool2d_parts(xf, kernel, win.strides, pads, win.dilations, bool(a["ceil_mode"]), count)
            # ONNX Runtime rounds y / y_scale + zero_point (the zero point added before rounding).
            y = K.saturate(K.round_to_int(total / n / yq.scale + np.float32(int(yq.zero_point)), rounding), yq.dtype)
        y = _from_2d(y, win.rank)
        return [np.ascontiguousarray(np.moveaxis(y, 1, -1)) if channels_last else y]

    return run
