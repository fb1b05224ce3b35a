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


def _depthwise_numpy(src, offset, taps, strides, pads, dilations, multiplier, acc_dtype):
    """The NumPy formulation: pad with zeros, then one multiply and one add per tap, in row-major tap order."""
    nb, h, w, _ = src.shape
    kh, kw, m = taps.shape
    (sh, sw), (top, left, bottom, right), (dh, dw) = strides, pads, dilations
    x = np.repeat(src, multiplier, axis=3).astype(acc_dtype) - acc_dtype(offset)
    x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    oh = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
    ow = (w + left + right - dw * (kw - 1) - 1) // sw + 1
    acc = None
    for i in range(kh):
        for j in range(kw):
            tap = x[:, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw]
            product = tap * taps[i, j]
            acc = product if acc is None else acc + product
    return acc


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
    compiled.depthwise_conv(src, np.float32(0), taps, strides, pads[:2], dilations, mult, got)
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
    compiled.depthwise_conv(src, acc_dtype(zero_point), taps, (2, 1), (1, 1), (1, 2), 2, got)
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
