"""QuantizeLinear / DequantizeLinear and the ONNX-standard integer products (QLinearMatMul,
MatMulInteger, ConvInteger).

Scales and zero points may be initializers or graph inputs: they are read when
the node runs (with constants the whole node usually folds, or QLinearMatMul's
constant B is prepared once). Per-tensor, per-axis and (opset 21) blocked
quantization parameters are supported. The products accumulate exactly (float64
holds every 8-bit dot product exactly) and, in `avx2_int16_pairs` mode, with
ONNX Runtime's int16 pair saturation (see accumulation.py).
"""

from __future__ import annotations

import numpy as np

from .. import accumulation as A
from .. import kernels as K
from ..conv import conv2d
from ..dtypes import numpy_dtype, type_name
from .core import (
    _I8,
    _QTYPES,
    _U8,
    BuildContext,
    Kernel,
    Value,
    register,
)
from .quant import QParams, _acc_dtype, _check_input_dtype, _int_operand, _qparams
from .spatial import _as_2d, _check_rank, _conv_attrs, _from_2d


def _per_axis(param: Value, x: Value, axis: int, block: int) -> Value:
    """A scale or zero point shaped to broadcast against x: per tensor, per axis, or blocked along axis."""
    param = np.asarray(param)
    if param.ndim == 0 or (param.size == 1 and not block):
        return param.reshape(())
    ax = axis % x.ndim
    if block:  # one value per `block` consecutive elements along axis; the last block may be short
        return np.take(np.repeat(param, block, axis=ax), np.arange(x.shape[ax]), axis=ax)
    shape = [1] * x.ndim
    shape[ax] = param.size
    return param.reshape(shape)


def _quant_type(ctx: BuildContext, dtype: np.dtype) -> np.dtype:
    if dtype not in _QTYPES:
        ctx.fail(f"quantized type {dtype} is not supported by the tinyaccel emulator (uint8, int8, uint16, int16)")
    return dtype


@register("QuantizeLinear", requantizes=True)
def _quantize(ctx: BuildContext) -> Kernel:
    """y = saturate(round(x / y_scale) + y_zero_point), as MLAS: float32 division, ties to even."""
    a = ctx.attrs(axis=1, saturate=1, block_size=0, output_dtype=0)
    ctx.n_inputs(2, 3)
    axis, block, rounding = int(a["axis"]), int(a["block_size"]), ctx.rounding
    # The output type: the zero point's (checked at load when it is a constant), else output_dtype's, else uint8.
    default = _U8
    if a["output_dtype"]:
        default = numpy_dtype(a["output_dtype"]) or ctx.unsupported_value("output_dtype", type_name(a["output_dtype"]))
    if ctx.has(2) and ctx.node.input[2] in ctx.consts:
        _quant_type(ctx, np.dtype(ctx.consts[ctx.node.input[2]].dtype))

    def run(v: list[Value | None]) -> list[Value]:
        x, scale, zp = v[0], v[1], (v[2] if len(v) > 2 else None)
        assert x is not None and scale is not None
        dtype = default if zp is None else _quant_type(ctx, np.dtype(zp.dtype))
        zero = np.zeros((), dtype) if zp is None else zp
        s = _per_axis(scale.astype(np.float32), x, axis, block)
        fast = _quantize_compiled(x, s, zero, dtype, rounding) if s.ndim == 0 and zero.size == 1 else None
        return [K.quantize_linear(x, s, _per_axis(zero, x, axis, block), dtype, rounding) if fast is None else fast]

    return run


@register("DequantizeLinear")
def _dequantize(ctx: BuildContext) -> Kernel:
    """y = (x - x_zero_point) * x_scale: the subtraction in integers, the product in float32, y in x_scale's type."""
    a = ctx.attrs(axis=1, block_size=0)
    ctx.n_inputs(2, 3)
    axis, block = int(a["axis"]), int(a["block_size"])

    def run(v: list[Value | None]) -> list[Value]:
        x, scale, zp = v[0], v[1], (v[2] if len(v) > 2 else None)
        assert x is not None and scale is not None
        zero = np.zeros((), x.dtype) if zp is None else zp
        s = _per_axis(scale.astype(np.float32), x, axis, block)
        if s.ndim == 0 and zero.size == 1 and scale.dtype == np.float32 and max(x.itemsize, zero.itemsize) <= 2:
            y = _dequantize_compiled(x, s, zero)
            if y is not None:
                return [y]
        y = K.dequantize_linear(x, s, _per_axis(zero, x, axis, block))
        return [y.astype(scale.dtype, copy=False)]

    return run


def _quantize_compiled(x: Value, scale: Value, zero: Value, dtype: np.dtype, rounding: str) -> Value | None:
    """`K.quantize_linear` of float32 x with one scale and zero point in one compiled pass, in x's memory
    order; None where that does not apply (another input type, a strided view, a NaN)."""
    flat = K.empty_in_memory_order(x, dtype) if x.dtype == np.float32 and x.size else None
    if flat is None:
        return None
    from ..compiled import quantize  # numba's import, on first use

    out, source, target = flat
    info, zp = np.iinfo(dtype), int(np.asarray(zero).reshape(()))
    bounds = (float(zp), float(info.min - zp), float(info.max - zp))
    return out if quantize(source, np.float32(scale), bounds, rounding == "half_away", target) else None


def _dequantize_compiled(x: Value, scale: Value, zero: Value) -> Value | None:
    """`K.dequantize_linear` of 8- or 16-bit x with one float32 scale and zero point in one compiled pass,
    in x's memory order; None for a strided view."""
    flat = K.empty_in_memory_order(x, np.dtype(np.float32)) if x.size else None
    if flat is None:
        return None
    from ..compiled import dequantize  # numba's import, on first use

    out, source, target = flat
    dequantize(source, np.float32(np.asarray(zero).reshape(())), np.float32(scale), target)
    return out


def _runtime_qparams(scale: Value, zero_point: Value, rows: bool) -> QParams:
    """QParams from run-time values: float32 scale; per-row (rows) or per-column values shaped to broadcast."""
    s, z = np.asarray(scale, np.float32).reshape(-1), np.asarray(zero_point).reshape(-1)
    shape = (-1, 1) if rows else (-1,)
    return QParams(
        s.reshape(shape) if s.size > 1 else s.reshape(()), z.reshape(shape) if z.size > 1 else z.reshape(()), z.dtype
    )


@register("QLinearMatMul", requantizes=True)
def _qlinear_matmul(ctx: BuildContext) -> Kernel:
    """Exact integer product of (a - a_zp) and (b - b_zp), requantized by a_scale * b_scale / y_scale (float32).

    Constant parameters are validated and B prepared at load; graph-input ones are read per run.
    """
    ctx.attrs()
    ctx.n_inputs(8, 8)
    names = ctx.node.input
    fixed = None
    if all(names[i] in ctx.consts for i in (1, 2, 4, 5, 6, 7)):
        aq, bq = _qparams(ctx, 1, 2, "a"), _qparams(ctx, 4, 5, "b", per_channel=True, default=_I8)
        yq = _qparams(ctx, 6, 7, "y")
        scale = (aq.scale * bq.scale / yq.scale).astype(np.float32)
        fixed = (aq, bq, yq, scale if scale.size > 1 else scale.reshape(()))
    b_prepared = None
    if fixed is not None and names[3] in ctx.consts:
        aq, bq = fixed[0], fixed[1]
        b_zp = bq.zero_point if bq.zero_point.size > 1 else bq.zero_point.reshape(())
        b_int = _int_operand(ctx.consts[names[3]], b_zp)
        b_prepared = b_int.astype(_acc_dtype(aq, b_int, -1))
    rounding, accumulation = ctx.rounding, ctx.accumulation
    b_const = ctx.consts.get(names[3])
    ctx.saturating = accumulation != "exact" and (
        fixed is None  # types known only at run time
        or (
            A.saturates(accumulation, fixed[0].dtype, fixed[1].dtype)
            and (b_const is None or A.gemm_can_saturate(b_const))
        )
    )

    def run(v: list[Value | None]) -> list[Value]:
        a, b = v[0], v[3]
        assert a is not None and b is not None
        if fixed is not None:
            aq, bq, yq, scale = fixed
        else:
            aq, bq, yq = (_runtime_qparams(v[i], v[i + 1], rows=i == 1) for i in (1, 4, 6))  # type: ignore[arg-type]
            scale = (aq.scale * bq.scale / yq.scale).astype(np.float32)
        _check_input_dtype(ctx, a, aq, "a")
        acc_dtype = b_prepared.dtype.type if b_prepared is not None else np.float64
        bi = b_prepared if b_prepared is not None else _int_operand(b, bq.zero_point)
        acc = np.matmul(_int_operand(a, aq.zero_point, acc_dtype), bi)
        if A.saturates(accumulation, aq.dtype, bq.dtype) and b.ndim == 2:
            fix = A.gemm_correction(a, b)
            acc = acc if fix is None else acc.astype(np.float64) + fix
        return [K.requantize(acc, scale, int(yq.zero_point), yq.dtype, rounding)]

    return run


@register("MatMulInteger")
def _matmul_integer(ctx: BuildContext) -> Kernel:
    """int32 (a - a_zero_point) @ (b - b_zero_point); a_zero_point per tensor or per row, b's per column."""
    ctx.attrs()
    ctx.n_inputs(2, 4)
    accumulation = ctx.accumulation
    ctx.saturating = accumulation != "exact"  # operand types and weights are known only at run time

    def run(v: list[Value | None]) -> list[Value]:
        a, b = v[0], v[1]
        assert a is not None and b is not None
        one = np.ones((), np.float32)
        azp = _runtime_qparams(one, _zero(v, 2, a), rows=True).zero_point
        bzp = _runtime_qparams(one, _zero(v, 3, b), rows=False).zero_point
        acc = np.matmul(_int_operand(a, azp), _int_operand(b, bzp))
        if A.saturates(accumulation, a.dtype, b.dtype) and b.ndim == 2:
            fix = A.gemm_correction(a, b)
            acc = acc if fix is None else acc + fix
        return [acc.astype(np.int32)]

    return run


def _zero(v: list[Value | None], index: int, x: Value) -> Value:
    """An optional zero-point input, or 0 of x's type."""
    zp = v[index] if len(v) > index else None
    return np.zeros((), x.dtype) if zp is None else zp


@register("ConvInteger")
def _conv_integer(ctx: BuildContext) -> Kernel:
    """int32 convolution of (x - x_zero_point) with (w - w_zero_point), w_zero_point per tensor or per channel.

    Exact in every accumulation mode: ONNX Runtime's ConvInteger does not saturate on AVX2 (measured, unlike
    its MatMulInteger and QLinearConv).
    """
    ctx.n_inputs(2, 4)
    win, group = _conv_attrs(ctx, ctx.consts.get(ctx.node.input[1]))

    def run(v: list[Value | None]) -> list[Value]:
        x, w = v[0], v[1]
        assert x is not None and w is not None
        _check_rank(ctx, x, win)
        xzp = np.asarray(_zero(v, 2, x)).reshape(())
        wzp = np.asarray(_zero(v, 3, w)).reshape(-1)
        w_int = _int_operand(w, wzp.reshape(-1, *([1] * (w.ndim - 1))) if wzp.size > 1 else wzp.reshape(()))
        x2, w2 = _as_2d(x, win.rank), _as_2d(w_int, win.rank)
        pads = win.pads_for(x2.shape[2:], w2.shape[2:])
        acc = conv2d(
            x2,
            w2,
            win.strides,
            pads,
            win.dilations,
            group,
            np.float64,
            offset=xzp.astype(np.float64),
            out_dtype=np.int32,  # the exact float64 accumulator, as int32
        )
        return [_from_2d(acc, win.rank)]

    return run


@register("DynamicQuantizeLinear", requantizes=True)
def _dynamic_quantize(ctx: BuildContext) -> Kernel:
    """uint8 quantization with the range of x (widened to include 0): y, y_scale, y_zero_point."""
    ctx.attrs()
    rounding = ctx.rounding

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        low = min(np.float32(0), np.float32(x.min()) if x.size else np.float32(0))
        high = max(np.float32(0), np.float32(x.max()) if x.size else np.float32(0))
        scale = np.float32((high - low) / np.float32(255)) or np.float32(1)
        zero = K.saturate(K.round_to_int(np.asarray(np.float32(0) - low / scale), rounding), _U8)
        y = K.quantize_linear(x.astype(np.float32), np.asarray(scale), zero, _U8, rounding)
        return [y, np.asarray(scale, np.float32), np.asarray(zero, np.uint8)]

    return run
