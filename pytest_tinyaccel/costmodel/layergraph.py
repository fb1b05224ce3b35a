"""Static analysis of an ONNX graph for the cost models: shapes, MACs, tensor sizes, edges.

Pure onnx + numpy (no ZigZag, no pytest). `prepare_model` makes the working copy
every cost model uses:

* `DequantizeLinear` nodes whose inputs are all initializers (weights stored as
  int8 in a float model, as in the MLPerf Tiny KWS reference) are folded into
  float initializers, so the graph is a plain float graph;
* dynamic (symbolic or zero) dimensions of graph inputs/outputs are fixed to 1
  (one inference instance), and shapes are re-inferred;
* unnamed nodes are named `<op_type>_<index>` (the index in the graph's node list).

The caller's model is never modified; everything happens on a copy in memory.

Layers of other shapes are costed as the shapes the cost models understand
(`zigzag_workload`, and the AIE model's graph): a 1-D Conv ([N, C, L]) as a 2-D Conv
with height 1, a recurrent layer (LSTM, GRU, RNN) as the matrix product of its gates
over every step (`Layer.gemm_shape`). A layer neither can cost (`cost_problem`) is a
ValueError naming the node and why.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

RECURRENT_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
"""Recurrent ops and their gate count: costed as one matrix product of [steps x batch x
directions, input + hidden] by [input + hidden, gates x hidden] (the gate pre-activations of
every step; the element-wise gate arithmetic is not counted)."""
MATRIX_OPS = ("Conv", "Gemm", "MatMul", *RECURRENT_GATES)
"""Ops costed by ZigZag (the MAC-array layers)."""

METADATA_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Constant", "Shape"})
"""Ops that only relabel a tensor (no data movement on either accelerator): cost 0, no kernel."""

ACTIVATION_OPS = frozenset({"Relu", "Clip", "LeakyRelu"})
"""Element-wise activations both accelerators apply to a matrix op's result on its way out
(Gemmini: activation unit on the accumulator read path; AIE-ML: on the accumulator-to-vector
move). Fused when their input is produced by a matrix op and consumed by nothing else."""


@dataclass
class Layer:
    """One ONNX node with what the cost models need to know about it."""

    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    index: int
    attrs: dict[str, Any] = field(default_factory=dict)
    macs: int = 0
    weight_elems: int = 0
    """Constant (initializer) operand elements: weights plus bias."""
    input_elems: int = 0
    """Elements of the non-constant inputs (activations)."""
    output_elems: int = 0
    group: int = 1
    out_channels: int = 0
    """K for Conv/Gemm/MatMul; channels of the first output otherwise (0 if unknown)."""
    out_rows: int = 0
    """Output rows (OY for Conv, D for Gemm/MatMul), the second split axis."""
    gemm_shape: tuple[int, int, int] = (0, 0, 0)
    """Recurrent layers: (rows, reduction, columns) of the matrix product they are costed as."""

    @property
    def is_matrix(self) -> bool:
        return self.op in MATRIX_OPS

    @property
    def is_depthwise(self) -> bool:
        return self.op == "Conv" and self.group > 1


@dataclass
class LayerGraph:
    """The prepared model and its nodes in topological (file) order."""

    model: onnx.ModelProto
    nodes: list[Layer]
    shapes: dict[str, list[int]]
    initializers: set[str]
    graph_inputs: list[str]
    graph_outputs: list[str]

    def producers(self) -> dict[str, str]:
        """Tensor name -> name of the node producing it."""
        return {out: n.name for n in self.nodes for out in n.outputs}

    def predecessors(self, node: Layer) -> list[str]:
        prod = self.producers()
        seen: list[str] = []
        for t in node.inputs:
            p = prod.get(t)
            if p is not None and p not in seen:
                seen.append(p)
        return seen

    def consumers(self) -> dict[str, list[str]]:
        """Tensor name -> names of the nodes reading it."""
        out: dict[str, list[str]] = {}
        for n in self.nodes:
            for t in n.inputs:
                if t:
                    out.setdefault(t, []).append(n.name)
        return out

    def fused_activations(self) -> dict[str, str]:
        """Epilogue node name -> the matrix node it is fused into.

        Fused: an ACTIVATION_OPS node, or an Add of a constant (a bias, as the
        MLPerf Tiny dense layers have after their MatMul), whose data input is
        produced by a matrix node (or by an epilogue already fused into one) and
        read by nothing else. Both accelerators apply these on the way out of
        the accumulator.
        """
        by_name = {n.name: n for n in self.nodes}
        prod = self.producers()
        cons = self.consumers()
        fused: dict[str, str] = {}
        for n in self.nodes:
            if n.op in ACTIVATION_OPS:
                data = n.inputs[:1]
            elif n.op == "Add" and len(n.inputs) == 2:
                data = [t for t in n.inputs if t not in self.initializers]
                if len(data) != 1:
                    continue
            else:
                continue
            if not data or not data[0]:
                continue
            src = prod.get(data[0])
            if src is None:
                continue
            root = fused.get(src, src if by_name[src].is_matrix else None)
            if root is None:
                continue
            if len(cons.get(data[0], [])) == 1 and data[0] not in self.graph_outputs:
                fused[n.name] = root
        return fused

    def node(self, name: str) -> Layer:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


def load_model(model: str | Path | bytes | onnx.ModelProto) -> tuple[onnx.ModelProto, bytes]:
    """Return (a private copy of the model, its serialized bytes for hashing)."""
    if isinstance(model, onnx.ModelProto):
        data = model.SerializeToString()
    elif isinstance(model, (bytes, bytearray)):
        data = bytes(model)
    else:
        data = Path(model).read_bytes()
    proto = onnx.ModelProto()
    proto.ParseFromString(data)
    return proto, data


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fold_constant_dequantize(model: onnx.ModelProto) -> None:
    """Fold every DequantizeLinear of constants into a float initializer (in place)."""
    inits = {i.name: i for i in model.graph.initializer}
    keep = []
    new_inits = []
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and all((not name) or name in inits for name in node.input):
            x = numpy_helper.to_array(inits[node.input[0]]).astype(np.float64)
            scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
            zp = (
                numpy_helper.to_array(inits[node.input[2]]).astype(np.float64)
                if len(node.input) > 2 and node.input[2]
                else np.zeros_like(scale)
            )
            axis = 1
            for a in node.attribute:
                if a.name == "axis":
                    axis = a.i
            if scale.ndim == 1 and scale.size > 1:
                shape = [1] * x.ndim
                shape[axis % x.ndim] = scale.size
                scale = scale.reshape(shape)
                zp = zp.reshape(shape)
            y = ((x - zp) * scale).astype(np.float32)
            new_inits.append(numpy_helper.from_array(y, node.output[0]))
        else:
            keep.append(node)
    if new_inits:
        del model.graph.node[:]
        model.graph.node.extend(keep)
        model.graph.initializer.extend(new_inits)
        # drop now-unused quantized initializers
        used = {i for n in model.graph.node for i in n.input}
        kept_inits = [i for i in model.graph.initializer if i.name in used]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept_inits)
        init_names = {i.name for i in kept_inits}
        kept_inputs = [i for i in model.graph.input if i.name in used or i.name not in init_names]
        del model.graph.input[:]
        model.graph.input.extend(kept_inputs)


def _fix_batch(model: onnx.ModelProto) -> None:
    inits = {i.name for i in model.graph.initializer}
    for vi in list(model.graph.input) + list(model.graph.output):
        if vi.name in inits:
            continue
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") or d.dim_value <= 0:
                d.Clear()
                d.dim_value = 1


def node_attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        if isinstance(v, (list, tuple)):
            v = list(v)
        out[a.name] = v
    return out


def _shape_of(vi: onnx.ValueInfoProto) -> list[int] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            return None
    return dims


QUANTIZED_OPS = frozenset({"QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger", "QuantizeLinear"})


def prepare_model(model: str | Path | bytes | onnx.ModelProto) -> tuple[LayerGraph, str]:
    """Copy, fold constant DequantizeLinear, fix batch to 1, infer shapes, analyse.

    Returns the `LayerGraph` and the sha256 of the *original* model bytes. Raises
    ValueError for a quantized graph: the cost models take the float model and
    get the int8 precision from the hardware description.
    """
    proto, data = load_model(model)
    digest = sha256_bytes(data)
    fold_constant_dequantize(proto)
    quantized = sorted({n.op_type for n in proto.graph.node} & QUANTIZED_OPS)
    if quantized:
        raise ValueError(
            f"the cost model takes the float ONNX model (the int8 precision comes from the hardware "
            f"description), but this graph has quantized ops {quantized}"
        )
    return analyse(infer(proto)), digest


def infer(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Batch fixed to 1, unnamed nodes named `<op_type>_<index>`, shapes inferred (a new proto)."""
    _fix_batch(proto)
    del proto.graph.value_info[:]
    for i, node in enumerate(proto.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    return onnx.shape_inference.infer_shapes(proto, data_prop=True)


def analyse(proto: onnx.ModelProto) -> LayerGraph:
    shapes: dict[str, list[int]] = {}
    for vi in list(proto.graph.input) + list(proto.graph.output) + list(proto.graph.value_info):
        s = _shape_of(vi)
        if s is not None:
            shapes[vi.name] = s
    initializers = {i.name for i in proto.graph.initializer}
    for init in proto.graph.initializer:
        shapes[init.name] = list(init.dims)
    graph_inputs = [i.name for i in proto.graph.input if i.name not in initializers]
    graph_outputs = [o.name for o in proto.graph.output]

    def elems(name: str) -> int:
        s = shapes.get(name)
        return int(math.prod(s)) if s is not None else 0

    nodes: list[Layer] = []
    for index, nd in enumerate(proto.graph.node):
        attrs = node_attrs(nd)
        n = Layer(
            name=nd.name,
            op=nd.op_type,
            inputs=[i for i in nd.input],
            outputs=[o for o in nd.output],
            index=index,
            attrs=attrs,
        )
        const_in = [i for i in nd.input if i and i in initializers]
        act_in = [i for i in nd.input if i and i not in initializers]
        n.weight_elems = sum(elems(i) for i in const_in)
        n.input_elems = sum(elems(i) for i in act_in)
        n.output_elems = sum(elems(o) for o in nd.output if o)
        out_shape = shapes.get(nd.output[0]) if nd.output else None
        if nd.op_type == "Conv":
            w = shapes.get(nd.input[1], [])
            n.group = int(attrs.get("group", 1))
            if out_shape and len(w) >= 3:
                k, c_per_group = w[0], w[1]
                window = int(math.prod(w[2:]))
                n.macs = int(math.prod(out_shape)) * c_per_group * window
                n.out_channels = int(k)
                n.out_rows = int(out_shape[2]) if len(out_shape) > 2 else 1
        elif nd.op_type in RECURRENT_GATES:
            _recurrent(n, shapes)
        elif nd.op_type in ("Gemm", "MatMul"):
            a = shapes.get(nd.input[0])
            if out_shape and a:
                trans_a = int(attrs.get("transA", 0)) if nd.op_type == "Gemm" else 0
                c = a[-2] if trans_a else a[-1]
                n.macs = int(math.prod(out_shape)) * int(c)
                n.out_channels = int(out_shape[-1])
                n.out_rows = int(math.prod(out_shape[:-1])) if len(out_shape) > 1 else 1
        elif out_shape:
            n.out_channels = int(out_shape[1]) if len(out_shape) > 1 else int(out_shape[0])
            n.out_rows = int(out_shape[2]) if len(out_shape) > 2 else 1
        nodes.append(n)
    return LayerGraph(
        model=proto,
        nodes=nodes,
        shapes=shapes,
        initializers=initializers,
        graph_inputs=graph_inputs,
        graph_outputs=graph_outputs,
    )


def _recurrent(n: Layer, shapes: dict[str, list[int]]) -> None:
    """MACs and matrix shape of an LSTM/GRU/RNN (see RECURRENT_GATES), from X [steps, batch,
    input] (layout 0; [batch, steps, input] with layout 1), W [dirs, gates x hidden, input] and
    R [dirs, gates x hidden, hidden]."""
    x, w, r = (shapes.get(t) for t in n.inputs[:3])
    if not (x and w and r and len(x) == 3 and len(w) == 3 and len(r) == 3):
        return
    steps, batch = (x[0], x[1]) if int(n.attrs.get("layout", 0)) == 0 else (x[1], x[0])
    n.gemm_shape = (steps * batch * w[0], w[2] + r[2], w[1])
    n.macs = int(math.prod(n.gemm_shape))
    n.out_channels, n.out_rows = w[1], n.gemm_shape[0]


def cost_problem(node: Layer, graph: LayerGraph) -> str | None:
    """Why the cost models cannot cost `node` (None when they can): a transposed or a 3-D (or
    higher) convolution, a matrix layer whose shapes shape inference does not give."""
    if node.op == "ConvTranspose":
        return "a transposed convolution has no mapping onto the cost models' convolution or matrix layers"
    if not node.is_matrix:
        return None
    if not node.macs:
        return "shape inference gives no shapes for its inputs and outputs (dynamic shapes?)"
    rank = len(graph.shapes.get(node.inputs[0], []))
    if node.op == "Conv" and rank not in (3, 4):
        return f"a {rank - 2}-D convolution: the cost models map 1-D and 2-D convolutions"
    if node.op == "MatMul" and rank not in (2, 3, 4):
        return f"a MatMul of rank {rank}: the cost models take rank 2 to 4"
    return None


def check_costable(graph: LayerGraph) -> None:
    """ValueError naming every node `cost_problem` refuses, with why (the target says whose cost model)."""
    problems = [f"node {n.name!r} ({n.op}): {p}" for n in graph.nodes if (p := cost_problem(n, graph))]
    if problems:
        raise ValueError("cannot cost " + "; ".join(problems))
