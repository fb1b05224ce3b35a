"""What a model's graph says about its quantization: whether it is quantized at all, and at which bit widths.

A model arrives already quantized from ONNX Runtime's quantizer (QOperator:
QLinearConv ...; QDQ: QuantizeLinear/DequantizeLinear around float ops),
Brevitas (QCDQ: a Clip between them narrows int8 to 2..7 bits; QONNX: `Quant`
nodes with a bit width) or any other tool. Such a model has no float
counterpart to quantize again: it defines the int8 case as it is. Weights
stored as int8 behind a DequantizeLinear alone (weight compression) leave the
arithmetic in float and do not count.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # onnx loads when a graph is read, not with the plugin
    import onnx

QONNX_OPS = ("Quant", "BipolarQuant", "Trunc")
_QUANT_OPS = {
    "QuantizeLinear",
    "DynamicQuantizeLinear",
    "MatMulInteger",
    "ConvInteger",
    "QGemm",
    "QAttention",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    *QONNX_OPS,
}


@lru_cache(maxsize=1)
def _type_bits() -> dict[int, int]:
    """The width of each quantized ONNX element type."""
    from onnx import TensorProto as T

    return {T.INT8: 8, T.UINT8: 8, T.INT16: 16, T.UINT16: 16, T.INT4: 4, T.UINT4: 4}


@dataclass(frozen=True)
class Quantization:
    """A model's quantization nodes by op type, and the bit widths of its weights and activations."""

    ops: dict[str, int]
    weight_bits: tuple[int, ...]
    activation_bits: tuple[int, ...]

    def __bool__(self) -> bool:
        return bool(self.ops)

    @property
    def label(self) -> str:
        """Bit widths as the field writes them: "w4a8", "w8a8", "w2-4a8" ("" when unknown)."""

        def span(bits: tuple[int, ...]) -> str:
            return "" if not bits else str(bits[0]) if len(bits) == 1 else f"{bits[0]}-{bits[-1]}"

        weights, activations = span(self.weight_bits), span(self.activation_bits)
        return f"w{weights}a{activations}" if weights and activations else ""

    def describe(self) -> str:
        """The nodes that make the model quantized, e.g. "2 QuantizeLinear, 2 Clip-narrowed weights (w4a8)"."""
        listed = ", ".join(f"{n} {op}" for op, n in sorted(self.ops.items()))
        return listed + (f" ({self.label})" if self.label else "")


def other_than_8_bit(label: str) -> bool:
    """A `Quantization.label` other than 8-bit weights and activations ("w4a8"; "" when unknown is not)."""
    return bool(label) and label != "w8a8"


def quantization(model: onnx.ModelProto) -> Quantization:
    """The quantization of `model` (empty when it computes in float)."""
    graph = model.graph
    consts = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].HasField("t"):
            consts[node.output[0]] = node.attribute[0].t
    ops = Counter(n.op_type for n in graph.node if n.op_type in _QUANT_OPS or n.op_type.startswith("QLinear"))
    fixed = set(consts)  # tensors computed from constants alone: weights
    type_bits = _type_bits()
    width = {  # bits of each quantized tensor; integer weights are stored at their type's width
        name: type_bits[t.data_type] for name, t in consts.items() if t.data_type in type_bits
    }
    weights: set[int] = set()
    activations: set[int] = set()
    for node in graph.node:
        if node.input and all(not i or i in fixed for i in node.input):
            fixed.update(node.output)
        bits = _bits(node, consts, width)
        if bits is not None and node.output:
            width[node.output[0]] = bits
            if node.op_type in QONNX_OPS:  # a QONNX node quantizes and dequantizes in one
                (weights if node.output[0] in fixed else activations).add(bits)
        if node.op_type == "DequantizeLinear" and node.input[0] in width:
            (weights if node.input[0] in fixed else activations).add(width[node.input[0]])
        if node.op_type.startswith("QLinear") or node.op_type in ("QGemm", "MatMulInteger", "ConvInteger"):
            weights.add(8)
            activations.add(8)
    return Quantization(dict(ops), tuple(sorted(weights)), tuple(sorted(activations)))


def _const(consts: dict[str, onnx.TensorProto], name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    return numpy_helper.to_array(consts[name]) if name in consts else None


def _bits(node: onnx.NodeProto, consts: dict[str, onnx.TensorProto], width: dict[str, int]) -> int | None:
    """The bit width a quantizing node gives its output, when its operands say it."""
    if node.op_type == "QuantizeLinear":
        zero_point = _const(consts, node.input[2]) if len(node.input) > 2 and node.input[2] else None
        return 8 * (zero_point.dtype.itemsize if zero_point is not None else 1)
    if node.op_type == "Clip" and len(node.input) >= 3 and node.input[0] in width:  # QCDQ: int8 narrowed
        low, high = (_const(consts, name) for name in node.input[1:3])
        if low is None or high is None or low.dtype.kind not in "iu":
            return None
        return min(width[node.input[0]], max(1, math.ceil(math.log2(int(high) - int(low) + 1))))
    if node.op_type == "Quant" and len(node.input) >= 4:
        bit_width = _const(consts, node.input[3])
        return None if bit_width is None else int(np.asarray(bit_width).reshape(-1)[0])
    if node.op_type == "BipolarQuant":
        return 1
    return None
