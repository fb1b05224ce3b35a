"""2-D convolution of the emulator: im2col + BLAS GEMM in cache-sized sample chunks, depthwise taps.

A convolution with a GEMM runs over the batch in chunks of samples whose
working set (im2col columns, accumulator) is about 4 MB: small enough to stay
in cache, so the memory-bound steps (im2col, the epilogue) do not stream the
whole batch through memory once per step, and large enough that NumPy's
per-call overhead stays small (on the bundled and MLPerf Tiny layers, L2-sized
256 KB chunks were 20-50 % slower, the whole batch at once up to 2.4x slower).
The buffers are allocated once per call and reused for every chunk. Per chunk:

* im2col (`compiled.im2col`): one row per output pixel, (KH, KW, C) per row,
  read from the channels-last input where it lies, minus the input's zero
  point, in the accumulation type; the padding is the real value 0, as
  QLinearConv needs. A 1x1, stride-1 float convolution reads the input itself;
* one BLAS GEMM with the (KH*KW*C, M) weight matrix (one batched GEMM per
  group for grouped convolutions);
* the epilogue (`Finish`: bias, Relu, requantization; `compiled.finish`)
  writes the chunk's outputs; without one the accumulator is the output.

A depthwise convolution (one input channel per group) is one compiled call
over the whole batch (`compiled.depthwise_conv`), which finishes each output
row while it is in cache.

Integer operands (zero points subtracted) are exact in float32 when every
partial sum stays below 2^24 (see `kernels.accumulator_bound`), so a float32
GEMM returns the exact integer accumulator; float64 holds everything else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from .kernels import nchw, nhwc, pool_output_size
from .vnni import Packed

_CHUNK_BYTES = 4 * 1024 * 1024
"""Working-set budget of one chunk (padded input + im2col columns + accumulator); see the module docstring."""


def compiles(dtype: np.dtype | type[np.generic]) -> bool:
    """Whether the compiled loops take this element type: numba has no float16, which goes through
    im2col as raw bits (a copy needs no arithmetic) and is finished by NumPy."""
    kind = np.dtype(dtype)
    return kind.kind in "iu" or kind in (np.dtype(np.float32), np.dtype(np.float64))


class Finish(NamedTuple):
    """An epilogue, `compiled.finish`'s arguments: accumulator rows -> output rows, per output channel."""

    mode: int
    """One of `compiled.COPY`, `BIAS`, `BIAS_RELU`, `RELU`, `REQUANTIZE`, `REQUANTIZE_HALF_AWAY`."""
    bias: np.ndarray
    """(M,): in the accumulator's float type (BIAS*), or the int32 bias as float64 or, where every
    accumulator plus bias stays below 2^24, as float32 (REQUANTIZE*)."""
    scale: np.ndarray
    """(M,) float32 requantization multipliers (read by REQUANTIZE* only)."""
    bounds: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """(zero point, low, high): the output type's bounds minus the zero point (REQUANTIZE*)."""

    def __call__(self, acc: np.ndarray, out: np.ndarray) -> None:
        """Write `out` from `acc` (both (..., M), C-contiguous)."""
        m = acc.shape[-1]
        if compiles(acc.dtype):
            from .compiled import finish  # numba's import, on first use

            finish(acc.reshape(-1, m), self.bias, self.scale, self.bounds, self.mode, out.reshape(-1, m))
            return
        from .compiled import BIAS, BIAS_RELU, COPY, RELU

        if self.mode == COPY:
            np.copyto(out, acc, casting="unsafe")
            return
        if self.mode not in (BIAS, BIAS_RELU, RELU):
            raise ValueError(f"cannot requantize a {acc.dtype} accumulator")
        if self.mode != RELU:
            np.add(acc, self.bias, out=out)
            acc = out
        if self.mode != BIAS:
            np.maximum(acc, np.zeros((), acc.dtype), out=out)


def bias_relu(bias: np.ndarray | None, relu: bool, channels: int, dtype: np.dtype) -> Finish | None:
    """The epilogue of a float convolution: + bias (in `dtype`), then Relu; None when there is neither."""
    from .compiled import BIAS, BIAS_RELU, RELU

    if bias is None and not relu:
        return None
    mode = RELU if bias is None else (BIAS_RELU if relu else BIAS)
    values = np.zeros(channels, dtype) if bias is None else np.broadcast_to(bias.astype(dtype).reshape(-1), (channels,))
    return Finish(mode, np.ascontiguousarray(values), np.ones(channels, np.float32))


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
    epilogue: Finish | None = None,
    out_dtype: np.dtype | type[np.generic] | None = None,
    packed: Packed | None = None,
) -> np.ndarray:
    """2-D convolution of NCHW `x` with MCHW `w` (already in `dtype`, no bias), accumulated in `dtype`.

    `offset` (a scalar: the input's zero point) is subtracted from `x` as it is
    read, in `dtype`. Without `epilogue` the result is the accumulator (cast to
    `out_dtype` when given); with one, `epilogue(acc, out)` writes each chunk of
    the `out_dtype` result. Returns (N, M, OH, OW), channels-last in memory.

    `packed`: `w` (group 1) packed for `vnni.matmul`, which then multiplies the 8-bit `x` as it is
    (its padding holds `offset`) into an accumulator (`dtype`: `vnni.accumulator`) that still holds the
    zero point: `vnni.correction` per output channel, which the epilogue's bias carries.
    """
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    oh = pool_output_size(h, kh, strides[0], dilations[0], pads[0], pads[2], False)
    ow = pool_output_size(wd, kw, strides[1], dilations[1], pads[1], pads[3], False)
    out = np.empty((n, oh, ow, m), dtype=np.dtype(dtype) if out_dtype is None else out_dtype)
    zero = np.dtype(dtype).type(0 if offset is None else offset.item())  # typed: float32 stays float32
    geometry = (
        (int(strides[0]), int(strides[1])),
        (int(pads[0]), int(pads[1])),
        (int(dilations[0]), int(dilations[1])),
    )
    source = np.ascontiguousarray(nhwc(x))
    if group > 1 and cg == 1 and compiles(dtype):
        _depthwise(source, zero, w, geometry, epilogue, out)
        return nchw(out)
    item = np.dtype(dtype).itemsize
    pixels = oh * ow
    # The im2col columns, the accumulator, and a padded copy of the input, which im2col no longer makes but
    # which still sets the chunk: BLAS's float sums can depend on the number of rows of a product, and the
    # same chunks keep float results bit for bit what they were.
    padded = (h + pads[0] + pads[2]) * (wd + pads[1] + pads[3]) * c
    per_sample = (padded + pixels * cg * kh * kw * group + pixels * m) * item
    if packed is not None:  # 8-bit columns
        per_sample = pixels * (cg * kh * kw * x.itemsize + m * item)
    step = max(1, min(n, _CHUNK_BYTES // max(1, per_sample)))
    if packed is None:
        run = _gemm_runner(source, zero, offset is None, w, geometry, (oh, ow), group, step)
    else:
        run = _vnni_runner(
            source, x.dtype.type(0 if offset is None else offset.item()), packed, w.shape, geometry, (oh, ow), step
        )
    finish = epilogue if epilogue is not None or out.dtype == np.dtype(dtype) else _cast
    acc_buffer = None if finish is None else np.empty((step, oh, ow, m), dtype)
    for start in range(0, n, step):
        stop = min(n, start + step)
        target = out[start:stop] if acc_buffer is None else acc_buffer[: stop - start]
        run(start, stop, target)
        if finish is not None:
            finish(target, out[start:stop])
    return nchw(out)


def _cast(acc: np.ndarray, out: np.ndarray) -> None:
    """The epilogue of an accumulator kept as it is in another type (exact integers, as int32)."""
    np.copyto(out, acc, casting="unsafe")


def _gemm_runner(
    source: np.ndarray,
    zero: np.generic,
    as_is: bool,
    w: np.ndarray,
    geometry: tuple[tuple[int, int], tuple[int, int], tuple[int, int]],
    out_hw: tuple[int, int],
    group: int,
    step: int,
) -> Callable[[int, int, np.ndarray], None]:
    """Chunk kernel of a (grouped) convolution: im2col into a reused buffer, then one (batched) GEMM.

    `as_is`: no offset to subtract, so a 1x1, stride-1, unpadded convolution of an input already in
    the accumulation type multiplies the input itself."""
    from .compiled import im2col  # numba's import, on first use

    m, cg, kh, kw = w.shape
    (sh, sw), pads, _ = geometry
    (oh, ow), k = out_hw, cg * kh * kw
    if group == 1:
        wmat = np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(k, m))  # rows (KH, KW, C)
    else:
        mg = m // group
        wmat = np.ascontiguousarray(w.reshape(group, mg, cg, kh, kw).transpose(0, 3, 4, 2, 1).reshape(group, k, mg))
    direct = kh == kw == 1 and sh == sw == 1 and not any(pads) and group == 1
    direct = direct and as_is and source.dtype == w.dtype
    cols = None if direct else np.empty((step, oh, ow, kh, kw, cg * group), dtype=w.dtype)
    raw = not compiles(w.dtype)  # float16: copied as its bits (as_is: no arithmetic)
    src_bits = source.view(np.uint16) if raw else source
    cols_bits = None if cols is None else (cols.view(np.uint16) if raw else cols)
    zero_bits = np.uint16(0) if raw else zero

    def run(start: int, stop: int, acc: np.ndarray) -> None:
        nb = stop - start
        if cols is None or cols_bits is None:  # 1x1, stride 1: the input pixels are the columns
            np.matmul(source[start:stop].reshape(-1, source.shape[3]), wmat, out=acc.reshape(-1, m))
            return
        im2col(src_bits, start, zero_bits, cols_bits.dtype.type(0), *geometry, cols_bits[:nb])
        part = cols[:nb]
        if group == 1:
            np.matmul(part.reshape(-1, k), wmat, out=acc.reshape(-1, m))
            return
        gcols = part.reshape(nb * oh * ow, kh, kw, group, cg).transpose(3, 0, 1, 2, 4).reshape(group, -1, k)
        grouped = np.matmul(gcols, wmat)  # (G, NB*OH*OW, MG)
        acc[...] = grouped.transpose(1, 0, 2).reshape(nb, oh, ow, m)

    return run


def _vnni_runner(
    source: np.ndarray,
    fill: np.generic,
    packed: Packed,
    shape: tuple[int, ...],
    geometry: tuple[tuple[int, int], tuple[int, int], tuple[int, int]],
    out_hw: tuple[int, int],
    step: int,
) -> Callable[[int, int, np.ndarray], None]:
    """Chunk kernel of an 8-bit convolution on the CPU's VNNI unit: im2col of the bytes as they are (the
    padding `fill`, the zero point), then `vnni.matmul`; a 1x1, stride-1, unpadded convolution multiplies
    the input pixels themselves."""
    from .compiled import im2col  # numba's import, on first use
    from .vnni import matmul

    m, c, kh, kw = shape
    (sh, sw), pads, _ = geometry
    direct = kh == kw == 1 and sh == sw == 1 and not any(pads)
    cols = None if direct else np.empty((step, *out_hw, kh, kw, c), source.dtype)
    zero = source.dtype.type(0)

    def run(start: int, stop: int, acc: np.ndarray) -> None:
        if cols is None:
            matmul(source[start:stop].reshape(-1, c), packed, acc.reshape(-1, m))
            return
        part = cols[: stop - start]
        im2col(source, start, zero, fill, *geometry, part)
        matmul(part.reshape(-1, kh * kw * c), packed, acc.reshape(-1, m))

    return run


def _depthwise(
    source: np.ndarray,
    zero: np.generic,
    w: np.ndarray,
    geometry: tuple[tuple[int, int], tuple[int, int], tuple[int, int]],
    epilogue: Finish | None,
    out: np.ndarray,
) -> None:
    """A depthwise convolution (one input channel per group), finished by `epilogue`: the compiled tap loop."""
    from .compiled import COPY, depthwise_conv  # numba's import, on first use

    m = w.shape[0]
    taps = np.ascontiguousarray(w[:, 0].transpose(1, 2, 0))  # (KH, KW, M): one row of M weights per tap
    if epilogue is None:
        epilogue = Finish(COPY, np.zeros(m, taps.dtype), np.ones(m, np.float32))
    mode, bias, scale, bounds = epilogue
    depthwise_conv(source, zero, taps, *geometry, m // source.shape[3], bias, scale, bounds, mode, out)
