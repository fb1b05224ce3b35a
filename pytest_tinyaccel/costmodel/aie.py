"""AIE-ML timing: the graph mapped to kernels on tiles, composed as a dataflow schedule.

Rules, in the order they are applied (all quantities per inference instance):

**Which nodes become kernels.** Every Conv/Gemm/MatMul becomes one or more
kernels. A Relu/Clip/LeakyRelu or an Add of a constant (bias) fed only by a
matrix op is fused into it (bias preloaded into the accumulator, activation
applied on the accumulator-to-vector move: 0 cycles). Reshape/Flatten/Squeeze/Unsqueeze/
Identity/Dropout/Constant/Shape only relabel a tensor and Transpose is done by
the DMA's multi-dimensional address generation (AM020: 3-D tile DMA, 4-D memory
tile DMA): none of these becomes a kernel. Every other node (Add, pooling,
Softmax, Concat, an unfused activation ...) becomes a vector kernel.

**Splitting (one or more kernels per layer).** Each kernel runs on its own tile
and must keep its buffers in that tile's 64 KiB data memory, less the default
1 KiB stack + 1 KiB heap: ``weights + 2 x (input activations + output
activations)`` (weights single-buffered: they do not change between instances;
activations ping-pong). Bytes are 1 per int8 element, 4 per fp32. A layer that
does not fit is split into ``kc x kr`` kernels, searched in increasing
``kc x kr``, output channels (kc) before output rows (kr): a channel split
divides the weights and the outputs (and, for depthwise convs, the inputs); a
row split divides the outputs and the input rows (plus the kernel halo). If no
split fits, the kernel takes the finest channel split and streams its weights
from DDR at run time (counted as GMIO).

**Kernel cycles.** A matrix layer's kernels each take ZigZag's cycles for the
whole layer on one tile (`hardware/aie_ml.yaml` int8, `aie_ml_fp32.yaml` fp32,
operands streamed in through the tile DMA) divided by the number of kernels.
A vector kernel takes ``max(ceil(in_bytes / 8), ceil(out_bytes / 8),
ceil(elements / lanes))`` cycles: its data arrives and leaves over two 32-bit
DMA channels (8 bytes/cycle each way) and the 512-bit vector unit handles
``lanes`` = 64 int8 or 16 fp32 elements per cycle (a lower bound for Softmax).

**Schedule.** Kernels of one layer run in parallel on their tiles. A layer
starts when all layers it reads from have finished; ``latency`` (the reported
`cycles`) is the longest path through the graph: the sum along a chain, the
maximum over parallel branches that meet at an Add. Kernels are pipelined
across instances, so ``throughput = clock / II`` where the initiation interval
``II`` is the slowest kernel's cycles.

**Resources.**
* ``Kernels`` -- number of kernels (= tiles used).
* ``Buffers`` -- per kernel, a ping-pong pair per activation input and per
  output, plus one weight buffer when its weights stay in the tile.
* ``Stream`` -- kernel-to-kernel stream connections: one per (producer kernel,
  consuming layer) pair (the stream switch broadcasts one stream to every kernel
  of the consuming layer; all kernels are on different tiles).
* ``PLIO`` -- one per graph input and per graph output tensor (streamed from/to
  the programmable logic; a split last layer's outputs are gathered in a memory
  tile first).
* ``GMIO`` -- kernels that stream their weights from global memory (DDR)
  because they do not fit even at the finest split.

**Efficiency** = ideal cycles / simulated cycles with ideal = total MACs /
(peak MACs per cycle of one tile x Kernels) and simulated = II: the share of the
used tiles' peak MAC rate achieved in steady state (peak: 256 int8 MACs/cycle;
21.3 fp32 MACs/cycle emulated, see the hardware files).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from ..perf import LayerPerf, Perf
from . import layergraph
from .hardware import Hardware, hardware_file, load_hardware
from .zigzag_runner import ZigZagResult, run_zigzag

SIMULATOR = "tinyaccel emulator + ZigZag AIE-ML tile model"
DMA_BYTES_PER_CYCLE = 8
"""Two 32-bit DMA channels each way (AM020)."""
VECTOR_BITS = 512
PASS_THROUGH_OPS = layergraph.METADATA_OPS | {"Transpose"}


@dataclass
class LayerMapping:
    """How one graph node is mapped to kernels."""

    name: str
    op: str
    kernels: int
    channel_split: int
    row_split: int
    kernel_cycles: float
    macs: int
    buffer_bytes: float
    """Data-memory bytes one kernel needs (weights + ping-pong activations)."""
    weights_in_tile: bool
    activation_inputs: int
    outputs: int
    has_weights: bool
    predecessors: list[str] = field(default_factory=list)
    rule: str = "zigzag"
    start: float = 0.0
    finish: float = 0.0


def aie_perf(
    model: str | Path | bytes | onnx.ModelProto,
    dtype: str = "int8",
    *,
    cache_dir: str | Path | None = None,
    hardware: str | Path | None = None,
) -> Perf:
    """Timing and resources of `model` (the float ONNX model) on AIE-ML tiles for `dtype`."""
    hw = load_hardware(hardware or hardware_file("aie", dtype))
    prepared, sha = layergraph.prepare_model(model)
    zz = run_zigzag(model, hw, dtype, cache_dir, prepared=prepared, model_sha256=sha)
    return compose(prepared, zz, hw)


def tile_budget(hw: Hardware) -> int:
    """Data-memory bytes a kernel may use on its tile."""
    return int(hw.meta["data_memory_bytes"]) - int(hw.meta.get("stack_heap_bytes", 0))


def _conv_geometry(prepared: layergraph.LayerGraph, node: layergraph.Layer) -> tuple[int, int, int]:
    """(input rows, kernel rows, row stride) of a Conv; (rows, 1, 1) otherwise."""
    if node.op == "Conv":
        in_shape = prepared.shapes.get(node.inputs[0], [])
        w = prepared.shapes.get(node.inputs[1], [])
        ih = in_shape[2] if len(in_shape) > 2 else 1
        kh = w[2] if len(w) > 2 else 1
        sh = next(iter(node.attrs.get("strides", [1])))
        return int(ih), int(kh), int(sh)
    return max(node.out_rows, 1), 1, 1


def buffer_bytes(
    prepared: layergraph.LayerGraph,
    node: layergraph.Layer,
    hw: Hardware,
    channel_split: int,
    row_split: int,
    *,
    weights_in_tile: bool = True,
) -> float:
    """Data-memory bytes of one kernel of `node` split `channel_split x row_split`."""
    wb = hw.precision_bits["weight"] / 8
    ab = hw.precision_bits["act"] / 8
    k = max(node.out_channels, 1)
    r = max(node.out_rows, 1)
    k_frac = math.ceil(k / channel_split) / k
    r_frac = math.ceil(r / row_split) / r
    weights = node.weight_elems * wb * k_frac if weights_in_tile else 0.0
    in_frac = 1.0
    if node.is_depthwise or not node.is_matrix:
        in_frac *= k_frac  # per-channel ops: a channel slice needs only its input channels
    if row_split > 1:
        ih, kh, sh = _conv_geometry(prepared, node)
        rows_needed = (math.ceil(r / row_split) - 1) * sh + kh
        in_frac *= min(1.0, rows_needed / max(ih, 1))
    inputs = node.input_elems * ab * in_frac
    outputs = node.output_elems * ab * k_frac * r_frac
    return weights + 2.0 * (inputs + outputs)


def choose_split(prepared: layergraph.LayerGraph, node: layergraph.Layer, hw: Hardware) -> tuple[int, int, bool, float]:
    """(channel split, row split, weights stay in the tile, buffer bytes) for `node`."""
    budget = tile_budget(hw)
    k = max(node.out_channels, 1)
    r = max(node.out_rows, 1)
    for n in range(1, k * r + 1):
        for kc in range(min(n, k), 0, -1):
            if n % kc:
                continue
            kr = n // kc
            if kr > r:
                continue
            b = buffer_bytes(prepared, node, hw, kc, kr)
            if b <= budget:
                return kc, kr, True, b
    # nothing fits: finest channel split, weights streamed from DDR (GMIO)
    for n in range(k, k * r + 1):
        if n % k:
            continue
        kr = n // k
        b = buffer_bytes(prepared, node, hw, k, kr, weights_in_tile=False)
        if b <= budget:
            return k, kr, False, b
    return k, r, False, buffer_bytes(prepared, node, hw, k, r, weights_in_tile=False)


def _vector_cycles(node: layergraph.Layer, hw: Hardware, kernels: int) -> float:
    ab = hw.precision_bits["act"] / 8
    lanes = VECTOR_BITS // hw.precision_bits["act"]
    in_bytes = node.input_elems * ab / kernels
    out_bytes = node.output_elems * ab / kernels
    elems = max(node.input_elems, node.output_elems) / kernels
    return float(
        max(
            math.ceil(in_bytes / DMA_BYTES_PER_CYCLE),
            math.ceil(out_bytes / DMA_BYTES_PER_CYCLE),
            math.ceil(elems / lanes),
            1,
        )
    )


def map_graph(prepared: layergraph.LayerGraph, zz: ZigZagResult, hw: Hardware) -> list[LayerMapping]:
    """Kernels per node and the dataflow schedule (start/finish per layer)."""
    fused = prepared.fused_activations()
    by_name = {n.name: n for n in prepared.nodes}
    producers = prepared.producers()
    mapped: dict[str, LayerMapping] = {}

    def resolve(tensor: str, seen: frozenset[str] = frozenset()) -> set[str]:
        """Mapped layers whose output reaches `tensor` through pass-through nodes."""
        src = producers.get(tensor)
        if src is None or src in seen:
            return set()
        if src in mapped:
            return {src}
        if src in fused:
            return {fused[src]} if fused[src] in mapped else set()
        node = by_name[src]
        out: set[str] = set()
        for t in node.inputs:
            if t and t not in prepared.initializers:
                out |= resolve(t, seen | {src})
        return out

    order: list[LayerMapping] = []
    for node in prepared.nodes:
        if node.op in PASS_THROUGH_OPS or node.name in fused:
            continue
        kc, kr, in_tile, b = choose_split(prepared, node, hw)
        n = kc * kr
        if node.is_matrix:
            cycles = float(zz.layers[node.name].cycles) / n
            rule = "zigzag"
        else:
            cycles = _vector_cycles(node, hw, n)
            rule = "vector"
        preds: list[str] = []
        act_inputs = 0
        for t in node.inputs:
            if not t or t in prepared.initializers:
                continue
            act_inputs += 1
            for p in sorted(resolve(t)):
                if p not in preds:
                    preds.append(p)
        m = LayerMapping(
            name=node.name,
            op=node.op,
            kernels=n,
            channel_split=kc,
            row_split=kr,
            kernel_cycles=cycles,
            macs=int(node.macs),
            buffer_bytes=b,
            weights_in_tile=in_tile,
            activation_inputs=act_inputs,
            outputs=len([o for o in node.outputs if o]),
            has_weights=node.weight_elems > 0,
            predecessors=preds,
            rule=rule,
        )
        m.start = max((mapped[p].finish for p in preds), default=0.0)
        m.finish = m.start + cycles
        mapped[node.name] = m
        order.append(m)
    return order


def compose(prepared: layergraph.LayerGraph, zz: ZigZagResult, hw: Hardware) -> Perf:
    """Map, schedule and summarise (see the module docstring for every rule)."""
    mapping = map_graph(prepared, zz, hw)
    layers: list[LayerPerf] = []
    tile = 0
    for m in mapping:
        for i in range(m.kernels):
            name = m.name if m.kernels == 1 else f"{m.name}[{i}]"
            layers.append(
                LayerPerf(
                    name=name,
                    op=m.op,
                    cycles=m.kernel_cycles,
                    start=m.start,
                    macs=m.macs // m.kernels + (1 if i < m.macs % m.kernels else 0),
                    kernel_count=1,
                    extra={
                        "layer": m.name,
                        "tile": tile,
                        "kernel": i,
                        "kernels_in_layer": m.kernels,
                        "channel_split": m.channel_split,
                        "row_split": m.row_split,
                        "buffer_bytes": m.buffer_bytes,
                        "weights": "tile" if m.weights_in_tile or not m.has_weights else "gmio",
                        "rule": m.rule,
                    },
                )
            )
            tile += 1
    kernels = len(layers)
    latency = max((m.finish for m in mapping), default=0.0)
    ii = max((m.kernel_cycles for m in mapping), default=0.0)
    total_macs = sum(m.macs for m in mapping)
    clock = hw.clock_hz
    buffers = sum(
        m.kernels * (2 * (m.activation_inputs + m.outputs) + (1 if m.has_weights and m.weights_in_tile else 0))
        for m in mapping
    )
    consumers: dict[str, set[str]] = {}
    for m in mapping:
        for p in m.predecessors:
            consumers.setdefault(p, set()).add(m.name)
    by_name = {m.name: m for m in mapping}
    stream = sum(by_name[p].kernels * len(c) for p, c in consumers.items())
    resources = {
        "Kernels": kernels,
        "Buffers": int(buffers),
        "Stream": int(stream),
        "PLIO": len(prepared.graph_inputs) + len(prepared.graph_outputs),
        "GMIO": sum(m.kernels for m in mapping if m.has_weights and not m.weights_in_tile),
    }
    efficiency = None
    if ii > 0 and total_macs > 0 and kernels > 0:
        efficiency = (total_macs / (hw.peak_macs_per_cycle * kernels)) / ii
    slowest = max(mapping, key=lambda m: m.kernel_cycles).name if mapping else None
    return Perf(
        simulator=SIMULATOR,
        cycles=latency,
        clock_hz=clock,
        latency_ns=latency / clock * 1e9 if latency else None,
        throughput=clock / ii if ii else None,
        resources=resources,
        efficiency=efficiency,
        layers=layers,
        extra={
            "hardware": hw.name,
            "hardware_sha256": hw.sha256,
            "initiation_interval_cycles": ii,
            "slowest_layer": slowest,
            "total_macs": total_macs,
            "peak_macs_per_cycle_per_tile": hw.peak_macs_per_cycle,
            "tile_budget_bytes": tile_budget(hw),
            "zigzag_cached": zz.cached,
            "zigzag_elapsed_s": zz.elapsed_s,
            "zigzag_key": zz.key,
            "unit": "cycles",
        },
    )
