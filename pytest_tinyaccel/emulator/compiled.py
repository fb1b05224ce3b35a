"""The emulator's loops that NumPy cannot run in one pass, compiled by numba.

A 3x3 depthwise convolution in NumPy is 17 element-wise passes over its
output (no fused multiply-add ufunc, no per-channel dot product), a
requantization five (bias, scale, round, saturate, zero point), an im2col a
padded copy and a strided one; compiled, each is one pass, and a depthwise
convolution finishes each output row (bias, activation or requantization)
while it is in cache. The arithmetic is the NumPy formulation's, operation for
operation: float32 stays float32, every product and sum is rounded as NumPy
rounds it, and nothing is contracted into a fused multiply-add (numba's
default), so the results are bit-identical. The loops are written for the
compiler's vectorizer (contiguous inner loops over channels or whole rows),
for whatever vector unit the machine has: numba compiles for the host CPU.

Compiled code is cached on disk next to this file or in the user's cache
folder (numba's `cache=True`), so only the first run on a machine pays the
compilation (0.3-1.6 s of CPU per loop and argument types, about 4 s for kws
int8's); where numba finds no writable place for it, every process compiles
again. The buffers and tables are made with NumPy before the loops, which keeps
what numba compiles small.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

COPY, BIAS, BIAS_RELU, RELU, REQUANTIZE, REQUANTIZE_HALF_AWAY = range(6)
"""How `finish` turns accumulators into outputs: as they are (cast to the output type); + bias; + bias
then Relu; Relu; requantized with ties to even; requantized with ties away from zero."""


def _compiled(function: Callable[..., Any], fused: bool = False) -> Any:
    """`function` compiled, with the code cached on disk; without the cache where numba has no
    writable place for it (a read-only install and no user cache folder). `fused`: products and sums
    may be contracted into fused multiply-adds (for loops that promise float rounding, not NumPy's bits)."""
    options: dict[str, Any] = {"fastmath": {"contract"}} if fused else {}
    try:
        return njit(cache=True, nogil=True, **options)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(nogil=True, **options)(function)


def fused(function: Callable[..., Any]) -> Any:
    """`_compiled` with fused multiply-adds allowed."""
    return _compiled(function, fused=True)


def finish(
    acc: np.ndarray,
    bias: np.ndarray,
    scale: np.ndarray,
    bounds: tuple[float, float, float],
    mode: int,
    out: np.ndarray,
) -> None:
    """out[r, c] from the accumulator acc[r, c] (both (R, M), C-contiguous), per `mode` (see `COPY` ...).

    BIAS/BIAS_RELU/RELU: acc + bias[c] in the accumulator's float type, then max(., 0) as np.maximum
    (NaN stays NaN, -0 becomes +0). REQUANTIZE: clip(round(float32(acc + bias[c]) * scale[c]), low,
    high) + zero point, `bounds` = (zero point, low, high), the low/high bounds of the output type
    minus the zero point. `acc` holds exact integers and `bias` float64 integers, so their sum is
    exact in float64 and rounds to float32 as MLAS's int32 -> float32 conversion does (nearest, ties
    to even); a float32 `bias` is added in float32, for sums known to stay below 2^24 (then exact
    too). `scale` is float32 and the multiply a float32 multiply. Ties round to even (np.rint), or
    away from zero (in float64, where x + 0.5 is exact for every float32 x). `bias` and `scale` have
    one value per channel M (`scale` is read only to requantize).
    """
    rows, m = acc.shape
    repeat = max(1, min(rows, 256 // max(1, m)))  # the per-channel values repeated: a long inner loop
    bias_rows, scale_rows = _tiled(bias, repeat), _tiled(scale, repeat)
    _finish_rows(acc.reshape(rows * m), bias_rows, scale_rows, bounds, mode, out.reshape(rows * m), 0)


def _tiled(values: np.ndarray, repeat: int) -> np.ndarray:
    """`values` (1-D) repeated `repeat` times end to end, a new writeable array (numba compiles a loop
    again for a read-only argument)."""
    return np.tile(np.asarray(values).reshape(-1), repeat)


@_compiled
def _finish_rows(
    acc: np.ndarray,
    bias: np.ndarray,
    scale: np.ndarray,
    bounds: tuple[float, float, float],
    mode: int,
    out: np.ndarray,
    out_at: Any,
) -> None:  # pragma: no cover - compiled
    """`finish` of flat rows: acc (1-D, whole rows) into out[out_at:] (1-D); `bias` and `scale` the
    per-channel values tiled to a whole number L of rows, applied in blocks of L (the last one shorter).

    Indices are unsigned (numba then adds no negative-index wrap-around, and the loops vectorize)."""
    size, block = np.uint64(acc.shape[0]), np.uint64(bias.shape[0])
    zp, lo, hi = np.float32(bounds[0]), np.float32(bounds[1]), np.float32(bounds[2])
    zero = np.float32(0)
    for start in range(np.uint64(0), size, block):
        at = np.uint64(out_at) + start
        for c in range(min(block, size - start)):
            v = acc[start + c]
            if mode == COPY:
                out[at + c] = v
            elif mode == BIAS:
                out[at + c] = v + bias[c]
            elif mode == BIAS_RELU:
                v = v + bias[c]
                out[at + c] = v if v > zero or v != v else zero
            elif mode == RELU:
                out[at + c] = v if v > zero or v != v else zero
            elif mode == REQUANTIZE:
                value = np.rint(np.float32(v + bias[c]) * scale[c])
                out[at + c] = min(max(value, lo), hi) + zp
            else:
                v64 = np.float64(np.float32(v + bias[c]) * scale[c])
                value = np.float32(np.trunc(v64 + np.copysign(0.5, v64)))
                out[at + c] = min(max(value, lo), hi) + zp


def requantize(
    acc: np.ndarray,
    bias: np.ndarray,
    scale: np.ndarray,
    zero_point: float,
    low: float,
    high: float,
    half_away: bool,
    out: np.ndarray,
) -> None:
    """out[r, c] = clip(round(float32(acc[r, c] + bias[c]) * scale[c]), low, high) + zero_point: `finish`
    in mode REQUANTIZE (ties to even) or REQUANTIZE_HALF_AWAY."""
    finish(acc, bias, scale, (zero_point, low, high), REQUANTIZE_HALF_AWAY if half_away else REQUANTIZE, out)


def depthwise_conv(
    src: np.ndarray,
    offset: Any,
    taps: np.ndarray,
    strides: tuple[int, int],
    pads: tuple[int, int],
    dilations: tuple[int, int],
    multiplier: int,
    bias: np.ndarray,
    scale: np.ndarray,
    bounds: tuple[float, float, float],
    mode: int,
    out: np.ndarray,
) -> None:
    """Depthwise convolution, each output row finished as `finish(..., mode)` as soon as it is summed.

    The accumulator acc[n, y, x, c] = sum of (src[n, iy, ix, c // multiplier] - offset) * taps[i, j, c]
    over the taps (i, j) whose input pixel iy = y*SH - top + i*DH, ix = x*SW - left + j*DW lies inside
    `src` (a tap over the padding is skipped, as ONNX Runtime's depthwise kernel does), added in
    row-major tap order to 0 in the type of `taps` (the accumulation type; `offset` is a scalar of
    it). `src` is NHWC and C-contiguous, `taps` (KH, KW, M), `out` (N, OH, OW, M) C-contiguous.

    Each sample is first converted (minus the offset, in the accumulation type, each input channel
    repeated `multiplier` times, zero-bordered) into SW planes of padded columns cx = q*SW + p (plane
    p, column q), so that a tap reads consecutive columns whatever the stride: one contiguous loop
    over a whole output row (every x, every channel) against the tap's weights repeated along the
    row, all nine taps of a 3x3 kernel in one loop. With finite weights a padded pixel's product
    (0 times the weight) changes no sum, so the taps run over whole rows; an infinite or NaN weight
    (0 * inf is NaN) makes them skip the padding, each tap over its own range of rows and columns.
    The buffers are made here with NumPy; the compiled loops (`_depthwise_rows`) only compute.
    """
    _, oh, ow, m = out.shape
    h, w = src.shape[1], src.shape[2]
    kh, kw = taps.shape[0], taps.shape[1]
    (sh, sw), (dh, dw), (top, left) = strides, dilations, pads
    rows, width = (oh - 1) * sh + (kh - 1) * dh + 1, (ow - 1) * sw + (kw - 1) * dw + 1  # padded input read
    columns = (width + sw - 1) // sw
    planes = np.zeros((sw, rows, columns * m), taps.dtype)
    tiled = np.tile(taps, (1, 1, ow))  # (KH, KW, OW * M): each tap's weights along a row
    first = np.array(  # where tap (i, j) of output row 0 starts in the planes (a row further: SH * columns * M)
        [[((((j * dw) % sw) * rows + i * dh) * columns + (j * dw) // sw) * m for j in range(kw)] for i in range(kh)],
        np.uint64,
    )
    shifts = [j * dw - left for j in range(kw)]  # tap j reads inside `src` for lo[j] <= x < hi[j]
    lo = np.array([min(ow, max(0, -(s // sw))) for s in shifts], np.int64)
    hi = np.array([max(int(a), min(ow, (w - 1 - s) // sw + 1)) for a, s in zip(lo, shifts)], np.int64)
    geometry = (sh, dh, top, h)
    _depthwise_rows(
        src,
        offset,
        multiplier,
        pads,
        planes,
        tiled,
        first,
        lo,
        hi,
        geometry,
        bool(np.isfinite(taps).all()),
        _tiled(bias, ow),
        _tiled(scale, ow),
        bounds,
        mode,
        out,
    )


@_compiled
def _depthwise_rows(
    src: np.ndarray,
    offset: Any,
    multiplier: int,
    pads: tuple[int, int],
    planes: np.ndarray,
    tiled: np.ndarray,
    first: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    geometry: tuple[int, int, int, int],
    padding_free: bool,
    bias: np.ndarray,
    scale: np.ndarray,
    bounds: tuple[float, float, float],
    mode: int,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """The loops of `depthwise_conv`: per sample the planes, per output row the taps and `finish`."""
    nb, oh, ow, m = out.shape
    kh, kw, length = tiled.shape
    sh, dh, top, h = geometry
    columns = planes.shape[2] // m
    row = np.empty(length, tiled.dtype)
    flat_planes, flat_out = planes.reshape(planes.size), out.reshape(out.size)
    starts = np.empty((kh, kw), np.uint64)  # where each tap's row of pixels starts in flat_planes
    for n in range(nb):
        _planes(src[n], offset, multiplier, pads, planes)
        for y in range(oh):
            down = np.uint64(y * sh * columns * m)
            for i in range(kh):
                for j in range(kw):
                    starts[i, j] = first[i, j] + down
            if kh == 3 and kw == 3 and padding_free:
                _nine_taps(flat_planes, starts, tiled, row)
            else:
                for t in range(length):
                    row[t] = 0
                for i in range(kh):
                    iy = y * sh - top + i * dh
                    for j in range(kw):
                        if padding_free:
                            _add_tap(row, flat_planes, starts[i, j], tiled[i, j])
                        elif 0 <= iy < h and hi[j] > lo[j]:
                            a, b = lo[j] * m, hi[j] * m
                            _add_tap(row[a:b], flat_planes, starts[i, j] + np.uint64(a), tiled[i, j, a:b])
            _finish_rows(row, bias, scale, bounds, mode, flat_out, (n * oh + y) * length)


@_compiled
def _add_tap(row: np.ndarray, pixels: np.ndarray, start: Any, weights: np.ndarray) -> None:  # pragma: no cover
    """row[t] += pixels[start + t] * weights[t] for every t of `row`."""
    for t in range(np.uint64(row.shape[0])):
        row[t] += pixels[start + t] * weights[t]


@_compiled
def _nine_taps(
    pixels: np.ndarray, starts: np.ndarray, weights: np.ndarray, row: np.ndarray
) -> None:  # pragma: no cover - compiled
    """row[t] = 0 + the nine products pixels[starts[i, j] + t] * weights[i, j, t], added in row-major
    tap order (the sums of nine `_add_tap`s on a zeroed row, in one pass)."""
    s0, s1, s2 = starts[0, 0], starts[0, 1], starts[0, 2]
    s3, s4, s5 = starts[1, 0], starts[1, 1], starts[1, 2]
    s6, s7, s8 = starts[2, 0], starts[2, 1], starts[2, 2]
    w0, w1, w2 = weights[0, 0], weights[0, 1], weights[0, 2]
    w3, w4, w5 = weights[1, 0], weights[1, 1], weights[1, 2]
    w6, w7, w8 = weights[2, 0], weights[2, 1], weights[2, 2]
    for t in range(np.uint64(row.shape[0])):
        v = row.dtype.type(0) + pixels[s0 + t] * w0[t]
        v += pixels[s1 + t] * w1[t]
        v += pixels[s2 + t] * w2[t]
        v += pixels[s3 + t] * w3[t]
        v += pixels[s4 + t] * w4[t]
        v += pixels[s5 + t] * w5[t]
        v += pixels[s6 + t] * w6[t]
        v += pixels[s7 + t] * w7[t]
        v += pixels[s8 + t] * w8[t]
        row[t] = v


@_compiled
def _planes(
    image: np.ndarray, offset: Any, multiplier: int, pads: tuple[int, int], planes: np.ndarray
) -> None:  # pragma: no cover - compiled
    """planes[cx % SW, iy + top, (cx // SW) * M + c] = image[iy, ix, c // multiplier] - offset, cx = ix + left,
    for the pixels that fit (see `depthwise_conv`); the border is left as it is (zero)."""
    h, w, channels = image.shape
    sw, rows = planes.shape[0], planes.shape[1]
    m = channels * multiplier
    columns = planes.shape[2] // m
    top, left = pads
    flat = planes.reshape(planes.size)
    if sw == 1 and multiplier == 1 and left + w <= columns:  # whole input rows, each one contiguous run
        source = image.reshape(image.size)
        for iy in range(min(h, rows - top)):
            at, start = np.uint64(((iy + top) * columns + left) * m), np.uint64(iy * w * m)
            for t in range(np.uint64(w * m)):
                flat[at + t] = source[start + t] - offset
        return
    for iy in range(min(h, rows - top)):
        for ix in range(min(w, columns * sw - left)):
            pixel = image[iy, ix]
            cx = ix + left
            at = np.uint64((((cx % sw) * rows + iy + top) * columns + cx // sw) * m)
            if multiplier == 1:
                for c in range(np.uint64(m)):
                    flat[at + c] = pixel[c] - offset
            else:
                for c in range(channels):
                    value = pixel[c] - offset
                    for k in range(multiplier):
                        flat[at + np.uint64(c * multiplier + k)] = value


@_compiled
def im2col(
    src: np.ndarray,
    start: int,
    offset: Any,
    fill: Any,
    strides: tuple[int, int],
    pads: tuple[int, int],
    dilations: tuple[int, int],
    cols: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """cols[n, y, x, i, j, c] = src[start + n, iy, ix, c] - offset where iy = y*SH - top + i*DH,
    ix = x*SW - left + j*DW lies inside `src`, else `fill` (0 for the padding's real value 0 minus no
    offset; the zero point itself where the bytes are kept as they are and the zero point removed later).

    `src` is NHWC and C-contiguous, `cols` (NB, OH, OW, KH, KW, C) C-contiguous in the accumulation
    type, of which `offset` and `fill` are scalars.
    """
    nb, oh, ow, kh, kw, c = cols.shape
    h, w = src.shape[1], src.shape[2]
    (sh, sw), (top, left), (dh, dw) = strides, pads, dilations
    flat_src, flat_cols = src.reshape(src.size), cols.reshape(cols.size)
    window, span = np.uint64(kh * kw * c), kw * c  # one window; one kernel row of it
    for n in range(nb):
        for y in range(oh):
            for i in range(kh):
                iy = y * sh - top + i * dh
                at = np.uint64(((n * oh + y) * ow * kh + i) * span)  # window (y, x=0), kernel row i
                line = np.uint64(((start + n) * h + iy) * w * c) if 0 <= iy < h else np.uint64(0)
                for x in range(ow):
                    first = x * sw - left
                    if 0 <= iy < h and dw == 1 and first >= 0 and first + kw <= w:  # a contiguous run
                        pixel = line + np.uint64(first * c)
                        for k in range(np.uint64(span)):
                            flat_cols[at + k] = flat_src[pixel + k] - offset
                    else:
                        for j in range(kw):
                            ix, to = first + j * dw, at + np.uint64(j * c)
                            if iy < 0 or iy >= h or ix < 0 or ix >= w:
                                for k in range(np.uint64(c)):
                                    flat_cols[to + k] = fill
                            else:
                                pixel = line + np.uint64(ix * c)
                                for k in range(np.uint64(c)):
                                    flat_cols[to + k] = flat_src[pixel + k] - offset
                    at += window


@_compiled
def pixel_sums(x: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """out[n, c] = the sum of the integers x[n, p, c] over p, exactly (int64 `out`)."""
    nb, pixels, c = x.shape
    for n in range(nb):
        target = out[n]
        for k in range(c):
            target[k] = 0
        for p in range(pixels):
            row = x[n, p]
            for k in range(c):
                target[k] += row[k]


@_compiled
def quantize(
    x: np.ndarray, scale: np.float32, bounds: tuple[float, float, float], half_away: bool, out: np.ndarray
) -> bool:  # pragma: no cover - compiled
    """out[t] = clip(round(x[t] / scale), low, high) + zero point, `bounds` = (zero point, low, high) as in
    `finish`: `kernels.quantize_linear` with one scale and zero point, on flat arrays. Returns False
    when some x[t] / scale is NaN, whose saturation NumPy leaves to the C cast (the output is then
    not NumPy's; the loop runs on, so that it vectorizes)."""
    zp, lo, hi = np.float32(bounds[0]), np.float32(bounds[1]), np.float32(bounds[2])
    finite = True
    for t in range(np.uint64(x.shape[0])):
        value = np.float32(x[t] / scale)
        finite &= value == value
        if half_away:
            v64 = np.float64(value)
            value = np.float32(np.trunc(v64 + np.copysign(0.5, v64)))
        else:
            value = np.rint(value)
        out[t] = min(max(value, lo), hi) + zp
    return finite


@_compiled
def dequantize(x: np.ndarray, zero_point: np.float32, scale: np.float32, out: np.ndarray) -> None:  # pragma: no cover
    """out[t] = (float32(x[t]) - zero_point) * scale in float32 (the subtraction exact for 8- and 16-bit x):
    `kernels.dequantize_linear` with one scale and zero point, on flat arrays."""
    for t in range(np.uint64(x.shape[0])):
        out[t] = (np.float32(x[t]) - zero_point) * scale
