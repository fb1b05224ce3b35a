"""Tests of pytest_tinyaccel.costmodel: ZigZag runner, cache, Gemmini and AIE-ML composition, traces."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pytest_tinyaccel.costmodel import layergraph, zigzag_runner
from pytest_tinyaccel.costmodel.zigzag_runner import (
    LayerCost,
    ZigZagResult,
    zigzag_unavailable,
)
from pytest_tinyaccel.perf import Perf
from pytest_tinyaccel.targets.aie import AieTarget

HAVE_YAML = importlib.util.find_spec("yaml") is not None
needs_yaml = pytest.mark.skipif(
    not HAVE_YAML, reason="hardware descriptions need PyYAML: pip install 'pytest-tinyaccel[zigzag]'"
)
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


def dense_chain_model(widths: list[int]) -> onnx.ModelProto:
    """x -> Gemm -> Relu -> Gemm -> ... (an MLP)."""
    nodes, inits = [], []
    prev = "x"
    for i in range(len(widths) - 1):
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"g{i}"], name=f"fc{i}", transB=1))
        inits += [_init(f"w{i}", (widths[i + 1], widths[i]), i), _init(f"b{i}", (widths[i + 1],), 100 + i)]
        if i < len(widths) - 2:
            nodes.append(helper.make_node("Relu", [f"g{i}"], [f"r{i}"], name=f"relu{i}"))
            prev = f"r{i}"
        else:
            prev = f"g{i}"
    return _model(nodes, inits, "x", prev, [widths[0]], [widths[-1]])


def fake_zigzag(prepared: layergraph.LayerGraph, cycles: dict[str, float]) -> ZigZagResult:
    """A ZigZag result with chosen per-layer cycles (for schedule tests that need no ZigZag)."""
    layers = {
        n.name: LayerCost(
            name=n.name,
            op=n.op,
            cycles=cycles[n.name],
            ideal_cycles=n.macs / 256,
            macs=n.macs,
            spatial_utilization=1.0,
        )
        for n in prepared.nodes
        if n.is_matrix
    }
    return ZigZagResult(layers=layers, key={"fake": True}, elapsed_s=0.0)


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
    zz = layergraph.zigzag_model(prepared, {"weight": 8, "act": 8, "output": 32})
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
    monkeypatch.setattr(zigzag_runner, "_import_zigzag", boom)
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
    from pytest_tinyaccel.costmodel.gemmini import SIMULATOR, gemmini_perf
    from pytest_tinyaccel.costmodel.trace import write_trace

    model, cache, first = tiny_costs
    perf = gemmini_perf(model, "int8", cache_dir=cache)
    assert isinstance(perf, Perf) and perf.simulator == SIMULATOR
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


@needs_zigzag
def test_aie_perf_end_to_end(tmp_path):
    from pytest_tinyaccel.costmodel.aie import SIMULATOR, aie_perf
    from pytest_tinyaccel.costmodel.trace import write_trace

    perf = aie_perf(tiny_residual_model(), "int8", cache_dir=tmp_path / "cache")
    assert perf.simulator == SIMULATOR
    assert set(perf.resources) == set(AieTarget.resource_columns)
    assert 0 < perf.efficiency <= 1
    ii = perf.extra["initiation_interval_cycles"]
    assert perf.cycles >= ii
    assert perf.throughput == pytest.approx(perf.clock_hz / ii)
    path = write_trace(perf, tmp_path / "trace" / "a.json")
    data = json.loads(path.read_text())
    xs = [e for e in data["traceEvents"] if e["ph"] == "X"]
    assert len(xs) == len(perf.layers) == perf.resources["Kernels"]
    assert {e["tid"] for e in xs} == set(range(perf.resources["Kernels"]))  # one track per tile
    assert all({"op", "macs"} <= set(e["args"]) for e in xs)
    assert "cycles" in data["otherData"]["time_unit"]


# --------------------------------------------------------------------------- AIE mapping (no ZigZag needed)


@needs_yaml
def test_larger_layer_gets_more_kernels_and_every_kernel_fits():
    from pytest_tinyaccel.costmodel.aie import buffer_bytes, choose_split, tile_budget
    from pytest_tinyaccel.costmodel.hardware import hardware_file, load_hardware

    hw = load_hardware(hardware_file("aie", "int8"))
    prepared, _ = layergraph.prepare_model(dense_chain_model([512, 256, 16]))
    big, small = prepared.node("fc0"), prepared.node("fc1")
    kb, rb, in_tile_b, bytes_b = choose_split(prepared, big, hw)
    ks, rs, in_tile_s, bytes_s = choose_split(prepared, small, hw)
    assert kb * rb > ks * rs == 1
    assert in_tile_b and in_tile_s
    assert bytes_b <= tile_budget(hw) and bytes_s <= tile_budget(hw)
    assert buffer_bytes(prepared, big, hw, 1, 1) > tile_budget(hw)  # it really had to be split
    # fp32 weights are 4x larger: more kernels still
    hw32 = load_hardware(hardware_file("aie", "fp32"))
    k32, r32, _, b32 = choose_split(prepared, big, hw32)
    assert k32 * r32 > kb * rb and b32 <= tile_budget(hw32)


@needs_yaml
def test_dataflow_schedule_rules():
    from pytest_tinyaccel.costmodel.aie import compose
    from pytest_tinyaccel.costmodel.hardware import hardware_file, load_hardware

    hw = load_hardware(hardware_file("aie", "int8"))
    prepared, _ = layergraph.prepare_model(tiny_residual_model())
    cycles = {"conv1": 1000.0, "dw": 3000.0, "pw": 500.0, "fc": 200.0}
    perf = compose(prepared, fake_zigzag(prepared, cycles), hw)
    by_layer = {}
    for layer in perf.layers:
        by_layer.setdefault(layer.extra["layer"], []).append(layer)
    # every kernel fits its tile
    assert all(layer.extra["buffer_bytes"] <= 64 * 1024 - 2048 for layer in perf.layers)
    slowest = max(layer.cycles for layer in perf.layers)
    assert slowest == pytest.approx(3000.0)
    assert perf.extra["initiation_interval_cycles"] == pytest.approx(slowest)
    assert perf.throughput == pytest.approx(hw.clock_hz / slowest)
    assert perf.cycles >= slowest
    # the add waits for the longer of its two branches (conv1 -> dw -> pw, and conv1 directly)
    add = by_layer["add"][0]
    assert add.start == pytest.approx(1000.0 + 3000.0 + 500.0)
    # latency = longest path: conv1 + dw + pw + add + gap + fc
    path = sum(by_layer[n][0].cycles for n in ("conv1", "dw", "pw", "add", "gap", "fc"))
    assert perf.cycles == pytest.approx(path)
    assert perf.latency_ns == pytest.approx(path / hw.clock_hz * 1e9)
    # relus are fused, flatten is not a kernel
    assert set(by_layer) == {"conv1", "dw", "pw", "add", "gap", "fc"}
    assert perf.resources["Kernels"] == len(perf.layers) == 6
    # buffers: 4 matrix kernels x (2*(1 in + 1 out) + 1 weights) + add 2*(2+1) + gap 2*(1+1)
    assert perf.resources["Buffers"] == 4 * 5 + 6 + 4
    # streams: conv1->dw, conv1->add, dw->pw, pw->add, add->gap, gap->fc
    assert perf.resources["Stream"] == 6
    assert perf.resources["PLIO"] == 2 and perf.resources["GMIO"] == 0
    total_macs = sum(n.macs for n in prepared.nodes)
    assert perf.efficiency == pytest.approx(total_macs / (256 * 6) / slowest)


@needs_yaml
def test_split_layer_kernels_share_the_layer_cycles():
    from pytest_tinyaccel.costmodel.aie import compose
    from pytest_tinyaccel.costmodel.hardware import hardware_file, load_hardware

    hw = load_hardware(hardware_file("aie", "int8"))
    prepared, _ = layergraph.prepare_model(dense_chain_model([512, 256, 16]))
    perf = compose(prepared, fake_zigzag(prepared, {"fc0": 9000.0, "fc1": 100.0}), hw)
    fc0 = [layer for layer in perf.layers if layer.extra["layer"] == "fc0"]
    assert len(fc0) > 1
    assert all(layer.cycles == pytest.approx(9000.0 / len(fc0)) for layer in fc0)
    assert len({layer.start for layer in fc0}) == 1  # in parallel
    assert perf.resources["Stream"] == len(fc0)  # each fc0 kernel streams to fc1
    assert sum(layer.macs for layer in fc0) == 512 * 256


# --------------------------------------------------------------------------- MLPerf Tiny reference models


@needs_zigzag
@pytest.mark.skipif(not MLPERF.is_dir(), reason="../shared/mlperf_tiny not present")
def test_mlperf_kws_reference_model_with_dequantize_weights(tmp_path):
    from pytest_tinyaccel.costmodel.gemmini import gemmini_perf

    path = MLPERF / "kws_ref_model_float32.onnx"
    original = onnx.load(str(path))
    assert "DequantizeLinear" in {n.op_type for n in original.graph.node}
    names = {n.name for n in original.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")}
    perf = gemmini_perf(path, "int8", cache_dir=tmp_path)
    zz_layers = [layer for layer in perf.layers if layer.extra.get("rule") == "zigzag"]
    assert {layer.name for layer in zz_layers} == names
    assert all(layer.cycles > 0 for layer in zz_layers)
    assert 0 < perf.efficiency <= 1
    assert onnx.load(str(path)) == original  # the caller's file is untouched
