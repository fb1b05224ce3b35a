"""The layers an AIE flow builds kernels for, read from a float, QOperator or QDQ ONNX graph.

The model being run is analysed as it is: the float model for fp32, the quantized
model for int8. All three forms are first brought to one *float view* with the
same topology and shapes, which ONNX shape inference can read:

* constant DequantizeLinear (weights stored as integers) is folded into float
  initializers (QDQ graphs; the KWS float reference stores its weights so);
* QOperator nodes become their float counterparts on the same tensors
  (QLinearConv -> Conv, QGemm -> Gemm, QLinearMatMul -> MatMul, QLinearAdd /
  QLinearMul -> Add / Mul, QLinear(Global)AveragePool -> (Global)AveragePool,
  QLinearSoftmax -> Softmax, QLinearConcat -> Concat), integer weights and biases
  cast to float;
* QuantizeLinear / DequantizeLinear on activations become pass-through, except
  a QuantizeLinear reading a float graph input and a DequantizeLinear writing a
  graph output: those are real kernels of the flow (`quantize`, `dequantize`);
* integer graph inputs and outputs are declared float.

`layers()` then lists, in topological order, the nodes that become kernels, with
their kind, shapes and producers. Reshape/Flatten/Squeeze/Unsqueeze/Identity
only relabel a tensor; Relu/Clip/LeakyRelu are applied by whichever kernel
produces their input, and a bias Add after a Conv/Gemm by that kernel; a Transpose that changes the layout of a
tensor with more than one channel and pixel (the NHWC input of the MLPerf Tiny
image models) is a data-movement kernel. A 1-D Conv or pool ([N, C, L]) is listed as the
2-D layer of height 1 it is computed as, a recurrent layer (LSTM, GRU, RNN) as the gemm of
its gates over every step (`layergraph.RECURRENT_GATES`); a layer the model cannot cost
(`layergraph.cost_problem`) is a ValueError naming it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import layergraph

QOPERATOR: dict[str, tuple[str, tuple[int, ...]]] = {
    "QLinearConv": ("Conv", (0, 3, 8)),
    "QGemm": ("Gemm", (0, 3, 6)),
    "QLinearMatMul": ("MatMul", (0, 3)),
    "QLinearAdd": ("Add", (0, 3)),
    "QLinearMul": ("Mul", (0, 3)),
    "QLinearGlobalAveragePool": ("GlobalAveragePool", (0,)),
    "QLinearAveragePool": ("AveragePool", (0,)),
    "QLinearSoftmax": ("Softmax", (0,)),
    "QLinearLeakyRelu": ("LeakyRelu", (0,)),
    "QLinearSigmoid": ("Sigmoid", (0,)),
}
"""QOperator op -> (float op, positions of its float op's inputs)."""
QUANT_ONLY_ATTRS = {"channels_last", "opset", "domain"}
UNSUPPORTED = {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}
POOLS = {"AveragePool", "MaxPool", "GlobalAveragePool", "GlobalMaxPool", "LpPool"}
ELTWISE_BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min"}


@dataclass
class Layer:
    """One node that becomes one or more kernels."""

    name: str
    op: str
    """ONNX op type in the model as given (e.g. QLinearConv)."""
    kind: str
    """conv | gemm | pool | add | softmax | transpose | quantize | dequantize | concat | eltwise"""
    inputs: list[str]
    """Producer layers (empty: a graph input)."""
    in_shape: list[int]
    out_shape: list[int]
    attrs: dict[str, Any] = field(default_factory=dict)
    macs: int = 0
    weight_elems: int = 0
    graph_output: bool = False


@dataclass
class ModelGraph:
    layers: list[Layer]
    dtype: str
    """int8 when the graph is quantized (QOperator or QDQ), else fp32."""
    inputs: list[str]
    outputs: list[str]
    sha256: str
    weight_type: str = "int8"
    """8-bit weight type of an int8 graph, 'int8' or 'uint8' (the kernels' TTPARAM)."""


def load(model: str | Path | bytes | onnx.ModelProto, dtype: str) -> ModelGraph:
    """The kernel-bearing layers of `model`. A float graph asked for as int8 is costed with
    int8 kernels on its float structure (no quantize/dequantize kernels)."""
    proto, data = layergraph.load_model(model)
    ops = {n.op_type for n in proto.graph.node}
    bad = sorted(ops & UNSUPPORTED)
    if bad:
        raise ValueError(f"the AIE model does not cost dynamically quantized graphs (ops {bad})")
    quantized = bool(ops & (set(QOPERATOR) | {"QuantizeLinear", "QLinearConcat"}))
    wtype = weight_type(proto) if quantized else "uint8"
    boundary = float_view(proto)
    graph = layergraph.analyse(layergraph.infer(proto))
    layergraph.check_costable(graph)
    layers = _layers(graph, boundary)
    return ModelGraph(
        layers=layers,
        dtype="int8" if quantized or dtype == "int8" else "fp32",
        inputs=list(graph.graph_inputs),
        outputs=list(graph.graph_outputs),
        sha256=layergraph.sha256_bytes(data),
        weight_type=wtype,
    )


WEIGHT_INPUTS = {"QLinearConv": 3, "QLinearMatMul": 3, "DequantizeLinear": 0}


def weight_type(proto: onnx.ModelProto) -> str:
    """'uint8' when the quantized weights (8-bit initializers read by QLinearConv/QLinearMatMul
    or dequantized by a DequantizeLinear) are unsigned, else 'int8'. A float graph costed as
    int8 is taken as onnx2versal quantizes it: python/quantize_onnx.py at 392b325 calls
    quantize_static with weight_type=QUInt8, so its weights are unsigned."""
    inits = {i.name: i.data_type for i in proto.graph.initializer}
    types = [
        inits[node.input[pos]]
        for node in proto.graph.node
        if node.op_type in WEIGHT_INPUTS and len(node.input) > WEIGHT_INPUTS[node.op_type]
        for pos in [WEIGHT_INPUTS[node.op_type]]
        if node.input[pos] in inits and inits[node.input[pos]] in (TensorProto.INT8, TensorProto.UINT8)
    ]
    return "uint8" if types and all(t == TensorProto.UINT8 for t in types) else "int8"


def float_view(proto: onnx.ModelProto) -> dict[str, str]:
    """Rewrite `proto` in place into its float view; returns {node name: 'quantize'|'dequantize'}
    for the Q/DQ nodes at the graph's boundary (see the module docstring)."""
    layergraph.fold_constant_dequantize(proto)
    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    float_inputs = {i.name for i in g.input if i.type.tensor_type.elem_type == TensorProto.FLOAT}
    outputs = {o.name for o in g.output}
    boundary: dict[str, str] = {}
    cast: set[str] = set()
    new_nodes = []
    for i, node in enumerate(g.node):
        name = node.name or f"{node.op_type}_{i}"
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            if node.op_type == "QuantizeLinear" and node.input[0] in float_inputs:
                boundary[name] = "quantize"
            elif node.op_type == "DequantizeLinear" and node.output[0] in outputs:
                boundary[name] = "dequantize"
            new_nodes.append(helper.make_node("Identity", [node.input[0]], [node.output[0]], name=name))
            continue
        if node.op_type == "QLinearConcat":
            data = list(node.input[2::3])
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            new_nodes.append(helper.make_node("Concat", data, list(node.output), name=name, **attrs))
            continue
        if node.op_type in QOPERATOR:
            op, positions = QOPERATOR[node.op_type]
            data = [node.input[p] for p in positions if p < len(node.input) and node.input[p]]
            cast.update(t for t in data[1:] if t in inits)
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name not in QUANT_ONLY_ATTRS}
            new_nodes.append(helper.make_node(op, data, list(node.output), name=name, **attrs))
            continue
        node.name = name
        new_nodes.append(node)
    del g.node[:]
    g.node.extend(new_nodes)
    for tensor in cast:
        init = inits[tensor]
        if init.data_type != TensorProto.FLOAT:
            arr = numpy_helper.to_array(init).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(arr, tensor))
    for vi in list(g.input) + list(g.output):
        if vi.name not in inits and vi.type.tensor_type.elem_type != TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT
    return boundary


def _pads(node: layergraph.Layer, graph: layergraph.LayerGraph, kernel: list[int], strides: list[int]) -> list[int]:
    """[top, left, bottom, right] of a 2-D Conv/pool, auto_pad resolved from the shapes."""
    auto = node.attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        inp, out = graph.shapes[node.inputs[0]], graph.shapes[node.outputs[0]]
        pads = [0, 0, 0, 0]
        for ax in range(2):
            total = max((out[2 + ax] - 1) * strides[ax] + kernel[ax] - inp[2 + ax], 0)
            small, big = total // 2, total - total // 2
            pads[ax], pads[2 + ax] = (small, big) if auto == "SAME_UPPER" else (big, small)
        return pads
    pads = list(node.attrs.get("pads", [0, 0, 0, 0]))
    return pads if len(pads) == 4 else [0, 0, 0, 0]


def _kind(node: layergraph.Layer, graph: layergraph.LayerGraph, boundary: dict[str, str]) -> str | None:
    """What `node` becomes, or None for a pass-through node."""
    op = node.op
    if node.name in boundary:
        return boundary[node.name]
    if op in layergraph.METADATA_OPS or op in layergraph.ACTIVATION_OPS:
        return None
    if op == "Transpose":
        shape = graph.shapes.get(node.inputs[0], [])
        moves = len(shape) == 4 and sorted(shape[1:])[-2] > 1 and min(shape[1:]) > 1
        return "transpose" if moves else None
    if op == "Conv":
        return "conv"
    if op in ("Gemm", "MatMul") or op in layergraph.RECURRENT_GATES:
        return "gemm"
    if op in POOLS:
        return "pool"
    if op in ("Softmax", "LogSoftmax"):
        return "softmax"
    if op == "Concat":
        return "concat"
    acts = [t for t in node.inputs if t and t not in graph.initializers]
    if op in ELTWISE_BINARY and len(acts) == 2:
        return "add"
    return "eltwise"


def _layers(graph: layergraph.LayerGraph, boundary: dict[str, str]) -> list[Layer]:
    fused = graph.fused_activations()
    producers = graph.producers()
    by_name = {n.name: n for n in graph.nodes}
    kinds = {n.name: _kind(n, graph, boundary) for n in graph.nodes}
    outputs = set(graph.graph_outputs)

    def resolve(tensor: str, seen: frozenset[str] = frozenset()) -> list[str]:
        src = producers.get(tensor)
        if src is None or src in seen:
            return []
        if src in fused:
            return [fused[src]]
        if kinds[src] is not None:
            return [src]
        out: list[str] = []
        for t in by_name[src].inputs:
            if t and t not in graph.initializers:
                out += [p for p in resolve(t, seen | {src}) if p not in out]
        return out

    reaches_output = {fused.get(producers[o], producers[o]) for o in outputs if o in producers}
    for o in outputs:  # an output behind pass-through nodes
        reaches_output.update(resolve(o))
    layers = []
    for node in graph.nodes:
        kind = kinds[node.name]
        if kind is None or node.name in fused:
            continue
        acts = [t for t in node.inputs if t and t not in graph.initializers]
        preds: list[str] = []
        for t in acts:
            preds += [p for p in resolve(t) if p not in preds]
        layer = Layer(
            name=node.name,
            op=node.op,
            kind=kind,
            inputs=preds,
            in_shape=list(graph.shapes.get(acts[0], [])) if acts else [],
            out_shape=list(graph.shapes.get(node.outputs[0], [])),
            macs=int(node.macs),
            weight_elems=int(node.weight_elems),
            graph_output=node.name in reaches_output,
        )
        if kind in ("conv", "pool") and len(layer.in_shape) == 3:  # 1-D: a 2-D layer of height 1
            layer.in_shape.insert(2, 1)
            layer.out_shape.insert(2, 1)
            layer.attrs = _window_1d(node, graph)
        elif kind in ("conv", "pool") and len(layer.in_shape) == 4:
            layer.attrs = _window(node, graph)
        elif node.op in layergraph.RECURRENT_GATES:  # the gemm it is costed as
            rows, reduction, columns = node.gemm_shape
            layer.in_shape, layer.out_shape = [rows, reduction], [rows, columns]
            layer.attrs = {"k": reduction, "n": columns}
        elif kind == "gemm":
            layer.attrs = {"k": int(layer.in_shape[-1]) if layer.in_shape else 0, "n": node.out_channels}
        layers.append(layer)
    return layers


def _window(node: layergraph.Layer, graph: layergraph.LayerGraph) -> dict[str, Any]:
    """Kernel size, strides, pads and group of a Conv or pool."""
    in_shape = graph.shapes[node.inputs[0]]
    if node.op.startswith("Global"):
        kernel = [int(in_shape[2]), int(in_shape[3])]
    elif node.op == "Conv":
        w = graph.shapes.get(node.inputs[1], [])
        kernel = [int(k) for k in node.attrs.get("kernel_shape", w[2:4])]
    else:
        kernel = [int(k) for k in node.attrs.get("kernel_shape", [1, 1])]
    strides = [int(s) for s in node.attrs.get("strides", [1, 1])]
    if node.op.startswith("Global"):
        strides = kernel[:]
    return {
        "kernel": kernel,
        "strides": strides,
        "pads": _pads(node, graph, kernel, strides),
        "group": int(node.attrs.get("group", 1)),
    }


def _window_1d(node: layergraph.Layer, graph: layergraph.LayerGraph) -> dict[str, Any]:
    """`_window` of a 1-D Conv or pool as the 2-D layer of height 1 it is computed as."""
    length = int(graph.shapes[node.inputs[0]][2])
    if node.op.startswith("Global"):
        kernel = [length]
    elif node.op == "Conv":
        kernel = [int(k) for k in node.attrs.get("kernel_shape", graph.shapes.get(node.inputs[1], [0, 0, 1])[2:])]
    else:
        kernel = [int(k) for k in node.attrs.get("kernel_shape", [1])]
    strides = kernel[:] if node.op.startswith("Global") else [int(s) for s in node.attrs.get("strides", [1])]
    pads = [int(p) for p in node.attrs.get("pads", [0, 0])]
    if node.attrs.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        out = int(graph.shapes[node.outputs[0]][2])
        total = max((out - 1) * strides[0] + kernel[0] - length, 0)
        small, big = total // 2, total - total // 2
        pads = [small, big] if node.attrs["auto_pad"] == "SAME_UPPER" else [big, small]
    return {
        "kernel": [1, kernel[0]],
        "strides": [1, strides[0]],
        "pads": [0, pads[0], 0, pads[1]],
        "group": int(node.attrs.get("group", 1)),
    }


def elems(shape: list[int]) -> int:
    return int(math.prod(shape)) if shape else 0
