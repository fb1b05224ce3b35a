"""The model ZigZag's ONNX parser reads: the prepared graph (`layergraph`) with every layer in
a form the parser understands, and ZigZag's per-node precision attributes.

ZigZag 3.9.1 parses 2-D Convs (4-D tensors), Gemms and MatMuls of rank 2 to 4. A 1-D Conv
becomes a 2-D Conv of height 1 (the length on ZigZag's X axis), a recurrent layer a MatMul of
the shape `layergraph.Layer.gemm_shape`; each rewritten layer reads and writes its own
tensors, bridged to the graph by Identity nodes (ZigZag's dummy nodes), so its predecessors
and successors stay as they were. Layers `layergraph.cost_problem` refuses are a ValueError
naming them. Everything happens on a copy.
"""

from __future__ import annotations

import copy

import onnx
from onnx import helper

from .layergraph import MATRIX_OPS, RECURRENT_GATES, LayerGraph, check_costable, node_attrs

_AS = "::cost"
"""Suffix of the tensors a rewritten layer writes in its costing form (what it reads also gets
its node's name: several layers may read one tensor, each through its own bridge)."""


def _as_costing_shapes(proto: onnx.ModelProto, graph: LayerGraph) -> None:
    """Rewrite 1-D Convs as 2-D Convs of height 1 and recurrent layers as a MatMul (in place),
    each between Identity bridges to its original tensors (see the module docstring)."""
    nodes: list[onnx.NodeProto] = []
    layers = {layer.name: layer for layer in graph.nodes}
    for nd in proto.graph.node:
        one_d = nd.op_type == "Conv" and len(graph.shapes.get(nd.input[0], [])) == 3
        if not (one_d or nd.op_type in RECURRENT_GATES):
            nodes.append(nd)
            continue
        if one_d:
            (n, c, length), (_, k, out) = graph.shapes[nd.input[0]], graph.shapes[nd.output[0]]
            in_shape, out_shape = [n, c, 1, length], [n, k, 1, out]
            attrs = node_attrs(nd)
            kernel = list(attrs.get("kernel_shape", graph.shapes.get(nd.input[1], [0, 0, 0])[2:]))
            stride, dilation = list(attrs.get("strides", [1])), list(attrs.get("dilations", [1]))
            pads = list(attrs.get("pads", [0, 0]))
            if attrs.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
                total = max((out - 1) * stride[0] + (kernel[0] - 1) * dilation[0] + 1 - length, 0)
                small, big = total // 2, total - total // 2
                pads = [small, big] if attrs["auto_pad"] == "SAME_UPPER" else [big, small]
            new = helper.make_node(
                "Conv",
                [f"{nd.input[0]}{_AS}:{nd.name}", *nd.input[1:]],
                [nd.output[0] + _AS],
                name=nd.name,
                kernel_shape=[1, kernel[0]],
                strides=[1, stride[0]],
                dilations=[1, dilation[0]],
                pads=[0, pads[0], 0, pads[1]],
                group=int(attrs.get("group", 1)),
            )
            outputs = [nd.output[0]]
        else:
            rows, reduction, columns = layers[nd.name].gemm_shape
            in_shape, out_shape = [rows, reduction], [rows, columns]
            source = f"{nd.input[0]}{_AS}:{nd.name}"
            new = helper.make_node("MatMul", [source, nd.input[1]], [nd.output[0] + _AS], name=nd.name)
            outputs = [o for o in nd.output if o]
        # Identity bridges: ZigZag sees dummy nodes, so the layer keeps its predecessors and successors.
        nodes += [helper.make_node("Identity", [nd.input[0]], [new.input[0]], name=nd.name + "/to_cost"), new]
        nodes += [
            helper.make_node("Identity", [new.output[0]], [o], name=f"{nd.name}/from_cost{i}")
            for i, o in enumerate(outputs)
        ]
        proto.graph.value_info.extend(
            helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, shape)
            for t, shape in ((new.input[0], in_shape), (new.output[0], out_shape))
        )
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)


def zigzag_model(graph: LayerGraph, precision: dict[str, int]) -> onnx.ModelProto:
    """A copy of the prepared model ready for ZigZag's ONNX parser.

    * every Conv/Gemm/MatMul gets `weight_size`/`act_size`/`output_size`
      attributes (ZigZag's per-node precision, in bits);
    * Conv attributes are given in ZigZag's axis order: its parser pairs
      `kernel_shape[0]`, `strides[0]`, `dilations[0]` and `pads[0]/pads[2]` with the
      *last* (width, X) axis, whereas ONNX lists height first. For square kernels
      this changes nothing; for e.g. the 10x4 first conv of the KWS model it keeps
      ZigZag's input/output/padding relation consistent. A missing `kernel_shape`
      is taken from the weight shape;
    * 1-D Convs and recurrent layers are rewritten as 2-D Convs and MatMuls (module docstring);
      a layer that cannot be costed is a ValueError naming it (`check_costable`).
    """
    check_costable(graph)
    proto = copy.deepcopy(graph.model)
    _as_costing_shapes(proto, graph)
    sizes = {
        "weight_size": int(precision["weight"]),
        "act_size": int(precision["act"]),
        "output_size": int(precision["output"]),
    }
    for nd in proto.graph.node:
        if nd.op_type not in MATRIX_OPS:
            continue
        existing = {a.name for a in nd.attribute}
        for key, value in sizes.items():
            if key in existing:
                for a in nd.attribute:
                    if a.name == key:
                        a.i = value
            else:
                nd.attribute.append(helper.make_attribute(key, value))
        if nd.op_type != "Conv":
            continue
        attrs = node_attrs(nd)
        w = graph.shapes.get(nd.input[1], [])
        kernel = list(attrs.get("kernel_shape", w[2:4] if len(w) >= 4 else []))
        strides = list(attrs.get("strides", [1, 1]))
        dilations = list(attrs.get("dilations", [1, 1]))
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        auto_pad = attrs.get("auto_pad", "NOTSET")
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            in_shape = graph.shapes.get(nd.input[0], [])
            out_shape = graph.shapes.get(nd.output[0], [])
            pads = [0, 0, 0, 0]
            if len(in_shape) == 4 and len(out_shape) == 4:
                for ax in range(2):
                    total = max(
                        (out_shape[2 + ax] - 1) * strides[ax] + (kernel[ax] - 1) * dilations[ax] + 1 - in_shape[2 + ax],
                        0,
                    )
                    small, big = total // 2, total - total // 2
                    begin, end = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
                    pads[ax], pads[2 + ax] = begin, end
        new = {
            "kernel_shape": [kernel[1], kernel[0]],
            "strides": [strides[1], strides[0]],
            "dilations": [dilations[1], dilations[0]],
            "pads": [pads[1], pads[0], pads[3], pads[2]],
        }
        kept = [a for a in nd.attribute if a.name not in (*new.keys(), "auto_pad")]
        del nd.attribute[:]
        nd.attribute.extend(kept)
        for attr_name, attr_value in new.items():
            nd.attribute.append(helper.make_attribute(attr_name, attr_value))
    return proto
