"""A Conv + BatchNormalization network quantized by ONNX Runtime (QOperator, no
reduce_range) is bit-exact with ONNX Runtime layer by layer, and on the aie and gemmini targets against
goldens made by ONNX Runtime on this machine, with uint8 activations (the default) and int8 activations.

The mismatch reported with such a model (conv1_quant QLinearConv, a few values up to 7 LSB off) came from
int8 activations: ORT's QOperator kernels sum int8 x int8 products exactly, while the emulator applied the
int16 pair saturation of ORT's uint8 x int8 kernel (AVX2 without VNNI) to them as well. See
pytest_tinyaccel/emulator/accumulation.py.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from helpers import Project
from onnx import TensorProto, helper
from test_emulator import _ort, _single_node, build_conv_bn

from pytest_tinyaccel.emulator import Graph, first_divergence
from pytest_tinyaccel.intermediates import ort_intermediates
from pytest_tinyaccel.models import QUANTIZATION_DEFAULTS
from pytest_tinyaccel.quantize import quantize_model
from pytest_tinyaccel.runtime import int8_accumulation


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("activation_type", ["uint8", "int8"])
def test_conv_bn_int8_bit_exact_with_onnxruntime(tmp_path, activation_type, per_channel):
    """Conv + BatchNormalization quantized by ORT without reduce_range, uint8 and int8 activations: every
    integer layer equals ONNX Runtime's in this CPU's arithmetic. (With int8 activations the QOperator kernels
    sum exactly even where uint8 ones saturate in int16 pairs; the emulator used to saturate them too.)"""
    rng = np.random.default_rng(2026)
    src = build_conv_bn(tmp_path / "conv_bn.onnx", rng)
    x = rng.standard_normal((200, 1, 28, 28)).astype(np.float32)
    dst = tmp_path / f"conv_bn_{activation_type}_{per_channel}.onnx"
    calibration = np.random.default_rng(3).standard_normal((64, 1, 28, 28)).astype(np.float32)
    settings = dict(QUANTIZATION_DEFAULTS, activation_type=activation_type, per_channel=per_channel)
    quantize_model(src, dst, calibration, dict(settings, calibration_samples=64))
    ops = [n.op_type for n in onnx.load(dst).graph.node]
    assert "BatchNormalization" not in ops and ops.count("QLinearConv") == 2
    graph = Graph.load(dst, accumulation=int8_accumulation())
    got, inter = graph.run({"x": x}, intermediates=True)
    np.testing.assert_array_equal(got["y"], _ort(dst, {"x": x})["y"])
    assert first_divergence(inter, ort_intermediates(dst, {"x": x}), graph.nodes, atol=0, rtol=0) is None


@pytest.mark.parametrize("a_dtype", [np.uint8, np.int8])
def test_int16_pair_saturation_applies_to_uint8_activations_only(tmp_path, a_dtype):
    """The QLinearConv/QLinearMatMul kernels of ORT on AVX2 without VNNI saturate 255*127 + 255*127 in int16 for
    uint8 activations; int8 activations (127*127 + 127*127) never reach that kernel and sum exactly."""
    elem = TensorProto.UINT8 if a_dtype == np.uint8 else TensorProto.INT8
    top = np.iinfo(a_dtype).max
    x = np.full((2, 4, 3, 3), top, a_dtype)
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])
    inits = {
        "xs": np.float32(1),
        "xz": a_dtype(0),
        "w": np.full((1, 4, 1, 1), 127, np.int8),
        "ws": np.float32(1),
        "wz": np.int8(0),
        "ys": np.float32(1024),
        "yz": a_dtype(0),
    }
    path = _single_node(tmp_path, node, {"x": x}, inits, elem)
    exact = round(4 * int(top) * 127 / 1024)
    pairs = Graph.load(path, accumulation="avx2_int16_pairs").run({"x": x})["y"]
    assert int(pairs.reshape(-1)[0]) == (round(2 * 32767 / 1024) if a_dtype == np.uint8 else exact)
    assert int(Graph.load(path).run({"x": x})["y"].reshape(-1)[0]) == exact
    np.testing.assert_array_equal(
        Graph.load(path, accumulation=int8_accumulation()).run({"x": x})["y"], _ort(path, {"x": x})["y"]
    )


def _conv_bn_model(project: Project, name: str, activation_type: str) -> None:
    folder = project.path / "models" / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(14)
    build_conv_bn(folder / "model.onnx", rng)
    np.save(folder / "X_test.npy", rng.standard_normal((40, 1, 28, 28)).astype(np.float32))
    np.save(folder / "y_test.npy", rng.integers(0, 10, 40))
    np.save(folder / "X_calib.npy", rng.standard_normal((64, 1, 28, 28)).astype(np.float32))
    (folder / "model.toml").write_text(
        'use_case = "Conv + BatchNormalization"\ntask = "classification"\nmetric = "top1"\nquality_target = 0.0\n'
        'dtypes = ["int8"]\nndata = 40\ncalibration = "X_calib.npy"\n'
        f'[quantization]\nactivation_type = "{activation_type}"\nreduce_range = false\ncalibration_samples = 64\n'
    )


def test_conv_bn_int8_is_bit_exact_on_aie_and_gemmini(project: Project) -> None:
    _conv_bn_model(project, "convbn_u8", "uint8")
    _conv_bn_model(project, "convbn_s8", "int8")
    made = project.run("-m", "cpu", "--tinyaccel-update-golden", "-k", "golden")
    made.assert_outcomes(passed=2)
    result = project.run("-m", "aie or gemmini", "--target", "sw_emu", "-k", "golden and int8", "-rA")
    result.assert_outcomes(passed=4)
    assert "do not match" not in result.stdout.str()
