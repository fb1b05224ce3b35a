"""What goes into the board's input buffer and how its printed results become outputs.

The buffer holds one sample of the model's input tensor, in the ONNX model's layout:

- `quantized` (the default): the bytes the model's own first QuantizeLinear makes of the sample
  (its scale, zero point and 8-bit type), as the int8 firmwares of MLPerf Tiny take them;
- `float32`: the sample's float32 bytes, little-endian (the anomaly-detection reference firmware).

The board prints its results as dequantized numbers with a few decimals (`%0.3f` in the
reference firmware). When a graph output comes from a DequantizeLinear whose grid is coarser
than that printing, each printed value names exactly one 8-bit level: the host takes that level,
so the outputs compared with the golden are the board's int8 results themselves. A value that
is off the grid by more than the printing's rounding is kept as printed (and the golden check
shows it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

INPUTS = ("quantized", "float32")


@dataclass
class Grid:
    """A per-tensor quantization: value = (q - zero_point) * scale, q in the type's range."""

    scale: float
    zero_point: int
    dtype: str

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """QuantizeLinear: x / scale in float32, rounded half to even, plus the zero point, saturated."""
        info = np.iinfo(np.dtype(self.dtype))
        q = np.rint(x.astype(np.float32) / np.float32(self.scale)) + self.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.int32) - self.zero_point).astype(np.float32) * np.float32(self.scale)


@dataclass
class OutputSpec:
    name: str
    shape: list[int]
    """Per sample (the batch axis left out)."""
    grid: Grid | None


@dataclass
class BoardIO:
    """The model's input and outputs as the board sees them (saved in the build)."""

    input_name: str
    input_shape: list[int]
    input_grid: Grid | None
    outputs: list[OutputSpec]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BoardIO:
        grid = data["input_grid"]
        return cls(
            data["input_name"],
            data["input_shape"],
            Grid(**grid) if grid else None,
            [OutputSpec(o["name"], o["shape"], Grid(**o["grid"]) if o["grid"] else None) for o in data["outputs"]],
        )

    @property
    def result_count(self) -> int:
        return sum(int(np.prod(o.shape)) for o in self.outputs)

    def encode(self, sample: np.ndarray, encoding: str) -> bytes:
        """One sample's input buffer."""
        if encoding == "float32":
            return np.ascontiguousarray(sample, dtype="<f4").tobytes()
        if self.input_grid is None:
            raise ValueError(
                f"input '{self.input_name}' does not feed a QuantizeLinear with a constant per-tensor scale: "
                'send it as input = "float32"'
            )
        return np.ascontiguousarray(self.input_grid.quantize(sample)).tobytes()

    def decode(self, printed: list[str]) -> tuple[dict[str, np.ndarray], bool]:
        """One sample's outputs from its printed results (all outputs, in graph order); and whether
        every value sat on its output's grid (False: kept as printed)."""
        if len(printed) != self.result_count:
            raise ValueError(f"printed {len(printed)} result values; the model has {self.result_count}")
        values = np.array([float(v) for v in printed], dtype=np.float64)
        decimals = max((len(v.partition(".")[2]) for v in printed if "e" not in v.lower()), default=6)
        outputs, exact, start = {}, True, 0
        for spec in self.outputs:
            size = int(np.prod(spec.shape))
            part = values[start : start + size]
            start += size
            snapped = _snap(part, spec.grid, decimals)
            exact = exact and snapped is not None
            chosen = snapped if snapped is not None else part.astype(np.float32)
            outputs[spec.name] = chosen.reshape(spec.shape)
        return outputs, exact


def _snap(values: np.ndarray, grid: Grid | None, decimals: int) -> np.ndarray | None:
    """The grid's values the printed ones stand for, or None (no grid, a grid finer than the
    printing, or a value off the grid)."""
    rounding = 0.5 * 10.0**-decimals
    if grid is None or grid.scale <= 2 * rounding:
        return None
    info = np.iinfo(np.dtype(grid.dtype))
    q = np.clip(np.rint(values / grid.scale) + grid.zero_point, info.min, info.max)
    snapped = grid.dequantize(q)
    return snapped if np.all(np.abs(snapped - values) <= rounding * (1 + 1e-6) + 1e-12) else None


def _constant(inits: dict[str, Any], name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    return numpy_helper.to_array(inits[name]) if name in inits else None


def _grid(node: Any, inits: dict[str, Any]) -> Grid | None:
    """The per-tensor quantization of a QuantizeLinear or DequantizeLinear with constant parameters."""
    scale = _constant(inits, node.input[1])
    zero = _constant(inits, node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if scale is None or scale.size != 1 or (zero is not None and zero.size != 1):
        return None
    dtype = str(zero.dtype) if zero is not None else "uint8"  # ONNX: no zero point means uint8
    if dtype not in ("uint8", "int8"):
        return None
    return Grid(float(scale.reshape(())), int(zero.reshape(())) if zero is not None else 0, dtype)


def analyse(path: Path) -> BoardIO:
    """The board's view of the int8 model at `path` (one input)."""
    import onnx

    graph = onnx.load(str(path)).graph
    inits = {t.name: t for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in inits]
    if len(inputs) != 1:
        raise ValueError(f"a board takes one input buffer; the model has inputs {[v.name for v in inputs]}")
    (value,) = inputs
    quantizer = next((n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == value.name), None)
    producers = {out: n for n in graph.node for out in n.output}
    outputs = []
    for out in graph.output:
        node = producers.get(out.name)
        grid = _grid(node, inits) if node is not None and node.op_type == "DequantizeLinear" else None
        outputs.append(OutputSpec(out.name, _shape(out)[1:], grid))
    return BoardIO(value.name, _shape(value)[1:], _grid(quantizer, inits) if quantizer else None, outputs)


def _shape(value: Any) -> list[int]:
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in value.type.tensor_type.shape.dim]
    if any(d <= 0 for d in dims[1:]):
        raise ValueError(f"'{value.name}' has a dynamic dimension {dims}: a board needs a fixed size")
    return dims
