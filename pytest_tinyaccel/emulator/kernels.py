"""NumPy kernels of the emulator: pooling, rounding, requantization, geometry (convolution: `conv.py`).

Every kernel works on the whole batch at once. Pooling loops over the kernel
taps only (9 iterations for a 3x3 kernel), each step a vectorized operation
over samples, channels and pixels.

Integer arithmetic: quantized operands minus their zero points are exact small
integers. Matrix products of them are computed with float BLAS: every product
is below 2^16, so float32 is exact while every partial sum stays below 2^24
(`accumulator_bound`) and float64 below 2^53; the float result then IS the exact
integer accumulator (what an int32 accumulator on the hardware holds, as long
as it does not overflow, which int8 layers of this size cannot).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

ROUNDING_MODES: tuple[str, ...] = ("half_even", "half_away")

# --------------------------------------------------------------------------- rounding


def round_to_int(x: np.ndarray, rounding: str) -> np.ndarray:
    """Round to the nearest integer, ties per `rounding`; same float dtype out.

    half_even is what ONNX Runtime (x86 cvtps2dq, nearbyintf) does; half_away
    is the other common hardware choice, used to inject faults.
    """
    if rounding == "half_even":
        return np.rint(x)
    if rounding == "half_away":
        # In float64 so that x + 0.5 is exact for every float32 x.
        x64 = x.astype(np.float64)
        return np.trunc(x64 + np.copysign(0.5, x64)).astype(x.dtype)
    raise ValueError(f"unknown rounding {rounding!r}; use one of {ROUNDING_MODES}")


def saturate(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Clip integer-valued floats to the range of `dtype` and cast (saturation)."""
    info = np.iinfo(dtype)
    return np.clip(values, info.min, info.max).astype(dtype)


def requantize(acc: np.ndarray, scale: np.ndarray, zero_point: int, dtype: np.dtype, rounding: str) -> np.ndarray:
    """clip(round(float32(acc) * scale) + zp): MLAS's requantization of int32 accumulators.

    `scale` is float32 (a scalar or per output channel, already shaped to
    broadcast against `acc`); the multiply is a float32 multiply as in MLAS.
    int32 -> float32 conversion rounds to nearest even, like cvtdq2ps.
    """
    value = acc.astype(np.float32)  # a fresh array: the steps below work in place
    out = np.empty_like(value, dtype=dtype)
    requantize_into(value, scale, zero_point, rounding, out)
    return out


def requantize_into(value: np.ndarray, scale: np.ndarray, zero_point: int, rounding: str, out: np.ndarray) -> None:
    """`requantize` of a float32 accumulator the caller owns (overwritten), written into `out` (its type)."""
    np.multiply(value, scale, out=value)
    _round_saturate_into(value, np.float32(zero_point), rounding, out)


def _round_saturate_into(
    value: np.ndarray, zero_point: np.ndarray | np.float32, rounding: str, out: np.ndarray
) -> None:
    """round, + zero point, saturate to `out`'s type, written into `out`; `value` (float32) is overwritten.

    The saturation is applied before the zero point is added, to bounds shifted
    by it: the same integers, and the addition writes `out` (one pass less).
    """
    if rounding == "half_even":
        np.rint(value, out=value)
    else:
        value[...] = round_to_int(value, rounding)
    info = np.iinfo(out.dtype)
    np.clip(value, info.min - zero_point, info.max - zero_point, out=value)
    np.add(value, zero_point, out=out, casting="unsafe")


def quantize_linear(
    x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, dtype: np.dtype, rounding: str
) -> np.ndarray:
    """QuantizeLinear as MLAS computes it: float32 x / scale, round, add zero point, saturate."""
    value = np.divide(x, scale, dtype=np.float32)
    out = np.empty_like(value, dtype=dtype)
    _round_saturate_into(value, zero_point.astype(np.float32), rounding, out)
    return out


def dequantize_linear(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    """DequantizeLinear: float32(x - zp) * scale, the subtraction exact: in float32 for 8- and 16-bit
    types (it holds their differences exactly), in int64 for wider ones."""
    if x.dtype.itemsize <= 2 and zero_point.dtype.itemsize <= 2:
        return np.subtract(x, zero_point, dtype=np.float32) * scale
    return (x.astype(np.int64) - zero_point.astype(np.int64)).astype(np.float32) * scale


def fma32(x: np.ndarray | np.floating, y: np.ndarray | np.floating, z: np.ndarray | np.floating) -> np.ndarray:
    """float32 fused multiply-add, x * y + z with a single rounding (as x86 FMA3 does).

    The float32 product is exact in float64; the float64 sum can round, and a
    second rounding to float32 then differs from the fused result only when the
    float64 sum sits exactly halfway between two float32 values. That case is
    corrected with the exact error of the sum (TwoSum).
    """
    x64, y64, z64 = (np.asarray(v, dtype=np.float64) for v in (x, y, z))
    p = x64 * y64
    s = p + z64
    bv = s - p
    err = (p - (s - bv)) + (z64 - bv)
    r = s.astype(np.float32)
    back = r.astype(np.float64)
    off = s - back
    toward = np.where(off > 0, np.float32(np.inf), np.float32(-np.inf))
    nb = np.nextafter(r, toward)
    midpoint = (off != 0) & (2 * np.abs(off) == np.abs(nb.astype(np.float64) - back))
    beyond = midpoint & (err != 0) & (np.sign(err) == np.sign(off))
    return np.where(beyond, nb, r)


# --------------------------------------------------------------------------- geometry


def pool_output_size(
    size: int, kernel: int, stride: int, dilation: int, pad_begin: int, pad_end: int, ceil_mode: bool
) -> int:
    """Output length of a convolution/pooling window along one axis (ONNX formula)."""
    span = (kernel - 1) * dilation + 1
    num = size + pad_begin + pad_end - span
    if ceil_mode:
        out = -(-num // stride) + 1
        # The last window must start inside the input or the begin padding.
        if (out - 1) * stride >= size + pad_begin:
            out -= 1
        return out
    return num // stride + 1


def same_pads(size: int, kernel: int, stride: int, dilation: int, upper: bool) -> tuple[int, int]:
    """auto_pad SAME_UPPER / SAME_LOWER padding for one axis."""
    out = -(-size // stride)
    total = max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - size)
    small, large = total // 2, total - total // 2
    return (small, large) if upper else (large, small)


def _taps(
    xp: np.ndarray, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int], out_hw: Sequence[int]
):
    """Yield (kh, kw, strided view) for every kernel tap of a padded NHWC tensor."""
    (kh_n, kw_n), (sh, sw), (dh, dw), (oh, ow) = kernel, strides, dilations, out_hw
    for i in range(kh_n):
        for j in range(kw_n):
            yield i, j, xp[:, i * dh : i * dh + (oh - 1) * sh + 1 : sh, j * dw : j * dw + (ow - 1) * sw + 1 : sw, :]


def empty_in_memory_order(x: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(out, flat x, flat out): a new array of x's shape and `dtype` laid out in memory as x is, and both
    as 1-D views in memory order, for an element-wise compiled loop; None when x does not fill one
    contiguous block (a strided view)."""
    order = tuple(int(a) for a in np.argsort([-s for s in x.strides], kind="stable"))
    inside = x.transpose(order)
    if not inside.flags.c_contiguous:
        return None
    out = np.empty(inside.shape, dtype)
    return out.transpose(np.argsort(order)), inside.reshape(-1), out.reshape(-1)


def nhwc(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, H, W, C) view: free when x already lies channels-last in memory.

    Kernels work channels-last (im2col rows and depthwise taps then read
    contiguous channel runs) and hand back channels-last data viewed as NCHW,
    so a chain of convolutions never transposes.
    """
    return x.transpose(0, 2, 3, 1)


def nchw(y: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, C, H, W) view (the inverse of `nhwc`)."""
    return y.transpose(0, 3, 1, 2)


def pad_nhwc(xh: np.ndarray, pads: Sequence[int], value: float = 0, extra_end: Sequence[int] = (0, 0)) -> np.ndarray:
    """Pad the spatial axes of NHWC `xh`; `pads` = [top, left, bottom, right] (ONNX order)."""
    top, left, bottom, right = pads
    bottom, right = bottom + extra_end[0], right + extra_end[1]
    if not (top or left or bottom or right):
        return xh
    n, h, w, c = xh.shape
    shape = (n, h + top + bottom, w + left + right, c)
    out = np.zeros(shape, dtype=xh.dtype) if value == 0 else np.full(shape, value, dtype=xh.dtype)
    out[:, top : top + h, left : left + w, :] = xh
    return out


# --------------------------------------------------------------------------- exactness


def accumulator_bound(x_abs_max: float, w_int: np.ndarray, axis: int) -> float:
    """The largest magnitude any partial sum of x * w along a dot product can reach, for |x| <= x_abs_max.

    Below 2^24, float32 BLAS (any summation order, with or without FMA) only
    ever holds integers it represents exactly, so it returns the exact integer
    result. `axis` indexes the output channels of `w_int` (their reduction sums differ).
    """
    other = tuple(a for a in range(w_int.ndim) if a != axis % w_int.ndim)
    worst = float(np.abs(w_int.astype(np.float64)).sum(axis=other).max()) if w_int.size else 0.0
    return x_abs_max * worst


# --------------------------------------------------------------------------- pooling


def max_pool2d(
    x: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[int],
    dilations: Sequence[int],
    ceil_mode: bool,
) -> np.ndarray:
    """Max pooling of NCHW `x` (float or integer), padding never wins."""
    out_hw, extra = _pool_geometry(x.shape[2:], kernel, strides, pads, dilations, ceil_mode)
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    xp = pad_nhwc(nhwc(x), pads, low, extra)
    out: np.ndarray | None = None
    for _, _, tap in _taps(xp, kernel, strides, dilations, out_hw):
        out = tap.copy() if out is None else np.maximum(out, tap, out=out)
    assert out is not None
    return nchw(out)


def avg_pool2d_parts(
    x: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[int],
    dilations: Sequence[int],
    ceil_mode: bool,
    count: Literal["inside", "padded", "kernel"],
) -> tuple[np.ndarray, np.ndarray]:
    """Window sums of NCHW float `x` and the divisor per output position (both NCHW).

    Sums add the taps in row-major kernel order in x's float dtype (the order of
    ONNX Runtime's reference loops; adding the zero padding changes nothing).
    `count`: taps inside the input, inside input+pads, or the whole kernel.
    """
    h, wd = x.shape[2:]
    out_hw, extra = _pool_geometry((h, wd), kernel, strides, pads, dilations, ceil_mode)
    whole = tuple(kernel) == (h, wd) and out_hw == (1, 1) and tuple(dilations) == (1, 1) and not any(pads)
    if whole and x.shape[1] > 1:
        # One window over the whole input: NumPy reduces a non-innermost axis in order (row by row), so the
        # reduction over (N, H*W, C) adds the pixels in the same row-major order as the tap loop, in one pass
        # (with one channel the pixels would be the innermost axis, which NumPy sums pairwise).
        rows = np.ascontiguousarray(nhwc(x)).reshape(x.shape[0], h * wd, x.shape[1])
        total_hw = np.add.reduce(rows, axis=1).reshape(x.shape[0], 1, 1, x.shape[1])
        return nchw(total_hw), np.full((1, 1, 1, 1), h * wd, dtype=x.dtype)
    xp = pad_nhwc(nhwc(x), pads, 0, extra)
    total = np.zeros((x.shape[0], *out_hw, x.shape[1]), dtype=x.dtype)
    for _, _, tap in _taps(xp, kernel, strides, dilations, out_hw):
        total += tap
    if count == "kernel":
        return nchw(total), np.full((1, 1, *out_hw), kernel[0] * kernel[1], dtype=x.dtype)
    ones = np.zeros((1, xp.shape[1], xp.shape[2], 1), dtype=np.float32)
    if count == "padded":
        ones[:, : h + pads[0] + pads[2], : wd + pads[1] + pads[3]] = 1
    else:
        ones[:, pads[0] : pads[0] + h, pads[1] : pads[1] + wd] = 1
    n = np.zeros((1, *out_hw, 1), dtype=np.float32)
    for _, _, tap in _taps(ones, kernel, strides, dilations, out_hw):
        n += tap
    return nchw(total), nchw(n.astype(x.dtype))


def _pool_geometry(hw, kernel, strides, pads, dilations, ceil_mode) -> tuple[tuple[int, int], tuple[int, int]]:
    """Output size, and the extra end padding that keeps ceil-mode windows in bounds."""
    out = tuple(
        pool_output_size(hw[a], kernel[a], strides[a], dilations[a], pads[a], pads[a + 2], ceil_mode) for a in (0, 1)
    )
    need = [(out[a] - 1) * strides[a] + (kernel[a] - 1) * dilations[a] + 1 for a in (0, 1)]
    extra = tuple(max(0, need[a] - (hw[a] + pads[a] + pads[a + 2])) for a in (0, 1))
    return (out[0], out[1]), (extra[0], extra[1])


# --------------------------------------------------------------------------- float helpers


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """Numerically stable softmax along `axis`."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow for large |x|."""
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1 / (1 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1 + e)
    return out


def erf(x: np.ndarray) -> np.ndarray:
    """The error function in float64 (relative error below 1e-10), returned in x's float type.

    NumPy has no erf and the emulator depends on NumPy alone: the Taylor series
    for |x| <= 4 (80 terms; the alternating terms lose at most 7 of float64's 16
    digits there), the asymptotic series of erfc beyond (erfc(4) < 2e-8, already
    below float32's resolution of 1).
    """
    x64 = np.asarray(x, dtype=np.float64)
    a = np.abs(x64)
    out = np.empty_like(a)
    near = a <= 4.0
    s = a[near]
    s2 = s * s
    term, total = s.copy(), s.copy()
    for n in range(1, 80):
        term *= -s2 / n
        total += term / (2 * n + 1)
    out[near] = total * (2 / np.sqrt(np.pi))
    big = a[~near]
    inv = 1 / (2 * big * big)
    term, series = np.ones_like(big), np.ones_like(big)
    for n in range(1, 8):
        term *= -(2 * n - 1) * inv
        series += term
    out[~near] = 1 - np.exp(-big * big) / (big * np.sqrt(np.pi)) * series
    return np.copysign(out, x64).astype(x.dtype if x.dtype.kind == "f" else np.float64)


_LOGISTIC = tuple(
    np.float32(v)
    for v in (
        4.37031012579801e-11,
        1.15627324459942e-07,
        6.08574864600143e-05,
        8.51377133304701e-03,
        2.48287947061529e-01,
        6.10247389755681e-13,
        5.76102136993427e-09,
        6.29106785017040e-06,
        1.70198817374094e-03,
        1.16817656904453e-01,
        9.93151921023180e-01,
    )
)


def logistic_mlas(x: np.ndarray) -> np.ndarray:
    """ONNX Runtime's (MLAS/Eigen) rational approximation of the logistic function, float32.

    QLinearSigmoid builds its 256-entry table with this approximation, not the
    exact function; using the same polynomial keeps the table entries equal.
    Multiply-adds are done as fused (one rounding) via float64, like the FMA3 kernel.
    """
    a9, a7, a5, a3, a1, b10, b8, b6, b4, b2, b0 = _LOGISTIC
    v = np.clip(x.astype(np.float32), np.float32(-18), np.float32(18))
    v2 = (v * v).astype(np.float32)

    def fma(a: np.ndarray, b: np.ndarray | np.float32, c: np.float32) -> np.ndarray:
        return (a.astype(np.float64) * np.float64(b) + np.float64(c)).astype(np.float32)

    p = fma(v2, a9, a7)
    p = fma(p, v2, a5)
    p = fma(p, v2, a3)
    p = fma(p, v2, a1)
    p = (p * v).astype(np.float32)
    q = fma(v2, b10, b8)
    q = fma(q, v2, b6)
    q = fma(q, v2, b4)
    q = fma(q, v2, b2)
    q = fma(q, v2, b0)
    return np.clip(p / q + np.float32(0.5), np.float32(0), np.float32(1)).astype(np.float32)


def lookup(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Apply a 256-entry table indexed by the raw byte of an 8-bit tensor."""
    return table[x.view(np.uint8)]
