"""How the Gemmini model composes per-layer costs (costmodel/gemmini.py): the sequential timeline,
fused epilogues, metadata ops, the bus-bound rule, totals, efficiency and resources, on hand-made
layers whose every figure is worked out here; and how each ONNX node becomes a library call."""

from __future__ import annotations

import math

import pytest

from pytest_tinyaccel.costmodel import gemmini
from pytest_tinyaccel.costmodel.gemmini import MatrixCost, compose, library_layer
from pytest_tinyaccel.costmodel.gemmini_config import GemminiConfig, config_file, load_config
from pytest_tinyaccel.costmodel.gemmini_timing import layer_cycles, load_timing
from pytest_tinyaccel.costmodel.layergraph import Layer, LayerGraph

CFG = GemminiConfig(
    "test", dim=4, sp_capacity_bytes=1000, acc_capacity_bytes=2048, sp_banks=4, acc_banks=2,
    dma_buswidth_bits=64, dma_maxbytes=64, max_in_flight_mem_reqs=16, input_bytes=1, acc_bytes=4, clock_hz=2e8,
)  # fmt: skip


def graph(nodes: list[Layer], shapes=None, initializers=()) -> LayerGraph:
    return LayerGraph(None, nodes, shapes or {}, set(initializers), ["x"], [nodes[-1].outputs[0]])  # type: ignore[arg-type]


def network() -> LayerGraph:
    """conv -> relu (fused) -> flatten (metadata) -> maxpool (bus) -> gemm -> add of a constant (fused) -> softmax."""
    return graph(
        [
            Layer("c1", "Conv", ["x", "w"], ["c"], 0, macs=1000, weight_elems=200, input_elems=300, output_elems=400),
            Layer("r1", "Relu", ["c"], ["r"], 1, input_elems=400, output_elems=400),
            Layer("flat", "Flatten", ["r"], ["f"], 2, input_elems=400, output_elems=400),
            Layer("pool", "MaxPool", ["f"], ["p"], 3, input_elems=400, output_elems=101),
            Layer("fc", "Gemm", ["p", "wf"], ["g"], 4, macs=4040, weight_elems=1000, input_elems=101, output_elems=700),
            Layer("bias", "Add", ["g", "b"], ["gb"], 5, input_elems=700, output_elems=700),
            Layer("sm", "Softmax", ["gb"], ["y"], 6, input_elems=700, output_elems=700),
        ],
        initializers={"w", "wf", "b"},
    )


COSTS = {"c1": MatrixCost(500.0, {"rule": "conv rule"}), "fc": MatrixCost(120.5, {"rule": "fc rule"})}


def test_layers_run_one_after_the_other_with_fused_epilogues_free_and_metadata_left_out():
    perf = compose(network(), COSTS, CFG, "sim", {"timing": {"figure": "predicted"}})
    assert [layer.name for layer in perf.layers] == ["c1", "r1", "pool", "fc", "bias", "sm"]
    assert [layer.op for layer in perf.layers] == ["Conv", "Relu", "MaxPool", "Gemm", "Add", "Softmax"]
    pool = math.ceil((400 + 101) / 8)  # activations in and out over the 8-byte bus, once
    softmax = (700 + 700) / 8
    assert [layer.cycles for layer in perf.layers] == [500.0, 0.0, pool, 120.5, 0.0, softmax]
    assert [layer.start for layer in perf.layers] == [0.0, 500.0, 500.0, 500 + pool, 620.5 + pool, 620.5 + pool]
    assert [layer.macs for layer in perf.layers] == [1000, 0, 0, 4040, 0, 0]
    assert [layer.extra for layer in perf.layers] == [
        {"rule": "conv rule"},
        {"rule": "fused", "fused_into": "c1"},
        {"rule": "bus", "bytes": 501},
        {"rule": "fc rule"},
        {"rule": "fused", "fused_into": "fc"},
        {"rule": "bus", "bytes": 1400},
    ]
    assert isinstance(perf.layers[2].cycles, float)


def test_totals_efficiency_and_resources():
    perf = compose(network(), COSTS, CFG, "sim", {"timing": {"figure": "predicted"}})
    total = 500 + math.ceil(501 / 8) + 120.5 + 1400 / 8
    assert perf.cycles == total and perf.simulator == "sim" and perf.clock_hz == 2e8
    assert perf.latency_ns == total / 2e8 * 1e9
    assert perf.throughput == pytest.approx(2e8 / total)
    assert perf.efficiency == pytest.approx((5040 / 16) / total)
    # scratchpad: the largest weights + inputs of a matrix layer, capped at 1000 bytes; accumulator: outputs x 4 B
    assert perf.resources == {"PEs": 16, "Layers": 2, "Scratchpad KiB": 1, "Accumulator KiB": 2}
    assert perf.extra == {
        "timing": {"figure": "predicted"},
        "total_macs": 5040,
        "peak_macs_per_cycle": 16,
        "ideal_cycles": 5040 / 16,
        "unit": "cycles",
    }


def test_working_sets_below_the_capacities_are_counted_in_whole_kib():
    small = graph(
        [Layer("m", "MatMul", ["x", "w"], ["y"], 0, macs=64, weight_elems=600, input_elems=100, output_elems=300)]
    )
    perf = compose(small, {"m": MatrixCost(10.0)}, CFG, "sim", {})
    assert perf.resources == {"PEs": 16, "Layers": 1, "Scratchpad KiB": 1, "Accumulator KiB": 2}  # 700 B, 1200 B
    wide = GemminiConfig(**{**CFG.__dict__, "input_bytes": 4, "acc_bytes": 1, "sp_capacity_bytes": 10**6})
    perf = compose(small, {"m": MatrixCost(10.0)}, wide, "sim", {})
    assert perf.resources["Scratchpad KiB"] == math.ceil(700 * 4 / 1024) and perf.resources["Accumulator KiB"] == 1
    assert perf.layers[0].extra == {} and perf.efficiency == pytest.approx((64 / 16) / 10.0)


def test_bytes_per_element_scale_the_working_sets_and_the_bus_traffic():
    wide = GemminiConfig(**{**CFG.__dict__, "input_bytes": 4, "acc_bytes": 1, "sp_capacity_bytes": 10**6})
    nodes = [
        Layer("m", "MatMul", ["x", "w"], ["y"], 0, macs=64, weight_elems=600, input_elems=1000, output_elems=1025),
        Layer("sm", "Softmax", ["y"], ["z"], 1, input_elems=10, output_elems=10),
    ]
    perf = compose(graph(nodes), {"m": MatrixCost(10.0)}, wide, "sim", {})
    assert perf.resources["Scratchpad KiB"] == math.ceil((600 + 1000) * 4 / 1024)  # 6400 B
    assert perf.resources["Accumulator KiB"] == 2  # 1025 B: a byte over one KiB
    assert perf.layers[1].extra == {"rule": "bus", "bytes": 80} and perf.layers[1].cycles == 10.0
    small = [Layer("m", "MatMul", ["x", "w"], ["y"], 0, macs=1, weight_elems=1024, input_elems=1, output_elems=1)]
    perf = compose(graph(small), {"m": MatrixCost(0.5)}, GemminiConfig(**{**wide.__dict__, "input_bytes": 1}), "s", {})
    assert perf.resources["Scratchpad KiB"] == 2  # 1025 B
    assert perf.efficiency == pytest.approx((1 / 16) / 0.5)  # half a cycle still has an efficiency
    assert perf.latency_ns == 0.5 / 2e8 * 1e9 and perf.throughput == 2e8 / 0.5


def test_a_matrix_layer_of_no_cycles_has_no_efficiency():
    free = graph([Layer("m", "MatMul", ["x", "w"], ["y"], 0, macs=64, weight_elems=1, input_elems=1, output_elems=1)])
    perf = compose(free, {"m": MatrixCost(0.0)}, CFG, "sim", {})
    assert (perf.cycles, perf.efficiency, perf.latency_ns, perf.throughput) == (0.0, None, None, None)


def test_a_graph_with_no_cycles_has_no_latency_throughput_or_efficiency():
    empty = graph([Layer("id", "Identity", ["x"], ["y"], 0)])
    perf = compose(empty, {}, CFG, "sim", {})
    assert (perf.cycles, perf.latency_ns, perf.throughput, perf.efficiency) == (0.0, None, None, None)
    assert perf.layers == [] and perf.resources["Layers"] == 0 and perf.resources["Scratchpad KiB"] == 0
    bus_only = graph([Layer("sm", "Softmax", ["x"], ["y"], 0, input_elems=8, output_elems=8)])
    perf = compose(bus_only, {}, CFG, "sim", {})
    assert perf.cycles == 2.0 and perf.efficiency is None and perf.throughput == 1e8


# --------------------------------------------------------------------------- nodes as library calls


def conv(name, x, w, y, group=1, **attrs) -> tuple[Layer, LayerGraph]:
    node = Layer(name, "Conv", ["x", "w"], ["y"], 0, attrs=attrs, group=group)
    return node, graph([node], {"x": x, "w": w, "y": y})


def test_a_convolution_becomes_one_tiled_conv_call_with_its_geometry():
    node, g = conv("c", [1, 3, 9, 8], [16, 3, 3, 2], [1, 16, 4, 8], strides=[2, 1], dilations=[1, 2], pads=[0, 1, 2, 0])
    layer, calls = library_layer(node, g)
    assert calls == 1
    assert (layer.kind, layer.n, layer.in_channels, layer.out_channels) == ("conv", 1, 3, 16)
    assert (layer.out_rows, layer.out_cols, layer.kernel_rows, layer.kernel_cols) == (4, 8, 3, 2)
    assert (layer.stride, layer.padding, layer.dilation, layer.in_rows, layer.in_cols) == (2, 2, 2, 9, 8)
    assert not layer.depthwise
    node, g = conv("c", [2, 3, 8, 8], [4, 3, 1, 1], [2, 4, 8, 8])  # no attributes: stride 1, no padding
    layer, _ = library_layer(node, g)
    assert (layer.n, layer.stride, layer.padding, layer.dilation) == (2, 1, 0, 1)
    node, g = conv("c", [1, 3, 8, 8], [4, 3, 1, 1], [1, 4, 8, 8], pads=[])
    assert library_layer(node, g)[0].padding == 0


def test_a_grouped_convolution_is_group_calls_and_a_depthwise_one_a_single_call():
    node, g = conv("g", [1, 8, 6, 6], [12, 4, 3, 3], [1, 12, 4, 4], group=2)
    layer, calls = library_layer(node, g)
    assert calls == 2 and (layer.in_channels, layer.out_channels, layer.depthwise) == (4, 6, False)
    assert type(layer.in_channels) is int and type(layer.out_channels) is int
    node, g = conv("d2", [1, 2, 6, 6], [2, 1, 3, 3], [1, 2, 4, 4], group=2)  # the smallest depthwise
    assert library_layer(node, g) == (library_layer(node, g)[0], 1) and library_layer(node, g)[0].depthwise
    node, g = conv("one", [1, 1, 6, 6], [1, 1, 3, 3], [1, 1, 4, 4])  # one channel, group 1: a plain conv
    assert library_layer(node, g)[0].depthwise is False
    node, g = conv("d", [1, 8, 6, 6], [8, 1, 3, 3], [1, 8, 4, 4], group=8)
    layer, calls = library_layer(node, g)
    assert calls == 1 and (layer.in_channels, layer.out_channels, layer.depthwise) == (8, 8, True)
    node, g = conv("m", [1, 8, 6, 6], [16, 1, 3, 3], [1, 16, 4, 4], group=8)  # a channel multiplier of 2
    layer, calls = library_layer(node, g)
    assert calls == 8 and (layer.in_channels, layer.out_channels, layer.depthwise) == (1, 2, False)
    node, g = conv("p", [1, 8, 6, 6], [8, 2, 3, 3], [1, 8, 4, 4], group=4)
    assert library_layer(node, g)[0].depthwise is False


def test_a_1d_convolution_is_a_2d_one_of_height_1():
    node, g = conv("c1d", [1, 4, 10], [8, 4, 3], [1, 8, 8])
    layer, calls = library_layer(node, g)
    assert calls == 1
    assert (layer.in_channels, layer.out_channels, layer.out_rows, layer.out_cols) == (4, 8, 1, 8)
    assert (layer.kernel_rows, layer.kernel_cols, layer.in_rows, layer.in_cols) == (1, 3, 1, 10)


def test_matrix_products_and_recurrent_layers_become_one_tiled_matmul():
    dense = Layer("fc", "Gemm", ["x", "w"], ["y"], 0, macs=3 * 64 * 10, out_channels=10, out_rows=3)
    layer, calls = library_layer(dense, graph([dense]))
    assert calls == 1 and (layer.kind, layer.in_channels, layer.out_channels, layer.out_rows) == ("matmul", 64, 10, 3)
    assert type(layer.in_channels) is int
    odd = Layer("mm", "MatMul", ["x", "w"], ["y"], 0, macs=100, out_channels=0, out_rows=0)
    assert library_layer(odd, graph([odd]))[0].in_channels == 100  # no output shape known: one row, one column
    lstm = Layer("lstm", "LSTM", ["x", "w", "r"], ["y"], 0, macs=999, gemm_shape=(7, 24, 64), out_channels=16)
    layer, calls = library_layer(lstm, graph([lstm]))
    assert calls == 1 and (layer.kind, layer.in_channels, layer.out_channels, layer.out_rows) == ("matmul", 24, 64, 7)


def test_a_layer_costs_its_library_call_times_its_calls_with_what_the_model_knows():
    cfg, timing = load_config(config_file("int8")), load_timing()
    node, g = conv("g", [1, 8, 6, 6], [12, 4, 3, 3], [1, 12, 4, 4], group=2)
    node.macs = 2 * 6 * 4 * 16 * 9
    cost = gemmini._library_cost(node, g, cfg, timing)
    found = layer_cycles(library_layer(node, g)[0], cfg, timing)
    assert cost.cycles == found.cycles * 2
    assert cost.extra == {"rule": "gemmini-library", **found.to_dict(), "calls": 2, "ideal_cycles": node.macs / 256}


def test_a_layer_the_library_cannot_run_names_the_node_and_the_configuration(monkeypatch):
    def refuse(layer, config, timing):
        raise ValueError("a tile does not fit the scratchpad")

    monkeypatch.setattr(gemmini, "layer_cycles", refuse)
    node, g = conv("big", [1, 3, 8, 8], [4, 3, 1, 1], [1, 4, 8, 8])
    with pytest.raises(ValueError) as info:
        gemmini._library_cost(node, g, CFG, load_timing())
    assert str(info.value) == "node 'big' (Conv) on test: a tile does not fit the scratchpad"
    assert isinstance(info.value.__cause__, ValueError)
