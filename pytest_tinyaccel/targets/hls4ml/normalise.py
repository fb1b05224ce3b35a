"""The ONNX model in the form qonnx's clean-up and hls4ml's ONNX front end read, and what
they cannot read, refused before they see it. Runs in the hls4ml worker process.

`normalise` brings any valid ONNX model (float, QDQ, or QONNX) to one form, with onnx and
onnxruntime's own tools: initializers that old exporters (and Brevitas) also list as graph
inputs treated as the constants they are, a fixed batch, opset 13 or later (onnx's version
converter), ONNX Runtime's basic offline optimisation (constant folding, redundant-node
removal, Conv+BatchNorm/Add/Mul fusion: standard ONNX ops only; not for QONNX, which ONNX
Runtime cannot load), every Conv/pool attribute qonnx requires made explicit (kernel_shape
from the weights, strides and dilations 1, pads 0, auto_pad resolved from the inferred
shapes), a ReduceMean over all spatial axes (torch's global average pooling) written as the
GlobalAveragePool it is, 1-D convolution networks lifted to 2-D ones of height 1 (`lift_1d`),
and shape inference (strict; qonnx's for QONNX), so every tensor has a shape.

`refusals` lists what hls4ml cannot convert, grouped by op type and reason with a count
("LSTM x1: hls4ml's ONNX front end has no LSTM layer"), from hls4ml's own table of ONNX
handlers and the limits its handlers state, so an unsupported model is refused at build time
in one short line instead of failing (or hanging) deep inside qonnx or hls4ml.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

MIN_OPSET = 13
"""qonnx and hls4ml read Softmax, Squeeze, Split ... with their opset-13 signatures."""
SKIPPED = ("Dropout", "Identity")
"""Ops hls4ml's ONNX front end passes through."""
QONNX_OPS = ("Quant", "BipolarQuant", "Trunc")
QONNX_REWRITES = ("Gemm",)
"""Ops qonnx's clean-up turns into ops hls4ml converts (Gemm -> MatMul + Add)."""
WINDOWED = ("Conv", "MaxPool", "AveragePool")
GLOBAL_POOLS = ("GlobalAveragePool", "GlobalMaxPool")
UNARY = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "Selu", "Softplus", "Softsign", "ThresholdedRelu"}
UNARY |= {"Clip", "HardSigmoid", "Identity", "Dropout", "BatchNormalization", "PRelu"}
BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Average"}
MERGES = BINARY | {"Concat"}
LIFTABLE = UNARY | BINARY | {"Concat", *WINDOWED, *GLOBAL_POOLS}
"""Ops a [N, C, L] tensor passes through unchanged in meaning as [N, C, 1, L]."""


def attribute(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """An attribute's value (bytes decoded), or `default`."""
    for attr in node.attribute:
        if attr.name == name:
            value = helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _set_attributes(node: onnx.NodeProto, values: dict[str, Any], drop: tuple[str, ...] = ()) -> None:
    kept = [a for a in node.attribute if a.name not in values and a.name not in drop]
    del node.attribute[:]
    node.attribute.extend(kept)
    node.attribute.extend(helper.make_attribute(k, v) for k, v in values.items())


def shapes_of(proto: onnx.ModelProto) -> dict[str, list[int]]:
    """Tensor name -> shape, from the graph's inputs, outputs, value_info and initializers."""
    graph = proto.graph
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*graph.input, *graph.output, *graph.value_info)
    }
    shapes.update({t.name: list(t.dims) for t in graph.initializer})
    return shapes


def infer_shapes(proto: onnx.ModelProto, qonnx: bool = False) -> onnx.ModelProto:
    """onnx's strict shape inference (with data propagation): every tensor gets a shape; qonnx's
    for a QONNX model (onnx knows no Quant node)."""
    del proto.graph.value_info[:]
    if not qonnx:
        return onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    return ModelWrapper(proto).transform(InferShapes()).model


def is_qonnx(proto: onnx.ModelProto) -> bool:
    """The model holds QONNX nodes (Quant, BipolarQuant, Trunc): ONNX Runtime cannot load it."""
    return any(node.domain.startswith("qonnx") or node.op_type in QONNX_OPS for node in proto.graph.node)


def normalise(path: Path, batch: int = 1) -> onnx.ModelProto:
    """The model at `path` in the one form qonnx and hls4ml read (module docstring)."""
    from onnx import version_converter

    proto = onnx.load(str(path))  # external data too (torch's default exporter)
    qonnx = is_qonnx(proto)
    constants_are_not_inputs(proto)
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_value = batch
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), MIN_OPSET)
    if opset < MIN_OPSET:
        proto = version_converter.convert_version(proto, MIN_OPSET)
    if not qonnx:
        proto = _ort_basic_optimisation(proto)
    proto = infer_shapes(proto, qonnx)
    for index, node in enumerate(proto.graph.node):
        node.name = node.name or f"{node.op_type}_{index}"
    explicit_attributes(proto)
    explicit_resize_inputs(proto)
    quantized = qonnx or any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in proto.graph.node)
    # A quantized 1-D network is not lifted (its weights come through DequantizeLinear): refused instead.
    if reduce_mean_to_global_pool(proto) | (not quantized and lift_1d(proto)):
        proto = infer_shapes(proto, qonnx)
    return proto


def constants_are_not_inputs(proto: onnx.ModelProto) -> None:
    """Drop initializers from the graph's inputs (IR < 4 exporters and Brevitas list them there), so they
    are constants: ONNX Runtime and qonnx would otherwise treat them as overridable inputs, and the batch
    rewrite would give them a batch axis. In place."""
    constants = {t.name for t in proto.graph.initializer}
    kept = [v for v in proto.graph.input if v.name not in constants]
    del proto.graph.input[:]
    proto.graph.input.extend(kept)


def reduce_mean_to_global_pool(proto: onnx.ModelProto) -> bool:
    """A ReduceMean over every spatial axis of an [N, C, ...] tensor (how torch writes
    `x.mean((2, 3))` and adaptive average pooling to 1) as the GlobalAveragePool it is, followed by a
    Flatten when keepdims is 0; True when something changed. In place."""
    shapes = shapes_of(proto)
    inits = {t.name: t for t in proto.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    changed = False
    for node in proto.graph.node:
        rank = len(shapes.get(node.input[0], [])) if node.input else 0
        axes = attribute(node, "axes")
        if axes is None and len(node.input) > 1 and node.input[1] in inits:  # opset 18: axes as an input
            axes = numpy_helper.to_array(inits[node.input[1]]).tolist()
        if node.op_type != "ReduceMean" or node.domain or rank not in (3, 4) or axes is None:
            nodes.append(node)
            continue
        if sorted(a % rank for a in axes) != list(range(2, rank)):
            nodes.append(node)
            continue
        keep = int(attribute(node, "keepdims", 1))
        pooled = node.output[0] if keep else node.output[0] + "_pooled"
        nodes.append(helper.make_node("GlobalAveragePool", [node.input[0]], [pooled], name=node.name))
        if not keep:
            nodes.append(helper.make_node("Flatten", [pooled], [node.output[0]], name=node.name + "_flatten", axis=1))
        changed = True
    if changed:
        del proto.graph.node[:]
        proto.graph.node.extend(nodes)
    return changed


def _ort_basic_optimisation(proto: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX Runtime's basic-level offline optimisation (standard ONNX ops only); the opset
    imports it adds for its own domains are dropped again when no node uses them."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="tinyaccel-ort-") as folder:
        options.optimized_model_filepath = str(Path(folder) / "optimised.onnx")
        ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        optimised = onnx.load(options.optimized_model_filepath)
    used = {node.domain for node in optimised.graph.node} | {"", "ai.onnx"}
    imports = [o for o in optimised.opset_import if o.domain in used]
    del optimised.opset_import[:]
    optimised.opset_import.extend(imports)
    return optimised


def explicit_attributes(proto: onnx.ModelProto) -> None:
    """Every Conv/MaxPool/AveragePool gets kernel_shape (a Conv's from its weights), strides,
    dilations, pads and group written out, auto_pad resolved into pads from the inferred
    shapes (qonnx requires them; hls4ml ignores auto_pad). In place."""
    shapes = shapes_of(proto)
    for node in proto.graph.node:
        if node.op_type not in WINDOWED or node.domain:
            continue
        x, y = shapes[node.input[0]], shapes[node.output[0]]
        n = len(x) - 2
        weights = shapes.get(node.input[1], []) if node.op_type == "Conv" else []
        kernel = list(attribute(node, "kernel_shape", weights[2:]))
        strides = list(attribute(node, "strides", [1] * n))
        dilations = list(attribute(node, "dilations", [1] * n))
        pads = list(attribute(node, "pads", [0] * 2 * n))
        auto_pad = attribute(node, "auto_pad", "NOTSET")
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            for i in range(n):
                total = max((y[2 + i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - x[2 + i], 0)
                small, big = total // 2, total - total // 2
                pads[i], pads[n + i] = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
        values: dict[str, Any] = {"kernel_shape": kernel, "strides": strides, "pads": pads}
        if node.op_type != "AveragePool":
            values["dilations"] = dilations
        if node.op_type == "Conv":
            values["group"] = int(attribute(node, "group", 1))
        _set_attributes(node, values, drop=("auto_pad",))


def explicit_resize_inputs(proto: onnx.ModelProto) -> None:
    """Every Resize as [X, roi, scales], the one form hls4ml reads: target `sizes` become the
    `scales` they mean (output over input shape), an omitted roi a constant [0] (Resize reads
    roi only in tf_crop_and_resize mode, which `refusals` refuses; hls4ml takes the truth value
    of the roi constant, which numpy refuses for an empty array)."""
    shapes = shapes_of(proto)
    for node in proto.graph.node:
        if node.op_type != "Resize" or node.domain:
            continue
        inputs = list(node.input) + [""] * (4 - len(node.input))
        if not inputs[1]:
            inputs[1] = node.name + "_roi"
            proto.graph.initializer.append(numpy_helper.from_array(np.zeros(1, np.float32), inputs[1]))
        if not inputs[2] and inputs[3]:
            x, y = shapes[inputs[0]], shapes[node.output[0]]
            inputs[2] = node.name + "_scales"
            scales = np.array([o / i for o, i in zip(y, x)], np.float32)
            proto.graph.initializer.append(numpy_helper.from_array(scales, inputs[2]))
        del node.input[:]
        node.input.extend(inputs[:3])


def lift_1d(proto: onnx.ModelProto) -> bool:
    """Rewrite the 1-D convolution part of a network ([N, C, L] tensors) as a 2-D one of
    height 1 ([N, C, 1, L]), in place; True when something changed.

    qonnx's channels-last conversion loops forever on 1-D networks whose element-wise ops
    take two activations (its channels-first and channels-last transposes of a 3-D tensor
    are the same permutation, so moving one past the op creates another), and 2-D is the
    form hls4ml converts best. The rank-3 tensors connected to a 1-D Conv or pool through
    `LIFTABLE` ops get a 4-D twin `<name>_2d`; Reshape bridges connect the twins with the
    rest of the graph; a lifted graph input or output keeps its name and becomes 4-D (the
    same values in the same order: the design reads and writes flat arrays); constant
    operands and attributes are rewritten for the extra axis.
    """
    shapes = shapes_of(proto)
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}

    def activations(node: onnx.NodeProto) -> list[str]:
        return [t for t in (*node.input, *node.output) if t and t not in inits]

    lifted = {
        t
        for node in graph.node
        if node.op_type in WINDOWED + GLOBAL_POOLS and len(shapes.get(node.input[0], [])) == 3
        for t in activations(node)
    }
    if not lifted:
        return False
    changed = True
    while changed:
        changed = False
        for node in graph.node:
            if node.op_type in LIFTABLE and any(t in lifted for t in activations(node)):
                fresh = {t for t in activations(node) if len(shapes.get(t, [])) == 3} - lifted
                lifted |= fresh
                changed = changed or bool(fresh)
    touched = [n for n in graph.node if n.op_type in LIFTABLE and any(t in lifted for t in activations(n))]
    for node in graph.node:  # a Flatten from axis 1 reads [N, C, 1, L] as it read [N, C, L]
        if node.op_type == "Flatten" and node.input[0] in lifted and attribute(node, "axis", 1) == 1:
            touched.append(node)
    touched_ids = {id(n) for n in touched}
    boundary = {v.name: v for v in (*graph.input, *graph.output)}
    # Per lifted tensor: its 4-D name (touched nodes) and its 3-D name (other nodes). Graph
    # inputs and outputs keep their names and become 4-D: the same values in the same order.
    four = {t: t if t in boundary else t + "_2d" for t in lifted}
    three = {t: t + "_1d" if t in boundary else t for t in lifted}
    for node in graph.node:
        names = four if id(node) in touched_ids else three
        for i, name in enumerate(node.input):
            if name in lifted:
                node.input[i] = names[name]
            elif id(node) in touched_ids and name in inits and len(shapes[name]) >= 2 and node.op_type not in WINDOWED:
                node.input[i] = _lifted_constant(graph, inits[name])
        for i, name in enumerate(node.output):
            if name in lifted:
                node.output[i] = names[name]
    for node in touched:
        _lift_attributes(node, inits, graph)
    read_3d = {t for n in graph.node if id(n) not in touched_ids for t in n.input}
    made_4d = {t for n in touched for t in n.output} | {v.name for v in graph.input}
    bridges: list[onnx.NodeProto] = []
    for name in sorted(lifted):
        b, c, length = shapes[name]
        if four[name] in made_4d and three[name] in read_3d:
            bridges.append(_reshape(graph, four[name], three[name], [b, c, length]))
        elif four[name] not in made_4d:  # made as [N, C, L] by another op
            bridges.append(_reshape(graph, three[name], four[name], [b, c, 1, length]))
        if name in boundary:
            dims = boundary[name].type.tensor_type.shape.dim
            del dims[:]
            for value in (b, c, 1, length):
                dims.add().dim_value = value
    order = list(graph.node)
    del graph.node[:]
    graph.node.extend(_topological(bridges + order))
    return True


def _lifted_constant(graph: onnx.GraphProto, tensor: onnx.TensorProto) -> str:
    """A copy of a constant operand of rank >= 2 with a unit axis before its last one
    (broadcasting against [N, C, 1, L] as it did against [N, C, L]); returns its name."""
    name = tensor.name + "_2d"
    if not any(t.name == name for t in graph.initializer):
        value = numpy_helper.to_array(tensor)
        graph.initializer.append(numpy_helper.from_array(np.expand_dims(value, -2), name))
    return name


def _lift_attributes(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto], graph: onnx.GraphProto) -> None:
    """The node's attributes (and a Conv's weights) for the extra height axis of size 1."""
    if node.op_type == "Concat":
        axis = int(attribute(node, "axis"))
        axis = axis + 3 if axis < 0 else axis
        _set_attributes(node, {"axis": 3 if axis == 2 else axis})
    if node.op_type not in WINDOWED:
        return
    kernel, strides = attribute(node, "kernel_shape"), attribute(node, "strides")
    pads = attribute(node, "pads")
    values: dict[str, Any] = {"kernel_shape": [1, *kernel], "strides": [1, *strides], "pads": [0, pads[0], 0, pads[1]]}
    if node.op_type != "AveragePool":
        values["dilations"] = [1, *attribute(node, "dilations", [1])]
    _set_attributes(node, values)
    if node.op_type == "Conv":
        node.input[1] = _lifted_constant(graph, inits[node.input[1]])


def _reshape(graph: onnx.GraphProto, source: str, target: str, shape: list[int]) -> onnx.NodeProto:
    """A Reshape node from `source` to `target` of `shape` (its shape constant added to `graph`)."""
    shape_name = f"{target}_shape"
    graph.initializer.append(numpy_helper.from_array(np.array(shape, np.int64), shape_name))
    return helper.make_node("Reshape", [source, shape_name], [target], name=f"{target}_reshape")


def _topological(nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """`nodes` in an order where every tensor is made before it is read."""
    made = {out for node in nodes for out in node.output}
    ready: set[str] = set()
    ordered: list[onnx.NodeProto] = []
    pending = list(nodes)
    while pending:
        rest = []
        for node in pending:
            if all(t in ready or t not in made or not t for t in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError("the graph has a cycle")
        pending = rest
    return ordered


def refusals(proto: onnx.ModelProto, supported: set[str]) -> list[str]:
    """What hls4ml cannot convert in the normalised model, one "<op> x<count>: <reason>" per op type
    and reason: ops without an hls4ml ONNX handler (`supported`, from hls4ml) and the limits hls4ml's
    handlers state (merges of two tensors, concatenation up to rank 3, 1-D and 2-D convolutions)."""
    shapes = shapes_of(proto)
    allowed = supported | set(SKIPPED) | set(QONNX_REWRITES)
    found: Counter[tuple[str, str]] = Counter()
    for node in proto.graph.node:
        reason = _refusal(node, len(shapes.get(node.input[0], [])) if node.input else 0, allowed)
        if reason:
            found[(node.op_type, reason)] += 1
    return [f"{op} x{count}: {reason}" for (op, reason), count in sorted(found.items())]


def _refusal(node: onnx.NodeProto, rank: int, allowed: set[str]) -> str | None:
    """Why hls4ml cannot convert `node` (its data input of rank `rank`), or None."""
    op = node.op_type
    if op not in allowed:
        return f"hls4ml's ONNX front end has no {op} layer"
    if op in MERGES and len([t for t in node.input if t]) > 2:
        return "hls4ml merges two tensors at a time"
    if op == "Concat" and rank - 1 > 3:
        return "hls4ml concatenates tensors of rank 3 or less (per sample)"
    if op in WINDOWED and rank not in (3, 4):
        return "hls4ml converts 1-D and 2-D convolutions and pools only"
    if op == "Resize" and attribute(node, "coordinate_transformation_mode") == "tf_crop_and_resize":
        return "hls4ml does not crop (coordinate_transformation_mode tf_crop_and_resize)"
    if op == "Resize" and attribute(node, "mode", "nearest") not in ("nearest", "linear"):
        return "hls4ml resizes by nearest neighbour or (bi)linear interpolation, not cubic"
    return None
