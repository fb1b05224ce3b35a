"""Gemmini timing: per-layer cycles composed sequentially.

Model of execution: one Gemmini (a non-pipelined accelerator driven by its host core) runs
the graph's nodes one after the other, in the ONNX file's (topological) order. Per node:

* **Conv / Gemm / MatMul / LSTM, GRU, RNN** -- by default (`timing="library"`) the cycles
  of the layer run by Gemmini's own software library on the configuration file
  (`gemmini_config`; Gemmini's default for int8): the library's tile choice
  (`gemmini_tiling`: `tiled_conv_auto` for a Conv, `tiled_matmul_auto` for the rest)
  costed with constants fitted on FireSim measurements (`gemmini_timing`), a prediction
  whose held-out error travels with the result. With `timing="zigzag"`: ZigZag's best
  mapping on the ZigZag description (`hardware/gemmini*.yaml`, the `zigzag` extra).
  A grouped convolution is `group` convolutions one after the other; a depthwise one is
  costed as the library's one-channel-at-a-time convolution; a 1-D convolution as a 2-D
  convolution of height 1; a recurrent layer as the matrix product of its gates.
* **Relu / Clip / LeakyRelu, and Add of a constant (bias)** whose input comes from a
  matrix op (and feeds nothing else) -- 0 cycles: folded into that op's output, as Gemmini
  preloads the bias into the accumulator and applies the activation on the way out of it.
* **Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout, Constant, Shape** -- 0
  cycles, no data moves (left out of the per-layer list).
* **every other op** (Add, pooling, Softmax, Transpose, Concat, an unfused activation,
  ...) -- bus-bound rule: the op streams its activation inputs in and its outputs out over
  the DMA bus once, ``cycles = ceil((input bytes + output bytes) / bus bytes per cycle)``
  (the configuration's `dma_buswidth`). A lower bound for what runs on the host core.

Totals: ``cycles`` = the sum; ``latency_ns = cycles / clock_hz * 1e9``; ``throughput =
clock_hz / cycles``; ``efficiency = (total MACs / peak MACs per cycle) / cycles``.
Resources: ``PEs``, ``Layers`` (matrix layers), ``Scratchpad KiB`` / ``Accumulator KiB``
(the largest per-layer working set, capped at the capacity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from ..perf import LayerPerf, Perf
from . import layergraph
from .gemmini_config import GemminiConfig, config_file, load_config
from .gemmini_tiling import Layer
from .gemmini_timing import MODEL, Timing, layer_cycles, load_timing

SIMULATOR_ZIGZAG = "tinyaccel emulator + ZigZag Gemmini 16x16 WS model"
SIMULATOR_ZIGZAG_FP32 = "tinyaccel emulator + ZigZag Gemmini 4x4 fp32 model"
TIMING_MODELS = ("library", "zigzag")


@dataclass
class MatrixCost:
    """One matrix layer's cycles and what the model knows about them."""

    cycles: float
    extra: dict[str, Any] = field(default_factory=dict)


def gemmini_perf(
    model: str | Path | bytes | onnx.ModelProto,
    dtype: str = "int8",
    *,
    cache_dir: str | Path | None = None,
    hardware: str | Path | None = None,
    timing: str = "library",
    config: str | Path | None = None,
    constants: str | Path | None = None,
) -> Perf:
    """Timing and resources of `model` (the float ONNX model) on Gemmini for `dtype`.

    `timing` picks the per-layer model ('library' or 'zigzag'); `config` a Gemmini
    configuration file (default: Gemmini's own for `dtype`); `constants` the fitted
    timing constants (default: the shipped ones). For ZigZag, `cache_dir` holds its
    results and `hardware` overrides the ZigZag description.
    """
    if timing not in TIMING_MODELS:
        raise ValueError(f"unknown Gemmini timing model {timing!r} (known: {', '.join(TIMING_MODELS)})")
    cfg = load_config(config or config_file(dtype))
    prepared, sha = layergraph.prepare_model(model)
    layergraph.check_costable(prepared)
    if timing == "zigzag":
        return _zigzag_perf(model, prepared, sha, dtype, cfg, cache_dir, hardware)
    fitted = load_timing(constants)
    costs = {n.name: _library_cost(n, prepared, cfg, fitted) for n in prepared.nodes if n.is_matrix}
    # no "; " inside: the report splits a section's simulators on it
    simulator = f"tinyaccel emulator + {MODEL} on {cfg.name} (predicted: {fitted.describe_error(cfg)})"
    extra = {
        "timing": {
            "figure": "predicted",
            "model": MODEL,
            "configuration": cfg.describe(),
            "configuration_source": cfg.source,
            "constants": fitted.path,
            "error": fitted.error if fitted.measured_on(cfg) else {},
        }
    }
    return compose(prepared, costs, cfg, simulator, extra)


def _zigzag_perf(model, prepared, sha, dtype, cfg, cache_dir, hardware) -> Perf:
    from .hardware import hardware_file, load_hardware
    from .zigzag_runner import run_zigzag

    hw = load_hardware(hardware or hardware_file("gemmini", dtype))
    zz = run_zigzag(model, hw, dtype, cache_dir, prepared=prepared, model_sha256=sha)
    costs = {
        name: MatrixCost(
            float(cost.cycles),
            {
                "rule": "zigzag",
                "ideal_cycles": cost.ideal_cycles,
                "spatial_utilization": cost.spatial_utilization,
                "spatial_mapping": cost.spatial_mapping,
            },
        )
        for name, cost in zz.layers.items()
    }
    extra = {
        "hardware": hw.name,
        "hardware_sha256": hw.sha256,
        "zigzag_cached": zz.cached,
        "zigzag_elapsed_s": zz.elapsed_s,
        "zigzag_key": zz.key,
        "timing": {"figure": "predicted", "model": "ZigZag", "configuration": hw.name, "error": {}},
    }
    simulator = SIMULATOR_ZIGZAG if hw.dtype == "int8" else SIMULATOR_ZIGZAG_FP32
    return compose(prepared, costs, cfg, simulator, extra)


def library_layer(node: layergraph.Layer, graph: layergraph.LayerGraph) -> tuple[Layer, int]:
    """(the library call that runs `node`, how many times: a grouped conv runs once per group)."""
    if node.op in layergraph.RECURRENT_GATES:
        rows, reduction, columns = node.gemm_shape
        return Layer("matmul", in_channels=reduction, out_channels=columns, out_rows=rows), 1
    if node.op != "Conv":
        reduction = node.macs // max(1, node.out_rows * node.out_channels)
        return Layer("matmul", in_channels=reduction, out_channels=node.out_channels, out_rows=node.out_rows), 1
    x, w, y = (graph.shapes[t] for t in (node.inputs[0], node.inputs[1], node.outputs[0]))
    if len(x) == 3:  # 1-D: height 1
        x, w, y = [*x[:2], 1, x[2]], [*w[:2], 1, w[2]], [*y[:2], 1, y[2]]
    attrs = node.attrs
    strides = list(attrs.get("strides", [1, 1]))
    dilations = list(attrs.get("dilations", [1, 1]))
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    group = node.group
    depthwise = group > 1 and group == x[1] and w[1] == 1 and y[1] == group
    layer = Layer(
        "conv",
        n=x[0],
        in_channels=x[1] if depthwise else x[1] // group,
        out_channels=y[1] if depthwise else y[1] // group,
        out_rows=y[2],
        out_cols=y[3],
        kernel_rows=w[2],
        kernel_cols=w[3],
        stride=max(strides),
        padding=max(pads) if pads else 0,
        dilation=max(dilations),
        in_rows=x[2],
        in_cols=x[3],
        depthwise=depthwise,
    )
    return layer, 1 if depthwise else group


def _library_cost(node: layergraph.Layer, graph: layergraph.LayerGraph, cfg: GemminiConfig, timing: Timing):
    layer, calls = library_layer(node, graph)
    try:
        found = layer_cycles(layer, cfg, timing)
    except ValueError as exc:
        raise ValueError(f"node {node.name!r} ({node.op}) on {cfg.name}: {exc}") from exc
    extra = {"rule": "gemmini-library", **found.to_dict(), "calls": calls}
    extra["ideal_cycles"] = node.macs / cfg.peak_macs_per_cycle
    return MatrixCost(found.cycles * calls, extra)


def compose(
    prepared: layergraph.LayerGraph,
    costs: dict[str, MatrixCost],
    cfg: GemminiConfig,
    simulator: str,
    extra: dict[str, Any],
) -> Perf:
    """Sequential composition of the per-layer costs (see the module docstring)."""
    act_bytes = w_bytes = cfg.input_bytes
    fused = prepared.fused_activations()
    layers: list[LayerPerf] = []
    t = 0.0
    total_macs = n_matrix = 0
    sp_peak = acc_peak = 0.0
    for node in prepared.nodes:
        if node.op in layergraph.METADATA_OPS:
            continue
        if node.is_matrix:
            cycles, macs, info = costs[node.name].cycles, int(node.macs), costs[node.name].extra
            total_macs += macs
            n_matrix += 1
            working = node.weight_elems * w_bytes + node.input_elems * act_bytes
            sp_peak = max(sp_peak, min(cfg.sp_capacity_bytes, working))
            acc_peak = max(acc_peak, min(cfg.acc_capacity_bytes, node.output_elems * cfg.acc_bytes))
        elif node.name in fused:
            cycles, macs, info = 0.0, 0, {"rule": "fused", "fused_into": fused[node.name]}
        else:
            moved = (node.input_elems + node.output_elems) * act_bytes
            cycles, macs, info = float(math.ceil(moved / cfg.bus_bytes)), 0, {"rule": "bus", "bytes": moved}
        layers.append(LayerPerf(name=node.name, op=node.op, cycles=cycles, start=t, macs=macs, extra=info))
        t += cycles
    clock = cfg.clock_hz
    efficiency = (total_macs / cfg.peak_macs_per_cycle) / t if t > 0 and total_macs > 0 else None
    resources = {
        "PEs": cfg.peak_macs_per_cycle,
        "Layers": n_matrix,
        "Scratchpad KiB": math.ceil(sp_peak / 1024),
        "Accumulator KiB": math.ceil(acc_peak / 1024),
    }
    return Perf(
        simulator=simulator,
        cycles=t,
        clock_hz=clock,
        latency_ns=t / clock * 1e9 if t else None,
        throughput=clock / t if t else None,
        resources=resources,
        efficiency=efficiency,
        layers=layers,
        extra={
            **extra,
            "total_macs": total_macs,
            "peak_macs_per_cycle": cfg.peak_macs_per_cycle,
            "ideal_cycles": total_macs / cfg.peak_macs_per_cycle,
            "unit": "cycles",
        },
    )
