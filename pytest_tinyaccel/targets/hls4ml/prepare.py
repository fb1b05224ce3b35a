"""What the hls4ml worker does to a model before hls4ml sees it: qonnx's clean-up into
the channels-last form hls4ml converts, and the rewrites of what that conversion leaves
in NCHW. Runs in the worker process."""

from __future__ import annotations

from typing import Any

import numpy as np

from .settings import FixedPoint

CHANNELS_LAST = "qonnx.custom_op.channels_last"


def fixed_type(signed: bool, width: int, integer: int) -> str:
    return str(FixedPoint(signed, width, integer, "RND", "SAT"))


# ----- ONNX preparation -------------------------------------------------------------------


def cap_onnx_ir_version() -> None:
    """qonnx executes single nodes through ONNX Runtime in models made with onnx.helper, which
    stamps onnx's newest IR version; cap it to what the installed ONNX Runtime reads (this
    process only)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    for version in range(onnx.IR_VERSION, 6, -1):
        probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        probe.ir_version = version
        try:
            ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001, S112 - ORT raises its own types for "unsupported IR version"
            continue
        onnx.IR_VERSION = version  # type: ignore[assignment]  # an int at run time; the stubs say enum
        return


def _attr(node, name: str, default: Any = None) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def qonnx_clean(proto):
    """A normalised model through qonnx's clean-up and channels-last conversion (a ModelWrapper)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    model = cleanup_model(ModelWrapper(proto))
    model = model.transform(ConvertToChannelsLastAndClean())
    model = model.transform(GemmToMatMul())
    return cleanup_model(model)


def pools_to_channels_last(model) -> int:
    """Move the NHWC->NCHW Transpose qonnx leaves before (Global)AveragePool / GlobalMaxPool
    behind it, as a channels-last pool (docs/hls4ml.md, "Graph rewrite"). Returns the count."""
    from onnx import helper

    graph = model.graph
    changed = 0
    for node in list(graph.node):
        if node.domain or node.op_type not in ("GlobalAveragePool", "AveragePool", "GlobalMaxPool"):
            continue
        producer = model.find_producer(node.input[0])
        if (
            producer is None
            or producer.op_type != "Transpose"
            or list(_attr(producer, "perm", [])) != [0, 3, 1, 2]
            or len(model.find_consumers(producer.output[0])) != 1
        ):
            continue
        shape = model.get_tensor_shape(producer.input[0])
        if shape is None or len(shape) != 4:
            continue
        n, h, w, c = shape
        if node.op_type.startswith("Global"):
            kernel, strides = [h, w], [h, w]
        else:
            auto_pad = _attr(node, "auto_pad", b"NOTSET")
            auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
            if (
                _attr(node, "ceil_mode", 0)
                or auto_pad not in ("NOTSET", "VALID")
                or any(_attr(node, "pads", [0]))
                or any(d != 1 for d in _attr(node, "dilations", [1, 1]))
            ):
                continue
            kernel = list(_attr(node, "kernel_shape"))
            strides = list(_attr(node, "strides", [1, 1]))
        out_h, out_w = (h - kernel[0]) // strides[0] + 1, (w - kernel[1]) // strides[1] + 1
        op = "MaxPool" if "Max" in node.op_type else "AveragePool"
        consumers = model.find_consumers(node.output[0]) or []
        # A 1x1 result flattens the same in either layout: no Transpose needed (hls4ml's
        # transpose-before-flatten optimisation trips over the bias fusion that follows).
        direct = (
            out_h * out_w == 1
            and consumers
            and all(c.op_type == "Flatten" and _attr(c, "axis", 1) == 1 for c in consumers)
        )
        pooled = node.output[0] if direct else node.output[0] + "_channels_last"
        pool = helper.make_node(
            op,
            [producer.input[0]],
            [pooled],
            name=node.name,
            domain=CHANNELS_LAST,
            kernel_shape=kernel,
            strides=strides,
            pads=[0, 0, 0, 0],
        )
        index = list(graph.node).index(node)
        graph.node.remove(node)
        if not direct:
            graph.node.insert(
                index,
                helper.make_node(
                    "Transpose", [pooled], [node.output[0]], name=node.name + "_to_nchw", perm=[0, 3, 1, 2]
                ),
            )
        graph.node.insert(index, pool)
        graph.node.remove(producer)
        model.set_tensor_shape(pooled, [n, out_h, out_w, c])
        changed += 1
    return changed


TO_NCHW, TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]
CONCAT_AXIS_NHWC = {0: 0, 1: 3, 2: 1, 3: 2}
"""A 4-D Concat's axis in NCHW -> the same axis in NHWC."""


def _to_nchw(model, tensor: str):
    """The NHWC->NCHW Transpose writing `tensor` when nothing else reads `tensor`, else None."""
    producer = model.find_producer(tensor)
    if producer is None or producer.op_type != "Transpose" or list(_attr(producer, "perm", [])) != TO_NCHW:
        return None
    return producer if len(model.find_consumers(tensor) or []) == 1 else None


def layout_ops_to_channels_last(model) -> int:
    """Make the layout-dependent ops qonnx's channels-last conversion leaves in NCHW, between an
    NHWC->NCHW Transpose and its inverse, channels-last ops (docs/hls4ml.md, "Graph rewrite"):
    a 4-D Concat whose every input comes through such a Transpose (its axis moved with the
    layout) and a Resize whose data does (its scales permuted), each followed by one Transpose
    back; then remove the Transpose pairs that undo each other. Returns the count of rewrites."""
    from onnx import helper

    graph = model.graph
    changed = 0
    for node in list(graph.node):
        shape = model.get_tensor_shape(node.output[0]) if node.output else None
        if node.domain or node.op_type not in ("Concat", "Resize") or shape is None or len(shape) != 4:
            continue
        data = list(node.input) if node.op_type == "Concat" else [node.input[0]]
        sources = [_to_nchw(model, t) for t in data]
        if any(source is None for source in sources):
            continue
        if node.op_type == "Resize":
            scales = model.get_initializer(node.input[2]) if len(node.input) == 3 else None
            if scales is None or len(scales) != 4:
                continue
            old = node.input[2]
            model.set_initializer(node.name + "_scales_nhwc", np.asarray(scales)[TO_NHWC].astype(np.float32))
            node.input[2] = node.name + "_scales_nhwc"
            if not model.find_consumers(old):  # hls4ml turns every initializer into a layer
                graph.initializer.remove(next(t for t in graph.initializer if t.name == old))
        else:
            axis = int(_attr(node, "axis")) % 4
            node.attribute.remove(next(a for a in node.attribute if a.name == "axis"))
            node.attribute.append(helper.make_attribute("axis", CONCAT_AXIS_NHWC[axis]))
        for i, source in enumerate(sources):
            node.input[i] = source.input[0]
            graph.node.remove(source)
        out = node.output[0]
        node.output[0] = out + "_channels_last"
        model.set_tensor_shape(node.output[0], [shape[i] for i in TO_NHWC])
        back = helper.make_node("Transpose", [node.output[0]], [out], name=node.name + "_to_nchw", perm=TO_NCHW)
        graph.node.insert(list(graph.node).index(node) + 1, back)
        changed += 1
    return changed + _cancel_transposes(model)


def _cancel_transposes(model) -> int:
    """Remove NHWC->NCHW Transposes followed by their inverse (nothing else reading the first):
    the second's readers read the first's input. Returns the count of pairs removed."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    removed = 0
    for node in list(graph.node):
        if node.op_type != "Transpose" or list(_attr(node, "perm", [])) != TO_NHWC or node.output[0] in outputs:
            continue
        first = _to_nchw(model, node.input[0])
        if first is None:
            continue
        for reader in model.find_consumers(node.output[0]) or []:
            for i, name in enumerate(reader.input):
                if name == node.output[0]:
                    reader.input[i] = first.input[0]
        graph.node.remove(node)
        graph.node.remove(first)
        removed += 1
    return removed
