"""The AIE dataflow model (pytest_tinyaccel.costmodel.aie): devices as data, the float /
QOperator / QDQ views of a graph, the mapping rules (pads, splits, concat trees, GMIO
weights), the schedule (latency, throughput, ideal bound), the Perf record and the
target's settings. Nothing here asserts a fitted number: timings are compared with each
other or with a calibration written in the test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pytest_tinyaccel.config import ConfigError
from pytest_tinyaccel.costmodel.aie import aie_perf, o2v
from pytest_tinyaccel.costmodel.aie import calibration as cal_mod
from pytest_tinyaccel.costmodel.aie.device import DEVICES, load_device
from pytest_tinyaccel.costmodel.aie.graph import load as load_graph
from pytest_tinyaccel.costmodel.aie.mapping import map_graph
from pytest_tinyaccel.quantize import quantize_model
from pytest_tinyaccel.targets.aie import AieTarget

QUANT = {
    "calibration_samples": 8,
    "format": "QOperator",
    "activation_type": "uint8",
    "weight_type": "int8",
    "per_channel": False,
    "reduce_range": True,
    "calibrate_method": "MinMax",
}


def _w(name: str, shape: tuple[int, ...], seed: int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)


def conv_model(h: int = 32, c: int = 16) -> onnx.ModelProto:
    """conv3x3 (pad 1) -> relu -> conv1x1 -> add(residual) -> relu -> GAP -> flatten -> gemm -> softmax."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="pw", kernel_shape=[1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["rs"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["rs"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=-1),
    ]
    inits = [
        _w("w1", (c, 3, 3, 3), 1),
        _w("b1", (c,), 2),
        _w("w2", (c, c, 1, 1), 3),
        _w("b2", (c,), 4),
        _w("wf", (10, c), 5),
        _w("bf", (10,), 6),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, h, h])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def dense_model(k: int, n: int) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="dense")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n])],
        [_w("w", (k, n), 7)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def quantized(tmp_path_factory) -> dict[str, Path]:
    """conv_model as float, QOperator int8 and QDQ int8 files."""
    folder = tmp_path_factory.mktemp("aie_models")
    float_path = folder / "model.onnx"
    onnx.save(conv_model(), float_path)
    calib = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    out = {"float": float_path}
    for fmt in ("QOperator", "QDQ"):
        out[fmt] = folder / f"model_{fmt}.onnx"
        quantize_model(float_path, out[fmt], calib, {**QUANT, "format": fmt})
    return out


def flat_calibration(cycles: float = 100.0) -> cal_mod.Calibration:
    """Every kernel takes `cycles` (a calibration written by hand, for schedule arithmetic)."""
    params = {
        f"{kind}.{dtype}": cal_mod.KernelParams(cycles, dict.fromkeys(feats, 0.0))
        for kind, feats in cal_mod.CLASSES.items()
        for dtype in cal_mod.DTYPES
    }
    return cal_mod.Calibration("flat", "vck190", {"int8": 128, "fp32": 8}, params)


def test_default_device_is_the_vck190_and_the_header_names_it():
    device = load_device()
    assert (device.name, device.architecture, device.clock_hz) == ("vck190", "AIE", 1.25e9)
    assert device.data_memory_bytes == 32 * 1024 and device.facts["memory_tiles"] is False
    assert device.peak_macs_per_cycle == {"int8": 128, "fp32": 8}
    assert device.stream_bytes_per_cycle == 4 and device.facts["cascade_bits"] == 384
    perf = aie_perf(conv_model(), "fp32")
    assert "VCK190" in perf.simulator and "XCVC1902" in perf.simulator
    # the header says what the figures are, by which model, with which constants, and the error band
    assert "predicted" in perf.simulator and "isolated kernel runs" in perf.simulator
    assert f"x{perf.extra['heldout_error']['median']:.2f}" in perf.simulator
    assert perf.clock_hz == 1.25e9 and perf.extra["device"] == "vck190"
    ml = aie_perf(conv_model(), "fp32", device="aie-ml")
    assert "AIE-ML" in ml.simulator and ml.extra["peak_macs_per_cycle"] == 21
    with pytest.raises(ValueError, match="unknown AIE device"):
        load_device("versal-premium")


def test_every_number_of_the_device_files_is_cited():
    for path in DEVICES.glob("*.toml"):
        for line in path.read_text().splitlines():
            value = line.split("#", 1)[0]
            if "=" in value and '"' not in value and any(ch.isdigit() for ch in value):
                assert "[" in line.split("#", 1)[-1], f"{path.name}: uncited number: {line}"


def test_qoperator_and_qdq_graphs_map_like_the_float_graph(quantized):
    kinds = {name: [layer.kind for layer in load_graph(p, "int8").layers] for name, p in quantized.items()}
    # both quantized models quantize their float input and dequantize their output: real kernels
    assert kinds["QOperator"] == kinds["QDQ"] == ["quantize", *kinds["float"], "dequantize"]
    assert kinds["float"] == ["conv", "conv", "add", "pool", "gemm", "softmax"]
    assert load_graph(quantized["QOperator"], "fp32").dtype == "int8"  # quantized graphs are int8
    assert load_graph(quantized["float"], "fp32").dtype == "fp32"
    shapes = [(layer.in_shape, layer.out_shape) for layer in load_graph(quantized["QOperator"], "int8").layers[1:-1]]
    assert shapes == [(layer.in_shape, layer.out_shape) for layer in load_graph(quantized["float"], "int8").layers]


def test_int8_timing_comes_from_the_graph_that_runs(quantized):
    from_quantized = aie_perf(quantized["QOperator"], "int8")
    from_float = aie_perf(quantized["float"], "int8", weights="int8")  # the quantized model's weight type
    ops = {layer.op for layer in from_quantized.layers}
    assert {"quantize", "dequantize"} <= ops and not {"quantize", "dequantize"} & {k.op for k in from_float.layers}
    assert from_quantized.cycles > from_float.cycles
    assert aie_perf(quantized["float"], "fp32").cycles > from_float.cycles  # 8 fp32 vs 128 int8 MACs/cycle


def test_the_weight_type_of_the_graph_picks_the_convolutions_loop_body(quantized, tmp_path):
    signed = load_graph(quantized["QOperator"], "int8")
    assert signed.weight_type == "int8" and load_graph(quantized["QDQ"], "int8").weight_type == "int8"
    # a float graph costed as int8 is quantized as onnx2versal does: unsigned weights
    assert load_graph(quantized["float"], "int8").weight_type == "uint8"
    unsigned_path = tmp_path / "uint8w.onnx"
    calib = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    quantize_model(quantized["float"], unsigned_path, calib, {**QUANT, "weight_type": "uint8"})
    assert load_graph(unsigned_path, "int8").weight_type == "uint8"
    # unsigned weights add a msc16 per kernel row: the same graph, slower convolutions
    as_int8, as_uint8 = (aie_perf(unsigned_path, "int8", weights=w) for w in ("int8", "uint8"))
    convs = [(a, b) for a, b in zip(as_int8.layers, as_uint8.layers, strict=True) if a.op.startswith("conv")]
    assert convs and all(b.extra["template"] == a.extra["template"] for a, b in convs)
    assert all(b.extra["own_cycles"] > a.extra["own_cycles"] for a, b in convs)
    assert as_uint8.cycles > as_int8.cycles
    with pytest.raises(ValueError, match="weights must be 'int8' or 'uint8'"):
        aie_perf(unsigned_path, "int8", weights="int4")


def test_a_layer_too_big_for_one_window_is_split_with_its_broadcast_and_concat_tree():
    device = load_device()
    mapping = map_graph(load_graph(conv_model(h=64), "fp32"), device)
    conv1 = [k for k in mapping.kernels if k.layer == "conv1"]
    kinds = [k.kind for k in conv1]
    parts = [k for k in conv1 if k.kind == "conv"]
    assert kinds[0] == "pad" and kinds.count("split") == 1 and len(parts) > 1
    assert kinds.count("concat") == len(parts) - 1  # a binary tree joins the parts
    # each part's input window (its rows plus the 3x3 halo, padded to 4-wide rows, fp32) fits the buffer
    rows = [p.features["macs"] / (64 * 16 * 3 * 9) for p in parts]
    assert all(((r - 1) + 3) * 68 * 3 * 4 <= device.buffer_bytes for r in rows)
    assert sum(p.macs for p in parts) == 64 * 64 * 16 * 3 * 9
    split = next(k for k in conv1 if k.kind == "split")
    assert split.features["elems"] > 66 * 68 * 3  # the halo rows go to two parts
    root = next(k for k in mapping.kernels if k.layer == "pw" and k.kind != "pad")
    tree = {k.name for k in conv1 if k.kind == "concat"}
    assert set(root.preds) <= tree | {f"conv1/concat{d}.0" for d in range(4)}  # the consumer reads the tree's root
    small = map_graph(load_graph(conv_model(h=8), "fp32"), device)
    assert [k.kind for k in small.kernels if k.layer == "conv1"] == ["pad", "conv"]


def test_a_matrix_product_is_cut_into_columns_as_onnx2versal_cuts_it():
    from pytest_tinyaccel.costmodel.aie.mapping import _column_chunk

    # python/op_parsers.py at f5803c1: about 8 chunks, none under 16 (int8) / 8 (fp32) columns
    assert _column_chunk(128, 16) == 16 and _column_chunk(640, 80) == 80  # the AD layers: 8 parts each
    assert _column_chunk(16, 16) == 16 and _column_chunk(12, 8) == 12  # a classifier head stays whole
    assert _column_chunk(32, 16) == 16 and _column_chunk(96, 12) == 12


def test_a_pool_too_big_for_one_window_is_cut_by_onnx2versals_split_kernel():
    graph = load_graph(conv_model(h=32), "fp32")  # the average pool reads 16 x 32 x 32 floats: 64 KiB
    mapping = map_graph(graph, load_device())
    gap = [k for k in mapping.kernels if k.layer == "gap"]
    parts = [k for k in gap if k.kind == "pool"]
    chunk = int(parts[0].info["c"]) * 32 * 32
    assert len(parts) > 1 and chunk * 4 <= load_device().buffer_bytes
    names = o2v.assign(mapping, graph)
    split = next(k for k in gap if k.kind == "split")
    assert names[split.name] == ("SplitScalar", ("f", "1", str(16 * 32 * 32), str(chunk), "0"))


def test_weights_that_do_not_fit_are_streamed_over_gmio_at_the_stream_rate():
    from pytest_tinyaccel.costmodel.aie.pipeline import GMIO_WORDS_PER_CYCLE

    device = load_device()
    fp32 = aie_perf(dense_model(640, 128), "fp32")
    parts = [layer for layer in fp32.layers if layer.op == "gemm"]
    assert len(parts) == device.max_parts and fp32.resources["GMIO"] == len(parts)
    assert GMIO_WORDS_PER_CYCLE == 1.0  # a 32-bit stream word a cycle: the NoC does not throttle to the QoS request
    for part in parts:  # 640 x 16 fp32 weights each, streamed a word a cycle before it can end
        assert part.extra["weights"] == "gmio"
        assert part.extra["end"] >= 640 * 16 / GMIO_WORDS_PER_CYCLE
    int8 = aie_perf(dense_model(640, 128), "int8")
    assert int8.resources["GMIO"] == 0 and all(
        layer.extra["weights"] == "tile" for layer in int8.layers if layer.op == "gemm"
    )
    assert fp32.cycles > 10 * int8.cycles


def test_latency_throughput_and_per_kernel_figures_come_from_the_simulated_timeline():
    perf = aie_perf(conv_model(), "int8")
    by_name = {layer.name: layer for layer in perf.layers}
    ends = {n: layer.extra["end"] for n, layer in by_name.items()}
    assert perf.cycles == pytest.approx(max(ends.values()) - min(layer.start for layer in perf.layers))
    for layer in perf.layers:  # start + in-graph duration = end; own cycles and stall add up to the duration
        assert layer.start + layer.cycles == pytest.approx(layer.extra["end"])
        assert layer.extra["stall_cycles"] >= -1e-6 and layer.extra["own_cycles"] > 0
        assert layer.extra["template"] and layer.extra["rule"].startswith("loop nest")
    # a window kernel (the 3x3 conv reads its pad's output as a window) starts when its producer ends
    assert by_name["conv1"].start == pytest.approx(ends["conv1/pad"])
    # the residual add streams both inputs: it runs beside them and ends just after the last one
    assert by_name["add"].start == 0 and 0 < by_name["add"].extra["exposed_cycles"] < 100
    assert by_name["add"].extra["exposed_cycles"] == pytest.approx(ends["add"] - max(ends["pw"], ends["conv1"]))
    # throughput: the steady state of back-to-back inferences, not one kernel's cycles
    interval = perf.extra["initiation_interval_cycles"]
    assert perf.throughput == pytest.approx(perf.clock_hz / interval) and 0 < interval <= perf.cycles
    assert max(layer.extra["own_cycles"] for layer in perf.layers) <= interval * 1.01
    assert perf.latency_ns == pytest.approx(perf.cycles / perf.clock_hz * 1e9)
    ideal = perf.extra["ideal_cycles"]
    assert 0 < ideal <= perf.cycles and perf.efficiency == pytest.approx(ideal / perf.cycles)
    for layer in perf.layers:
        assert layer.extra["ideal_cycles"] == pytest.approx(layer.macs / 128)
        assert layer.extra["heldout_error"]["median"] >= 1.0  # each figure carries its class's error band
    assert perf.resources["Kernels"] == len(perf.layers)
    assert perf.resources["PLIO"] == 2 and perf.resources["GMIO"] == 0
    assert perf.resources["Stream"] == sum(1 for _ in perf.layers) - 1 + 1 + 2  # chain + residual edge + PLIO


def test_trace_has_one_event_per_kernel_on_its_own_tile(tmp_path):
    from pytest_tinyaccel.costmodel.trace import write_trace

    perf = aie_perf(conv_model(), "int8")
    data = json.loads(write_trace(perf, tmp_path / "t.json").read_text())
    events = [e for e in data["traceEvents"] if e["ph"] == "X"]
    assert len(events) == perf.resources["Kernels"] == len(perf.layers)
    assert {e["tid"] for e in events} == set(range(len(events))) and all(e["dur"] > 0 for e in events)


def test_mlperf_style_nhwc_input_becomes_a_transpose_kernel():
    nhwc = conv_model()
    graph = nhwc.graph
    graph.input[0].CopyFrom(helper.make_tensor_value_info("x_nhwc", TensorProto.FLOAT, ["N", 32, 32, 3]))
    graph.node.insert(0, helper.make_node("Transpose", ["x_nhwc"], ["x"], name="to_nchw", perm=[0, 3, 1, 2]))
    assert [layer.kind for layer in load_graph(nhwc, "fp32").layers][:2] == ["transpose", "conv"]


def test_target_settings_device_and_calibration(tmp_path):
    target = AieTarget()
    assert target.settings["device"] == "vck190" and target.settings["calibration"] == ""
    assert target.availability("hw_emu") is None  # the model needs no optional extra
    with pytest.raises(ConfigError, match="device"):
        AieTarget(device="vck5000")
    with pytest.raises(ConfigError, match="calibration"):
        AieTarget(calibration=str(tmp_path / "missing.toml"))
    path = flat_calibration(50.0).save(tmp_path / "flat.toml")
    custom = AieTarget(calibration=str(path), device="aie-ml")
    assert custom.settings == {**custom.settings, "calibration": str(path), "device": "aie-ml"}
    assert cal_mod.load(path).params_for("conv", "int8").overhead == 50.0
