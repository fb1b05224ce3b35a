"""Quantized models for hls4ml's QONNX front end (hls4ml's documented input for quantized networks),
so that an int8 hls4ml design implements the golden's quantization: the same scales, zero points and
bit widths, not formats of its own. Runs in the worker process.

A QONNX model (`Quant` nodes, Brevitas's QONNX export) goes in as it is. A QDQ or QCDQ model (ONNX
Runtime's QDQ format, Brevitas's QCDQ export) becomes QONNX through qonnx's own `QCDQToQuant`, after
`prepare_qdq` has put it in the form that transformation reads (each step keeps the graph's function;
tests/test_hls4ml_quantized.py runs both through ONNX Runtime or qonnx's executor):

- the `axis` of a per-tensor QuantizeLinear/DequantizeLinear dropped (ONNX ignores it; ONNX Runtime's
  optimiser writes it out, and QCDQToQuant then reshapes a scalar scale as per-axis and fails);
- scales and zero points shared between nodes (ONNX Runtime's optimiser merges equal constants) given
  to each node on its own (QCDQToQuant rewrites a zero point in place);
- the DequantizeLinear nodes ONNX Runtime gives each consumer of one QuantizeLinear merged into one
  (QCDQToQuant fuses one pair and strands the others; qonnx's channels-last conversion mis-handles a
  tensor read by two Quant nodes);
- a DequantizeLinear of an int32 constant (a bias quantized at the accumulator's scale) folded into the
  float constant it computes: an int32 grid is exact for these values, and a 32-bit Quant on a bias is
  beyond what hls4ml folds into a layer.

After conversion, every Quant's scale, zero point and bit width are float32 constants (QONNX's own
types; hls4ml negates an unsigned zero point as it is and gets 256 - z).

`per_axis_refusals` and `refusals` name what qonnx 1.0.0 or hls4ml 1.3.0's QONNX front end cannot
convert or converts into a wrong design, so such a model is refused in one line, not run as a wrong
design (docs/hls4ml.md, "dtype int8").
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")

SCALE_TYPE = "fixed<48,12,RND,SAT>"
BIAS_TYPE = "fixed<48,16,RND,SAT>"
"""hls4ml's ApplyAlpha layers apply a Quant's scale (1/s before, s after) and the products s_x * s_w
moved below a Conv or Dense: 36 fractional bits give every scale of an 8-bit network (down to 1e-5)
more significant bits than ONNX Runtime's float32 requantisation multiplier has."""


def prepare_qdq(proto: Any) -> Any:
    """The normalised QDQ model (`normalise.normalise`) as a ModelWrapper QCDQToQuant reads (module
    docstring); in place."""
    from qonnx.core.modelwrapper import ModelWrapper

    model = ModelWrapper(proto)
    _per_tensor_without_axis(model)
    _own_parameters(model)
    _one_dequantize_per_quantize(model)
    _fold_int32_dequantize(model)
    return model


def to_qonnx(proto: Any) -> Any:
    """A normalised quantized model as QONNX (a ModelWrapper): QDQ/QCDQ through qonnx's QCDQToQuant."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.qcdq_to_qonnx import QCDQToQuant

    if any(node.op_type in QDQ_OPS for node in proto.graph.node):
        model = prepare_qdq(proto).transform(QCDQToQuant())
    else:
        model = ModelWrapper(proto)
    left = Counter(node.op_type for node in model.graph.node if node.op_type in QDQ_OPS)
    if left:
        raise ValueError(
            "qonnx's QCDQToQuant left " + ", ".join(f"{op} x{n}" for op, n in sorted(left.items())) + " unconverted"
        )
    for node in model.graph.node:
        if node.op_type in ("Quant", "BipolarQuant"):
            for name in node.input[1:]:
                value = model.get_initializer(name)
                if value is not None and value.dtype != np.float32:
                    model.set_initializer(name, value.astype(np.float32))
    return model


def _per_tensor_without_axis(model: Any) -> None:
    for node in model.graph.node:
        if node.op_type in QDQ_OPS and len(node.input) > 1:
            scale = model.get_initializer(node.input[1])
            if scale is not None and scale.size == 1:
                for attr in [a for a in node.attribute if a.name == "axis"]:
                    node.attribute.remove(attr)


def _own_parameters(model: Any) -> None:
    uses = Counter(name for node in model.graph.node for name in node.input)
    for node in model.graph.node:
        if node.op_type not in QDQ_OPS:
            continue
        for k in range(1, len(node.input)):
            value = model.get_initializer(node.input[k])
            if value is not None and uses[node.input[k]] > 1:
                own = f"{node.input[k]}__{node.name}"
                model.set_initializer(own, value.copy())
                node.input[k] = own


def _one_dequantize_per_quantize(model: Any) -> None:
    outputs = {o.name for o in model.graph.output}
    for quantize in [n for n in model.graph.node if n.op_type == "QuantizeLinear"]:
        readers = [c for c in model.find_consumers(quantize.output[0]) or [] if c.op_type == "DequantizeLinear"]
        if len(readers) < 2:
            continue
        keep = readers[0]
        for twin in readers[1:]:
            same = list(twin.attribute) == list(keep.attribute) and all(
                np.array_equal(model.get_initializer(a), model.get_initializer(b))
                for a, b in zip(twin.input[1:], keep.input[1:], strict=False)
            )
            if not same or twin.output[0] in outputs:
                continue
            for reader in model.find_consumers(twin.output[0]) or []:
                for i, name in enumerate(reader.input):
                    if name == twin.output[0]:
                        reader.input[i] = keep.output[0]
            model.graph.node.remove(twin)


def _fold_int32_dequantize(model: Any) -> None:
    for node in list(model.graph.node):
        if node.op_type != "DequantizeLinear":
            continue
        values = model.get_initializer(node.input[0])
        if values is None or values.dtype != np.int32:
            continue
        scale = model.get_initializer(node.input[1])
        zero = model.get_initializer(node.input[2]) if len(node.input) > 2 and node.input[2] else np.int32(0)
        if scale is None or zero is None:
            continue
        folded = (values.astype(np.float64) - zero.astype(np.float64)) * scale.astype(np.float32)
        model.set_initializer(node.output[0], folded.astype(np.float32))
        model.graph.node.remove(node)


def flatten_input(model: Any) -> bool:
    """A graph input read only by a Flatten(axis=1) declared flat and the Flatten removed (the same
    values in the same order); True when it changed. hls4ml drops such a Flatten in io_stream and then
    feeds the next layer, when it is not a Dense (a Quant's scaling, with QONNX), rows instead of the
    whole flat sample."""
    changed = False
    for value in model.graph.input:
        readers = model.find_consumers(value.name) or []
        if len(readers) != 1 or readers[0].op_type != "Flatten":
            continue
        flatten = readers[0]
        axis = next((a.i for a in flatten.attribute if a.name == "axis"), 1)
        shape = model.get_tensor_shape(value.name)
        if axis != 1 or not shape:
            continue
        for reader in model.find_consumers(flatten.output[0]) or []:
            for i, name in enumerate(reader.input):
                if name == flatten.output[0]:
                    reader.input[i] = value.name
        model.graph.node.remove(flatten)
        model.set_tensor_shape(value.name, [shape[0], int(np.prod(shape[1:]))])
        changed = True
    return changed


def per_axis_refusals(proto: Any) -> list[str]:
    """Refused before conversion: per-channel scales (qonnx's QCDQToQuant multiplies a per-axis scale
    into its weights without reshaping it first, and hls4ml moves a per-channel scale below a Conv only
    when the Conv has no bias) and 1-D convolutions (a quantized graph is not lifted to 2-D, and qonnx's
    channels-last conversion loops on 1-D networks, normalise.lift_1d)."""
    from .normalise import WINDOWED, shapes_of

    shapes = shapes_of(proto)
    one_d = sum(1 for node in proto.graph.node if node.op_type in WINDOWED and len(shapes.get(node.input[0], [])) == 3)
    found = [f"1-D convolution or pool x{one_d}: a quantized 1-D network is not converted"] if one_d else []
    inits = {t.name: t for t in proto.graph.initializer}
    count = sum(
        1
        for node in proto.graph.node
        if node.op_type in QDQ_OPS
        and len(node.input) > 1
        and node.input[1] in inits
        and int(np.prod(inits[node.input[1]].dims)) > 1
    )
    if count:
        found.append(
            f"per-channel scale x{count}: qonnx's QCDQToQuant and hls4ml's QONNX front end take per-tensor scales"
        )
    return found


def refusals(model: Any) -> list[str]:
    """What hls4ml 1.3.0's QONNX front end converts into a wrong design or fails on, one
    "<what> x<count>: <why>" per kind, for the cleaned QONNX model (docs/hls4ml.md, "dtype int8"):

    - a quantized activation read by more than one layer (a residual connection): hls4ml moves the
      Quant's rescaling below one reader and drops it for the others;
    - a Conv or MatMul reading an activation quantized with a nonzero zero point (ONNX Runtime's uint8
      for values that can be negative): hls4ml cannot move the zero point's offset below the layer and
      fails."""
    shared = offset = 0
    for node in model.graph.node:
        if node.op_type != "Quant" or model.get_initializer(node.input[0]) is not None:
            continue
        readers = model.find_consumers(node.output[0]) or []
        zero = model.get_initializer(node.input[2])
        shared += len(readers) > 1
        offset += zero is not None and bool(np.any(zero)) and any(r.op_type in ("Conv", "MatMul") for r in readers)
    found = []
    if shared:
        found.append(
            f"quantized tensor read by several layers x{shared}: hls4ml's QONNX front end turns a residual "
            "connection of quantized tensors into a wrong design"
        )
    if offset:
        found.append(
            f"Conv/MatMul input with a nonzero zero point x{offset}: hls4ml's QONNX front end cannot move "
            "the zero point below the layer"
        )
    return found


def hls_precisions(config: dict[str, Any]) -> None:
    """hls4ml's configuration for a QONNX model: the layers hls4ml makes of each Quant (ApplyAlpha:
    scale, zero point) get `SCALE_TYPE` / `BIAS_TYPE`; their results are inferred (exact). In place."""
    config.setdefault("LayerType", {})["ApplyAlpha"] = {"Precision": {"scale": SCALE_TYPE, "bias": BIAS_TYPE}}
