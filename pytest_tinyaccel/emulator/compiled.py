"""The emulator's loops that NumPy cannot run in one pass, compiled by numba.

A 3x3 depthwise convolution in NumPy is 17 element-wise passes over its
output (no fused multiply-add ufunc, no per-channel dot product), and a
requantization is five (bias, scale, round, saturate, zero point); compiled,
each is one pass. The arithmetic is the NumPy formulation's, operation for
operation: float32 stays float32, every product and sum is rounded as NumPy
rounds it, and nothing is contracted into a fused multiply-add (numba's
default), so the results are bit-identical. Compiled code is cached on disk
next to this file or in the user's cache folder (numba's `cache=True`), so only
the first run on a machine pays the compilation; where numba finds no writable
place for it, every process compiles again (about 1.5 s).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit


def _compiled(function: Callable[..., None]) -> Any:
    """`function` compiled, with the code cached on disk; without the cache where numba has no
    writable place for it (a read-only install and no user cache folder)."""
    try:
        return njit(cache=True, nogil=True)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(nogil=True)(function)


@_compiled
def depthwise_conv(
    src: np.ndarray,
    offset: float,
    taps: np.ndarray,
    strides: tuple[int, int],
    pads: tuple[int, int],
    dilations: tuple[int, int],
    multiplier: int,
    acc: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """acc[n, y, x, c] = sum of (src[n, iy, ix, c // multiplier] - offset) * taps[i, j, c] over the taps (i, j)
    whose input pixel iy = y*SH - top + i*DH, ix = x*SW - left + j*DW lies inside `src` (the padding is 0).

    `src` is NHWC, `taps` (KH, KW, M), `acc` (NB, OH, OW, M) in the accumulation type; the sum runs in
    row-major tap order.
    """
    nb, oh, ow, m = acc.shape
    h, w = src.shape[1], src.shape[2]
    kh, kw = taps.shape[0], taps.shape[1]
    (sh, sw), (top, left), (dh, dw) = strides, pads, dilations
    for n in range(nb):
        for y in range(oh):
            for x in range(ow):
                out = acc[n, y, x]
                out[:] = 0
                for i in range(kh):
                    iy = y * sh - top + i * dh
                    if iy < 0 or iy >= h:
                        continue
                    for j in range(kw):
                        ix = x * sw - left + j * dw
                        if ix < 0 or ix >= w:
                            continue
                        row, weights = src[n, iy, ix], taps[i, j]
                        if multiplier == 1:
                            for c in range(m):
                                out[c] += (row[c] - offset) * weights[c]
                        else:
                            for c in range(m):
                                out[c] += (row[c // multiplier] - offset) * weights[c]


@_compiled
def requantize(
    acc: np.ndarray,
    bias: np.ndarray,
    scale: np.ndarray,
    zero_point: float,
    low: float,
    high: float,
    half_away: bool,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """out[r, c] = clip(round(float32(acc[r, c] + bias[c]) * scale[c]), low, high) + zero_point.

    `acc` (R, M) holds exact integers and `bias` (M,) float64 integers, so their sum is exact in float64
    and rounds to float32 as MLAS's int32 -> float32 conversion does (nearest, ties to even); `scale`
    (M,) is float32 and the multiply a float32 multiply. Ties round to even (np.rint), or away from
    zero with `half_away` (in float64, where x + 0.5 is exact for every float32 x). `low`/`high` are
    the output type's bounds minus the zero point.
    """
    rows, m = acc.shape
    zp, lo, hi = np.float32(zero_point), np.float32(low), np.float32(high)
    for r in range(rows):
        source, target = acc[r], out[r]
        for c in range(m):
            value = np.float32(np.float64(source[c]) + bias[c]) * scale[c]
            if half_away:
                v64 = np.float64(value)
                value = np.float32(np.trunc(v64 + np.copysign(0.5, v64)))
            else:
                value = np.rint(value)
            target[c] = min(max(value, lo), hi) + zp
