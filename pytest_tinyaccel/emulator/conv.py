"""2-D convolution of the emulator: im2col + BLAS GEMM, depthwise taps, in cache-sized sample chunks.

A convolution runs over the batch in chunks of samples whose working set
(padded input, im2col columns, accumulator) is about 4 MB: small enough to stay
in cache, so the memory-bound steps (packing, bias, requantization, a fused
activation) do not stream the whole batch through memory once per step, and
large enough that NumPy's per-call overhead stays small (on the bundled and
MLPerf Tiny layers, L2-sized 256 KB chunks were 20-50 % slower, the whole batch
at once up to 2.4x slower). The buffers are allocated once per call and reused
for every chunk. Per chunk:

* pack: the chunk's samples, channels-last, minus the input's zero point, in
  the accumulation type, into a zero-bordered buffer (the padding is the real
  value 0, as QLinearConv needs);
* compute: group 1 -> im2col columns (one row per output pixel, (KH, KW, C) per
  row, copied from a strided view of the windows) and one BLAS GEMM with the
  (KH*KW*C, M) weight matrix; depthwise -> one multiply and one add per kernel
  tap over the whole chunk, in row-major tap order, with the weights repeated
  along the output row so the innermost loop runs over OW*C contiguous
  elements; other groups -> one batched GEMM;
* epilogue: the caller's (bias, requantization ...) writes the chunk's outputs;
  without one the accumulator is the output.

Integer operands (zero points subtracted) are exact in float32 when every
partial sum stays below 2^24 (see `kernels.accumulator_bound`), so a float32
GEMM returns the exact integer accumulator; float64 holds everything else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .kernels import nchw, nhwc, pool_output_size

Epilogue = Callable[[np.ndarray, np.ndarray], None]
"""(accumulator chunk (NB, OH, OW, M), output chunk of the same shape) -> None: writes the output chunk.
The accumulator is scratch the epilogue may overwrite; it is the output chunk itself when both have one type."""

_CHUNK_BYTES = 4 * 1024 * 1024
"""Working-set budget of one chunk (padded input + im2col columns + accumulator); see the module docstring."""


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    strides: Sequence[int],
    pads: Sequence[int],
    dilations: Sequence[int],
    group: int,
    dtype: type[np.generic],
    *,
    offset: np.ndarray | None = None,
    epilogue: Epilogue | None = None,
    out_dtype: np.dtype | type[np.generic] | None = None,
) -> np.ndarray:
    """2-D convolution of NCHW `x` with MCHW `w` (already in `dtype`, no bias), accumulated in `dtype`.

    `offset` (a scalar: the input's zero point) is subtracted from `x` as it is
    packed, in `dtype`. Without `epilogue` the result is the accumulator; with
    one, `epilogue(acc, out)` writes each chunk of the `out_dtype` result.
    Returns (N, M, OH, OW), channels-last in memory.
    """
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    oh = pool_output_size(h, kh, sh, dh, pads[0], pads[2], False)
    ow = pool_output_size(wd, kw, sw, dw, pads[1], pads[3], False)
    out = np.empty((n, oh, ow, m), dtype=np.dtype(dtype) if out_dtype is None else out_dtype)
    depthwise = group > 1 and cg == 1
    item = np.dtype(dtype).itemsize
    pixels = oh * ow
    padded_hw = (h + pads[0] + pads[2], wd + pads[1] + pads[3])
    padded = padded_hw[0] * padded_hw[1] * (m if depthwise else c)
    if depthwise:  # the padded chunk (twice with strides: its phases), the accumulator, the products
        per_sample = (padded * (1 if (sh, sw) == (1, 1) else 2) + 2 * pixels * m) * item
    else:  # the padded chunk, the im2col columns, the accumulator
        per_sample = (padded + pixels * cg * kh * kw * group + pixels * m) * item
    step = max(1, min(n, _CHUNK_BYTES // max(1, per_sample)))
    source = nhwc(x)
    if depthwise:
        run = _depthwise_runner(w, strides, dilations, (oh, ow), padded_hw, step)
    else:
        run = _gemm_runner(w, strides, dilations, (oh, ow), group, step)
    packer = _Packer(source, pads, step, m // c if depthwise else 1, dtype, offset)
    acc_buffer = None if out.dtype == np.dtype(dtype) else np.empty((step, oh, ow, m), dtype)
    for start in range(0, n, step):
        stop = min(n, start + step)
        target = out[start:stop] if acc_buffer is None else acc_buffer[: stop - start]
        run(packer.pack(start, stop), target)
        if epilogue is not None:
            epilogue(target, out[start:stop])
    return nchw(out)


class _Packer:
    """Copies sample chunks of NHWC `source` into one reused zero-bordered buffer, in `dtype`, minus `offset`.

    `repeat` > 1 repeats every channel (a depthwise convolution with a channel
    multiplier: output channel o reads input channel o // repeat). A chunk
    that needs no change (no padding, no offset, same type, contiguous) is
    returned as a view of the source.
    """

    def __init__(
        self,
        source: np.ndarray,
        pads: Sequence[int],
        step: int,
        repeat: int,
        dtype: type[np.generic],
        offset: np.ndarray | None,
    ) -> None:
        self.source, self.repeat, self.offset = source, repeat, offset
        top, left, bottom, right = pads
        _, h, w, c = source.shape
        self.interior = (slice(None), slice(top, top + h), slice(left, left + w))
        as_is = not any(pads) and offset is None and repeat == 1 and source.dtype == np.dtype(dtype)
        self.buffer = (
            None
            if as_is and source.flags.c_contiguous
            else np.zeros((step, h + top + bottom, w + left + right, c * repeat), dtype=np.dtype(dtype))
        )

    def pack(self, start: int, stop: int) -> np.ndarray:
        part = self.source[start:stop]
        if self.buffer is None:
            return part
        chunk = self.buffer[: stop - start]
        target = chunk[self.interior]
        if self.repeat > 1:
            part = np.repeat(part, self.repeat, axis=3)
        if self.offset is None:
            np.copyto(target, part, casting="unsafe")
        else:
            np.subtract(part, self.offset, out=target, dtype=target.dtype, casting="unsafe")
        return chunk


def _gemm_runner(
    w: np.ndarray, strides: Sequence[int], dilations: Sequence[int], out_hw: tuple[int, int], group: int, step: int
) -> Callable[[np.ndarray, np.ndarray], None]:
    """Chunk kernel of a (grouped) convolution: im2col into a reused buffer, then one (batched) GEMM."""
    m, cg, kh, kw = w.shape
    (sh, sw), (dh, dw), (oh, ow) = strides, dilations, out_hw
    k = cg * kh * kw
    direct = kh == kw == 1 and sh == sw == 1 and group == 1
    if group == 1:
        wmat = np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(k, m))  # rows (KH, KW, C)
    else:
        mg = m // group
        wmat = np.ascontiguousarray(w.reshape(group, mg, cg, kh, kw).transpose(0, 3, 4, 2, 1).reshape(group, k, mg))
    cols = None if direct else np.empty((step, oh, ow, kh, kw, cg * group), dtype=w.dtype)

    def run(chunk: np.ndarray, acc: np.ndarray) -> None:
        nb = chunk.shape[0]
        if cols is None:  # 1x1, stride 1: the packed pixels are the columns
            np.matmul(chunk.reshape(-1, chunk.shape[3]), wmat, out=acc.reshape(-1, m))
            return
        s0, s1, s2, s3 = chunk.strides  # the windows (NB, OH, OW, KH, KW, C), a view of the chunk
        windows = as_strided(chunk, (nb, oh, ow, kh, kw, chunk.shape[3]), (s0, sh * s1, sw * s2, dh * s1, dw * s2, s3))
        part = cols[:nb]
        np.copyto(part, windows)
        if group == 1:
            np.matmul(part.reshape(-1, k), wmat, out=acc.reshape(-1, m))
            return
        gcols = part.reshape(nb * oh * ow, kh, kw, group, cg).transpose(3, 0, 1, 2, 4).reshape(group, -1, k)
        grouped = np.matmul(gcols, wmat)  # (G, NB*OH*OW, MG)
        acc[...] = grouped.transpose(1, 0, 2).reshape(nb, oh, ow, m)

    return run


def _depthwise_runner(
    w: np.ndarray,
    strides: Sequence[int],
    dilations: Sequence[int],
    out_hw: tuple[int, int],
    padded_hw: tuple[int, int],
    step: int,
) -> Callable[[np.ndarray, np.ndarray], None]:
    """Chunk kernel of a depthwise convolution (one input channel per group): a loop over the kernel taps.

    With strides, each chunk is first split into its stride phases (rows a::SH,
    columns b::SW), so that every tap reads a stride-1 view of one phase: its
    pixels then follow each other in memory and the innermost loop covers OW*M
    elements instead of M.
    """
    m, _, kh, kw = w.shape
    (sh, sw), (dh, dw), (oh, ow) = strides, dilations, out_hw
    # One (OW, M) row of weights per tap: broadcast over (NB, OH), the innermost loop covers OW*M elements.
    rows = np.ascontiguousarray(np.broadcast_to(w[:, 0].transpose(1, 2, 0)[:, :, None, :], (kh, kw, ow, m)))
    products = np.empty((step, oh, ow, m), dtype=w.dtype)
    # Per tap: its phase (row, column), and where its window starts in that phase.
    taps = [
        (i, j, ((i * dh) % sh, (j * dw) % sw), (i * dh) // sh, (j * dw) // sw) for i in range(kh) for j in range(kw)
    ]
    hp, wp = padded_hw
    phases = {
        key: np.empty((step, -(-(hp - key[0]) // sh), -(-(wp - key[1]) // sw), m), dtype=w.dtype)
        for key in sorted({tap[2] for tap in taps})
        if (sh, sw) != (1, 1)
    }

    def run(chunk: np.ndarray, acc: np.ndarray) -> None:
        nb = acc.shape[0]
        for (a, b), buffer in phases.items():
            np.copyto(buffer[:nb], chunk[:, a::sh, b::sw])
        source = {key: buffer[:nb] for key, buffer in phases.items()} if phases else {(0, 0): chunk}
        tmp = products[:nb]
        for i, j, key, top, left in taps:
            tap = source[key][:, top : top + oh, left : left + ow]
            if i == j == 0:
                np.multiply(tap, rows[0, 0], out=acc)
            else:
                np.multiply(tap, rows[i, j], out=tmp)
                acc += tmp

    return run
