"""The onnx2versal kernel template (and its arguments) of every mapped kernel.

The mapping (mapping.py) decides the kernels of each layer; this module names each
one as onnx2versal's generator would (its `python/op_parsers.py` at revision 392b325
picks the template from the shapes: vector variants when the padded widths allow,
packet-stream parts when a layer is split by rows, scalar code otherwise), with the
template arguments as the kernel prints them, so that `templates.work` gives its
loop nest. A kernel with no onnx2versal counterpart (the broadcast that feeds
matrix-product parts, an element-wise op the flow has no kernel for) gets None; the split
before a pooling layer's channel chunks is onnx2versal's SplitScalar/SplitInt8.
"""

from __future__ import annotations

from .graph import Layer, ModelGraph, elems
from .mapping import Kernel, Mapping, up


def _pad_w(w: int, dtype: str) -> int:
    """A row width as the previous kernel writes it: 16 bytes (int8), 8 (4 when narrow) floats."""
    return up(w, 16) if dtype == "int8" else up(w, 8 if w > 4 else 4)


def assign(mapping: Mapping, graph: ModelGraph) -> dict[str, tuple[str, tuple[str, ...]] | None]:
    """{kernel name: (template, args) or None}."""
    layers = {layer.name: layer for layer in graph.layers}
    dt = mapping.dtype
    tt = "h" if dt == "int8" else "f"
    out: dict[str, tuple[str, tuple[str, ...]] | None] = {}
    for k in mapping.kernels:
        layer = layers.get(k.layer)
        found = None if layer is None else _one(k, layer, dt, tt, mapping, graph.weight_type)
        out[k.name] = (found[0], tuple(str(x) for x in found[1])) if found else None
    return out


def _one(k: Kernel, layer: Layer, dt: str, tt: str, mapping: Mapping, wtype: str) -> tuple[str, list] | None:
    i = k.info
    if k.kind == "pad":
        c, h, w, top, bottom, left = (int(i[x]) for x in ("c", "h", "w", "top", "bottom", "left"))
        right = int(i["in_w"]) - w - left
        name = "Pad2DStreamInt8" if dt == "int8" else "Pad2DStreamFloat"
        return name, [tt, c, h, w, _pad_w(w, dt), top, bottom, left, right]
    if k.kind in ("conv", "conv1x1", "dwconv"):
        return _conv(k, layer, dt, "h" if wtype == "uint8" else "a")
    if k.kind == "split":
        return _split(k, layer, dt, tt, mapping)
    if k.kind == "concat" and "rows" in i:
        name = "ConcatInt8Stream" if dt == "int8" else "ConcatFloatStream"
        w1, w2 = int(i["w1"]), int(i["w2"])
        return name, [tt, int(i["rows"]), w1, w2, w1 + w2]
    if k.kind == "gemm":
        rows, kk, n = int(i["rows"]), int(i["k"]), int(i["n"])
        if dt == "int8":
            return "QgemmStream", ["h", "h" if wtype == "uint8" else "a", rows, up(kk, 16), up(n, 16)]
        vector = kk % 4 == 0 and n % 4 == 0
        return ("GemmReluMKKN" if vector else "GemmReluScalarMKKN"), [rows, kk, n, 1]
    if k.kind == "pool":
        return _pool(k, layer, dt)
    return _single(k, layer, dt, tt)


def _conv(k: Kernel, layer: Layer, dt: str, wt: str) -> tuple[str, list]:
    _, c, _, _ = layer.in_shape
    _, m, _, ow = layer.out_shape
    kh, kw = layer.attrs["kernel"]
    sh, sw = layer.attrs["strides"]
    group = max(layer.attrs["group"], 1)
    pkt = k.parts > 1
    rows_in, in_w = int(k.info["rows_in"]), int(k.info["in_w"])
    if dt == "int8":
        if kh == kw == 1:
            name = "QLinearConv1x1PktStream" if pkt else "QLinearConv1x1Stream"
        elif kw <= 4:
            name = "QLinearConvHx4PktStream" if pkt else "QLinearConvHx4Stream"
        else:
            name = "QLinearConvHx6x8bitStream"
        return name, ["h", wt, rows_in, in_w, ow, up(ow, 16), sh, sw, 1, c, m, kh, kw, group]
    if kh == kw == 1:
        name = "Conv1x1ReluPktStream" if pkt else "Conv1x1ReluStream"
    elif kw <= 4:
        name = "ConvHx4ReluPktStream" if pkt else "ConvHx4ReluStream"
    else:
        name = "ConvHx8ReluStream"
    return name, [rows_in, in_w, ow, _pad_w(ow, dt), sh, sw, 1, c, m, kh, kw, group, 1]


def _split(k: Kernel, layer: Layer, dt: str, tt: str, mapping: Mapping) -> tuple[str, list] | None:
    if layer.kind == "pool":  # PoolChunkCGraph: a split kernel cuts the channels into windows
        _, c, h, w = layer.in_shape
        chunk = int(next(p.info["c"] for p in mapping.kernels if p.layer == k.layer and p.kind == "pool"))
        row = h * _pad_w(w, dt)
        return ("SplitInt8" if dt == "int8" else "SplitScalar"), [tt, 1, c * row, chunk * row, 0]
    if layer.kind != "conv":
        return None  # matrix-product parts read a broadcast window: no kernel
    parts = [p for p in mapping.kernels if p.layer == k.layer and p.kind in ("conv", "conv1x1", "dwconv")]
    first = parts[0].info
    kh, sh = layer.attrs["kernel"][0], layer.attrs["strides"][0]
    overlap = max(kh - sh, 0)
    rows_in, in_w = int(first["rows_in"]), int(first["in_w"])
    full = sum(int(p.info["rows_in"]) for p in parts) - overlap * (len(parts) - 1)
    name = "SplitFilterInt8PktStream" if dt == "int8" else "SplitFilterFloatPktStream"
    return name, [tt, layer.in_shape[1], full * in_w, rows_in * in_w, overlap * in_w]


def _pool(k: Kernel, layer: Layer, dt: str) -> tuple[str, list]:
    _, _, h, w = layer.in_shape
    _, _, oh, ow = layer.out_shape
    kh, kw = layer.attrs["kernel"]
    c = int(k.info.get("c", layer.in_shape[1]))
    avg = "Average" in layer.op or "Avg" in layer.op
    if avg:
        name = "QLinearAvgpoolScalarBCHW" if dt == "int8" else "AvgpoolScalarBCHW"
    elif kh == kw == 2 and w // max(ow, 1) == 2:
        name = "Maxpool2x2Int8BCHW" if dt == "int8" else "Maxpool2x2FloatBCHW"
    else:
        name = "MaxpoolScalarBCHW"
    return name, [h, _pad_w(w, dt), oh, ow, 1, c, kh, kw]


def _single(k: Kernel, layer: Layer, dt: str, tt: str) -> tuple[str, list] | None:
    shape = layer.out_shape or layer.in_shape
    last = int(shape[-1]) if shape else 1
    rows = max(elems(shape[:-1]), 1) if len(shape) > 1 else 1
    if k.kind == "quantize":
        return "QuantizeLinearFmulStream", ["h", rows, up(last, 4), up(last, 16)]
    if k.kind == "dequantize":
        return "DequantizeLinear", ["h", rows, up(last, 16), up(last, 4)]
    if k.kind == "softmax":
        if dt == "int8":
            return "QLinearSoftmaxSingleaxis", ["h", rows, last, up(last, 16)]
        w_pad = up(last, 4)
        return ("SoftmaxSingleaxis" if w_pad % 8 == 0 else "SoftmaxScalar"), [rows, last, w_pad]
    if k.kind == "transpose" and len(layer.in_shape) == 4:
        b, h, w, c = layer.in_shape
        return "TransposeScalarBHWC2BCHW", ["f", b, h, w, c]
    if k.kind == "add":
        n = max(elems(layer.out_shape), 1)
        return ("QLinearAddInt8", ["h", n, 0]) if dt == "int8" else ("AddFloat", ["f", n, 1])
    return None
