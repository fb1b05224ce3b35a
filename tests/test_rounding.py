"""Rounding ties made on purpose: values exactly at .5 LSB in every requantizing kernel, per
rounding mode. Random data rarely lands on a tie, so these tests place them: the kernels of
emulator/kernels.py called directly, then every requantizing op of the emulator as a one-node
model with power-of-two scales, against ONNX Runtime (which rounds ties to even) and against
the exact values rounded the other way (half away from zero, the fault-injection mode)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from pytest_tinyaccel.emulator import kernels as K
from pytest_tinyaccel.emulator.backend import EmulatorBackend

TIES = np.array([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5])
HALF_EVEN = np.array([-4.0, -2.0, -2.0, -0.0, 0.0, 2.0, 2.0, 4.0])
HALF_AWAY = np.array([-4.0, -3.0, -2.0, -1.0, 1.0, 2.0, 3.0, 4.0])


def half_away(v: np.ndarray) -> np.ndarray:
    return np.trunc(v + np.copysign(0.5, v))


# --------------------------------------------------------------------------- kernels.py


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_to_int_ties_per_mode(dtype):
    x = TIES.astype(dtype)
    even, away = K.round_to_int(x, "half_even"), K.round_to_int(x, "half_away")
    assert even.dtype == dtype and away.dtype == dtype
    np.testing.assert_array_equal(even, HALF_EVEN)
    np.testing.assert_array_equal(away, HALF_AWAY)
    assert np.signbit(even[3]) and not np.signbit(even[4])  # -0.5 rounds to -0.0
    off = np.array([-2.75, -1.25, -0.25, 0.0, 0.25, 1.25, 2.75], dtype)
    for mode in K.ROUNDING_MODES:
        np.testing.assert_array_equal(K.round_to_int(off, mode), [-3, -1, -0, 0, 0, 1, 3])


def test_round_half_away_is_exact_just_below_a_tie_in_float32():
    """0.49999997f + 0.5f rounds to 1.0 in float32: the half-away rule must add in float64."""
    below = np.nextafter(np.float32(0.5), np.float32(0))
    x = np.array([below, -below, np.float32(2**23 + 1), np.float32(-(2**23) - 1)], np.float32)
    np.testing.assert_array_equal(K.round_to_int(x, "half_away"), [0, -0, 2**23 + 1, -(2**23) - 1])
    np.testing.assert_array_equal(K.round_to_int(x, "half_even"), [0, -0, 2**23 + 1, -(2**23) - 1])


def test_an_unknown_rounding_is_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown rounding 'up'; use one of \('half_even', 'half_away'\)"):
        K.round_to_int(np.zeros(2, np.float32), "up")


@pytest.mark.parametrize(
    ("dtype", "values", "expected"),
    [
        (np.int8, [-1000.0, -129.0, -128.0, -1.0, 0.0, 127.0, 128.0, 1e9], [-128, -128, -128, -1, 0, 127, 127, 127]),
        (np.uint8, [-1.0, 0.0, 255.0, 256.0], [0, 0, 255, 255]),
        (np.int16, [-40000.0, 32767.0, 32768.0], [-32768, 32767, 32767]),
        (np.int32, [-3e9, 2.0**31 - 128, 3e9], [-(2**31), 2**31 - 128, 2**31 - 1]),
    ],
)
def test_saturate_clips_to_the_type_and_casts(dtype, values, expected):
    got = K.saturate(np.array(values, np.float64), np.dtype(dtype))
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("mode", K.ROUNDING_MODES)
@pytest.mark.parametrize(("dtype", "zero_point"), [(np.uint8, 10), (np.int8, -3), (np.int8, 0)])
def test_requantize_ties_then_zero_point_then_saturation(mode, dtype, zero_point):
    acc = np.array([-7, -5, -3, -1, 1, 3, 5, 7, 2, -2, 600, -600], np.int32)
    scale = np.float32(0.5)
    exact = acc.astype(np.float64) * 0.5
    rounded = np.rint(exact) if mode == "half_even" else half_away(exact)
    info = np.iinfo(dtype)
    expected = np.clip(rounded + zero_point, info.min, info.max)
    got = K.requantize(acc, scale, zero_point, np.dtype(dtype), mode)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, expected)
    assert (np.abs(exact - np.trunc(exact)) == 0.5).sum() == 8  # the ties are there


def test_requantize_per_channel_scales_and_the_float32_accumulator():
    acc = np.array([[3, 3, 3], [-3, -3, -3]], np.int32)
    scale = np.array([[0.5, 0.25, 1.0]], np.float32)  # 1.5, 0.75, 3 (and negated)
    np.testing.assert_array_equal(
        K.requantize(acc, scale, 0, np.dtype(np.int8), "half_even"), [[2, 1, 3], [-2, -1, -3]]
    )
    np.testing.assert_array_equal(
        K.requantize(acc, scale, 0, np.dtype(np.int8), "half_away"), [[2, 1, 3], [-2, -1, -3]]
    )
    # int32 -> float32 rounds 2^24 + 1 to 2^24 (ties to even) before the multiply, as MLAS does: no tie is left
    big = np.array([2**24 + 1, -(2**24) - 1], np.int32)
    for mode in K.ROUNDING_MODES:
        got = K.requantize(big, np.float32(0.5), 0, np.dtype(np.int32), mode)
        np.testing.assert_array_equal(got, [2**23, -(2**23)])


def test_requantize_into_writes_the_caller_s_buffer():
    value = np.array([5.0, -5.0, 1000.0], np.float32)
    out = np.empty(3, np.uint8)
    K.requantize_into(value, np.float32(0.5), 128, "half_away", out)
    np.testing.assert_array_equal(out, [131, 125, 255])
    value = np.array([5.0, -5.0, -1000.0], np.float32)
    K.requantize_into(value, np.float32(0.5), 128, "half_even", out)
    np.testing.assert_array_equal(out, [130, 126, 0])


@pytest.mark.parametrize("mode", K.ROUNDING_MODES)
def test_quantize_linear_ties_per_mode_with_per_channel_zero_points(mode):
    x = np.array([[-1.25, -0.75, -0.25, 0.25, 0.75, 1.25], [-1.25, -0.75, -0.25, 0.25, 0.75, 1.25]], np.float32)
    scale = np.array([[0.5], [0.5]], np.float32)
    zero = np.array([[0], [100]], np.uint8)
    exact = x.astype(np.float64) / 0.5
    rounded = np.rint(exact) if mode == "half_even" else half_away(exact)
    expected = np.clip(rounded + zero.astype(np.float64), 0, 255)
    got = K.quantize_linear(x, scale, zero, np.dtype(np.uint8), mode)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
    assert expected[0].tolist() == ([0, 0, 0, 0, 2, 2] if mode == "half_even" else [0, 0, 0, 1, 2, 3])


def test_quantize_linear_divides_in_float32_whatever_the_input_type():
    """0.5 + 2^-40 is 0.5 in float32 (a tie, to 0) but above the tie in float64 (to 1)."""
    x = np.array([0.5 + 2.0**-40, -0.5 - 2.0**-40], np.float64)
    got = K.quantize_linear(x, np.float32(1.0), np.array(0, np.int8), np.dtype(np.int8), "half_even")
    np.testing.assert_array_equal(got, [0, 0])


def test_quantize_linear_saturates_int8_both_ways():
    x = np.array([-1000.0, -128.5, 126.5, 1000.0], np.float32)
    for mode, expected in (("half_even", [-128, -128, 126, 127]), ("half_away", [-128, -128, 127, 127])):
        got = K.quantize_linear(x, np.float32(1.0), np.array(0, np.int8), np.dtype(np.int8), mode)
        np.testing.assert_array_equal(got, expected)


def test_dequantize_linear_subtracts_exactly_in_every_width():
    got = K.dequantize_linear(np.array([0, 255, 7], np.uint8), np.float32(0.5), np.array(128, np.uint8))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [-64.0, 63.5, -60.5])
    # int32: x - zp is exact in int64 (float32 would round 2^24 + 1 before subtracting)
    x = np.array([2**24 + 1, 2**31 - 1], np.int32)
    got = K.dequantize_linear(x, np.float32(1.0), np.array(1, np.int32))
    np.testing.assert_array_equal(got, np.array([2**24, 2**31 - 2], np.int64).astype(np.float32))
    assert got.dtype == np.float32
    wide = K.dequantize_linear(np.array([-(2**31)], np.int32), np.float32(2.0), np.array(2**31 - 1, np.int32))
    assert wide[0] == np.float32(-(2.0**33))
    # one side wider than 16 bits is enough for the int64 path
    got = K.dequantize_linear(np.array([2**24 + 1], np.int32), np.float32(1.0), np.array(1, np.int8))
    assert got[0] == np.float32(2**24)
    # int64: the difference rounds to float32 once (through float64 it would round twice)
    x = np.array([2**53 + 2**29 + 1], np.int64)
    assert K.dequantize_linear(x, np.float32(1.0), np.array(0, np.int64))[0] == np.float32(2.0**53 + 2.0**30)


def fused_reference(x: float, y: float, z: float) -> np.float32:
    """float32(x * y + z) rounded once, for the midpoint cases built below (exact arithmetic)."""
    from fractions import Fraction

    exact = Fraction(x) * Fraction(y) + Fraction(z)
    low = np.float32(float(exact))  # may be off by one either way: pick the nearest, ties to even
    candidates = [np.nextafter(low, np.float32(-np.inf)), low, np.nextafter(low, np.float32(np.inf))]
    best = min(candidates, key=lambda c: (abs(Fraction(float(c)) - exact), int(np.float32(c).view(np.int32)) & 1))
    return np.float32(best)


def test_fma32_rounds_once_where_float64_would_round_twice():
    """x * y is exactly a float32 midpoint; z nudges it up or down by far less than a float64 ulp,
    so float64 lands on the midpoint and a second rounding to float32 would go to the even side."""
    cases = []
    for a, b in ((1, 1), (1, 3), (3, 5), (5, 7), (-1, 3), (3, -1)):
        x, y = np.float32(1 + a * 2.0**-12), np.float32(1 + b * 2.0**-12)
        for z in (2.0**-80, -(2.0**-80), 0.0):
            cases.append((x, y, np.float32(z)))
    xs, ys, zs = (np.array(c, np.float32) for c in zip(*cases, strict=True))
    got = K.fma32(xs, ys, zs)
    assert got.dtype == np.float32
    expected = [fused_reference(float(x), float(y), float(z)) for x, y, z in cases]
    np.testing.assert_array_equal(got, expected)
    naive = (xs.astype(np.float64) * ys + zs).astype(np.float32)
    assert (naive != got).sum() >= 4  # the double rounding is really exercised
    # far apart in magnitude: the float64 sum drops the product's tail and lands on a midpoint, whose
    # even neighbour lies below or above; and one at 2^54 where the sum's rounding error is exactly 1
    near_one = (np.float32(1 + 2.0**-23), np.float32(1 - 2.0**-23))
    hard = [
        (np.float32(2.0**6) * near_one[0], near_one[1], np.float32(2.0**30 + 2.0**7)),
        (np.float32(2.0**6) * near_one[0], -near_one[1], np.float32(2.0**30 + 2.0**8 + 2.0**7)),
        (near_one[0], -near_one[1], np.float32(2.0**24 + 2)),
        (np.float32(1321), np.float32(812825), np.float32(2.0**54)),  # 1321 * 812825 = 2^30 + 1
    ]
    for x, y, z in hard:
        assert K.fma32(x, y, z) == fused_reference(float(x), float(y), float(z)), (x, y, z)
        assert np.float32(np.float64(x) * np.float64(y) + np.float64(z)) != K.fma32(x, y, z)
    rng = np.random.default_rng(3)
    x, y, z = (rng.standard_normal(1000).astype(np.float32) for _ in range(3))
    np.testing.assert_array_equal(K.fma32(x, y, z), (x.astype(np.float64) * y + z).astype(np.float32))
    assert K.fma32(np.float32(2), np.float32(3), np.float32(1)) == np.float32(7)


# --------------------------------------------------------------------------- every requantizing op

ELEM = {
    np.float32: TensorProto.FLOAT,
    np.uint8: TensorProto.UINT8,
    np.int8: TensorProto.INT8,
    np.int32: TensorProto.INT32,
}
MS = "com.microsoft"


def one_node(op, feed, inits, order=None, domain="", **attrs):
    """A one-node model named "q": `feed` as graph inputs, `inits` as initializers, inputs in `order`."""
    names = order or [*feed, *inits]
    node = helper.make_node(op, names, ["y"], name="q", domain=domain, **attrs)
    inputs = [helper.make_tensor_value_info(k, ELEM[v.dtype.type], list(v.shape)) for k, v in feed.items()]
    graph = helper.make_graph(
        [node],
        op,
        inputs,
        [helper.make_empty_tensor_value_info("y")],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def onnxruntime_run(model: onnx.ModelProto, feed):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def emulate(model, feed, rounding):
    return EmulatorBackend.prepare(model, rounding={"q": rounding}).run(feed)[0]


def f32(v):
    return np.array(v, np.float32)


def u8(v):
    return np.array(v, np.uint8)


def i8(v):
    return np.array(v, np.int8)


def check_ties(model, feed, exact, zero_point, dtype, both_signs=True, shifted=False):
    """ONNX Runtime and the emulator's half_even agree bit for bit; half_away gives the exact values
    rounded away from zero; and the ties are really there (at least 4 that the modes round apart).
    `shifted`: the op rounds y / y_scale + zero_point, as ONNX Runtime's QLinearAdd and QLinearMul do
    (the emulator follows it), so the tie is that of the shifted value."""
    info = np.iinfo(dtype)
    ties = np.abs(exact - np.trunc(exact)) == 0.5
    assert ties.sum() >= 4 and (exact[ties] < 0).any(), exact
    assert (exact[ties] > 0).any() or not both_signs, exact
    if shifted:
        even = np.clip(np.rint(exact + zero_point), info.min, info.max)
        away = np.clip(half_away(exact + zero_point), info.min, info.max)
    else:
        even = np.clip(np.rint(exact) + zero_point, info.min, info.max)
        away = np.clip(half_away(exact) + zero_point, info.min, info.max)
    reference = onnxruntime_run(model, feed)
    np.testing.assert_array_equal(reference, even)  # ONNX Runtime: ties to even
    got_even = emulate(model, feed, "half_even")
    assert got_even.dtype == dtype
    np.testing.assert_array_equal(got_even, reference)
    np.testing.assert_array_equal(emulate(model, feed, "half_away"), away)
    assert (even != away).sum() >= 4


def test_quantize_linear_op_ties():
    x = f32([[-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.0, -3.0]])
    model = one_node("QuantizeLinear", {"x": x}, {"s": f32(1.0), "zp": i8(5)})
    check_ties(model, {"x": x}, x.astype(np.float64), 5, np.int8)


def test_qlinear_matmul_ties():
    a = u8([[1, 0], [1, 2], [3, 0], [3, 2], [4, 4]])
    b = i8([[1, -1], [2, -2]])  # sums 1, 5, 3, 7, 12 and their negatives
    acc = a.astype(np.int64) @ b.astype(np.int64)  # odd sums halve to ties
    inits = {"as": f32(1.0), "az": u8(0), "b": b, "bs": f32(1.0), "bz": i8(0), "ys": f32(2.0), "yz": u8(100)}
    model = one_node("QLinearMatMul", {"a": a}, inits)
    check_ties(model, {"a": a}, acc / 2.0, 100, np.uint8)


@pytest.mark.parametrize("bias", [False, True])
def test_qlinear_conv_ties(bias):
    rng = np.random.default_rng(7)
    x = u8(rng.integers(0, 8, (1, 2, 5, 5)))
    w = i8(rng.integers(-2, 3, (2, 2, 2, 2)))
    b = np.array([3, -2], np.int32)
    acc = np.zeros((1, 2, 4, 4))
    for m in range(2):
        for i in range(4):
            for j in range(4):
                acc[0, m, i, j] = (x[0, :, i : i + 2, j : j + 2].astype(np.int64) * w[m]).sum() + (b[m] if bias else 0)
    inits = {"xs": f32(1.0), "xz": u8(0), "w": w, "ws": f32(1.0), "wz": i8(0), "ys": f32(2.0), "yz": u8(100)}
    if bias:
        inits["b"] = b
    model = one_node("QLinearConv", {"x": x}, inits)
    check_ties(model, {"x": x}, acc / 2.0, 100, np.uint8)


def test_qgemm_ties():
    a = u8([[1, 0, 0], [1, 2, 0], [3, 0, 0], [1, 1, 2]])
    b = i8([[1, -1], [2, -2], [2, -2]])  # sums 1, 5, 3, 7 and their negatives
    acc = a.astype(np.int64) @ b.astype(np.int64)
    inits = {"as": f32(1.0), "az": u8(0), "b": b, "bs": f32(1.0), "bz": i8(0), "ys": f32(2.0), "yz": u8(50)}
    order = ["a", "as", "az", "b", "bs", "bz", "", "ys", "yz"]  # no C
    model = one_node("QGemm", {"a": a}, inits, order, domain=MS)
    check_ties(model, {"a": a}, acc / 2.0, 50, np.uint8)


@pytest.mark.parametrize("op", ["QLinearAdd", "QLinearMul"])
def test_qlinear_add_and_mul_ties(op):
    if op == "QLinearAdd":  # 0.5 * (da + db)
        da, db = np.array([[-3, 0, 1, 2, -1, 1, 2, 0, -5]]), np.array([[-2, -1, 0, 3, -2, 2, 2, 0, -4]])
        exact = 0.5 * (da + db)
        scales = {"as": f32(0.5), "bs": f32(0.5)}
    else:  # 0.5 * da * db
        da, db = np.array([[-5, -1, 1, 5, 3, -3, 2, 0, -9]]), np.array([[1, 1, 1, 1, 1, 1, 2, 7, 1]])
        exact = 0.5 * da * db
        scales = {"as": f32(0.5), "bs": f32(1.0)}
    a, b = u8(da + 12), u8(db + 11)
    # an odd zero point: rint(x + 65) is not rint(x) + 65 at a tie, so the order of the two shows
    inits = {"as": scales["as"], "az": u8(12), "b": b, "bs": scales["bs"], "bz": u8(11), "ys": f32(1.0), "yz": u8(65)}
    model = one_node(op, {"a": a}, inits, domain=MS)
    check_ties(model, {"a": a}, exact, 65, np.uint8, shifted=True)


def test_qlinear_global_average_pool_ties():
    channels = [[6, 0, 0, 0], [7, 7, 0, 0], [9, 9, 0, 0], [7, 7, 7, 5], [9, 9, 9, 7], [6, 6, 6, 4]]
    x = u8(np.array(channels).reshape(1, 6, 2, 2))  # means - 4: -2.5, -0.5, 0.5, 2.5, 4.5, 1.5
    inits = {"xs": f32(1.0), "xz": u8(4), "ys": f32(1.0), "yz": u8(20)}
    model = one_node("QLinearGlobalAveragePool", {"x": x}, inits, domain=MS, channels_last=0)
    exact = (x.astype(np.float64) - 4).mean(axis=(2, 3), keepdims=True)
    check_ties(model, {"x": x}, exact, 20, np.uint8)


def test_qlinear_concat_ties():
    a, b = u8([[5, 9, 11, 15]]), u8([[2, 4, 9, 11]])  # 0.5 * (a - 10): -2.5, -0.5, 0.5, 2.5
    inits = {"ys": f32(1.0), "yz": u8(30), "as": f32(0.5), "az": u8(10), "b": b, "bs": f32(0.25), "bz": u8(6)}
    order = ["ys", "yz", "a", "as", "az", "b", "bs", "bz"]
    model = one_node("QLinearConcat", {"a": a}, inits, order, domain=MS, axis=1)
    exact = np.concatenate([0.5 * (a.astype(np.float64) - 10), 0.25 * (b.astype(np.float64) - 6)], axis=1)
    check_ties(model, {"a": a}, exact, 30, np.uint8)


def test_qlinear_leaky_relu_table_ties():
    x = i8(np.arange(-128, 128).reshape(1, 256))
    inits = {"xs": f32(1.0), "xz": i8(0), "ys": f32(1.0), "yz": i8(0)}
    model = one_node("QLinearLeakyRelu", {"x": x}, inits, domain=MS, alpha=0.5)
    xs = x.astype(np.float64)
    check_ties(model, {"x": x}, np.where(xs < 0, 0.5 * xs, xs), 0, np.int8, both_signs=False)


def test_qlinear_average_pool_ties():
    """A window smaller than the input: ONNX Runtime rounds mean / y_scale + zero_point (shifted)."""
    x = u8([[[[8, 4, 3, 5], [8, 9, 2, 2], [5, 5, 2, 3], [9, 7, 8, 5]]]])
    inits = {"xs": f32(1.0), "xz": u8(5), "ys": f32(1.0), "yz": u8(3)}
    model = one_node("QLinearAveragePool", {"x": x}, inits, domain=MS, kernel_shape=[2, 2])
    windows = np.lib.stride_tricks.sliding_window_view(x[0, 0].astype(np.float64), (2, 2))
    exact = (windows.mean(axis=(2, 3)) - 5).reshape(1, 1, 3, 3)
    check_ties(model, {"x": x}, exact, 3, np.uint8, shifted=True)
