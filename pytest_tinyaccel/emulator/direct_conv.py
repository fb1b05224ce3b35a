"""Direct float convolution for few input channels: shifted whole-plane passes instead of im2col + GEMM.

With a few input channels an im2col row is short (K = C*KH*KW = 9..72)
and with a few output channels (M <= 8) the product narrow: BLAS spends its
time on the edges of such products, and the im2col columns (K floats per output pixel)
cost as much memory traffic as the product itself. This kernel writes no
columns. A block of samples is rearranged once into zero-bordered planes,
one per input channel and stride phase (`plane[c, a, b, n, r, q] =
x[n, c, r*SH + a - top, q*SW + b - left]`, 0 outside), so that every tap
(i, j) of every output pixel (y, x) reads the flat position
`(n*R + y)*Q + x` plus a constant offset: each (output channel, input
channel, tap) is one contiguous multiply-add pass over the whole block,
which the compiler vectorizes for the host's vector unit. Positions with
x >= OW (the plane's border columns) are computed and dropped; the planes'
shape sets that waste, and `worthwhile` refuses shapes where it is large.

The result is the convolution's float32 sum taken in another order than
the GEMM's (input channel, then tap), so it equals the im2col path within
float32 rounding, not bit for bit; the padding is the real value 0, as
there. The output is channels-last in memory, as the GEMM path's (a layer
that reads another layout pays a transposing copy), the bias and Relu applied
as it is written.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .compiled import BIAS, BIAS_RELU, COPY, RELU, _compiled, fused
from .conv import Finish
from .kernels import nchw

_BLOCK_FLOATS = 16384
"""Floats of planes and outputs per block of samples (64 KB): they stay in L2 while the block is summed."""


def geometry(
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    out_hw: tuple[int, int],
) -> tuple[int, int]:
    """(R, Q): the rows and columns of one stride phase's plane (see the module docstring)."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, strides, dilations, out_hw
    return oh + (kh - 1) * dh // sh, ow + (kw - 1) * dw // sw


def worthwhile(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    strides: Sequence[int],
    dilations: Sequence[int],
    out_hw: tuple[int, int],
) -> bool:
    """Whether the direct kernel beats im2col + GEMM on this float32 shape, as measured on the bundled
    models' layers (docs/benchmarks.md): a stride-1 kernel of more than one tap over at most 72 inputs
    (C*KH*KW) into at most 8 output channels, with at least half of the planes' positions real outputs.
    Strided and 1x1 convolutions, and wider ones (16 outputs already), were faster through the GEMM."""
    c, (m, _, kh, kw), (oh, ow) = x_shape[1], w_shape, out_hw
    if tuple(strides) != (1, 1) or kh * kw == 1 or c * kh * kw > 72 or m > 8 or w_shape[1] != c:
        return False
    r, q = geometry((kh, kw), (1, 1), (int(dilations[0]), int(dilations[1])), out_hw)
    return 2 * oh * ow >= r * q


def conv2d_direct(
    x: np.ndarray,
    w: np.ndarray,
    strides: Sequence[int],
    pads: Sequence[int],
    dilations: Sequence[int],
    out_hw: tuple[int, int],
    epilogue: Finish | None,
) -> np.ndarray:
    """NCHW float32 `x` convolved with MCHW float32 `w` (group 1), finished by `epilogue` (bias, Relu or
    both; None: the sums as they are): (N, M, OH, OW), channels-last in memory (as `conv.conv2d`'s).

    `pads` are (top, left, ...); rows and columns past the last window are not read."""
    n, c = x.shape[0], x.shape[1]
    m, _, kh, kw = w.shape
    if x.ndim != 4 or w.ndim != 4 or w.shape[1] != c or x.dtype != np.float32 or w.dtype != np.float32:
        raise ValueError(
            f"the direct convolution takes float32 NCHW inputs and MCHW weights of as many channels, "
            f"not {x.dtype} {list(x.shape)} and {w.dtype} {list(w.shape)}"
        )
    (sh, sw), (dh, dw) = (int(strides[0]), int(strides[1])), (int(dilations[0]), int(dilations[1]))
    r, q = geometry((kh, kw), (sh, sw), (dh, dw), out_hw)
    block = max(1, min(n, _BLOCK_FLOATS // ((c * sh * sw + m) * r * q)))
    slack = ((kh - 1) * dh // sh) * q + (kw - 1) * dw // sw + 1  # the last positions' taps read past the block
    planes = np.empty(c * sh * sw * block * r * q + slack, np.float32)
    planes[-slack:] = 0  # read only for positions that are dropped, but read: no NaN from old memory
    taps = [[(i * dh, j * dw) for j in range(kw)] for i in range(kh)]
    offsets = np.array(  # where tap (i, j) of input channel 0 reads, relative to the output position
        [[(((y % sh) * sw + x % sw) * block * r + y // sh) * q + x // sw for y, x in row] for row in taps], np.uint64
    )
    out = np.empty((n, *out_hw, m), np.float32)  # channels-last, as the GEMM path's: what the next layer reads
    if epilogue is None:
        mode, bias = COPY, np.zeros(m, np.float32)
    elif epilogue.mode in (BIAS, BIAS_RELU, RELU) and epilogue.bias.dtype == np.float32:
        mode, bias = epilogue.mode, np.ascontiguousarray(epilogue.bias).reshape(m)
    else:
        raise ValueError(f"the direct convolution takes a float32 bias and Relu, not epilogue mode {epilogue.mode}")
    top, left = int(pads[0]), int(pads[1])
    _direct(x, np.ascontiguousarray(w), (sh, sw), (top, left), (r, q), block, planes, offsets, bias, mode, out)
    return nchw(out)


@fused
def _direct(
    x: np.ndarray,
    w: np.ndarray,
    strides: tuple[int, int],
    pads: tuple[int, int],
    plane: tuple[int, int],
    block: int,
    planes: np.ndarray,
    offsets: np.ndarray,
    bias: np.ndarray,
    mode: int,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """The loops of `conv2d_direct`, block of samples by block: the planes, then per output channel the
    sums (input channel by input channel, tap by tap, each one pass over the block) and its outputs."""
    nb, oh, ow, m = out.shape
    c, kh, kw = w.shape[1], w.shape[2], w.shape[3]
    r, q = plane
    span = np.uint64(block * r * q)  # one phase of one input channel
    channel = np.uint64(strides[0] * strides[1]) * span
    acc = np.empty(block * r * q, np.float32)  # one output channel's sums over the block
    zero = np.float32(0)
    for start in range(0, nb, block):
        count = min(block, nb - start)
        _fill(x, start, count, strides, pads, plane, span, planes)
        length = np.uint64(count * r * q)
        for t in range(m):
            for f in range(length):
                acc[f] = zero
            for ci in range(c):
                base = np.uint64(ci) * channel
                if kh == 3 and kw == 3:
                    _nine_taps(acc, length, planes, base, offsets, w[t, ci])
                    continue
                for i in range(kh):
                    for j in range(kw):
                        weight = w[t, ci, i, j]
                        at = base + offsets[i, j]
                        for f in range(length):
                            acc[f] += weight * planes[at + f]
            b = bias[t]
            for n in range(count):  # output channel t of the block's outputs, channels-last
                for y in range(oh):
                    row = (n * r + y) * q
                    target = out[start + n, y]
                    for k in range(ow):
                        v = acc[row + k]
                        if mode == BIAS or mode == BIAS_RELU:
                            v = v + b
                        if mode == RELU or mode == BIAS_RELU:
                            v = v if v > zero or v != v else zero
                        target[k, t] = v


@_compiled
def _fill(
    x: np.ndarray,
    start: int,
    count: int,
    strides: tuple[int, int],
    pads: tuple[int, int],
    plane: tuple[int, int],
    span: np.uint64,
    planes: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """planes[((c*SH + a)*SW + b)*span + (n*R + r)*Q + q] = x[start + n, c, r*SH + a - top, q*SW + b - left],
    0 outside `x`."""
    _, c, h, w = x.shape
    (sh, sw), (top, left), (r, q) = strides, pads, plane
    zero = np.float32(0)
    for ci in range(c):
        for a in range(sh):
            for b in range(sw):
                base = np.uint64((ci * sh + a) * sw + b) * span
                for n in range(count):
                    image = x[start + n, ci]
                    for row in range(r):
                        iy = row * sh + a - top
                        at = base + np.uint64((n * r + row) * q)
                        for col in range(q):
                            ix = col * sw + b - left
                            inside = 0 <= iy < h and 0 <= ix < w
                            planes[at + np.uint64(col)] = image[iy, ix] if inside else zero


@fused
def _nine_taps(
    acc: np.ndarray, length: np.uint64, planes: np.ndarray, base: np.uint64, offsets: np.ndarray, taps: np.ndarray
) -> None:  # pragma: no cover - compiled
    """acc[f] += the nine products taps[i, j] * planes[base + offsets[i, j] + f], in row-major tap order: one
    pass over the block for a 3x3 kernel (nine of `_direct`'s tap passes)."""
    s0, s1, s2 = base + offsets[0, 0], base + offsets[0, 1], base + offsets[0, 2]
    s3, s4, s5 = base + offsets[1, 0], base + offsets[1, 1], base + offsets[1, 2]
    s6, s7, s8 = base + offsets[2, 0], base + offsets[2, 1], base + offsets[2, 2]
    w0, w1, w2 = taps[0, 0], taps[0, 1], taps[0, 2]
    w3, w4, w5 = taps[1, 0], taps[1, 1], taps[1, 2]
    w6, w7, w8 = taps[2, 0], taps[2, 1], taps[2, 2]
    for f in range(length):
        v = acc[f] + w0 * planes[s0 + f]
        v += w1 * planes[s1 + f]
        v += w2 * planes[s2 + f]
        v += w3 * planes[s3 + f]
        v += w4 * planes[s4 + f]
        v += w5 * planes[s5 + f]
        v += w6 * planes[s6 + f]
        v += w7 * planes[s7 + f]
        v += w8 * planes[s8 + f]
        acc[f] = v
