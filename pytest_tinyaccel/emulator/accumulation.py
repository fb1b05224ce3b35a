"""How the ONNX Runtime that made a golden summed 8-bit products, so that the
emulator reproduces a golden made on any CPU.

The ONNX specification of QLinearConv, QLinearMatMul (and ORT's QGemm) asks for
the exact int32 sum of (x - x_zero_point) * (w - w_zero_point). ONNX Runtime
computes exactly that on CPUs with VNNI (AVX512-VNNI / AVX-VNNI `vpdpbusd`), on
ARM and for uint8 weights. On x86 CPUs with AVX2 but no VNNI, its uint8 x int8
GEMM (MLAS) multiplies with `vpmaddubsw`, which adds each pair of adjacent raw
products a[k]*b[k] + a[k+1]*b[k+1] into a *saturating int16* before widening to
int32, so a pair beyond +-32767 is clipped. That is why ORT's quantizer offers
`reduce_range` (7-bit weights, for "non-VNNI machines"): with |w| <= 64 no pair
can saturate. Depthwise convolutions use a separate, exact kernel.

Only uint8 activations with int8 weights take that path. int8 (signed)
activations of QOperator nodes (QLinearConv, QLinearMatMul, QGemm, MatMulInteger,
ConvInteger as written in the model) are summed exactly on the same CPU: probes with
every operand at +-127/-128 (ORT 1.31.1 and 1.32.0, AVX2 without VNNI) give the
exact sums, and models quantized with `activation_type = "int8"` are bit-exact only
in exact arithmetic. QDQ graphs differ: on such CPUs ORT's optimizer first rewrites
int8 activations of QDQ groups to uint8 (x + 128, zero point + 128) where it can and
then fuses them into the uint8 kernels, so those saturate. The emulator follows the
graph ORT's optimizer makes (`ortgraph.py`), which carries that rewrite itself.

Reproduced here (measured on AVX2 without VNNI: every QLinearConv / QGemm layer
of the bundled models bit-exact): `avx2_int16_pairs` adds, to the exact
accumulator, the clipping error of every pair that can saturate. The pairs follow
MLAS's reduction order: im2col rows (kernel row, kernel column, input channel)
for convolutions, K for matrix products. Only pairs whose weights can overflow
(255 * (|b0| + |b1|) > 32767) are evaluated, so the exact case costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

ACCUMULATION_MODES: tuple[str, ...] = ("exact", "avx2_int16_pairs")
_I16_MIN, _I16_MAX = -32768, 32767


def _check(mode: str) -> None:
    if mode not in ACCUMULATION_MODES:
        raise ValueError(f"int8 accumulation {mode!r} is not one of {ACCUMULATION_MODES}")


def saturates(mode: str, a_dtype: np.dtype, b_dtype: np.dtype) -> bool:
    """True when `mode` clips pair sums for these operands: int8 weights with uint8 activations."""
    _check(mode)
    return mode == "avx2_int16_pairs" and np.dtype(b_dtype) == np.int8 and np.dtype(a_dtype) == np.uint8


def raw_u8(a: np.ndarray) -> np.ndarray:
    """Activations as the unsigned bytes the kernel multiplies (int8 shifted by 128), as int32."""
    out = a.astype(np.int32)
    if a.dtype == np.int8:
        out += 128
    return out


def _risky_pairs(b_raw: np.ndarray) -> tuple[np.ndarray, ...]:
    """(pair index, column) of the pairs of rows of b_raw (K, N) whose sum can leave int16."""
    k = b_raw.shape[0]
    b = b_raw.astype(np.int32)
    if k % 2:
        b = np.concatenate([b, np.zeros((1, b.shape[1]), np.int32)])
    bound = 255 * (np.abs(b[0::2]) + np.abs(b[1::2]))
    return np.nonzero(bound > _I16_MAX)


def gemm_can_saturate(b_raw: np.ndarray) -> bool:
    """True when some pair of rows of the weights b_raw (K, N) can leave int16: only then can
    `gemm_correction` be non-zero, so a layer without such a pair skips it (decided once, at load)."""
    return b_raw.ndim == 2 and _risky_pairs(b_raw)[0].size > 0


def conv_can_saturate(w_raw: np.ndarray, group: int) -> bool:
    """`gemm_can_saturate` for the per-group weight matrices of a grouped QLinearConv (see `conv_correction`)."""
    m, cg, kh, kw = w_raw.shape
    mg = m // group
    return any(
        gemm_can_saturate(w_raw[g * mg : (g + 1) * mg].transpose(2, 3, 1, 0).reshape(kh * kw * cg, mg))
        for g in range(group)
    )


def pair_correction(
    column: Callable[[int], np.ndarray], b_raw: np.ndarray, out_shape: Sequence[int]
) -> np.ndarray | None:
    """What int16 pair saturation adds to the exact accumulator, (..., N) int64; None when nothing can saturate.

    `column(k)` returns the raw uint8 activations that meet row k of `b_raw`
    (K, N) in every output position (shape `out_shape` without N).
    """
    pairs, cols = _risky_pairs(b_raw)
    if pairs.size == 0:
        return None
    k = b_raw.shape[0]
    b = b_raw.astype(np.int32)
    correction = np.zeros((*out_shape, b.shape[1]), np.int64)
    for p in np.unique(pairs):
        ns = cols[pairs == p]
        a0 = column(2 * p)[..., None]
        a1 = column(2 * p + 1)[..., None] if 2 * p + 1 < k else 0
        b1 = b[2 * p + 1, ns] if 2 * p + 1 < k else 0
        value = a0 * b[2 * p, ns] + a1 * b1
        correction[..., ns] += np.clip(value, _I16_MIN, _I16_MAX) - value
    return correction


def gemm_correction(a: np.ndarray, b_raw: np.ndarray) -> np.ndarray | None:
    """Saturation correction of a (M, K) @ b_raw (K, N) with 8-bit activations `a`."""
    raw = raw_u8(a)
    return pair_correction(lambda k: raw[..., k], b_raw, raw.shape[:-1])


def conv_correction(
    x: np.ndarray,
    zero_point: int,
    w_raw: np.ndarray,
    strides: Sequence[int],
    pads: Sequence[int],
    dilations: Sequence[int],
    group: int,
    out_hw: Sequence[int],
) -> np.ndarray | None:
    """Saturation correction of a grouped (not depthwise) QLinearConv, (N, OH, OW, M) int64.

    `x` is the NCHW 8-bit input; padding holds the zero point, as in ORT's im2col.
    """
    n, c, _, _ = x.shape
    m, cg, kh, kw = w_raw.shape
    mg = m // group
    fill = int(zero_point) + (128 if x.dtype == np.int8 else 0)
    raw = raw_u8(x).transpose(0, 2, 3, 1)
    top, left, bottom, right = pads
    xp = np.pad(raw, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)
    (sh, sw), (dh, dw), (oh, ow) = strides, dilations, out_hw
    parts = []
    for g in range(group):

        def column(k: int, g: int = g) -> np.ndarray:
            i, rest = divmod(k, kw * cg)
            j, ch = divmod(rest, cg)
            return xp[
                :, i * dh : i * dh + (oh - 1) * sh + 1 : sh, j * dw : j * dw + (ow - 1) * sw + 1 : sw, g * cg + ch
            ]

        wg = w_raw[g * mg : (g + 1) * mg].transpose(2, 3, 1, 0).reshape(kh * kw * cg, mg)
        parts.append(pair_correction(column, wg, (n, oh, ow)))
    if all(p is None for p in parts):
        return None
    return np.concatenate([np.zeros((n, oh, ow, mg), np.int64) if p is None else p for p in parts], axis=-1)
