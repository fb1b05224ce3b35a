"""The direct float32 convolution (shifted plane passes) against the im2col + GEMM path and ONNX Runtime.

The two sum the same products in another order (and the direct one may fuse
multiply-adds), so they agree within float32 rounding of the sum of the
products' magnitudes, not bit for bit; a wrong tap offset, plane phase,
padding or block boundary is off by a whole product and fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from test_emulator import _ort, _single_node

from pytest_tinyaccel.emulator import Graph, direct_conv
from pytest_tinyaccel.emulator.compiled import BIAS, REQUANTIZE
from pytest_tinyaccel.emulator.conv import Finish, bias_relu, conv2d
from pytest_tinyaccel.emulator.kernels import pool_output_size

EPS = float(np.finfo(np.float32).eps)


def _out_hw(x, w, strides, pads, dilations):
    return tuple(
        pool_output_size(x.shape[2 + a], w.shape[2 + a], strides[a], dilations[a], pads[a], pads[a + 2], False)
        for a in (0, 1)
    )


def _check_close(got, x, w, strides, pads, dilations, epilogue):
    """`got` against the im2col path in float32, both within float32 rounding of the float64 sums' bound."""
    want = conv2d(x, w, strides, pads, dilations, 1, np.float32, epilogue=epilogue)
    bound = conv2d(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64), strides, pads, dilations, 1, np.float64)
    if epilogue is not None:
        bound = bound + np.abs(epilogue.bias).reshape(1, -1, 1, 1)
    tolerance = 2 * (w.shape[1] * w.shape[2] * w.shape[3] + 2) * EPS * bound + 1e-30
    assert got.shape == want.shape and got.dtype == np.float32
    assert got.transpose(0, 2, 3, 1).flags.c_contiguous  # channels-last memory, as the GEMM path's
    assert np.all(np.abs(got - want) <= tolerance), float(np.max(np.abs(got - want) - tolerance))


SHAPES = [
    # (N, C, H, W), (M, KH, KW), strides, pads (top, left, bottom, right), dilations
    ((3, 1, 8, 8), (8, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((5, 3, 7, 9), (4, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((2, 2, 9, 6), (5, 3, 3), (2, 2), (1, 0, 2, 1), (1, 1)),
    ((4, 5, 11, 10), (3, 2, 5), (3, 2), (0, 2, 1, 0), (1, 1)),
    ((2, 3, 10, 9), (6, 3, 3), (1, 1), (2, 2, 2, 2), (2, 2)),
    ((3, 4, 8, 7), (7, 3, 2), (2, 1), (1, 0, 0, 1), (2, 3)),
    ((2, 6, 5, 5), (9, 1, 1), (2, 2), (0, 0, 0, 0), (1, 1)),
    ((1, 1, 4, 13), (2, 1, 4), (1, 3), (0, 1, 0, 2), (1, 1)),
    ((70, 8, 8, 8), (8, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),  # more samples than one block: several blocks
    ((0, 2, 5, 5), (3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),  # an empty batch
]


@pytest.mark.parametrize("finish", ["none", "bias", "bias_relu", "relu"])
@pytest.mark.parametrize("x_shape, w_shape, strides, pads, dilations", SHAPES)
def test_direct_equals_im2col_within_rounding(x_shape, w_shape, strides, pads, dilations, finish):
    """Random shapes (odd sizes, strides, asymmetric padding, dilations), each epilogue."""
    rng = np.random.default_rng(abs(hash((x_shape, w_shape, finish))) % 2**32)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((w_shape[0], x_shape[1], *w_shape[1:])).astype(np.float32)
    bias = rng.standard_normal(w_shape[0]).astype(np.float32) if "bias" in finish else None
    epilogue = bias_relu(bias, "relu" in finish, w_shape[0], np.dtype(np.float32))
    out_hw = _out_hw(x, w, strides, pads, dilations)
    got = direct_conv.conv2d_direct(x, w, strides, pads, dilations, out_hw, epilogue)
    _check_close(got, x, w, strides, pads, dilations, epilogue)
    if "relu" in finish and got.size:
        assert got.min() == 0  # the Relu was applied (random sums are negative somewhere)


def test_direct_reads_strided_inputs():
    """An NCHW view of channels-last memory (what the GEMM path returns) gives what its copy gives."""
    rng = np.random.default_rng(7)
    x = np.ascontiguousarray(rng.standard_normal((4, 9, 9, 3)).astype(np.float32)).transpose(0, 3, 1, 2)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    got = direct_conv.conv2d_direct(x, w, (1, 1), (1, 1, 1, 1), (1, 1), (9, 9), None)
    np.testing.assert_array_equal(
        got, direct_conv.conv2d_direct(np.ascontiguousarray(x), w, (1, 1), (1, 1, 1, 1), (1, 1), (9, 9), None)
    )
    _check_close(got, x, w, (1, 1), (1, 1, 1, 1), (1, 1), None)


def test_non_finite_inputs_reach_only_their_windows():
    """An infinite input pixel makes NaN/inf exactly the outputs whose windows hold it, as in the im2col
    path: the dropped border positions of the planes leak nothing into the kept ones."""
    x = np.ones((2, 2, 6, 7), np.float32)
    x[1, 1, 2, 6] = np.inf
    x[0, 0, 0, 0] = np.nan
    w = np.random.default_rng(3).standard_normal((4, 2, 3, 3)).astype(np.float32)
    with np.errstate(invalid="ignore"):
        got = direct_conv.conv2d_direct(x, w, (1, 1), (1, 1, 1, 1), (1, 1), (6, 7), None)
        want = conv2d(x, w, (1, 1), (1, 1, 1, 1), (1, 1), 1, np.float32)
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    assert (~np.isfinite(got)).sum() == 4 * (4 + 6)  # a corner window set of 4 and an edge one of 6, per channel


def test_requantizing_epilogue_is_refused():
    """The kernel finishes floats only: a requantization (an integer path) is a clear error, not wrong output."""
    x, w = np.ones((1, 1, 4, 4), np.float32), np.ones((2, 1, 3, 3), np.float32)
    finish = Finish(REQUANTIZE, np.zeros(2), np.ones(2, np.float32), (0.0, -128.0, 127.0))
    with pytest.raises(ValueError, match="epilogue mode"):
        direct_conv.conv2d_direct(x, w, (1, 1), (1, 1, 1, 1), (1, 1), (4, 4), finish)
    float64_bias = Finish(BIAS, np.zeros(2), np.ones(2, np.float32))
    with pytest.raises(ValueError, match="float32 bias"):
        direct_conv.conv2d_direct(x, w, (1, 1), (1, 1, 1, 1), (1, 1), (4, 4), float64_bias)


@pytest.mark.parametrize(
    "x, w",
    [
        (np.ones((1, 2, 4, 4), np.float32), np.ones((3, 1, 3, 3), np.float32)),
        (np.ones((1, 1, 4, 4), np.float64), np.ones((3, 1, 3, 3), np.float32)),
        (np.ones((1, 1, 4, 4), np.float32), np.ones((3, 1, 3, 3), np.int8)),
    ],
)
def test_mismatched_operands_are_refused(x, w):
    """Channels that do not match, or operands other than float32: a clear error before any compiled loop
    could read past the input."""
    with pytest.raises(ValueError, match="float32 NCHW inputs and MCHW weights"):
        direct_conv.conv2d_direct(x, w, (1, 1), (1, 1, 1, 1), (1, 1), (4, 4), None)


@pytest.mark.parametrize(
    "x_shape, w_shape, strides, expected",
    [
        ((540, 1, 8, 8), (8, 1, 3, 3), (1, 1), True),  # the bundled ic model's first convolution
        ((540, 8, 8, 8), (8, 8, 3, 3), (1, 1), True),
        ((540, 8, 8, 8), (16, 8, 3, 3), (2, 2), False),  # strided: the GEMM was faster
        ((540, 8, 8, 8), (16, 8, 1, 1), (2, 2), False),  # 1x1
        ((540, 8, 8, 8), (16, 8, 3, 3), (1, 1), False),  # 16 outputs: the GEMM was faster
        ((200, 3, 32, 32), (16, 3, 3, 3), (1, 1), False),
        ((200, 3, 32, 32), (8, 3, 3, 3), (1, 1), True),
        ((540, 16, 4, 4), (8, 16, 3, 3), (1, 1), False),  # 144 inputs per output
        ((540, 32, 2, 2), (32, 32, 3, 3), (1, 1), False),
        ((10, 3, 2, 2), (8, 3, 3, 3), (1, 1), False),  # 2x2 outputs on 4x4 planes: most positions wasted
        ((10, 3, 8, 8), (8, 2, 3, 3), (1, 1), False),  # channels that do not match: the GEMM path reports it
    ],
)
def test_worthwhile_by_shape(x_shape, w_shape, strides, expected):
    out_hw = _out_hw(np.empty(x_shape), np.empty(w_shape), strides, (1, 1, 1, 1), (1, 1))
    assert direct_conv.worthwhile(x_shape, w_shape, strides, (1, 1), out_hw) is expected


def test_conv_node_uses_direct_kernel_and_matches_onnxruntime(tmp_path, monkeypatch):
    """A float Conv (+ Relu) node of a shape the direct kernel takes runs it, within rounding of ONNX Runtime."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((33, 3, 9, 7)).astype(np.float32)
    inits = {"w": rng.standard_normal((6, 3, 3, 3)).astype(np.float32), "b": rng.standard_normal(6).astype(np.float32)}
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    path = _single_node(tmp_path, node, {"x": x}, inits, TensorProto.FLOAT)
    calls = []
    original = direct_conv.conv2d_direct
    monkeypatch.setattr(direct_conv, "conv2d_direct", lambda *a: calls.append(a[1].shape) or original(*a))
    got = Graph.load(path).run({"x": x})["y"]
    assert calls == [(6, 3, 3, 3)]
    np.testing.assert_allclose(got, _ort(path, {"x": x})["y"], rtol=1e-5, atol=1e-5)
