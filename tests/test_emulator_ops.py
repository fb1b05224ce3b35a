"""The tiny-network ops against ONNX Runtime, in the configurations the ONNX node tests leave out (both
directions and layouts of recurrent layers, grouped/strided transposed convolutions, integer Resize, run-time
quantization parameters, saturating int8 products), and the backend's contract: refusals at load naming
what is refused, 0-d outputs, in-memory models."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from pytest_tinyaccel.emulator import Graph, UnsupportedOpError, UnsupportedTypeError
from pytest_tinyaccel.emulator.backend import EmulatorBackend
from pytest_tinyaccel.runtime import int8_accumulation

ELEM = {
    np.float32: TensorProto.FLOAT,
    np.uint8: TensorProto.UINT8,
    np.int8: TensorProto.INT8,
    np.int32: TensorProto.INT32,
    np.int64: TensorProto.INT64,
}


def _model(node, feed: dict[str, np.ndarray], inits: dict[str, np.ndarray] | None = None, opset: int = 17):
    """A one-node model: `feed` as typed graph inputs, `inits` as initializers, untyped outputs."""
    inputs = [helper.make_tensor_value_info(k, ELEM[v.dtype.type], list(v.shape)) for k, v in feed.items()]
    outputs = [helper.make_empty_tensor_value_info(o) for o in node.output if o]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    graph = helper.make_graph([node], node.op_type, inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _ort(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feed)


def _emulate(model: onnx.ModelProto, feed: dict[str, np.ndarray], **load) -> list[np.ndarray]:
    return list(EmulatorBackend.prepare(model, **load).run(feed))


def _same(model, feed, atol=1e-5, rtol=1e-4, **load) -> None:
    ours, theirs = _emulate(model, feed, **load), _ort(model, feed)
    assert len(ours) == len(theirs), f"the emulator gives {len(ours)} outputs, ONNX Runtime {len(theirs)}"
    for got, want in zip(ours, theirs, strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        if want.dtype.kind in "iub":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, atol=atol, rtol=rtol)


RNG = np.random.default_rng(14)


def _f32(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


# ----------------------------------------------------------------------------- recurrent layers


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_recurrent_layers_match_onnxruntime(op, direction):
    """Initial states, biases, sequence_lens shorter than the sequence, and every output."""
    gates, hidden, dirs, seq, batch, size = (
        {"LSTM": 4, "GRU": 3, "RNN": 1}[op],
        5,
        1 + (direction == "bidirectional"),
        6,
        3,
        4,
    )
    feed = {
        "x": _f32(seq, batch, size),
        "w": _f32(dirs, gates * hidden, size, scale=0.5),
        "r": _f32(dirs, gates * hidden, hidden, scale=0.5),
        "b": _f32(dirs, 2 * gates * hidden, scale=0.2),
        "lens": np.array([6, 3, 1], np.int32),
        "h0": _f32(dirs, batch, hidden),
    }
    inputs, outputs, extra = ["x", "w", "r", "b", "lens", "h0"], ["y", "y_h"], {}
    if op == "LSTM":
        feed |= {"c0": _f32(dirs, batch, hidden), "p": _f32(dirs, 3 * hidden, scale=0.3)}
        inputs, outputs = inputs + ["c0", "p"], outputs + ["y_c"]
    if op == "GRU":
        extra = {"linear_before_reset": 1}
    node = helper.make_node(op, inputs, outputs, hidden_size=hidden, direction=direction, clip=2.5, **extra)
    _same(_model(node, feed), feed)


def test_lstm_layout_1_and_activations_match_the_layout_0_graph():
    """batch-major layout (ORT implements only layout 0): the same numbers as the transposed layout-0 graph."""
    x, w, r = _f32(2, 5, 3), _f32(1, 16, 3), _f32(1, 16, 4)
    acts = dict(activations=["HardSigmoid", "Tanh", "Softsign"], activation_alpha=[0.3], activation_beta=[0.4])
    lstm = helper.make_node("LSTM", ["x", "w", "r"], ["y", "y_h"], hidden_size=4, layout=1, **acts)
    y1, h1 = _emulate(_model(lstm, {"x": x, "w": w, "r": r}), {"x": x, "w": w, "r": r})
    lstm = helper.make_node("LSTM", ["x", "w", "r"], ["y", "y_h"], hidden_size=4, **acts)
    seq_major = _model(lstm, {"x": x.transpose(1, 0, 2), "w": w, "r": r})
    y0, h0 = _ort(seq_major, {"x": x.transpose(1, 0, 2), "w": w, "r": r})
    np.testing.assert_allclose(y1, y0.transpose(2, 0, 1, 3), atol=1e-6)
    np.testing.assert_allclose(h1, h0.transpose(1, 0, 2), atol=1e-6)


# ----------------------------------------------------------------------------- transposed convolution


@pytest.mark.parametrize(
    "attrs",
    [
        dict(strides=[2, 2], pads=[1, 0, 1, 2], output_padding=[1, 0]),
        dict(group=2, dilations=[2, 1], strides=[1, 3]),
        dict(strides=[2, 2], auto_pad="SAME_UPPER"),
        dict(strides=[2, 2], output_shape=[15, 14]),
    ],
)
def test_conv_transpose_matches_onnxruntime(attrs):
    feed = {"x": _f32(2, 4, 7, 6), "w": _f32(4, 3, 3, 3), "b": _f32(3 * attrs.get("group", 1))}
    feed["w"] = _f32(4, 3, 3, 3)
    _same(_model(helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **attrs), feed), feed)


# ----------------------------------------------------------------------------- Resize


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.float32])
@pytest.mark.parametrize("coordinates", ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_is_bit_exact_with_onnxruntime(dtype, coordinates, mode):
    """8-bit Resize as a quantized model runs it: ORT's bilinear arithmetic, to the bit (scales with
    an integer output length; see docs/emulator.md for align_corners with fractional ones)."""
    x = (RNG.uniform(-128, 255, (2, 3, 8, 10))).astype(np.float32)
    if dtype != np.float32:
        info = np.iinfo(dtype)
        x = np.clip(x, info.min, info.max).astype(dtype)
    scales = np.array([1, 1, 1.5, 0.7], np.float32)
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode, coordinate_transformation_mode=coordinates)
    model = _model(node, {"x": x}, {"scales": scales}, opset=19)
    (got,), (want,) = _emulate(model, {"x": x}), _ort(model, {"x": x})
    np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------- integer ops and run-time parameters


def test_quantize_dequantize_with_graph_input_parameters_match_onnxruntime():
    x, scale = _f32(3, 4, 5, scale=3), np.array([0.02, 0.05, 0.1, 0.5], np.float32)
    zero = np.array([0, 10, -5, 3], np.int8)
    q = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=1)
    _same(_model(q, {"x": x, "s": scale, "z": zero}, opset=13), {"x": x, "s": scale, "z": zero})
    y = RNG.integers(-128, 128, (3, 4, 5)).astype(np.int8)
    dq = helper.make_node("DequantizeLinear", ["y", "s", "z"], ["x"], axis=1)
    _same(_model(dq, {"y": y, "s": scale, "z": zero}, opset=13), {"y": y, "s": scale, "z": zero}, atol=0, rtol=0)


@pytest.mark.parametrize("runtime", [("a",), ("a", "b"), ("a", "as", "az", "b", "bs", "bz", "ys", "yz")])
def test_qlinear_matmul_with_graph_input_operands_is_bit_exact(runtime):
    """Large uint8 x int8 products: saturating int16 pairs where this machine's ORT saturates them."""
    values = {
        "a": RNG.integers(150, 256, (6, 16)).astype(np.uint8),
        "as": np.float32(0.02),
        "az": np.uint8(128),
        "b": RNG.integers(-127, 128, (16, 5)).astype(np.int8),
        "bs": np.float32(0.01),
        "bz": np.int8(0),
        "ys": np.float32(0.5),
        "yz": np.uint8(100),
    }
    node = helper.make_node("QLinearMatMul", list(values), ["y"])
    feed = {k: np.asarray(v) for k, v in values.items() if k in runtime}
    model = _model(node, feed, {k: v for k, v in values.items() if k not in runtime}, opset=13)
    _same(model, feed, accumulation=int8_accumulation())


def test_matmul_integer_saturates_like_onnxruntime_and_conv_integer_does_not():
    a = RNG.integers(200, 256, (5, 7)).astype(np.uint8)
    b = RNG.integers(-127, 128, (7, 3)).astype(np.int8)
    mm = _model(helper.make_node("MatMulInteger", ["a", "b", "az"], ["y"]), {"a": a}, {"b": b, "az": np.uint8(7)}, 10)
    _same(mm, {"a": a}, accumulation=int8_accumulation())
    x = RNG.integers(200, 256, (2, 8, 9, 9)).astype(np.uint8)
    w = RNG.integers(-127, 128, (4, 8, 3, 3)).astype(np.int8)
    conv = helper.make_node("ConvInteger", ["x", "w", "xz"], ["y"], pads=[1, 1, 1, 1])
    ci = _model(conv, {"x": x}, {"w": w, "xz": np.uint8(3)}, 10)
    _same(ci, {"x": x}, accumulation=int8_accumulation())
    _same(ci, {"x": x}, accumulation="avx2_int16_pairs")


def test_dynamic_quantize_linear_is_bit_exact():
    x = _f32(4, 33, scale=2.7)
    _same(_model(helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"]), {"x": x}, opset=11), {"x": x})


def test_batchnorm_layernorm_gelu_with_graph_input_parameters():
    x, s, b, m, v = _f32(2, 3, 4, 5), _f32(3), _f32(3), _f32(3), np.abs(_f32(3)) + 0.1
    bn = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)
    feed = {"x": x, "s": s, "b": b, "m": m, "v": v}
    _same(_model(bn, feed), feed)
    ln = helper.make_node("LayerNormalization", ["x", "w", "b"], ["y", "mean", "inv"], axis=2)
    feed = {"x": x, "w": _f32(4, 5), "b": _f32(4, 5)}
    _same(_model(ln, feed), feed)
    for approximate in ("none", "tanh"):
        _same(_model(helper.make_node("Gelu", ["x"], ["y"], approximate=approximate), {"x": x}, opset=20), {"x": x})
    _same(_model(helper.make_node("Erf", ["x"], ["y"]), {"x": x * 3}), {"x": x * 3}, atol=1e-7, rtol=1e-6)


# ----------------------------------------------------------------------------- the backend contract


def test_backend_api():
    x = _f32(2, 3)
    model = _model(helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0), {"x": x}, opset=13)
    rep = EmulatorBackend.prepare(model)
    (y,) = rep.run([x])
    assert y.shape == () and y.dtype == np.float32  # a 0-d output stays 0-d
    np.testing.assert_allclose(rep.run({"x": x})[0], x.sum(), rtol=1e-6)
    assert EmulatorBackend.supports_device("CPU") and not EmulatorBackend.supports_device("CUDA")
    (z,) = EmulatorBackend.run_node(helper.make_node("Add", ["a", "b"], ["c"]), [x, x])
    np.testing.assert_array_equal(z, x + x)
    with pytest.raises(ValueError, match="takes 1 inputs"):
        rep.run([x, x])


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int64, np.uint64, np.float32])
def test_topk_largest_orders_the_extremes_of_integer_types(dtype):
    """The type's minimum and maximum, ties kept in index order: negating would wrap around for them."""
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else np.finfo(dtype)
    x = np.array([[info.min, 3, info.max, 0, info.min, info.max, 1]], dtype=dtype)
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1)
    (values, index) = EmulatorBackend.run_node(node, [x, np.array([7], np.int64)])
    order = sorted(range(7), key=lambda j: (-float(x[0, j]), j))
    np.testing.assert_array_equal(index[0], order)
    np.testing.assert_array_equal(values[0], x[0, order])


def test_unsupported_types_are_refused_at_load_by_name():
    seq = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["s"], ["t"])], "g", [seq], [helper.make_tensor_sequence_value_info("t", 1, None)]
    )
    with pytest.raises(UnsupportedTypeError, match="graph input 's' is a sequence"):
        Graph.load(helper.make_model(graph))
    bf16 = helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [bf16], [bf16])
    with pytest.raises(UnsupportedOpError, match="graph input 'x' has element type bfloat16"):
        Graph.load(helper.make_model(graph))
    cast = _model(helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT8E4M3FN), {"x": _f32(2)})
    with pytest.raises(UnsupportedOpError, match="to=float8e4m3fn"):
        Graph.load(cast)


def test_training_mode_is_refused_at_load():
    x = _f32(3, 4)
    dropout = helper.make_node("Dropout", ["x", "r", "t"], ["y"])
    with pytest.raises(UnsupportedOpError, match=r"input 't' \(training_mode\) is not a constant"):
        Graph.load(_model(dropout, {"x": x, "r": np.array(0.5, np.float32).reshape(1), "t": np.array([1], np.int64)}))
    with pytest.raises(UnsupportedOpError, match=r"training_mode\) is true"):
        Graph.load(_model(dropout, {"x": x}, {"r": np.float32(0.5), "t": np.bool_(True)}))
    (y,) = _emulate(_model(dropout, {"x": x}, {"r": np.float32(0.5), "t": np.bool_(False)}), {"x": x})
    np.testing.assert_array_equal(y, x)


def test_weights_of_quantized_convolutions_must_be_constants():
    feed = {"x": np.zeros((1, 1, 4, 4), np.uint8), "xs": np.float32(0.1).reshape(1)}
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])
    consts = {"xz": np.uint8(0), "w": np.ones((1, 1, 1, 1), np.int8), "ws": np.float32(1), "wz": np.int8(0)}
    model = _model(node, feed, consts | {"ys": np.float32(1), "yz": np.uint8(0)})
    with pytest.raises(UnsupportedOpError, match=r"input 'xs' \(x_scale\) must be a constant .* prepares it"):
        Graph.load(model)
