"""The int16 pair saturation of ONNX Runtime's AVX2 (non-VNNI) uint8 x int8 kernels, called directly:
which operands saturate, which weight pairs can, and the correction to the exact accumulator for
matrix products and grouped convolutions, against a reference that sums every pair in MLAS's order."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_tinyaccel.emulator import accumulation as A

RNG = np.random.default_rng(29)


def pair_sums(a_raw: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum over pairs p of clip(a[2p] b[2p] + a[2p+1] b[2p+1]) for a_raw (..., K) and b (K, N), in int64."""
    k = b.shape[0]
    a64, b64 = a_raw.astype(np.int64), b.astype(np.int64)
    total = np.zeros((*a_raw.shape[:-1], b.shape[1]), np.int64)
    for p in range(0, k, 2):
        value = a64[..., p, None] * b64[p]
        if p + 1 < k:
            value = value + a64[..., p + 1, None] * b64[p + 1]
        total += np.clip(value, -32768, 32767)
    return total


def test_only_uint8_activations_with_int8_weights_saturate_and_only_in_that_mode():
    u8, i8 = np.dtype(np.uint8), np.dtype(np.int8)
    assert A.saturates("avx2_int16_pairs", u8, i8)
    assert not A.saturates("avx2_int16_pairs", i8, i8)
    assert not A.saturates("avx2_int16_pairs", u8, u8)
    assert not A.saturates("exact", u8, i8)
    assert A.saturates("avx2_int16_pairs", np.uint8, np.int8)  # dtype-likes too
    with pytest.raises(ValueError, match=r"int8 accumulation 'vnni' is not one of \('exact', 'avx2_int16_pairs'\)"):
        A.saturates("vnni", u8, i8)


def test_raw_bytes_shift_int8_by_128_and_leave_uint8():
    got = A.raw_u8(np.array([-128, -1, 0, 127], np.int8))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, [0, 127, 128, 255])
    np.testing.assert_array_equal(A.raw_u8(np.array([0, 200, 255], np.uint8)), [0, 200, 255])
    assert A.raw_u8(np.array([255], np.uint8)).dtype == np.int32


def test_a_weight_pair_can_saturate_from_255_times_129():
    """255 * (|b0| + |b1|) > 32767 first at |b0| + |b1| = 129; an odd last row pairs with zero."""
    assert not A.gemm_can_saturate(np.array([[64], [64]], np.int8))  # 255 * 128 = 32640
    assert A.gemm_can_saturate(np.array([[64], [65]], np.int8))
    assert A.gemm_can_saturate(np.array([[-65], [-64]], np.int8))
    assert not A.gemm_can_saturate(np.array([[0], [0], [-128]], np.int8))  # a lone last row: 255 * 128 = 32640
    assert A.gemm_can_saturate(np.array([[0], [0], [100], [29], [1]], np.int8))
    assert A.gemm_can_saturate(np.array([[1, 100], [1, 29]], np.int8))  # one column is enough
    assert not A.gemm_can_saturate(np.array([100, 100], np.int8))  # not a matrix
    assert not A.gemm_can_saturate(np.zeros((3, 3, 3), np.int8))


def test_pairs_are_adjacent_rows_so_the_same_weights_in_another_order_do_not_saturate():
    b = np.array([[100], [0], [100], [0]], np.int8)
    assert not A.gemm_can_saturate(b)
    assert A.gemm_can_saturate(b[[0, 2, 1, 3]])


@pytest.mark.parametrize("k", [1, 2, 5, 8])
def test_gemm_correction_is_the_pair_clipping_error_of_every_product(k):
    a = RNG.integers(0, 256, (7, k)).astype(np.uint8)
    a[0] = 255  # at least one row that saturates
    b = RNG.integers(-128, 128, (k, 4)).astype(np.int8)
    b[:, 0] = -128
    b[:, 1] = 127
    correction = A.gemm_correction(a, b)
    exact = a.astype(np.int64) @ b.astype(np.int64)
    expected = pair_sums(a, b) - exact
    if k == 1:
        assert correction is None or not correction.any()  # 255 * 128 alone fits int16
        assert not expected.any()
        return
    assert correction is not None and correction.dtype == np.int64 and correction.shape == (7, 4)
    np.testing.assert_array_equal(correction, expected)
    assert expected[0, 0] > 0 and expected[0, 1] < 0  # clipped at -32768 and at 32767


def test_gemm_correction_of_int8_activations_uses_their_raw_bytes_and_batches():
    a = RNG.integers(-128, 128, (2, 3, 6)).astype(np.int8)
    a[0, 0] = 127
    b = RNG.integers(-128, 128, (6, 5)).astype(np.int8)
    correction = A.gemm_correction(a, b)
    raw = a.astype(np.int64) + 128
    assert correction is not None and correction.shape == (2, 3, 5)
    np.testing.assert_array_equal(correction, pair_sums(raw, b) - raw @ b.astype(np.int64))
    assert correction.any()


def test_gemm_correction_is_none_when_no_pair_can_saturate():
    a = np.full((3, 4), 255, np.uint8)
    assert A.gemm_correction(a, np.full((4, 2), 64, np.int8)) is None
    assert A.pair_correction(lambda k: a[:, k], np.full((4, 2), -64, np.int8), (3,)) is None


def conv_reference(x, zero_point, w, strides, pads, dilations, group):
    """The correction of a grouped convolution, im2col row by row (kernel row, kernel column, channel)."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    raw = x.astype(np.int64) + (128 if x.dtype == np.int8 else 0)
    fill = zero_point + (128 if x.dtype == np.int8 else 0)
    top, left, bottom, right = pads
    xp = np.full((n, c, h + top + bottom, wd + left + right), fill, np.int64)
    xp[:, :, top : top + h, left : left + wd] = raw
    (sh, sw), (dh, dw) = strides, dilations
    oh = (h + top + bottom - (kh - 1) * dh - 1) // sh + 1
    ow = (wd + left + right - (kw - 1) * dw - 1) // sw + 1
    mg = m // group
    out = np.zeros((n, oh, ow, m), np.int64)
    for g in range(group):
        wg = w[g * mg : (g + 1) * mg].transpose(2, 3, 1, 0).reshape(kh * kw * cg, mg).astype(np.int64)
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, g * cg : (g + 1) * cg, i * sh : i * sh + (kh - 1) * dh + 1 : dh]
                patch = patch[:, :, :, j * sw : j * sw + (kw - 1) * dw + 1 : dw]
                column = patch.transpose(0, 2, 3, 1).reshape(n, kh * kw * cg)
                out[:, i, j, g * mg : (g + 1) * mg] = pair_sums(column, wg) - column @ wg
    return out, (oh, ow)


@pytest.mark.parametrize(
    ("dtype", "zero_point", "strides", "pads", "dilations", "group"),
    [
        (np.uint8, 0, (1, 1), (0, 0, 0, 0), (1, 1), 1),
        (np.uint8, 250, (1, 2), (1, 0, 2, 1), (1, 1), 1),
        (np.int8, -5, (2, 1), (1, 1, 1, 1), (2, 1), 2),
        (np.uint8, 7, (1, 1), (0, 1, 1, 0), (1, 2), 3),
    ],
)
def test_conv_correction_follows_im2col_order_padding_and_groups(dtype, zero_point, strides, pads, dilations, group):
    info = np.iinfo(dtype)
    x = RNG.integers(info.min, info.max + 1, (2, 3 * group, 6, 7)).astype(dtype)
    x[0, :, :3] = info.max
    w = RNG.integers(-128, 128, (2 * group, 3, 3, 2)).astype(np.int8)
    w[0] = -128
    w[-1] = 127
    expected, out_hw = conv_reference(x, zero_point, w, strides, pads, dilations, group)
    assert A.conv_can_saturate(w, group)
    got = A.conv_correction(x, zero_point, w, strides, pads, dilations, group, out_hw)
    assert got is not None and got.shape == expected.shape and got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)
    assert expected.any()


def test_conv_correction_keeps_the_groups_that_cannot_saturate_as_zeros():
    x = np.full((1, 4, 3, 3), 255, np.uint8)
    w = np.zeros((4, 2, 2, 2), np.int8)
    w[2:] = 127  # only the second group's weights can saturate
    assert A.conv_can_saturate(w, 2) and not A.conv_can_saturate(w[:2], 1)
    got = A.conv_correction(x, 0, w, (1, 1), (0, 0, 0, 0), (1, 1), 2, (2, 2))
    expected, _ = conv_reference(x, 0, w, (1, 1), (0, 0, 0, 0), (1, 1), 2)
    assert got is not None and got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)
    assert not got[..., :2].any() and got[..., 2:].all()
    assert A.conv_correction(x, 0, w[:2] // 2, (1, 1), (0, 0, 0, 0), (1, 1), 1, (2, 2)) is None
