"""Layers -> the kernels an AIE dataflow flow builds for them, with shapes and work.

Rules (sizes from the device file's `[mapping]` table; `eb` = bytes per element,
1 for int8, 4 for fp32; `align` = the row padding of the dtype):

* **Conv.** A `pad` kernel first when the conv pads or its input row width is
  not a multiple of `align` (rows padded to ``ceil((W + left + right) / align)``).
  The output rows are split into `p` parts, the smallest divisor of the output
  height (then any count) up to `max_parts` for which one part's input window
  (``rows_in x padded width x C x eb``, rows_in with the kernel's halo) fits
  `buffer_bytes` (outputs are streamed out, as the logged conv kernels do). Each
  part is a `conv` / `conv1x1` / `dwconv` kernel (`logs.conv_class`)
  computing ``rows_out x padded OW x M x C/group x KH x KW`` MACs (the padded
  columns are computed too, as in the logged kernels).
* **Gemm/MatMul.** Output columns are split as onnx2versal splits them: into about
  `max_parts` equal parts, a part's column count a divisor of N and at least 16 (int8)
  or 8 (fp32) (`_column_chunk`). int8 pads K and N to `align`.
* **Weights that do not fit** a buffer even then stay in DDR and reach each part
  through its own input stream every inference (GMIO, `stream_bytes_per_cycle`):
  the part takes at least ``weight bytes / stream_bytes_per_cycle`` cycles.
* **Pool.** Channels are split until a part's input fits `buffer_bytes`.
* **Splitting costs.** A layer in `p > 1` parts gets a `split` kernel that sends
  every part its input (the halo rows twice; the whole vector to every Gemm part:
  a broadcast), and a binary tree of `p - 1` `concat` kernels that joins the parts.
* Add (residual), Softmax, Transpose, Concat, Quantize/Dequantize and any other
  element-wise op are one kernel each (other ops costed as `add`).

Every kernel carries its work features (`calibration.CLASSES`), its MACs, the
buffers it keeps in data memory and the kernels it reads from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .device import Device
from .graph import Layer, ModelGraph, elems
from .logs import conv_class, pad_features

KIND_CLASS = {"add": "add", "eltwise": "add", "softmax": "softmax", "transpose": "transpose", "concat": "concat"}
KIND_CLASS |= {"quantize": "quantize", "dequantize": "dequantize"}


@dataclass
class Kernel:
    name: str
    layer: str
    kind: str
    """Kernel class (calibration.CLASSES)."""
    features: dict[str, float]
    preds: list[str] = field(default_factory=list)
    macs: int = 0
    buffers: int = 0
    """Data-memory buffers it owns: an input window, weights kept in the tile."""
    weight_bytes: int = 0
    streamed_weight_bytes: int = 0
    """Weights that do not fit: streamed from DDR (GMIO) every inference."""
    part: int = 0
    parts: int = 1
    info: dict[str, float] = field(default_factory=dict)
    """Shape numbers the kernel's onnx2versal template arguments are made of (o2v.py)."""


@dataclass
class Mapping:
    kernels: list[Kernel]
    dtype: str
    plio: int
    notes: list[str] = field(default_factory=list)


def up(x: float, a: int) -> int:
    return int(math.ceil(x / a) * a) if a > 1 else int(math.ceil(x))


def _candidates(n: int, most: int) -> list[int]:
    divisors = [p for p in range(1, min(n, most) + 1) if n % p == 0]
    return divisors + [p for p in range(1, min(n, most) + 1) if n % p]


class _Mapper:
    def __init__(self, graph: ModelGraph, device: Device) -> None:
        self.device = device
        self.dtype = graph.dtype
        self.eb = device.elem_bytes(graph.dtype)
        self.align = device.width_align[graph.dtype]
        self.kernels: list[Kernel] = []
        self.notes: list[str] = []
        self.output_of: dict[str, str] = {}

    def add(self, kernel: Kernel) -> str:
        self.kernels.append(kernel)
        return kernel.name

    def fits(self, nbytes: float) -> bool:
        return nbytes <= self.device.buffer_bytes

    def layer(self, layer: Layer) -> None:
        preds = [self.output_of[p] for p in layer.inputs if p in self.output_of]
        if layer.kind == "conv" and len(layer.in_shape) == 4:
            out = self.conv(layer, preds)
        elif layer.kind == "gemm":
            out = self.gemm(layer, preds)
        elif layer.kind == "pool" and len(layer.in_shape) == 4:
            out = self.pool(layer, preds)
        else:
            out = self.single(layer, preds)
        self.output_of[layer.name] = out

    def single(self, layer: Layer, preds: list[str]) -> str:
        kind = KIND_CLASS.get(layer.kind, "add")
        n = max(elems(layer.out_shape), elems(layer.in_shape))
        if layer.kind in ("softmax", "quantize", "dequantize") and layer.out_shape:
            rows = elems(layer.out_shape[:-1]) if len(layer.out_shape) > 1 else 1
            n = rows * up(layer.out_shape[-1], self.align)
        window = 1 if kind in ("softmax", "transpose", "dequantize") else 0
        return self.add(Kernel(layer.name, layer.name, kind, {"elems": float(n)}, preds, buffers=window))

    def parted(
        self,
        layer: Layer,
        preds: list[str],
        kind: str,
        parts: list[dict],
        split_elems: float,
        part_out: list[float],
        rows: int = 1,
    ) -> str:
        """Split kernel (if several parts), the parts, and a binary concat tree over them
        (`rows`: the rows the concat kernels interleave, the output channels of a conv)."""
        src = preds
        if len(parts) > 1:
            split = Kernel(f"{layer.name}/split", layer.name, "split", {"elems": split_elems}, preds)
            split.info = {"parts": len(parts)}
            src = [self.add(split)]
        names = []
        for i, spec in enumerate(parts):
            suffix = f"/part{i}" if len(parts) > 1 else ""
            names.append(self.add(Kernel(f"{layer.name}{suffix}", layer.name, kind, preds=list(src), **spec)))
        level, sizes, depth = names, part_out, 0
        while len(level) > 1:
            nxt, nxt_sizes = [], []
            for j in range(0, len(level) - 1, 2):
                size = sizes[j] + sizes[j + 1]
                name = f"{layer.name}/concat{depth}.{j // 2}"
                joined = Kernel(name, layer.name, "concat", {"elems": size}, [level[j], level[j + 1]])
                joined.info = {"rows": rows, "w1": sizes[j] / rows, "w2": sizes[j + 1] / rows}
                nxt.append(self.add(joined))
                nxt_sizes.append(size)
            if len(level) % 2:
                nxt.append(level[-1])
                nxt_sizes.append(sizes[-1])
            level, sizes, depth = nxt, nxt_sizes, depth + 1
        return level[0]

    def conv(self, layer: Layer, preds: list[str]) -> str:
        _, c, h, w = layer.in_shape
        _, m, oh, ow = layer.out_shape
        kh, kw = layer.attrs["kernel"]
        sh = layer.attrs["strides"][0]
        top, left, bottom, right = layer.attrs["pads"]
        group = max(layer.attrs["group"], 1)
        in_w = up(w + left + right, self.align)
        if top or left or bottom or right or w % self.align:
            feats = pad_features(c, h, w, top + bottom, in_w - w, self.dtype)
            pad = Kernel(f"{layer.name}/pad", layer.name, "pad", feats, preds)
            pad.info = {"c": c, "h": h, "w": w, "top": top, "bottom": bottom, "left": left, "in_w": in_w}
            preds = [self.add(pad)]
        out_w = up(ow, self.align)
        kind = conv_class(c, group, kh, kw, sh)
        weight_bytes = m * (c // group) * kh * kw * self.eb

        def rows_in(rows_out: int) -> int:
            return min((rows_out - 1) * sh + kh, h + top + bottom)

        def ok(p: int) -> bool:
            return self.fits(rows_in(math.ceil(oh / p)) * in_w * c * self.eb)

        choices = _candidates(oh, self.device.max_parts)
        p = next((q for q in choices if ok(q)), max(q for q in choices if oh % q == 0))
        if not ok(p):
            self.notes.append(f"{layer.name}: windows exceed {self.device.buffer_bytes} bytes at {p} parts")
        sizes = [oh // p + (1 if i < oh % p else 0) for i in range(p)]
        in_tile = self.fits(weight_bytes)
        specs = [
            {
                "features": {"macs": float(r * out_w * m * (c // group) * kh * kw)},
                "macs": r * out_w * m * (c // group) * kh * kw,
                "buffers": 2 if in_tile else 1,
                "weight_bytes": weight_bytes,
                "streamed_weight_bytes": 0 if in_tile else weight_bytes,
                "part": i,
                "parts": p,
                "info": {"rows_in": rows_in(r), "rows_out": r, "in_w": in_w},
            }
            for i, r in enumerate(sizes)
        ]
        split = float(sum(rows_in(r) for r in sizes) * in_w * c)
        return self.parted(layer, preds, kind, specs, split, [float(r * out_w * m) for r in sizes], m)

    def gemm(self, layer: Layer, preds: list[str]) -> str:
        rows = elems(layer.out_shape[:-1]) or 1
        k, n = int(layer.attrs["k"]), int(layer.attrs["n"])
        if self.dtype == "int8":
            k, n = up(k, self.align), up(n, self.align)
        chunk = _column_chunk(n, max(round(n / self.device.max_parts), 16 if self.dtype == "int8" else 8))
        cols = [chunk] * (n // chunk)
        specs = []
        for i, col in enumerate(cols):
            wb = k * col * self.eb
            in_tile = self.fits(wb)
            specs.append(
                {
                    "features": {"macs": float(rows * k * col)},
                    "macs": rows * k * col,
                    "buffers": 2 if in_tile else 1,
                    "weight_bytes": wb,
                    "streamed_weight_bytes": 0 if in_tile else wb,
                    "part": i,
                    "parts": len(cols),
                    "info": {"rows": rows, "k": k, "n": col},
                }
            )
        outs = [float(rows * x) for x in cols]
        return self.parted(layer, preds, "gemm", specs, float(rows * k * len(cols)), outs, rows)

    def pool(self, layer: Layer, preds: list[str]) -> str:
        _, c, h, w = layer.in_shape
        out = elems(layer.out_shape[1:])
        in_w = up(w, self.align)
        p = next((q for q in _candidates(c, self.device.max_parts) if self.fits(c / q * h * in_w * self.eb)), 1)
        per = [c // p + (1 if i < c % p else 0) for i in range(p)]
        specs = [
            {"features": {"elems": float(ch * h * in_w)}, "buffers": 1, "part": i, "parts": p, "info": {"c": ch}}
            for i, ch in enumerate(per)
        ]
        outs = [float(out * ch / c) for ch in per]
        return self.parted(layer, preds, "pool", specs, float(c * h * in_w), outs, max(c // p, 1))


def _column_chunk(n: int, least: int, most_chunks: int = 8) -> int:
    """Columns per part of a matrix product, as onnx2versal chooses them (python/op_parsers.py at
    f5803c1, `factor_int(..., force_split_chunksize)`): of the divisor pairs (chunk, count) of N
    by falling chunk size, the last before the chunk falls under `least` or the count exceeds
    `most_chunks` (N itself when none qualifies)."""
    pairs = [(n // f, f) for f in range(1, math.isqrt(n) + 1) if n % f == 0]
    pairs += [(b, a) for a, b in reversed(pairs)]
    stop = next((i for i, (chunk, count) in enumerate(pairs) if chunk < least or count > most_chunks), len(pairs) - 1)
    return pairs[max(stop - 1, 0)][0]


def map_graph(graph: ModelGraph, device: Device) -> Mapping:
    """Kernels for every layer of `graph` on `device` (see the module docstring)."""
    mapper = _Mapper(graph, device)
    for layer in graph.layers:
        mapper.layer(layer)
    return Mapping(mapper.kernels, graph.dtype, len(graph.inputs) + len(graph.outputs), mapper.notes)
