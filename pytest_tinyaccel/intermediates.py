"""ONNX Runtime's value of every intermediate tensor of a graph.

Used to name the first diverging layer when an emulated target misses its
golden, and for per-kernel golden files. ORT only returns graph outputs, so
every node output is added as a graph output (typed by ONNX shape inference)
and the graph is run with optimizations disabled: fused or eliminated nodes
would otherwise have no tensor to return. A quantized graph is first replaced
by the graph ONNX Runtime's optimizer makes of it (`ortgraph.py`), the one its
sessions and the emulator run, so every tensor is one the golden's outputs went
through. Exact int8 sums on a CPU without VNNI need one optimizer pass of ONNX
Runtime's own (its int8 weights turned uint8), so that case keeps the optimizer on.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from .ortgraph import has_qdq, ort_optimized
from .runtime import arithmetic_config, create_session, run_session

# Contrib (com.microsoft) quantized ops are unknown to ONNX shape inference; their
# output type is the type of their output zero point, at this input index.
_CONTRIB_ZP_INPUT = {
    "QLinearAdd": 7,
    "QLinearMul": 7,
    "QLinearGlobalAveragePool": 4,
    "QLinearAveragePool": 4,
    "QLinearSoftmax": 4,
    "QLinearSigmoid": 4,
    "QLinearLeakyRelu": 4,
    "QLinearConcat": 1,
    "QGemm": 8,
}


def intermediate_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor that ONNX shape inference (plus the contrib rule) can type."""
    types: dict[str, int] = {}
    work = onnx.ModelProto()
    work.CopyFrom(model)
    for _ in range(len(model.graph.node) + 1):
        inferred = onnx.shape_inference.infer_shapes(work)
        g = inferred.graph
        for v in list(g.value_info) + list(g.input) + list(g.output):
            if v.type.tensor_type.elem_type:
                types.setdefault(v.name, v.type.tensor_type.elem_type)
        for t in g.initializer:
            types.setdefault(t.name, t.data_type)
        added = False
        for node in g.node:
            zp_index = _CONTRIB_ZP_INPUT.get(node.op_type) if node.domain == "com.microsoft" else None
            if zp_index is None or not node.output or node.output[0] in types:
                continue
            elem = types.get(node.input[zp_index]) if zp_index < len(node.input) and node.input[zp_index] else None
            if node.op_type == "QGemm" and elem is None and len(node.input) <= 7:
                elem = onnx.TensorProto.FLOAT  # no y_scale: float output
            if elem:
                types[node.output[0]] = elem
                work.graph.value_info.append(helper.make_tensor_value_info(node.output[0], elem, None))
                added = True
        if not added:
            break
    return types


def ort_intermediates(path: Path, feed: Mapping[str, np.ndarray], arithmetic: str = "exact") -> dict[str, np.ndarray]:
    """Every node output ONNX Runtime computes for `feed` with int8 sums in `arithmetic`, by tensor name,
    in graph order (see the module docstring).

    Tensors whose type cannot be inferred are skipped, and so are those computed
    from constants alone (weights, quantized biases: they have no samples). Runs
    single-threaded, in chunks of the model's own batch size when its first axis
    is fixed.
    """
    model = onnx.load(str(path))
    if has_qdq(model):
        model = ort_optimized(model).model
    types = intermediate_types(model)
    graph_outputs = {o.name for o in model.graph.output}
    initializers = {t.name for t in model.graph.initializer}
    varying = {i.name for i in model.graph.input if i.name not in initializers}
    names: list[str] = []
    for node in model.graph.node:
        if not varying.intersection(node.input):
            continue
        varying.update(o for o in node.output if o)
        for out in node.output:
            if not out or out in names:
                continue
            if out in graph_outputs:
                names.append(out)
            elif out in types:
                model.graph.output.append(helper.make_tensor_value_info(out, types[out], None))
                names.append(out)
    config = arithmetic_config(arithmetic)
    session = create_session(model.SerializeToString(), optimize=bool(config), arithmetic=arithmetic)
    values = run_session(session, dict(feed))
    return {name: values[name] for name in names}
