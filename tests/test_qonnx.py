"""QONNX models: the emulator's Quant, BipolarQuant and Trunc against qonnx's own executor, bit for bit, and the
golden's route (qonnx's QuantToQCDQ for ONNX Runtime, or qonnx's executor) with the real bit widths.

qonnx's executor (qonnx.core.onnx_exec.execute_onnx) is the reference everywhere: the emulator never makes
its own expected values. Brevitas's QONNX and QCDQ exports of the same digits MLP come from the exporter
gallery (tests/data/exporters, training/exporters/make_gallery.py).
"""

from __future__ import annotations

import importlib.util
import itertools
import sys

import numpy as np
import onnx
import pytest
from helpers import REPO
from onnx import TensorProto, helper, numpy_helper

from pytest_tinyaccel.emulator import Graph, UnsupportedOpError
from pytest_tinyaccel.emulator.ops.qonnx_ops import ROUNDING_MODES
from pytest_tinyaccel.errors import DataError
from pytest_tinyaccel.intermediates import ort_intermediates
from pytest_tinyaccel.qonnx_route import (
    LayerBits,
    bits_label,
    is_qonnx,
    layer_bits,
    qonnx_route,
    run_qonnx,
    to_qcdq,
)
from pytest_tinyaccel.runtime import create_session, run_session

GALLERY = REPO / "tests" / "data" / "exporters"
QONNX = "qonnx.custom_op.general"
needs_qonnx = pytest.mark.skipif(importlib.util.find_spec("qonnx") is None, reason="needs qonnx (the hls4ml extra)")


def one_node(
    op: str, params: list, shape: list, domain: str = QONNX, version: int = 1, name: str = "q", **attrs
) -> onnx.ModelProto:
    """A model of one QONNX node: input x (float32, `shape`), constant parameters p0, p1 ..., output y."""
    names = [f"p{i}" for i in range(len(params))]
    node = helper.make_node(op, ["x", *names], ["y"], name=name, domain=domain, **attrs)
    graph = helper.make_graph(
        [node],
        "one_node",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(np.asarray(p), n) for n, p in zip(names, params, strict=True)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(domain, version)])


def qonnx_exec(model: onnx.ModelProto, feed: dict[str, np.ndarray], everything: bool = False) -> dict:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    wrapper = ModelWrapper(model).transform(InferShapes())
    return execute_onnx(wrapper, feed, return_full_exec_context=everything)


def assert_bit_exact(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.dtype == want.dtype, what
    assert got.shape == want.shape, what
    # the same bits: equal values, NaN where NaN, and the same sign of zero
    np.testing.assert_array_equal(got, want, err_msg=what)
    assert np.array_equal(np.signbit(got), np.signbit(want)), what


def grid(bits: int, scale: float) -> np.ndarray:
    """Inputs whose x / scale lands on every half integer of the range and past it (ties on purpose), just off
    the ties, random values, and the special ones."""
    reach = 2**bits + 3
    halves = np.arange(-2 * reach, 2 * reach + 1) * 0.5
    rng = np.random.default_rng(bits)
    special = [0.49999997, -0.49999997, 0.50000006, 1.4999999, -2.5000002, -0.0, np.inf, -np.inf, np.nan]
    y = np.concatenate([halves, halves + 1e-3, rng.normal(0, reach / 2, 300), special]).astype(np.float32)
    return (y * np.float32(scale)).astype(np.float32)


# ----------------------------------------------------------------------------- the ops, node by node


@needs_qonnx
@pytest.mark.parametrize("rounding", [*ROUNDING_MODES, "half_up"])
def test_quant_is_bit_exact_with_qonnx_at_every_width_sign_narrow_and_rounding(rounding: str) -> None:
    """Bit widths 1..16, signed and unsigned, narrow or not; a power-of-two scale (exact ties), a scale that is
    not, a zero point; the lower-case name as QONNX allows."""
    for bits, signed, narrow in itertools.product(range(1, 17), (1, 0), (0, 1)):
        for scale, zeropt in ((0.25, 0.0), (0.0371, 0.0), (0.5, 3.0)):
            x = grid(bits, scale)
            params = [np.float32(scale), np.float32(zeropt), np.float32(bits)]
            model = one_node("Quant", params, [len(x)], signed=signed, narrow=narrow, rounding_mode=rounding)
            want = qonnx_exec(model, {"x": x})["y"]
            got = Graph.load(model).run({"x": x})["y"]
            assert_bit_exact(got, want, f"{bits}-bit signed={signed} narrow={narrow} scale={scale} zp={zeropt}")


@needs_qonnx
@pytest.mark.parametrize("signed", [1, 0])
def test_quant_with_a_scale_and_zero_point_per_channel(signed: int) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(0, 3, (5, 8, 6)).astype(np.float32)
    scale = rng.uniform(0.01, 0.5, (1, 8, 1)).astype(np.float32)
    zeropt = rng.integers(-2, 3, (1, 8, 1)).astype(np.float32)
    model = one_node("Quant", [scale, zeropt, np.float32(6)], [5, 8, 6], signed=signed, narrow=0)
    assert_bit_exact(Graph.load(model).run({"x": x})["y"], qonnx_exec(model, {"x": x})["y"], "per channel")


@needs_qonnx
@pytest.mark.parametrize(
    "op, params, attrs, version",
    [
        ("BipolarQuant", [np.float32(0.75)], {}, 1),
        ("BipolarQuant", [np.linspace(0.1, 1, 9, dtype=np.float32)], {}, 1),
        ("Quant", [np.float32(0.5), np.float32(0), np.float32(1)], {"signed": 1, "narrow": 0}, 1),  # bipolar too
        ("IntQuant", [np.float32(0.125), np.float32(0), np.int32(5)], {"signed": 1, "narrow": 1}, 1),
        *[
            ("Trunc", [np.float32(0.25), np.float32(zp), np.float32(12), np.float32(7)], {"rounding_mode": m}, 1)
            for m, zp in (("FLOOR", 0), ("ROUND", 2), ("HALF_DOWN", 0), ("UP", 0))
        ],
        *[
            (
                "Trunc",
                [np.float32(0.25), np.float32(0), np.float32(12), np.float32(out_scale), np.float32(5)],
                {"rounding_mode": m, "signed": s, "narrow": n},
                2,
            )
            for m, out_scale, s, n in (
                ("FLOOR", 4.0, 1, 0),
                ("ROUND", 2.0, 1, 1),
                ("CEIL", 8.0, 0, 0),
                ("DOWN", 3.0, 0, 1),
            )
        ],
    ],
)
def test_bipolar_quant_and_trunc_are_bit_exact_with_qonnx(op: str, params: list, attrs: dict, version: int) -> None:
    """Trunc version 1 (five inputs) and 2 (six; its output scale need not be a power of two of the input's:
    qonnx rounds the ratio's log2), as qonnx picks them by the domain's opset version."""
    x = np.concatenate([grid(12, 0.25)[:-3], [np.nan]]).astype(np.float32)[:621].reshape(69, 9)
    model = one_node(op, params, list(x.shape), version=version, **attrs)
    assert_bit_exact(Graph.load(model).run({"x": x})["y"], qonnx_exec(model, {"x": x})["y"], op)


def test_brevitas_domain_is_read_as_qonnx() -> None:
    """Older Brevitas exports write the same ops in the onnx.brevitas domain."""
    x = grid(4, 0.5)
    params = [np.float32(0.5), np.float32(0), np.float32(4)]
    ours = one_node("Quant", params, [len(x)], signed=1, narrow=0)
    brevitas = one_node("Quant", params, [len(x)], domain="onnx.brevitas", signed=1, narrow=0)
    assert_bit_exact(Graph.load(brevitas).run({"x": x})["y"], Graph.load(ours).run({"x": x})["y"], "onnx.brevitas")


QUANT = [np.float32(0.5), np.float32(0), np.float32(4)]


@pytest.mark.parametrize(
    "model, message",
    [
        (one_node("Quant", QUANT, [4], signed=1, narrow=0, rounding_mode="ROUND_TO_ZERO"), "(qonnx calls rounding"),
        (one_node("Quant", QUANT, [4], signed=1, narrow=0, rounding_mode="STOCHASTIC"), "rounding_mode=STOCHASTIC"),
        (one_node("Quant", QUANT, [4], signed=1), "required attribute narrow is missing"),
        (one_node("Quant", QUANT, [4], signed=2, narrow=0), "signed=2 is not supported"),
        (one_node("Quant", QUANT, [4], signed=1, narrow=0, axis=1), "attribute axis=1 is not supported"),
        (one_node("Quant", QUANT[:2] + [np.float32(0)], [4], signed=1, narrow=0), "bitwidth = 0 is not supported"),
        (one_node("Quant", QUANT[:2] + [np.float32(2.5)], [4], signed=1, narrow=0), "bitwidth = 2.5 is not"),
        (one_node("Quant", QUANT[:2] + [np.float32(33)], [4], signed=1, narrow=0), "bitwidth = 33 is not"),
        (one_node("Quant", QUANT[:2] + [np.float32([4, 4])], [4], signed=1, narrow=0), "bitwidth must be a scalar"),
        (one_node("Quant", QUANT[:2], [4], signed=1, narrow=0), "expects 4..4 inputs, has 3"),
        (one_node("Trunc", QUANT + [np.float32(2)], [4]), "required attribute rounding_mode is missing"),
        (one_node("Trunc", QUANT + [np.float32(2)], [4], rounding_mode="FLOOR", signed=1), "attribute signed=1"),
        (one_node("FloatQuant", QUANT, [4]), "op type FloatQuant (domain qonnx.custom_op.general) is not supported"),
    ],
    ids=lambda v: "" if isinstance(v, onnx.ModelProto) else v[:32],
)
def test_unsupported_forms_are_refused_at_load_naming_what(model: onnx.ModelProto, message: str) -> None:
    with pytest.raises(UnsupportedOpError, match="node 'q'") as refused:
        Graph.load(model)
    assert message in str(refused.value)


def test_a_scale_computed_at_run_time_is_refused_at_load() -> None:
    node = helper.make_node("Quant", ["x", "s", "z", "b"], ["y"], name="q", domain=QONNX, signed=1, narrow=0)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4] if n == "x" else []) for n in ("x", "s")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [numpy_helper.from_array(np.float32(0), "z"), numpy_helper.from_array(np.float32(4), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX, 1)])
    with pytest.raises(UnsupportedOpError, match=r"input 's' \(scale\) must be a constant"):
        Graph.load(model)


# ----------------------------------------------------------------------------- Brevitas's QONNX export


def _gallery(name: str, n: int | None = None) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    x = np.load(GALLERY / name / "X_test.npy", allow_pickle=False)
    return onnx.load(str(GALLERY / name / "model.onnx")), {"x": x[:n]}


def _with_activation_bits(model: onnx.ModelProto, bits: float) -> onnx.ModelProto:
    """brevitas_qonnx with both activation quantizers at `bits` (they share one bit-width constant)."""
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    for tensor in changed.graph.initializer:
        if tensor.name == "/inp/act_quant/export_handler/Constant_2_output_0":
            tensor.CopyFrom(numpy_helper.from_array(np.array(bits, np.float32), tensor.name))
    return changed


@needs_qonnx
@pytest.mark.parametrize("activation_bits", [8, 12, 16])
def test_brevitas_qonnx_every_quantizer_is_bit_exact_with_qonnx(activation_bits: int) -> None:
    """Each Quant node (weights and activations) on the very input qonnx's executor gave it, and the quantized
    activations of the whole run; the float Gemms (ONNX Runtime's MLAS in qonnx's executor, BLAS here) agree to
    a few units in the last place, never enough to move a quantized activation on these 200 samples."""
    model, feed = _gallery("brevitas_qonnx")
    model = _with_activation_bits(model, activation_bits)
    theirs = [qonnx_exec(model, {"x": x[None]}, everything=True) for x in feed["x"]]
    quants = [n for n in model.graph.node if n.op_type == "Quant"]
    assert len(quants) == 4
    for node in quants:
        alone = onnx.ModelProto()
        alone.CopyFrom(model)
        del alone.graph.node[:]
        alone.graph.node.append(node)
        del alone.graph.input[:], alone.graph.output[:]
        alone.graph.input.append(helper.make_tensor_value_info(node.input[0], TensorProto.FLOAT, None))
        alone.graph.output.append(helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None))
        got = Graph.load(alone).run({node.input[0]: theirs[0][node.input[0]]})[node.output[0]]
        assert_bit_exact(got, theirs[0][node.output[0]], node.name)
    outputs, ours = Graph.load(model).run(feed, intermediates=True)
    for node in quants[::2]:  # the activation quantizers (the weight ones are folded at load)
        want = np.concatenate([t[node.output[0]] for t in theirs])
        assert_bit_exact(ours[node.output[0]], want, node.name)
    (name,) = outputs
    np.testing.assert_allclose(outputs[name], np.concatenate([t[name] for t in theirs]), rtol=1e-6, atol=4e-6)


# ----------------------------------------------------------------------------- the golden's route


@needs_qonnx
def test_brevitas_qonnx_goes_to_onnx_runtime_as_qcdq_w4a8() -> None:
    model, _ = _gallery("brevitas_qonnx")
    assert is_qonnx(model)
    route = qonnx_route(model)
    assert (route.golden, route.reason, route.qdq, route.bits) == ("onnxruntime", "", "ort", "w4a8")
    assert not is_qonnx(route.model)
    assert {n.op_type for n in route.model.graph.node} >= {"QuantizeLinear", "Clip", "DequantizeLinear"}
    assert [(q.kind, q.bits, q.signed, q.narrow) for q in route.quantizers] == [
        ("activation", 8, True, False),
        ("weight", 4, True, True),
        ("activation", 8, False, False),
        ("weight", 4, True, True),
    ]
    assert [(b.layer, b.label) for b in route.layers] == [("/fc1/Gemm", "w4a8"), ("/fc2/Gemm", "w4a8")]
    assert layer_bits(route.model) == route.layers  # the QCDQ form reads the same widths
    onnx.checker.check_model(route.model)
    assert to_qcdq(model).SerializeToString() == route.model.SerializeToString()  # same bytes every time


@needs_qonnx
def test_emulator_follows_onnx_runtime_on_the_qcdq_form(tmp_path) -> None:
    """ONNX Runtime fuses the first layer into QGemm (its float bias quantized to int32) and leaves the last in
    float: every integer tensor bit-exact, the logits to the float Gemm's last units."""
    model, feed = _gallery("brevitas_qonnx", 60)
    route = qonnx_route(model)
    onnx.save(route.model, tmp_path / "qcdq.onnx")
    graph = Graph.load(route.model, qdq=route.qdq)
    assert graph.fused == ("/fc1/Gemm",)
    got, ours = graph.run(feed, intermediates=True)
    theirs = ort_intermediates(tmp_path / "qcdq.onnx", feed)
    integer = [t for t, v in theirs.items() if v.dtype.kind in "iu"]
    assert len(integer) == 2 and set(integer) <= set(ours)
    for tensor in integer:
        assert_bit_exact(ours[tensor], theirs[tensor], tensor)
    golden = run_session(create_session(route.model.SerializeToString()), feed)
    (name,) = golden
    np.testing.assert_allclose(got[name], golden[name], rtol=1e-6, atol=4e-6)


@needs_qonnx
def test_qcdq_form_of_brevitas_qonnx_is_brevitas_qcdq(tmp_path) -> None:
    """Brevitas's two exports of one trained network: the same integer weights, scales and biases; through
    ONNX Runtime the same integer activations and logits to the last float Gemm's rounding."""
    qonnx_model, feed = _gallery("brevitas_qonnx", 100)
    qcdq, _ = _gallery("brevitas_qcdq")
    route = qonnx_route(qonnx_model)
    weights = {t.name: numpy_helper.to_array(t) for t in qonnx_model.graph.initializer}
    integers = {t.name: numpy_helper.to_array(t) for t in qcdq.graph.initializer}
    for layer in ("fc1", "fc2"):
        scale = weights[f"/{layer}/weight_quant/export_handler/Constant_output_0"]
        assert scale == integers[f"/{layer}/weight_quant/export_handler/Constant_output_0"]
        exported = integers[f"/{layer}/weight_quant/export_handler/Constant_1_output_0"]
        np.testing.assert_array_equal(np.clip(np.round(weights[f"{layer}.weight"] / scale), -7, 7), exported)
        np.testing.assert_array_equal(weights[f"{layer}.bias"], integers[f"{layer}.bias"])
    onnx.save(route.model, tmp_path / "converted.onnx")
    ours = ort_intermediates(tmp_path / "converted.onnx", feed)
    theirs = ort_intermediates(GALLERY / "brevitas_qcdq" / "model.onnx", feed)
    ours_int = [v for v in ours.values() if v.dtype.kind in "iu"]
    theirs_int = [v for v in theirs.values() if v.dtype.kind in "iu"]
    assert len(ours_int) == len(theirs_int) == 2
    for a, b in zip(ours_int, theirs_int, strict=True):
        np.testing.assert_array_equal(a, b)
    a = run_session(create_session(route.model.SerializeToString()), feed)
    b = run_session(create_session(GALLERY / "brevitas_qcdq" / "model.onnx"), feed)
    np.testing.assert_allclose(next(iter(a.values())), b["logits"], rtol=1e-6, atol=4e-6)


PER_CHANNEL = np.linspace(0.05, 0.2, 4, dtype=np.float32)


def conv_net() -> onnx.ModelProto:
    """x -> Quant (int8) -> Conv with 4-bit weights, one scale per output channel, float bias -> Relu -> Quant
    (uint8): the QONNX form of a quantized convolution layer, dynamic batch."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    constants = {
        "w": w,
        "b": rng.normal(0, 0.1, 8).astype(np.float32),
        "w_scale": (np.abs(w).reshape(8, -1).max(1) / 7).astype(np.float32).reshape(8, 1, 1, 1),
        "x_scale": np.float32(0.02),
        "y_scale": np.float32(0.05),
        "zero": np.float32(0),
        "bits8": np.float32(8),
        "bits4": np.float32(4),
    }
    nodes = [
        helper.make_node("Quant", ["x", "x_scale", "zero", "bits8"], ["xq"], domain=QONNX, signed=1, narrow=0),
        helper.make_node("Quant", ["w", "w_scale", "zero", "bits4"], ["wq"], domain=QONNX, signed=1, narrow=1),
        helper.make_node("Conv", ["xq", "wq", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Quant", ["r", "y_scale", "zero", "bits8"], ["y"], domain=QONNX, signed=0, narrow=0),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 8, 8])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(QONNX, 1)])


@needs_qonnx
def test_a_per_channel_4_bit_convolution_goes_to_onnx_runtime_and_the_emulator_follows_bit_for_bit() -> None:
    model = conv_net()
    route = qonnx_route(model)
    assert (route.golden, route.bits, [b.layer for b in route.layers]) == ("onnxruntime", "w4a8", ["conv"])
    x = np.random.default_rng(1).normal(0, 1, (16, 3, 8, 8)).astype(np.float32)
    golden = run_session(create_session(route.model.SerializeToString()), {"x": x})["y"]
    graph = Graph.load(route.model, qdq=route.qdq)
    assert graph.fused == ("conv",)  # ONNX Runtime's QLinearConv
    assert_bit_exact(graph.run({"x": x})["y"], golden, "emulator on the QCDQ form")
    # and on the QONNX form as written, the emulator is qonnx's executor bit for bit
    assert_bit_exact(Graph.load(model).run({"x": x})["y"], run_qonnx(model, {"x": x})["y"], "QONNX form")


@needs_qonnx
def test_onnx_runtimes_golden_and_qonnxs_executor_agree_on_every_class() -> None:
    """Not bit for bit: ONNX Runtime quantizes the first Gemm's float bias to int32 (QGemm) where qonnx's executor
    runs the float Gemm as written, which can move an 8-bit activation by one step; the classes never move."""
    model, feed = _gallery("brevitas_qonnx")
    route = qonnx_route(model)
    ort_golden = run_session(create_session(route.model.SerializeToString()), feed)
    qonnx_golden = run_qonnx(model, feed)
    ((name, a),) = ort_golden.items()
    b = qonnx_golden[name]
    np.testing.assert_array_equal(a.argmax(1), b.argmax(1))
    assert np.abs(a - b).max() < 0.05


@needs_qonnx
@pytest.mark.parametrize(
    "op, params, attrs, why",
    [
        ("Quant", [np.float32(0.1), np.float32(0), np.float32(12)], {}, "12-bit; QuantizeLinear/Clip/Dequantize"),
        ("Quant", [np.float32(0.1), np.float32(0), np.float32(1)], {}, "1-bit; QuantizeLinear/Clip/Dequantize"),
        ("Quant", [np.float32(0.1), np.float32(2), np.float32(8)], {}, "zero point other than a single 0"),
        ("Quant", [PER_CHANNEL[None, None], np.zeros((1, 1, 4), np.float32), np.float32(4)], {}, "single 0"),
        ("Quant", [np.float32(0.1), np.float32(0), np.float32(4)], {"rounding_mode": "FLOOR"}, "rounding_mode FLOOR"),
        ("Quant", [np.float32(0.1), np.float32(0), np.float32(4)], {"rounding_mode": "half_up"}, "mode HALF_UP;"),
        ("Quant", [np.full((2, 3, 4), 0.1, np.float32), np.float32(0), np.float32(4)], {}, "scale of shape [2, 3, 4]"),
        ("Quant", [PER_CHANNEL, np.float32(0), np.float32(4)], {}, "shape [4] without the input's rank"),
        ("BipolarQuant", [np.float32(0.1)], {}, "QuantToQCDQ converts Quant nodes only"),
        ("Trunc", [*QUANT, np.float32(2)], {"rounding_mode": "FLOOR"}, "QuantToQCDQ converts Quant nodes only"),
        ("IntQuant", QUANT, {}, "QuantToQCDQ converts Quant nodes only"),
    ],
)
def test_what_qcdq_cannot_express_goes_to_qonnxs_executor_with_the_reason(op, params, attrs, why) -> None:
    """Among them what qonnx 1.0.0's QuantToQCDQ would convert wrongly (FLOOR rounded half to even, a rank-1
    per-channel scale put on axis 0) or fail on (a per-channel zero point of zeros)."""
    if op in ("Quant", "IntQuant"):
        attrs = {"signed": 1, "narrow": 0, **attrs}
    model = one_node(op, params, [2, 3, 4], **attrs)
    route = qonnx_route(model)
    assert (route.golden, route.qdq) == ("qonnx", "float")
    assert route.model is model
    assert route.reason.startswith("qonnx's QuantToQCDQ cannot express 1 node(s)")
    assert f"'q': {op}, " in route.reason and why in route.reason
    x = np.random.default_rng(0).normal(0, 1, (2, 3, 4)).astype(np.float32)
    want = run_qonnx(route.model, {"x": x})["y"]
    assert_bit_exact(Graph.load(route.model, qdq=route.qdq).run({"x": x})["y"], want, op)


@needs_qonnx
@pytest.mark.parametrize(
    "scale, signed, narrow, bits",
    [(np.float32(0.1), 0, 1, 3), (PER_CHANNEL[None, None], 1, 1, 4), (PER_CHANNEL[None, None], 0, 0, 8)],
)
def test_what_qcdq_expresses_goes_to_onnx_runtime_with_the_same_values(scale, signed, narrow, bits) -> None:
    """Per tensor and per channel (a scale of the input's rank): ONNX Runtime on the QCDQ form gives what qonnx's
    executor gives on the QONNX node, bit for bit, and so does the emulator on the QCDQ form."""
    model = one_node("Quant", [scale, np.float32(0), np.float32(bits)], [2, 3, 4], signed=signed, narrow=narrow)
    route = qonnx_route(model)
    assert (route.golden, route.reason) == ("onnxruntime", "")
    x = np.random.default_rng(2).normal(0, 1.5, (2, 3, 4)).astype(np.float32)
    x.flat[:6] = np.float32(scale.flat[0]) * np.float32([0.5, 1.5, -2.5, 7.5, -7.5, 300])  # ties, saturation
    want = run_qonnx(model, {"x": x})["y"]
    ort = create_session(route.model.SerializeToString()).run(None, {"x": x})[0]
    assert_bit_exact(ort, want, "ONNX Runtime on the QCDQ form")
    assert_bit_exact(Graph.load(route.model, qdq=route.qdq).run({"x": x})["y"], want, "emulator on the QCDQ form")


@needs_qonnx
def test_a_12_bit_brevitas_model_is_run_by_qonnxs_executor_in_its_own_batch() -> None:
    """Fixed batch 1: run_qonnx runs sample by sample, as qonnx's executor takes only the declared shape."""
    model, feed = _gallery("brevitas_qonnx", 30)
    model = _with_activation_bits(model, 12)
    route = qonnx_route(model)
    assert route.golden == "qonnx" and route.bits == "w4a12"
    assert route.reason.count("Quant, 12-bit") == 2
    golden = run_qonnx(route.model, feed)
    alone = [qonnx_exec(model, {"x": x[None]}) for x in feed["x"]]
    (name,) = golden
    assert_bit_exact(golden[name], np.concatenate([a[name] for a in alone]), "batched")
    got = Graph.load(route.model, qdq=route.qdq).run(feed)[name]
    np.testing.assert_allclose(got, golden[name], rtol=1e-6, atol=4e-6)


@needs_qonnx
@pytest.mark.parametrize("batch", ["N", 4])
def test_run_qonnx_on_dynamic_and_fixed_batches(batch) -> None:
    """A dynamic first axis is fixed to the feed's size (qonnx's ChangeBatchSize); a fixed one of 4 runs 10
    samples in three batches, the last padded and the padding dropped."""
    model = one_node("Quant", [np.float32(0.1), np.float32(0), np.float32(3)], [batch, 5], signed=1, narrow=1)
    x = np.random.default_rng(1).normal(0, 1, (10, 5)).astype(np.float32)
    assert_bit_exact(run_qonnx(model, {"x": x})["y"], Graph.load(model).run({"x": x})["y"], str(batch))


def test_route_errors_are_clear(monkeypatch) -> None:
    float_model, _ = _gallery("torch_legacy")
    with pytest.raises(DataError, match="has no QONNX node"):
        qonnx_route(float_model)

    monkeypatch.setitem(sys.modules, "qonnx.core.modelwrapper", None)  # qonnx not installed
    with pytest.raises(DataError, match=r"need the qonnx package .*pip install -c constraints.txt -e \"\.\[hls4ml\]\""):
        qonnx_route(_gallery("brevitas_qonnx")[0])


@needs_qonnx
def test_run_qonnx_errors_are_clear() -> None:
    with pytest.raises(DataError, match="no samples to run"):
        run_qonnx(conv_net(), {"x": np.zeros((0, 3, 8, 8), np.float32)})
    with pytest.raises(DataError, match="has no input named 'image'"):
        run_qonnx(conv_net(), {"image": np.zeros((1, 3, 8, 8), np.float32)})
    with pytest.raises(DataError, match=r"qonnx's executor failed on model 'conv_net': \w+"):
        run_qonnx(conv_net(), {"x": np.zeros((2, 3, 9, 9), np.float32)})  # not the declared 8 x 8


# ----------------------------------------------------------------------------- bit widths of any quantized graph


@pytest.mark.parametrize(
    "name, label",
    [
        ("brevitas_qonnx", "w4a8"),
        ("brevitas_qcdq", "w4a8"),
        ("ort_qdq_tensor", "w8a8"),
        ("ort_qdq_channel", "w8a8"),
        ("torch_legacy", "float"),
    ],
)
def test_bit_widths_of_the_exporter_gallery(name: str, label: str) -> None:
    layers = layer_bits(_gallery(name)[0])
    assert len(layers) >= 2
    assert bits_label(layers) == label
    assert {b.label for b in layers} == {label}


def test_bit_widths_label_mixed_layers() -> None:
    layers = [LayerBits("a", "Conv", 8, None), LayerBits("b", "Gemm", 4, 8), LayerBits("c", "MatMul", 2, 16)]
    assert [b.label for b in layers] == ["w8", "w4a8", "w2a16"]
    assert bits_label(layers) == "w2/4/8a8/16"
    assert bits_label([LayerBits("d", "Gemm", None, None)]) == "float"
