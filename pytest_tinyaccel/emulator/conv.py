"""2-D convolution of the emulator: im2col + BLAS GEMM, depthwise taps, in cache-sized sample chunks.

A convolution runs over the batch in chunks of samples whose working set
(padded input, im2col columns, accumulator) is about 4 MB: small enough to stay
in cache, so the memory-bound steps (packing, bias, requantization, a fused
activation) do not stream the whole batch through memory once per step, and
large enough that NumPy's per-call overhead stays small (on the bundled and
MLPerf Tiny layers, L2-sized 256 KB chunks were 20-50 % slower, the whole batch
at once up to 2.4x slower). The buffers are allocated once per call and reused
for every chunk. Per chunk:

* group 1 and other groups: pack the chunk's samples, channels-last, minus
  the input's zero point, in the accumulation type, into a zero-bordered
  buffer (the padding is the real value 0, as QLinearConv needs); copy the
  im2col columns (one row per output pixel, (KH, KW, C) per row) from a
  strided view of its windows; one BLAS GEMM with the (KH*KW*C, M) weight
  matrix (one batched GEMM for other groups);
* depthwise: the compiled tap loop (`compiled.depthwise_conv`) reads the
  input where it lies, subtracts the zero point and skips the padding;
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
    if depthwise:  # the accumulator (the taps read the input where it is)
        per_sample = pixels * m * item
    else:  # the padded chunk, the im2col columns, the accumulator
        padded = (h + pads[0] + pads[2]) * (wd + pads[1] + pads[3]) * c
        per_sample = (padded + pixels * cg * kh * kw * group + pixels * m) * item
    step = max(1, min(n, _CHUNK_BYTES // max(1, per_sample)))
    if depthwise:
        run = _depthwise_runner(nhwc(x), w, strides, pads, dilations, dtype, offset)
    else:
        run = _gemm_runner(_Packer(nhwc(x), pads, step, dtype, offset), w, strides, dilations, (oh, ow), group, step)
    acc_buffer = None if out.dtype == np.dtype(dtype) else np.empty((step, oh, ow, m), dtype)
    for start in range(0, n, step):
        stop = min(n, start + step)
        target = out[start:stop] if acc_buffer is None else acc_buffer[: stop - start]
        run(start, stop, target)
        if epilogue is not None:
            epilogue(target, out[start:stop])
    return nchw(out)


class _Packer:
    """Copies sample chunks of NHWC `source` into one reused zero-bordered buffer, in `dtype`, minus `offset`.

    A chunk that needs no change (no padding, no offset, same type, contiguous)
    is returned as a view of the source.
    """

    def __init__(
        self,
        source: np.ndarray,
        pads: Sequence[int],
        step: int,
        dtype: type[np.generic],
        offset: np.ndarray | None,
    ) -> None:
        self.source, self.offset = source, offset
        top, left, bottom, right = pads
        _, h, w, c = source.shape
        self.interior = (slice(None), slice(top, top + h), slice(left, left + w))
        as_is = not any(pads) and offset is None and source.dtype == np.dtype(dtype)
        self.buffer = (
            None
            if as_is and source.flags.c_contiguous
            else np.zeros((step, h + top + bottom, w + left + right, c), dtype=np.dtype(dtype))
        )

    def pack(self, start: int, stop: int) -> np.ndarray:
        part = self.source[start:stop]
        if self.buffer is None:
            return part
        chunk = self.buffer[: stop - start]
        target = chunk[self.interior]
        if self.offset is None:
            np.copyto(target, part, casting="unsafe")
        else:
            np.subtract(part, self.offset, out=target, dtype=target.dtype, casting="unsafe")
        return chunk


def _gemm_runner(
    packer: _Packer,
    w: np.ndarray,
    strides: Sequence[int],
    dilations: Sequence[int],
    out_hw: tuple[int, int],
    group: int,
    step: int,
) -> Callable[[int, int, np.ndarray], None]:
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

    def run(start: int, stop: int, acc: np.ndarray) -> None:
        chunk = packer.pack(start, stop)
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
    source: np.ndarray,
    w: np.ndarray,
    strides: Sequence[int],
    pads: Sequence[int],
    dilations: Sequence[int],
    dtype: type[np.generic],
    offset: np.ndarray | None,
) -> Callable[[int, int, np.ndarray], None]:
    """Chunk kernel of a depthwise convolution (one input channel per group): the compiled tap loop."""
    from .compiled import depthwise_conv  # numba's import, on first use

    taps = np.ascontiguousarray(w[:, 0].transpose(1, 2, 0))  # (KH, KW, M): one row of M weights per tap
    zero = np.dtype(dtype).type(0 if offset is None else offset.item())  # typed: float32 stays float32
    sh, sw, dh, dw = (int(v) for v in (*strides, *dilations))
    geometry = ((sh, sw), (int(pads[0]), int(pads[1])), (dh, dw), w.shape[0] // source.shape[3])

    def run(start: int, stop: int, acc: np.ndarray) -> None:
        depthwise_conv(source[start:stop], zero, taps, *geometry, acc)

    return run
