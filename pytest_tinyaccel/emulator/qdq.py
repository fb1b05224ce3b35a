"""Integer execution of QDQ graphs: DequantizeLinear -> float op -> QuantizeLinear groups
rewritten into the integer operators an accelerator runs.

A QDQ graph (the MLPerf Tiny int8 references, ORT's QDQ format) describes
integer arithmetic with float ops between DequantizeLinear and QuantizeLinear
nodes. Executed as written, the float op rounds differently from an int32
accumulator; an accelerator (and ONNX Runtime's optimizer, for most nodes)
computes the integer version instead. `fuse_qdq` rewrites, on a copy of the model:

    DQ(x), DQ(w const) [, DQ(bias int32 const)] -> Conv   [-> Relu] -> Q  =>  QLinearConv
    DQ(a), DQ(w const) -> MatMul [-> Add(DQ(bias))] / Gemm [-> Relu] -> Q  =>  com.microsoft.QGemm
    DQ(a), DQ(b) -> Add                               [-> Relu] -> Q  =>  com.microsoft.QLinearAdd

A Relu in between becomes max(q, zero_point) on the integer output (exact:
quantization is monotonic), and disappears when the zero point is already the
type's minimum. A group is left in float when the bias scale is not
x_scale * w_scale (the int32 bias would not line up with the accumulator) or
when the float result has other consumers. Fused nodes keep the float op's
node name, so layer names stay those of the model.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper

_MS = "com.microsoft"
_8BIT = (np.dtype(np.int8), np.dtype(np.uint8))


class _View:
    """Producers, consumers and constants of a graph under rewrite."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.producer = {o: n for n in graph.node for o in n.output if o}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for n in graph.node:
            for i in n.input:
                if i:
                    self.consumers[i].append(n)
        self.outputs = {o.name for o in graph.output}

    def only_consumer(self, tensor: str, node: onnx.NodeProto) -> bool:
        return tensor not in self.outputs and [id(n) for n in self.consumers[tensor]] == [id(node)]

    def dq(self, tensor: str) -> onnx.NodeProto | None:
        node = self.producer.get(tensor)
        return (
            node if node is not None and node.op_type == "DequantizeLinear" and node.domain in ("", "ai.onnx") else None
        )

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name) if name else None


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _dq_params(view: _View, dq: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray | None, int] | None:
    """(scale, zero point, axis) of a DequantizeLinear with constant parameters."""
    if _attr(dq, "block_size", 0):
        return None
    scale = view.const(dq.input[1])
    if scale is None or scale.dtype != np.float32:
        return None
    zp = view.const(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
    if len(dq.input) > 2 and dq.input[2] and zp is None:
        return None
    return scale, zp, int(_attr(dq, "axis", 1))


def _activation(view: _View, dq: onnx.NodeProto | None) -> tuple[str, str, str] | None:
    """(tensor, scale name, zero point name) of a per-tensor 8-bit activation DequantizeLinear."""
    if dq is None or dq.input[0] in view.consts:
        return None
    params = _dq_params(view, dq)
    if (
        params is None
        or params[0].size != 1
        or params[1] is None
        or params[1].size != 1
        or params[1].dtype not in _8BIT
    ):
        return None
    return dq.input[0], dq.input[1], dq.input[2]


def fuse_qdq(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of `model` with every fusable QDQ group replaced by integer ops, and the fused node names
    (what an accelerator's compiler does; what ONNX Runtime does instead is `ortgraph.ort_optimized`)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    view = _View(graph)
    removed: set[int] = set()
    added: list[tuple[int, list[onnx.NodeProto]]] = []
    new_inits: list[onnx.TensorProto] = []
    fused_names: list[str] = []
    order = {id(n): k for k, n in enumerate(graph.node)}

    for q in list(graph.node):
        if q.op_type != "QuantizeLinear" or id(q) in removed:
            continue
        if _attr(q, "block_size", 0) or len(q.input) < 3 or not q.input[2]:
            continue
        ys, yz = view.const(q.input[1]), view.const(q.input[2])
        if ys is None or yz is None or ys.size != 1 or yz.size != 1 or yz.dtype not in _8BIT:
            continue
        group = _match(view, q)
        if group is None:
            continue
        op_node, relu, members, make = group
        name = op_node.name or op_node.output[0]
        result = q.output[0]
        needs_max = relu is not None and int(yz.reshape(())) != int(np.iinfo(yz.dtype).min)
        target = f"{result}__int" if needs_max else result
        nodes = [make(name, target, q.input[1], q.input[2])]
        if needs_max:
            nodes.append(helper.make_node("Max", [target, q.input[2]], [result], name=relu.name or f"{name}/relu"))
        for n in members + [q] + ([relu] if relu is not None else []):
            removed.add(id(n))
        added.append((order[id(q)], nodes))
        fused_names.append(name)

    if not fused_names:
        return out, []
    kept: list[tuple[float, onnx.NodeProto]] = [(order[id(n)], n) for n in graph.node if id(n) not in removed]
    for position, nodes in added:
        kept.extend((position + 0.5 + k * 1e-3, n) for k, n in enumerate(nodes))
    kept.sort(key=lambda item: item[0])
    del graph.node[:]
    graph.node.extend(_drop_dead([n for _, n in kept], {o.name for o in graph.output}))
    graph.initializer.extend(new_inits)
    if not any(o.domain == _MS for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(_MS, 1))
    return out, fused_names


def _match(view: _View, q: onnx.NodeProto):
    """Find the fusable group ending in Q: (op node, relu or None, nodes to remove, node factory)."""
    src = q.input[0]
    node = view.producer.get(src)
    if node is None or not view.only_consumer(src, q):
        return None
    relu = None
    if node.op_type == "Relu":
        relu = node
        src = relu.input[0]
        node = view.producer.get(src)
        if node is None or not view.only_consumer(src, relu):
            return None
    if node.op_type == "Conv":
        return _match_conv(view, node, relu)
    if node.op_type == "Add":
        group = _match_matmul_add(view, node, relu)
        return group if group is not None else _match_add(view, node, relu)
    if node.op_type in ("MatMul", "Gemm"):
        return _match_matmul(view, node, None, relu)
    return None


def _weights(view: _View, dq: onnx.NodeProto | None, channel_axis: int, channels_dim: int):
    """Constant 8-bit weights behind a DequantizeLinear: (int tensor name, scale name, zp name, scale)."""
    if dq is None or dq.input[0] not in view.consts:
        return None
    w = view.consts[dq.input[0]]
    params = _dq_params(view, dq)
    if params is None or w.dtype not in _8BIT:
        return None
    scale, zp, axis = params
    if scale.size > 1 and (axis % w.ndim != channel_axis or scale.size != w.shape[channels_dim]):
        return None
    if zp is None:
        return None
    return dq.input[0], dq.input[1], dq.input[2], scale


def _bias(view: _View, dq: onnx.NodeProto | None, expected_scale: np.ndarray) -> str | None:
    """Name of an int32 bias whose scale is x_scale * w_scale and zero point 0."""
    if dq is None or dq.input[0] not in view.consts:
        return None
    b = view.consts[dq.input[0]]
    params = _dq_params(view, dq)
    if params is None or b.dtype != np.int32:
        return None
    scale, zp, _ = params
    if zp is not None and np.any(zp != 0):
        return None
    want = (
        np.broadcast_to(expected_scale.astype(np.float64).reshape(-1), (b.size,))
        if expected_scale.size > 1
        else expected_scale.astype(np.float64).reshape(())
    )
    if not np.allclose(
        np.broadcast_to(
            scale.astype(np.float64).reshape(-1) if scale.size > 1 else scale.astype(np.float64).reshape(()),
            np.shape(want),
        ),
        want,
        rtol=1e-6,
        atol=0,
    ):
        return None
    return dq.input[0]


def _match_conv(view: _View, conv: onnx.NodeProto, relu):
    x_dq, w_dq = view.dq(conv.input[0]), view.dq(conv.input[1])
    act = _activation(view, x_dq)
    w = view.consts.get(w_dq.input[0]) if w_dq is not None else None
    wt = _weights(view, w_dq, 0, 0) if w is not None else None
    if act is None or wt is None or w is None or w.ndim not in (3, 4):
        return None
    x_scale = view.consts[act[1]]
    bias = None
    if len(conv.input) > 2 and conv.input[2]:
        bias = _bias(view, view.dq(conv.input[2]), x_scale.reshape(()) * wt[3])
        if bias is None:
            return None
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}

    def make(name: str, out: str, ys: str, yz: str) -> onnx.NodeProto:
        inputs = [act[0], act[1], act[2], wt[0], wt[1], wt[2], ys, yz] + ([bias] if bias else [])
        return helper.make_node("QLinearConv", inputs, [out], name=name, **attrs)

    return conv, relu, [conv], make


def _match_matmul_add(view: _View, add: onnx.NodeProto, relu):
    for k in (0, 1):
        mm = view.producer.get(add.input[k])
        if mm is not None and mm.op_type == "MatMul" and view.only_consumer(add.input[k], add):
            group = _match_matmul(view, mm, (add, add.input[1 - k]), relu)
            if group is not None:
                return group
    return None


def _match_matmul(view: _View, mm: onnx.NodeProto, add, relu):
    a_dq, b_dq = view.dq(mm.input[0]), view.dq(mm.input[1])
    act = _activation(view, a_dq)
    if act is None:
        return None
    ta = tb = 0
    alpha = 1.0
    if mm.op_type == "Gemm":
        ta, tb = int(_attr(mm, "transA", 0)), int(_attr(mm, "transB", 0))
        alpha, beta = float(_attr(mm, "alpha", 1.0)), float(_attr(mm, "beta", 1.0))
        if beta != 1.0:
            return None
    w = view.consts.get(b_dq.input[0]) if b_dq is not None else None
    if w is None or w.ndim != 2:
        return None
    wt = _weights(view, b_dq, 0 if tb else 1, 0 if tb else 1)
    if wt is None:
        return None
    a_scale = view.consts[act[1]].reshape(())
    bias = None
    bias_src = mm.input[2] if mm.op_type == "Gemm" and len(mm.input) > 2 and mm.input[2] else (add[1] if add else None)
    if bias_src:
        bias = _bias(view, view.dq(bias_src), a_scale * wt[3] * np.float32(alpha))
        if bias is None:
            return None
    members = [mm] + ([add[0]] if add else [])
    name_node = add[0] if add and not mm.name else mm

    def make(name: str, out: str, ys: str, yz: str) -> onnx.NodeProto:
        inputs = [act[0], act[1], act[2], wt[0], wt[1], wt[2], bias or "", ys, yz]
        return helper.make_node("QGemm", inputs, [out], name=name, domain=_MS, transA=ta, transB=tb, alpha=alpha)

    return name_node, relu, members, make


def _match_add(view: _View, add: onnx.NodeProto, relu):
    acts = [_activation(view, view.dq(i)) for i in add.input[:2]]
    if any(a is None for a in acts):
        return None
    (a, b) = acts
    assert a is not None and b is not None

    def make(name: str, out: str, ys: str, yz: str) -> onnx.NodeProto:
        return helper.make_node(
            "QLinearAdd", [a[0], a[1], a[2], b[0], b[1], b[2], ys, yz], [out], name=name, domain=_MS
        )

    return add, relu, [add], make


def _drop_dead(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """Remove nodes (DequantizeLinear left without consumers) whose outputs nobody reads."""
    while True:
        used = set(outputs) | {i for n in nodes for i in n.input if i}
        keep = [n for n in nodes if any(o in used for o in n.output if o)]
        if len(keep) == len(nodes):
            return keep
        nodes = keep
