"""The compiled loops (numba) against the NumPy arithmetic they replace, bit for bit.

A fused multiply-add, another summation order or another rounding would show up
here as a difference in the last bit of random float32 data, before any model
test could blur it.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_tinyaccel.emulator import compiled
from pytest_tinyaccel.emulator import kernels as K


def _depthwise_numpy(src, offset, taps, strides, pads, dilations, multiplier, acc_dtype, skip_padding=False):
    """The NumPy formulation: pad with zeros, then one multiply and one add per tap to 0, in row-major tap order."""
    nb, h, w, _ = src.shape
    kh, kw, m = taps.shape
    (sh, sw), (top, left, bottom, right), (dh, dw) = strides, pads, dilations
    x = np.repeat(src, multiplier, axis=3).astype(acc_dtype) - acc_dtype(offset)
    x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    oh = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
    ow = (w + left + right - dw * (kw - 1) - 1) // sw + 1
    inside = np.pad(np.ones((1, h, w, 1), bool), ((0, 0), (top, bottom), (left, right), (0, 0)))
    acc = np.zeros((nb, oh, ow, m), x.dtype)  # the sum starts at 0 (+0, not -0)
    for i in range(kh):
        for j in range(kw):
            window = (
                slice(None),
                slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
                slice(j * dw, j * dw + sw * (ow - 1) + 1, sw),
            )
            with np.errstate(invalid="ignore"):  # 0 * inf over the padding
                total = acc + x[window] * taps[i, j]
            acc = np.where(inside[window], total, acc) if skip_padding else total  # a skipped tap adds nothing
    return acc


def _depthwise(src, offset, taps, strides, pads, dilations, multiplier, out):
    """`compiled.depthwise_conv` with its output the accumulator (mode COPY)."""
    m = taps.shape[2]
    none = np.zeros(m, taps.dtype), np.ones(m, np.float32), (0.0, 0.0, 0.0), compiled.COPY
    compiled.depthwise_conv(src, offset, taps, strides, pads, dilations, multiplier, *none, out)


GEOMETRY = st.tuples(
    st.integers(1, 3),  # batch
    st.integers(1, 9),  # height
    st.integers(1, 9),  # width
    st.integers(1, 9),  # input channels
    st.sampled_from([1, 2]),  # channel multiplier
    st.integers(1, 3),  # kernel height
    st.integers(1, 3),  # kernel width
    st.tuples(st.integers(1, 2), st.integers(1, 2)),  # strides
    st.tuples(st.integers(1, 2), st.integers(1, 2)),  # dilations
    st.tuples(*[st.integers(0, 2)] * 4),  # pads top, left, bottom, right
)


@settings(max_examples=150)
@given(geometry=GEOMETRY, seed=st.integers(0, 2**32 - 1))
def test_depthwise_float32_bit_identical_to_the_numpy_tap_sum(geometry, seed):
    nb, h, w, c, mult, kh, kw, strides, dilations, pads = geometry
    if h + pads[0] + pads[2] < dilations[0] * (kh - 1) + 1 or w + pads[1] + pads[3] < dilations[1] * (kw - 1) + 1:
        return  # no output pixel
    rng = np.random.default_rng(seed)
    src = rng.standard_normal((nb, h, w, c)).astype(np.float32)
    taps = rng.standard_normal((kh, kw, c * mult)).astype(np.float32)
    want = _depthwise_numpy(src, 0, taps, strides, pads, dilations, mult, np.float32)
    got = np.full(want.shape, np.nan, np.float32)
    _depthwise(src, np.float32(0), taps, strides, pads[:2], dilations, mult, got)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("src_dtype", "acc_dtype"),
    [(np.uint8, np.float32), (np.int8, np.float32), (np.uint8, np.int32), (np.int8, np.float64)],
)
def test_depthwise_integer_operands_are_exact(src_dtype, acc_dtype):
    info = np.iinfo(src_dtype)
    rng = np.random.default_rng(1)
    src = rng.integers(info.min, info.max + 1, (4, 7, 6, 5), dtype=src_dtype)
    taps = rng.integers(-127, 128, (3, 3, 10)).astype(acc_dtype)
    zero_point = 3 if src_dtype == np.uint8 else -2
    wide = src.astype(np.int64), zero_point, taps.astype(np.int64)
    want = _depthwise_numpy(*wide, (2, 1), (1, 1, 1, 0), (1, 2), 2, np.int64)
    got = np.empty(want.shape, acc_dtype)
    _depthwise(src, acc_dtype(zero_point), taps, (2, 1), (1, 1), (1, 2), 2, got)
    np.testing.assert_array_equal(got, want)


def _requantize_numpy(acc, bias, scale, zero_point, rounding, dtype):
    """`_add_bias` then `K.requantize`: an exact int32 (or float64) sum, float32, scale, round, saturate."""
    exact = acc.astype(np.float64) + bias if acc.dtype == np.float64 else acc.astype(np.int64) + bias
    return K.requantize(exact.astype(np.float32), scale, zero_point, np.dtype(dtype), rounding)


@settings(max_examples=150)
@given(
    acc_dtype=st.sampled_from([np.float32, np.float64, np.int32]),
    out_dtype=st.sampled_from([np.uint8, np.int8]),
    rounding=st.sampled_from(K.ROUNDING_MODES),
    per_channel=st.booleans(),
    magnitude=st.sampled_from([2**8, 2**20, 2**24 - 1, 2**28]),
    zero_point=st.integers(-128, 127),
    seed=st.integers(0, 2**32 - 1),
)
def test_requantize_bit_identical_to_the_numpy_steps(
    acc_dtype, out_dtype, rounding, per_channel, magnitude, zero_point, seed
):
    if acc_dtype is np.float32:  # the emulator keeps float32 accumulators for sums below 2^24 only
        magnitude = min(magnitude, 2**24 - 1)
    rng = np.random.default_rng(seed)
    info = np.iinfo(out_dtype)
    zero_point = int(np.clip(zero_point, info.min, info.max))
    rows, m = 64, 6
    acc = rng.integers(-magnitude, magnitude, (rows, m)).astype(np.int64)
    bias = rng.integers(-(2**20), 2**20, m).astype(np.int64)
    # Scales that bring the sums into the output's range (else everything saturates), as a power of two
    # for channel 0 (and the whole tensor without per-channel scales), so that ties can be placed there.
    shift = max(1, int(magnitude).bit_length() - 7)
    scale = (rng.uniform(0.5, 1.5, m) * 2.0**-shift).astype(np.float32)
    scale[0] = np.float32(2.0**-shift)
    scale = scale if per_channel else scale[:1]
    acc[:, 0] = rng.integers(-200, 200, rows) * 2**shift + 2 ** (shift - 1) - bias[0]  # exact ties after the bias
    acc[0, 1] = magnitude - 1  # beyond float32's exact integers when added to the bias (or alone: 2^28)
    acc = acc.astype(acc_dtype)
    want = _requantize_numpy(acc, bias, scale, zero_point, rounding, out_dtype)
    got = np.empty((rows, m), out_dtype)
    bounds = (float(zero_point), float(info.min - zero_point), float(info.max - zero_point))
    compiled.requantize(
        acc, bias.astype(np.float64), np.broadcast_to(scale, (m,)).copy(), *bounds, rounding == "half_away", got
    )
    np.testing.assert_array_equal(got, want)


def test_loops_compile_without_a_writable_cache_location() -> None:
    """A read-only install with no user cache folder: numba finds no place for its cache, and the
    loops still compile (each process again) instead of failing the emulator's import."""
    script = (
        "import numba.core.caching as caching\n"
        "caching.CacheImpl._locator_classes = []  # no place numba could write its cache\n"
        "import numpy as np\n"
        "from pytest_tinyaccel.emulator import compiled\n"
        "out = np.empty((1, 2), np.uint8)\n"
        "compiled.requantize(np.array([[3.0, 5.0]], np.float32), np.zeros(2), np.full(2, 0.5, np.float32),"
        " 0.0, 0.0, 255.0, False, out)\n"
        "print(out.tolist())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[[2, 2]]"  # 1.5 and 2.5 round to even


def _finish_numpy(acc, bias, scale, zero_point, mode, out_dtype):
    """What each `compiled.finish` mode stands for, in NumPy steps."""
    if mode == compiled.COPY:
        return acc.astype(out_dtype)
    if mode in (compiled.BIAS, compiled.BIAS_RELU, compiled.RELU):
        value = acc if mode == compiled.RELU else np.add(acc, bias.astype(acc.dtype))
        return value if mode == compiled.BIAS else np.maximum(value, np.zeros((), acc.dtype))
    rounding = "half_away" if mode == compiled.REQUANTIZE_HALF_AWAY else "half_even"
    return _requantize_numpy(acc, bias.astype(np.int64), scale, zero_point, rounding, out_dtype)


MODES = [compiled.COPY, compiled.BIAS, compiled.BIAS_RELU, compiled.RELU]
QUANTIZED = [compiled.REQUANTIZE, compiled.REQUANTIZE_HALF_AWAY]


@settings(max_examples=120)
@given(geometry=GEOMETRY, mode=st.sampled_from(MODES + QUANTIZED), seed=st.integers(0, 2**32 - 1))
def test_depthwise_fused_epilogue_equals_the_sum_then_the_epilogue(geometry, mode, seed):
    """Each output row finished inside the depthwise loop is the tap sum finished afterwards, for every
    geometry (strides, dilations, pads, channel multiplier) and epilogue, float and integer."""
    nb, h, w, c, mult, kh, kw, strides, dilations, pads = geometry
    if h + pads[0] + pads[2] < dilations[0] * (kh - 1) + 1 or w + pads[1] + pads[3] < dilations[1] * (kw - 1) + 1:
        return
    rng = np.random.default_rng(seed)
    m = c * mult
    if mode in QUANTIZED:
        src, offset = rng.integers(0, 256, (nb, h, w, c), dtype=np.uint8), 117
        taps = rng.integers(-127, 128, (kh, kw, m)).astype(np.float32)
        bias, scale = rng.integers(-(2**12), 2**12, m).astype(np.float64), rng.uniform(1e-4, 4e-3, m).astype(np.float32)
        out_dtype, zero_point = np.dtype(np.uint8), 9
    else:
        src, offset = rng.standard_normal((nb, h, w, c)).astype(np.float32), 0
        src.reshape(-1)[:: max(1, src.size // 3)] = -0.0  # zeros of both signs reach the Relu
        taps = rng.standard_normal((kh, kw, m)).astype(np.float32)
        bias, scale = rng.standard_normal(m).astype(np.float32), np.ones(m, np.float32)
        out_dtype, zero_point = np.dtype(np.float32), 0
    acc = _depthwise_numpy(src, offset, taps, strides, pads, dilations, mult, np.float32)
    want = _finish_numpy(acc, bias, scale, zero_point, mode, out_dtype)
    info = np.iinfo(out_dtype) if out_dtype.kind in "iu" else None
    bounds = (float(zero_point), float(info.min - zero_point), float(info.max - zero_point)) if info else (0.0,) * 3
    got = np.empty(want.shape, out_dtype)
    compiled.depthwise_conv(
        src, np.float32(offset), taps, strides, pads[:2], dilations, mult, bias, scale, bounds, mode, got
    )
    assert got.tobytes() == want.tobytes()  # bit for bit, the sign of zero included


@settings(max_examples=100)
@given(geometry=GEOMETRY, seed=st.integers(0, 2**32 - 1), raw=st.booleans())
def test_im2col_is_the_padded_strided_window_copy(geometry, seed, raw):
    """The compiled im2col against the NumPy formulation it replaces: zero padding, then a strided view
    of every window, minus the zero point, in the accumulation type; or (raw, the VNNI product's columns)
    the bytes as they are, the padding holding the zero point."""
    from numpy.lib.stride_tricks import as_strided

    nb, h, w, c, _, kh, kw, strides, dilations, pads = geometry
    if h + pads[0] + pads[2] < dilations[0] * (kh - 1) + 1 or w + pads[1] + pads[3] < dilations[1] * (kw - 1) + 1:
        return
    src = np.random.default_rng(seed).integers(0, 256, (nb + 1, h, w, c), dtype=np.uint8)
    dtype, offset, fill = (np.uint8, 0, 5) if raw else (np.float32, 5, 0)
    padded = np.pad(
        src[1:].astype(dtype) - dtype(offset),
        ((0, 0), (pads[0], pads[2]), (pads[1], pads[3]), (0, 0)),
        constant_values=fill,
    )
    oh = (h + pads[0] + pads[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (w + pads[1] + pads[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    s0, s1, s2, s3 = padded.strides
    (sh, sw), (dh, dw) = strides, dilations
    want = as_strided(padded, (nb, oh, ow, kh, kw, c), (s0, sh * s1, sw * s2, dh * s1, dw * s2, s3))
    got = np.full(want.shape, 77, dtype)
    compiled.im2col(src, 1, dtype(offset), dtype(fill), strides, pads[:2], dilations, got)  # from the 2nd sample on
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mode", MODES)
def test_float_finish_modes_are_numpys_add_and_maximum(mode):
    """Bias and Relu epilogues as np.add / np.maximum compute them: NaN stays NaN, -0 + 0 is +0,
    max(-0, 0) is +0, and the channel values repeat along every row."""
    acc = np.array([[-0.0, 0.0, np.nan, -1.5, 2.5], [np.inf, -np.inf, -0.0, 3.0, -2.0]] * 40, np.float32)
    bias = np.array([0.0, -0.0, 1.0, 1.5, -2.5], np.float32)
    want = _finish_numpy(acc, bias, None, 0, mode, acc.dtype)
    got = np.empty_like(acc)
    compiled.finish(acc, bias, np.ones(5, np.float32), (0.0, 0.0, 0.0), mode, got)
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
@pytest.mark.parametrize("rounding", K.ROUNDING_MODES)
def test_compiled_quantize_and_dequantize_are_the_numpy_kernels(dtype, rounding):
    """One scale and zero point: `ops.integer`'s compiled QuantizeLinear/DequantizeLinear against
    `K.quantize_linear`/`K.dequantize_linear`, ties, saturation and infinities included, in the
    input's memory order (a channels-last tensor stays channels-last); a NaN falls back to NumPy."""
    from pytest_tinyaccel.emulator.ops.integer import _dequantize_compiled, _quantize_compiled

    rng = np.random.default_rng(3)
    info = np.iinfo(dtype)
    x = (rng.standard_normal((2, 5, 4, 7)) * info.max).astype(np.float32)
    x.reshape(-1)[:6] = [2.5, -2.5, 0.5, -0.5, np.inf, -np.inf]  # ties at scale 1, beyond every bound
    scale, zero = np.asarray(np.float32(1.0)), np.asarray(info.min // 3 + 5, dtype)
    for tensor in (x, x.transpose(0, 3, 1, 2)):
        want = K.quantize_linear(tensor, scale, zero, np.dtype(dtype), rounding)
        got = _quantize_compiled(tensor, scale, zero, np.dtype(dtype), rounding)
        assert got is not None and got.dtype == want.dtype and got.strides == want.strides
        np.testing.assert_array_equal(got, want)
        back, back_want = _dequantize_compiled(want, scale, zero), K.dequantize_linear(want, scale, zero)
        assert back is not None and back.strides == back_want.strides
        assert back.tobytes() == back_want.tobytes()
    x.reshape(-1)[7] = np.nan
    assert _quantize_compiled(x, scale, zero, np.dtype(dtype), rounding) is None
    assert _quantize_compiled(x[:, ::2], scale, zero, np.dtype(dtype), rounding) is None  # not one block


def test_pixel_sums_are_exact_integer_sums():
    """QLinearGlobalAveragePool's compiled sums over channels-last pixels, against NumPy's int64 sum."""
    from pytest_tinyaccel.emulator.ops.quant import _pixel_sums

    x = np.random.default_rng(4).integers(0, 256, (3, 7, 5, 9), dtype=np.uint8)
    for tensor, axes in (
        (x.transpose(0, 3, 1, 2), (2, 3)),
        (x, (1, 2)),
        (np.ascontiguousarray(x.transpose(0, 3, 1, 2)), (2, 3)),
    ):
        want = tensor.sum(axis=axes, keepdims=True, dtype=np.int64)
        got = _pixel_sums(tensor, axes)
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_float16_convolution_goes_through_im2col_as_raw_bits():
    """numba has no float16: a float16 convolution is copied into its columns as bits and finished by NumPy,
    the same columns and the same GEMM as the NumPy formulation."""
    from numpy.lib.stride_tricks import as_strided

    from pytest_tinyaccel.emulator.conv import bias_relu, conv2d

    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float16)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float16)
    b = rng.standard_normal(4).astype(np.float16)
    got = conv2d(
        x, w, (1, 1), (1, 1, 1, 1), (1, 1), 1, np.float16, epilogue=bias_relu(b, True, 4, np.dtype(np.float16))
    )
    padded = np.pad(x.transpose(0, 2, 3, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))
    s0, s1, s2, s3 = padded.strides
    cols = np.ascontiguousarray(as_strided(padded, (2, 6, 5, 3, 3, 3), (s0, s1, s2, s1, s2, s3)))
    acc = np.matmul(cols.reshape(-1, 27), w.transpose(2, 3, 1, 0).reshape(27, 4)).reshape(2, 6, 5, 4)
    want = np.maximum(np.add(acc, b), np.zeros((), np.float16)).transpose(0, 3, 1, 2)
    assert got.dtype == np.float16
    assert got.tobytes() == want.tobytes()


@settings(max_examples=60)
@given(geometry=GEOMETRY, seed=st.integers(0, 2**32 - 1))
def test_depthwise_skips_the_padding_when_a_weight_is_not_finite(geometry, seed):
    """With an infinite or NaN weight a padded pixel's 0 * weight would be NaN: the taps over the padding
    are skipped instead, as ONNX Runtime's depthwise kernel does, bit for bit a sum without them."""
    nb, h, w, c, mult, kh, kw, strides, dilations, pads = geometry
    if h + pads[0] + pads[2] < dilations[0] * (kh - 1) + 1 or w + pads[1] + pads[3] < dilations[1] * (kw - 1) + 1:
        return
    rng = np.random.default_rng(seed)
    src = rng.standard_normal((nb, h, w, c)).astype(np.float32)
    taps = rng.standard_normal((kh, kw, c * mult)).astype(np.float32)
    taps.reshape(-1)[rng.integers(0, taps.size, 2)] = [np.inf, np.nan]
    want = _depthwise_numpy(src, 0, taps, strides, pads, dilations, mult, np.float32, skip_padding=True)
    got = np.full(want.shape, -7.0, np.float32)
    _depthwise(src, np.float32(0), taps, strides, pads[:2], dilations, mult, got)
    assert got.tobytes() == want.tobytes()


NUMBA_IN_PYTESTER = """
import sys
sys.path.insert(0, {tests!r})
import numba
if {preload}:
    from helpers import load_numba_registries
    load_numba_registries()
saved = dict(sys.modules)
numba.njit(lambda x: x + 1)(1)  # the process's first compilation, inside an in-process pytester run
sys.modules.clear()
sys.modules.update(saved)  # what pytester does after the run
try:
    numba.njit(lambda x: x * 2)(2)
    print("ok")
except KeyError as exc:
    print("KeyError", exc)
"""


@pytest.mark.parametrize("preload", [True, False])
def test_numba_registries_survive_pytesters_module_cleanup(preload: bool) -> None:
    """Why conftest.py loads numba's registries first: without it, a first compilation inside an in-process
    pytester run breaks numba for the rest of the process (the case without shows numba's behaviour)."""
    from helpers import REPO

    script = NUMBA_IN_PYTESTER.format(tests=str(REPO / "tests"), preload=preload)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    if preload:
        assert done.stdout.strip() == "ok"
    else:
        assert done.stdout.startswith("KeyError") and "duplicate registration" in done.stdout
