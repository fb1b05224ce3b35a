"""Gemmini timing: ZigZag per-layer cycles composed sequentially.

Model of execution: one Gemmini (a non-pipelined accelerator driven by its host
core) runs the graph's nodes one after the other, in the ONNX file's
(topological) order. Per node:

* **Conv / Gemm / MatMul** -- ZigZag's cycles for the layer on the shipped
  description (`hardware/gemmini.yaml` for int8: 16x16 weight-stationary int8
  array, 256 KiB scratchpad, 64 KiB accumulator, 16 B/cycle DMA bus;
  `hardware/gemmini_fp32.yaml` for fp32: Gemmini's 4x4 fp32 configuration).
  ZigZag's figure includes loading operands from DRAM over the bus, stalls and
  the systolic drain.
* **Relu / Clip / LeakyRelu, and Add of a constant (bias)** whose input comes
  from a matrix op (and feeds nothing else) -- 0 cycles: folded into that op's
  output, as Gemmini preloads the bias into the accumulator and applies the
  activation while moving results out of it.
* **Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout, Constant, Shape**
  -- 0 cycles, no data moves (they are left out of the per-layer list).
* **every other op** (Add, pooling, Softmax, Transpose, Concat, an unfused
  activation, ...) -- bus-bound rule: the op streams its activation inputs in
  and its outputs out over the DMA bus once, so
  ``cycles = ceil((input bytes + output bytes) / dram_bytes_per_cycle)``
  with 1 byte per int8 element or 4 per fp32 element and 16 bytes per cycle
  (Gemmini's 128-bit `dma_buswidth`). This is a lower bound for what runs on the
  host core (Softmax); Gemmini's own residual-add and pooling paths are
  bandwidth-bound in the same way.

Totals: ``cycles`` = the sum; ``latency_ns = cycles / clock_hz * 1e9``;
``throughput = clock_hz / cycles`` instances/s (one instance at a time);
``efficiency = (total MACs / peak MACs per cycle) / cycles`` (peak: 256 int8 or
16 fp32 MACs per cycle).

Resources (integers): ``PEs`` (array size), ``Scratchpad KiB`` / ``Accumulator
KiB`` = the largest per-layer working set (weights + input activations, resp.
32-bit partial sums of the outputs), capped at the capacity (ZigZag tiles larger
layers), ``Layers`` = Conv/Gemm/MatMul count.
"""

from __future__ import annotations

import math
from pathlib import Path

import onnx

from ..perf import LayerPerf, Perf
from . import layergraph
from .hardware import Hardware, hardware_file, load_hardware
from .zigzag_runner import ZigZagResult, run_zigzag

SIMULATOR = "tinyaccel emulator + ZigZag Gemmini 16x16 WS model"
SIMULATOR_FP32 = "tinyaccel emulator + ZigZag Gemmini 4x4 fp32 model"


def gemmini_perf(
    model: str | Path | bytes | onnx.ModelProto,
    dtype: str = "int8",
    *,
    cache_dir: str | Path | None = None,
    hardware: str | Path | None = None,
) -> Perf:
    """Timing and resources of `model` (the float ONNX model) on Gemmini for `dtype`.

    `cache_dir` holds ZigZag's per-layer results (see `zigzag_runner`);
    `hardware` overrides the shipped description for `dtype`.
    """
    hw = load_hardware(hardware or hardware_file("gemmini", dtype))
    prepared, sha = layergraph.prepare_model(model)
    zz = run_zigzag(model, hw, dtype, cache_dir, prepared=prepared, model_sha256=sha)
    return compose(prepared, zz, hw)


def compose(prepared: layergraph.LayerGraph, zz: ZigZagResult, hw: Hardware) -> Perf:
    """Sequential composition of ZigZag's per-layer results (see the module docstring)."""
    act_bytes = hw.precision_bits["act"] / 8
    acc_bytes = hw.precision_bits["output"] / 8
    bus = float(hw.meta["dram_bytes_per_cycle"])
    sp_cap = int(hw.meta["scratchpad_bytes"])
    acc_cap = int(hw.meta["accumulator_bytes"])
    w_bytes = hw.precision_bits["weight"] / 8
    fused = prepared.fused_activations()

    layers: list[LayerPerf] = []
    t = 0.0
    total_macs = 0
    sp_peak = 0.0
    acc_peak = 0.0
    n_matrix = 0
    for node in prepared.nodes:
        if node.op in layergraph.METADATA_OPS:
            continue
        extra: dict = {}
        if node.is_matrix:
            cost = zz.layers[node.name]
            cycles = float(cost.cycles)
            macs = int(node.macs)
            total_macs += macs
            n_matrix += 1
            extra = {
                "rule": "zigzag",
                "ideal_cycles": cost.ideal_cycles,
                "spatial_utilization": cost.spatial_utilization,
                "spatial_mapping": cost.spatial_mapping,
            }
            sp_peak = max(sp_peak, min(sp_cap, node.weight_elems * w_bytes + node.input_elems * act_bytes))
            acc_peak = max(acc_peak, min(acc_cap, node.output_elems * acc_bytes))
        elif node.name in fused:
            cycles = 0.0
            macs = 0
            extra = {"rule": "fused", "fused_into": fused[node.name]}
        else:
            moved = (node.input_elems + node.output_elems) * act_bytes
            cycles = float(math.ceil(moved / bus))
            macs = 0
            extra = {"rule": "bus", "bytes": moved}
        layers.append(LayerPerf(name=node.name, op=node.op, cycles=cycles, start=t, macs=macs, extra=extra))
        t += cycles

    cycles = t
    clock = hw.clock_hz
    efficiency = None
    if cycles > 0 and total_macs > 0:
        efficiency = (total_macs / hw.peak_macs_per_cycle) / cycles
    rows, cols = (hw.zigzag_data["operational_array"]["sizes"] + [1, 1])[:2]
    resources = {
        "PEs": int(rows * cols),
        "Layers": n_matrix,
        "Scratchpad KiB": math.ceil(sp_peak / 1024),
        "Accumulator KiB": math.ceil(acc_peak / 1024),
    }
    return Perf(
        simulator=SIMULATOR if hw.dtype == "int8" else SIMULATOR_FP32,
        cycles=cycles,
        clock_hz=clock,
        latency_ns=cycles / clock * 1e9 if cycles else None,
        throughput=clock / cycles if cycles else None,
        resources=resources,
        efficiency=efficiency,
        layers=layers,
        extra={
            "hardware": hw.name,
            "hardware_sha256": hw.sha256,
            "total_macs": total_macs,
            "peak_macs_per_cycle": hw.peak_macs_per_cycle,
            "zigzag_cached": zz.cached,
            "zigzag_elapsed_s": zz.elapsed_s,
            "zigzag_key": zz.key,
            "unit": "cycles",
        },
    )
