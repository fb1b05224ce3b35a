"""Tests of pytest_tinyaccel.costmodel: ZigZag runner, cache, Gemmini composition, traces.
(The AIE model: tests/test_aie_model.py and tests/test_aie_calibration.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pytest_tinyaccel.costmodel import layergraph, zigzag_runner, zigzag_workload
from pytest_tinyaccel.costmodel.zigzag_runner import (
    zigzag_unavailable,
)
from pytest_tinyaccel.perf import Perf

needs_zigzag = pytest.mark.skipif(zigzag_unavailable() is not None, reason=str(zigzag_unavailable()))

MLPERF = Path(__file__).resolve().parents[2] / "shared" / "mlperf_tiny"


def _init(name: str, shape: tuple[int, ...], seed: int) -> onnx.TensorProto:
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def _model(nodes, inits, inp, out, in_shape, out_shape) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(inp, TensorProto.FLOAT, ["N", *in_shape])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", *out_shape])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tiny_residual_model() -> onnx.ModelProto:
    """conv3x3 -> relu -> depthwise 3x3 -> relu -> conv1x1 -> add(residual) -> GAP -> flatten -> gemm."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node(
            "Conv", ["r1", "wd", "bd"], ["cd"], name="dw", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8
        ),
        helper.make_node("Relu", ["cd"], ["rd"], name="relu_dw"),
        helper.make_node("Conv", ["rd", "w2", "b2"], ["c2"], name="pw", kernel_shape=[1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["s"], name="add"),
        helper.make_node("GlobalAveragePool", ["s"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    inits = [
        _init("w1", (8, 2, 3, 3), 1),
        _init("b1", (8,), 2),
        _init("wd", (8, 1, 3, 3), 3),
        _init("bd", (8,), 4),
        _init("w2", (8, 8, 1, 1), 5),
        _init("b2", (8,), 6),
        _init("wf", (4, 8), 7),
        _init("bf", (4,), 8),
    ]
    return _model(nodes, inits, "x", "y", [2, 4, 4], [4])


# --------------------------------------------------------------------------- availability


def test_unavailable_reason_names_the_install_command(monkeypatch):
    monkeypatch.setattr(zigzag_runner.importlib.util, "find_spec", lambda name: None)
    zigzag_runner._zigzag_unavailable.cache_clear()
    try:
        reason = zigzag_unavailable()
    finally:
        monkeypatch.undo()
        zigzag_runner._zigzag_unavailable.cache_clear()
    assert reason is not None
    assert "pip install 'pytest-tinyaccel[zigzag]'" in reason


def test_package_import_does_not_import_zigzag_or_pytest():
    import subprocess
    import sys

    code = (
        "import sys, pytest_tinyaccel, pytest_tinyaccel.targets.base;"
        "before = set(sys.modules);"
        "import pytest_tinyaccel.costmodel as c; c.zigzag_unavailable();"
        "new = set(sys.modules) - before;"
        "print(sorted(m for m in ('zigzag', 'yaml', 'pytest', '_pytest') if m in new))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- graph preparation


def test_prepare_fixes_batch_and_counts_macs():
    prepared, digest = layergraph.prepare_model(tiny_residual_model())
    assert len(digest) == 64
    macs = {n.name: n.macs for n in prepared.nodes if n.is_matrix}
    assert macs == {"conv1": 8 * 2 * 9 * 16, "dw": 8 * 9 * 16, "pw": 8 * 8 * 16, "fc": 4 * 8}
    assert prepared.node("dw").is_depthwise
    assert prepared.fused_activations() == {"relu1": "conv1", "relu_dw": "dw"}


def test_quantized_graph_is_refused_with_a_clear_message():
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq"),
    ]
    inits = [
        numpy_helper.from_array(np.array(0.1, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.int8), "z"),
    ]
    model = _model(nodes, inits, "x", "y", [4], [4])
    with pytest.raises(ValueError, match="float ONNX model"):
        layergraph.prepare_model(model)


def test_zigzag_model_swaps_conv_axes_for_zigzag():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["y"], name="c", kernel_shape=[5, 3], strides=[2, 1], pads=[2, 1, 2, 1])
    ]
    model = _model(nodes, [_init("w", (4, 1, 5, 3), 0)], "x", "y", [1, 10, 6], [4, 5, 6])
    prepared, _ = layergraph.prepare_model(model)
    zz = zigzag_workload.zigzag_model(prepared, {"weight": 8, "act": 8, "output": 32})
    attrs = {a.name: helper.get_attribute_value(a) for a in zz.graph.node[0].attribute}
    assert attrs["kernel_shape"] == [3, 5] and attrs["strides"] == [1, 2] and attrs["pads"] == [1, 2, 1, 2]
    assert (attrs["weight_size"], attrs["act_size"], attrs["output_size"]) == (8, 8, 32)


# --------------------------------------------------------------------------- ZigZag runner and cache


@pytest.fixture(scope="module")
def tiny_costs(tmp_path_factory):
    if zigzag_unavailable():
        pytest.skip(zigzag_unavailable())
    from pytest_tinyaccel.costmodel.hardware import hardware_file

    cache = tmp_path_factory.mktemp("zz-cache")
    model = tiny_residual_model()
    first = zigzag_runner.run_zigzag(model, hardware_file("gemmini", "int8"), "int8", cache)
    return model, cache, first


@needs_zigzag
def test_per_layer_cycles_positive_and_keyed_by_node_name(tiny_costs):
    _, _, result = tiny_costs
    assert not result.cached
    assert list(result.layers) == ["conv1", "dw", "pw", "fc"]
    for layer in result.layers.values():
        assert layer.cycles > 0 and layer.ideal_cycles > 0
        assert layer.cycles >= layer.ideal_cycles
    assert result.layers["conv1"].macs == 8 * 2 * 9 * 16


@needs_zigzag
def test_zigzag_is_deterministic(tiny_costs):
    from pytest_tinyaccel.costmodel.hardware import hardware_file

    model, _, first = tiny_costs
    again = zigzag_runner.run_zigzag(model, hardware_file("gemmini", "int8"), "int8", cache_dir=None)
    assert {k: v.cycles for k, v in again.layers.items()} == {k: v.cycles for k, v in first.layers.items()}


@needs_zigzag
def test_cache_hit_does_not_run_zigzag(tiny_costs, monkeypatch):
    from pytest_tinyaccel.costmodel.hardware import hardware_file

    model, cache, first = tiny_costs

    def boom(*args, **kwargs):
        raise AssertionError("ZigZag ran despite a cache hit")

    monkeypatch.setattr(zigzag_runner, "_evaluate", boom)
    monkeypatch.setattr(zigzag_runner, "load_stages", boom)
    hit = zigzag_runner.run_zigzag(model, hardware_file("gemmini", "int8"), "int8", cache)
    assert hit.cached
    assert hit.layers == first.layers
    files = list(Path(cache).glob("zigzag-*.json"))
    assert len(files) == 1 and not list(Path(cache).glob("*.tmp"))
    assert json.loads(files[0].read_text())["key"]["zigzag_version"] == "3.9.1"
    # another dtype is another key: a miss, which here would have to run ZigZag
    with pytest.raises(AssertionError, match="ZigZag ran"):
        zigzag_runner.run_zigzag(model, hardware_file("gemmini", "fp32"), "fp32", cache)


@needs_zigzag
def test_gemmini_perf(tiny_costs, tmp_path):
    from pytest_tinyaccel.costmodel.gemmini import SIMULATOR_ZIGZAG, gemmini_perf
    from pytest_tinyaccel.costmodel.trace import write_trace

    model, cache, first = tiny_costs
    perf = gemmini_perf(model, "int8", cache_dir=cache, timing="zigzag")
    assert isinstance(perf, Perf) and perf.simulator == SIMULATOR_ZIGZAG
    assert perf.extra["zigzag_cached"]
    assert 0 < perf.efficiency <= 1
    zz_total = sum(layer.cycles for layer in first.layers.values())
    assert perf.cycles >= zz_total  # plus the non-matrix ops (add, pooling)
    assert perf.throughput == pytest.approx(perf.clock_hz / perf.cycles)
    assert perf.latency_ns == pytest.approx(perf.cycles / perf.clock_hz * 1e9)
    # sequential: each layer starts where the previous ended
    t = 0.0
    for layer in perf.layers:
        assert layer.start == pytest.approx(t)
        t += layer.cycles
    assert {layer.name for layer in perf.layers} >= {"conv1", "dw", "pw", "fc", "add", "gap"}
    assert "flatten" not in {layer.name for layer in perf.layers}
    path = write_trace(perf, tmp_path / "g.json")
    data = json.loads(path.read_text())
    assert len([e for e in data["traceEvents"] if e["ph"] == "X"]) == len(perf.layers)


# --------------------------------------------------------------------------- MLPerf Tiny reference models


@needs_zigzag
@pytest.mark.skipif(not MLPERF.is_dir(), reason="../shared/mlperf_tiny not present")
def test_mlperf_kws_reference_model_with_dequantize_weights(tmp_path):
    from pytest_tinyaccel.costmodel.gemmini import gemmini_perf

    path = MLPERF / "kws_ref_model_float32.onnx"
    original = onnx.load(str(path))
    assert "DequantizeLinear" in {n.op_type for n in original.graph.node}
    names = {n.name for n in original.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")}
    perf = gemmini_perf(path, "int8", cache_dir=tmp_path, timing="zigzag")
    zz_layers = [layer for layer in perf.layers if layer.extra.get("rule") == "zigzag"]
    assert {layer.name for layer in zz_layers} == names
    assert all(layer.cycles > 0 for layer in zz_layers)
    assert 0 < perf.efficiency <= 1
    assert onnx.load(str(path)) == original  # the caller's file is untouched


# --------------------------------------------------------------------------- layers of other shapes


def conv1d_model(two_d: bool = False) -> onnx.ModelProto:
    """Conv1D (k=3, stride 2, SAME) -> LeakyRelu -> Conv1D 1x1 on [N, 6, 20]; with `two_d`, the same
    layers written as 2-D convolutions of height 1 on [N, 6, 1, 20]."""
    kernel, unit = ([1, 3], [1, 1]) if two_d else ([3], [1])
    nodes = [
        helper.make_node(
            "Conv",
            ["x", "w1"],
            ["c1"],
            name="c1",
            kernel_shape=kernel,
            strides=[1, 2] if two_d else [2],
            auto_pad="SAME_UPPER",
        ),
        helper.make_node("LeakyRelu", ["c1"], ["r1"], name="act"),
        helper.make_node("Conv", ["r1", "w2"], ["y"], name="c2", kernel_shape=unit),
    ]
    w1, w2 = _init("w1", (8, 6, 3), 1), _init("w2", (4, 8, 1), 2)
    if two_d:
        for w in (w1, w2):
            w.dims.insert(2, 1)
    shape_in, shape_out = ([6, 1, 20], [4, 1, 10]) if two_d else ([6, 20], [4, 10])
    return _model(nodes, [w1, w2], "x", "y", shape_in, shape_out)


def lstm_model() -> onnx.ModelProto:
    """[N, 8 steps, 5 features] -> time-major -> LSTM(6) -> last hidden -> dense(3)."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], name="time_major", perm=[1, 0, 2]),
        helper.make_node("LSTM", ["t", "W", "R", "B"], ["", "h"], name="lstm", hidden_size=6),
        helper.make_node("Squeeze", ["h", "axes"], ["hs"], name="squeeze"),
        helper.make_node("Gemm", ["hs", "wf"], ["y"], name="fc", transB=1),
    ]
    inits = [
        _init("W", (1, 24, 5), 1),
        _init("R", (1, 24, 6), 2),
        _init("B", (1, 48), 3),
        _init("wf", (3, 6), 4),
        numpy_helper.from_array(np.array([0], np.int64), "axes"),
    ]
    return _model(nodes, inits, "x", "y", [8, 5], [3])


def test_conv1d_is_costed_as_a_2d_conv_of_height_one():
    one, two = (layergraph.prepare_model(conv1d_model(d))[0] for d in (False, True))
    assert {n.name: n.macs for n in one.nodes if n.is_matrix} == {"c1": 10 * 8 * 6 * 3, "c2": 10 * 4 * 8}
    assert {n.name: n.macs for n in one.nodes} == {n.name: n.macs for n in two.nodes}
    precision = {"weight": 8, "act": 8, "output": 32}
    rewritten = zigzag_workload.zigzag_model(one, precision)
    conv = {n.name: {a.name: helper.get_attribute_value(a) for a in n.attribute} for n in rewritten.graph.node}
    reference = zigzag_workload.zigzag_model(two, precision)
    want = {n.name: {a.name: helper.get_attribute_value(a) for a in n.attribute} for n in reference.graph.node}
    for name in ("c1", "c2"):
        assert {k: conv[name][k] for k in ("kernel_shape", "strides", "pads")} == {
            k: want[name][k] for k in ("kernel_shape", "strides", "pads")
        }


@needs_zigzag
def test_conv1d_and_lstm_get_zigzag_costs(tmp_path):
    from pytest_tinyaccel.costmodel.gemmini import gemmini_perf

    one, two = (gemmini_perf(conv1d_model(d), "int8", cache_dir=tmp_path, timing="zigzag") for d in (False, True))
    cycles = {layer.name: layer.cycles for layer in one.layers if layer.extra["rule"] == "zigzag"}
    assert cycles == {layer.name: layer.cycles for layer in two.layers if layer.extra["rule"] == "zigzag"}
    assert set(cycles) == {"c1", "c2"} and all(c > 0 for c in cycles.values())
    perf = gemmini_perf(lstm_model(), "int8", cache_dir=tmp_path, timing="zigzag")
    lstm = next(layer for layer in perf.layers if layer.name == "lstm")
    assert lstm.extra["rule"] == "zigzag" and lstm.macs == 8 * (5 + 6) * 4 * 6 and lstm.cycles > 0


def test_aie_model_maps_conv1d_and_lstm_to_conv_and_gemm_kernels():
    from pytest_tinyaccel.costmodel.aie import aie_perf

    one, two = (aie_perf(conv1d_model(d), "int8") for d in (False, True))
    assert [(k.name, k.cycles) for k in one.layers] == [(k.name, k.cycles) for k in two.layers]
    assert {k.name: k.macs for k in one.layers if k.macs} == {"c1": 16 * 8 * 6 * 3, "c2": 16 * 4 * 8}  # padded rows
    parts = [k for k in aie_perf(lstm_model(), "int8").layers if k.name.startswith("lstm") and k.op == "gemm"]
    assert parts and sum(k.macs for k in parts) >= 8 * (5 + 6) * 4 * 6  # in column parts, as onnx2versal splits


@pytest.mark.parametrize(
    ("node", "weights", "shapes", "problem"),
    [
        (
            helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", kernel_shape=[2, 2], strides=[2, 2]),
            (2, 3, 2, 2),
            ([2, 4, 4], [3, 8, 8]),
            "node 'up' (ConvTranspose): a transposed convolution has no mapping",
        ),
        (
            helper.make_node("Conv", ["x", "w"], ["y"], name="vol", kernel_shape=[1, 1, 1]),
            (3, 2, 1, 1, 1),
            ([2, 4, 4, 4], [3, 4, 4, 4]),
            "node 'vol' (Conv): a 3-D convolution: the cost models map 1-D and 2-D convolutions",
        ),
    ],
)
def test_a_layer_the_cost_models_cannot_cost_is_named(node, weights, shapes, problem):
    from pytest_tinyaccel.costmodel.aie import aie_perf

    model = _model([node], [_init("w", weights, 0)], "x", "y", *shapes)
    prepared, _ = layergraph.prepare_model(model)
    with pytest.raises(ValueError, match="^cannot cost " + re.escape(problem)):
        zigzag_workload.zigzag_model(prepared, {"weight": 8, "act": 8, "output": 32})
    with pytest.raises(ValueError, match="^cannot cost " + re.escape(problem)):
        aie_perf(model, "int8")
