"""QONNX models (Brevitas's and FINN's format: Quant, BipolarQuant and Trunc nodes of the qonnx.custom_op.general
domain) made runnable for a golden, with the qonnx package's own tools.

    route = qonnx_route(model)      # qonnx's QuantToQCDQ, where it can express every quantizer
    route.golden                    # "onnxruntime": route.model is QCDQ, ONNX Runtime runs it
                                    # "qonnx": route.model is the QONNX model, qonnx's executor runs it
    run_qonnx(route.model, feed)    # qonnx's executor (qonnx.core.onnx_exec.execute_onnx), in batches
    route.layers, route.bits        # the real bit widths: per layer, and "w4a8" for the model

qonnx's `QuantToQCDQ` rewrites a Quant node into QuantizeLinear -> Clip ->
DequantizeLinear when ONNX's quantization ops can hold it: 2..8 bits, zero zero
point, a scalar or per-channel constant scale, rounding half to even (ROUND).
When every quantizer converts, ONNX Runtime runs the QCDQ model and makes the
golden (with its optimizer's integer kernels, as for any QDQ model; the
emulator follows that graph with `qdq="ort"`). When one does not (more than 8
bits, another rounding mode, BipolarQuant, Trunc ...), the golden is qonnx's
executor on the QONNX model as written, and the emulator runs the QONNX ops
itself (`qdq="float"`, emulator/ops/qonnx_ops.py, bit-exact with qonnx's
executor); `route.reason` says which node kept the model from ONNX Runtime and
why. No converter is written here: the conversion is qonnx's.

qonnx is an optional dependency (it comes with the hls4ml extra) and is imported
only when a QONNX model is converted or executed. The bit-width report reads the
graph only, and also reads QDQ/QCDQ graphs (Clip bounds, quantized types).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from .errors import DataError

if TYPE_CHECKING:  # onnx loads when a graph is read, not with the plugin
    import onnx

QONNX_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas")
"""Where QONNX ops live (qonnx reads Brevitas's older domain as its own)."""
INSTALL = 'pip install -c constraints.txt -e ".[hls4ml]"'
"""The extra that brings the qonnx package."""
_QCDQ_BITS = (2, 8)
"""The bit widths qonnx's QuantToQCDQ writes as QuantizeLinear/Clip/DequantizeLinear."""
_LAYERS = {"Conv": (0, 1), "ConvTranspose": (0, 1), "Gemm": (0, 1), "MatMul": (0, 1)}
"""Layers whose bit widths are reported: op -> (activation input, weight input)."""
_MOVES = {"Identity", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze"}
"""Ops that move values without computing new ones: a quantizer before them quantizes what comes after."""


@dataclass(frozen=True)
class Quantizer:
    """One quantizer of the graph: a QONNX op, or a DequantizeLinear and the integers it reads (QDQ/QCDQ)."""

    node: str
    op: str
    kind: Literal["weight", "activation"]
    """"weight" when it quantizes a constant, else "activation"."""
    bits: int | None
    """None when the graph does not fix it (a bit width computed at run time)."""
    signed: bool
    narrow: bool
    rounding: str
    """QONNX's rounding mode; "ROUND" (half to even) for QuantizeLinear."""


@dataclass(frozen=True)
class LayerBits:
    """The bit widths a layer (Conv, ConvTranspose, Gemm, MatMul) computes with; None where it reads floats."""

    layer: str
    op: str
    weight_bits: int | None
    activation_bits: int | None

    @property
    def label(self) -> str:
        """ "w4a8" (weights 4 bits, input activations 8), "w8" (float input), "float" when neither is quantized."""
        parts = [f"{p}{b}" for p, b in (("w", self.weight_bits), ("a", self.activation_bits)) if b is not None]
        return "".join(parts) or "float"


@dataclass(frozen=True)
class QonnxRoute:
    """What makes the golden of a QONNX model, and the model it runs (see the module docstring)."""

    model: onnx.ModelProto
    golden: Literal["onnxruntime", "qonnx"]
    reason: str
    """Why qonnx's executor makes the golden: each node QuantToQCDQ left, with why ("" for ONNX Runtime)."""
    quantizers: tuple[Quantizer, ...]
    """The QONNX model's quantizers."""
    layers: tuple[LayerBits, ...]

    @property
    def qdq(self) -> Literal["ort", "float"]:
        """The emulator's `Graph.load(..., qdq=...)` that follows this golden."""
        return "ort" if self.golden == "onnxruntime" else "float"

    @property
    def bits(self) -> str:
        return bits_label(self.layers)


def is_qonnx(model: onnx.ModelProto) -> bool:
    """True when the graph has a node of a QONNX domain."""
    return any(n.domain in QONNX_DOMAINS for n in model.graph.node)


def qonnx_route(model: onnx.ModelProto) -> QonnxRoute:
    """The golden's route for a QONNX model: its QCDQ form by qonnx's QuantToQCDQ when every QONNX node meets
    the conditions QuantToQCDQ documents (checked here first, see `qcdq_blockers`) and converts, else the model
    itself for qonnx's executor. DataError when qonnx is missing or fails."""
    if not is_qonnx(model):
        raise DataError(f"{_name(model)} has no QONNX node (domain {' or '.join(QONNX_DOMAINS)})")
    quantizers, layers = quantizers_of(model), layer_bits(model)
    blockers = qcdq_blockers(model)
    if not blockers:
        converted = to_qcdq(model)
        left = [n.name or n.op_type for n in converted.graph.node if n.domain in QONNX_DOMAINS]
        if not left:
            return QonnxRoute(converted, "onnxruntime", "", quantizers, layers)
        blockers = {name: "QuantToQCDQ left it unconverted" for name in left}
    why = "; ".join(f"'{name}': {reason}" for name, reason in blockers.items())
    reason = f"qonnx's QuantToQCDQ cannot express {len(blockers)} node(s) in ONNX's quantization ops: {why}"
    return QonnxRoute(model, "qonnx", reason, quantizers, layers)


def to_qcdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """qonnx's QuantToQCDQ applied to a copy of `model` (nodes it cannot convert stay as they are)."""
    import onnx

    modules = _qonnx()
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    try:
        return modules.ModelWrapper(copy).transform(modules.QuantToQCDQ()).model
    except Exception as exc:
        raise DataError(f"qonnx's QuantToQCDQ failed on {_name(model)}: {type(exc).__name__}: {exc}") from exc


def run_qonnx(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """qonnx's executor (execute_onnx: QONNX ops in NumPy, every other node alone in ONNX Runtime) on `feed`,
    all samples of its one input: in the model's own batch when the first axis is fixed (the last chunk padded
    with copies of its last sample, the padding dropped), else all at once."""
    import onnx

    modules = _qonnx()
    ((name, x),) = feed.items()
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    wrapper = modules.ModelWrapper(copy)
    spec = next((v for v in copy.graph.input if v.name == name), None)
    if spec is None:
        raise DataError(f"{_name(model)} has no input named {name!r}")
    if not len(x):
        raise DataError(f"no samples to run {_name(model)} on")
    dims = spec.type.tensor_type.shape.dim
    fixed = dims[0].dim_value if dims and dims[0].HasField("dim_value") else 0
    step = fixed or len(x)
    try:
        if not fixed:
            wrapper = wrapper.transform(modules.ChangeBatchSize(step))
        wrapper = wrapper.transform(modules.InferShapes())
        chunks = []
        for start in range(0, len(x), step):
            part = x[start : start + step]
            short = step - len(part)
            if short:
                part = np.concatenate([part, np.repeat(part[-1:], short, axis=0)])
            values = modules.execute_onnx(wrapper, {name: part})
            chunks.append({k: v[: len(v) - short] for k, v in values.items()})
    except Exception as exc:
        raise DataError(f"qonnx's executor failed on {_name(model)}: {type(exc).__name__}: {exc}") from exc
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


# ----------------------------------------------------------------------------- bit widths


def bits_label(layers: Iterable[LayerBits]) -> str:
    """The model's bit widths in one word: "w4a8", "w4/8a8" when layers differ, "float" when none is quantized."""
    layers = list(layers)
    parts = []
    for prefix, widths in (
        ("w", {b.weight_bits for b in layers} - {None}),
        ("a", {b.activation_bits for b in layers} - {None}),
    ):
        if widths:
            parts.append(prefix + "/".join(str(b) for b in sorted(w for w in widths if w is not None)))
    return "".join(parts) or "float"


def layer_bits(model: onnx.ModelProto) -> tuple[LayerBits, ...]:
    """Each Conv, ConvTranspose, Gemm and MatMul with the bit widths of its weight and its input activation:
    those of the quantizer (QONNX op, or DequantizeLinear of QDQ/QCDQ) that produces each, through ops that
    only move values (Reshape, Transpose ...)."""
    graph = _Graph(model)
    found = []
    for index, node in enumerate(model.graph.node):
        if node.domain not in ("", "ai.onnx") or node.op_type not in _LAYERS:
            continue
        act, weight = _LAYERS[node.op_type]
        name = node.name or f"{node.op_type}#{index}"
        found.append(LayerBits(name, node.op_type, graph.bits_of(node, weight), graph.bits_of(node, act)))
    return tuple(found)


def quantizers_of(model: onnx.ModelProto) -> tuple[Quantizer, ...]:
    """The QONNX quantizers of the graph (Quant, IntQuant, BipolarQuant, Trunc), in graph order."""
    graph = _Graph(model)
    return tuple(q for n in model.graph.node if n.domain in QONNX_DOMAINS and (q := graph.quantizer(n)) is not None)


class _Graph:
    """Producers and constants of a graph, to trace a tensor back to its quantizer."""

    def __init__(self, model: onnx.ModelProto) -> None:
        from onnx import numpy_helper

        self.consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                if value is not None:
                    self.consts[node.output[0]] = numpy_helper.to_array(value)
        self.producer = {o: n for n in model.graph.node for o in n.output if o}

    def bits_of(self, node: onnx.NodeProto, index: int) -> int | None:
        """The bit width of input `index` of `node`, or None when no quantizer produces it."""
        tensor = node.input[index] if index < len(node.input) else ""
        source = self.producer.get(tensor)
        while source is not None and source.op_type in _MOVES and source.domain in ("", "ai.onnx"):
            source = self.producer.get(source.input[0])
        quantizer = self.quantizer(source) if source is not None else None
        return quantizer.bits if quantizer is not None else None

    def quantizer(self, node: onnx.NodeProto) -> Quantizer | None:
        kind: Literal["weight", "activation"] = "weight" if self._constant(node.input[0]) else "activation"
        name = node.name or node.output[0]
        if node.domain in QONNX_DOMAINS:
            from onnx.helper import get_attribute_value

            attrs = {a.name: get_attribute_value(a) for a in node.attribute}
            rounding = attrs.get("rounding_mode", b"ROUND" if node.op_type != "Trunc" else b"FLOOR")
            rounding = rounding.decode() if isinstance(rounding, bytes) else str(rounding)
            if node.op_type == "BipolarQuant":
                return Quantizer(name, node.op_type, kind, 1, True, False, "")
            if node.op_type in ("Quant", "IntQuant", "Trunc"):
                bits = self._scalar(node.input[-1])
                signed, narrow = bool(attrs.get("signed", 1)), bool(attrs.get("narrow", 0))
                return Quantizer(name, node.op_type, kind, bits, signed, narrow, rounding.upper())
            return None
        if node.op_type == "DequantizeLinear" and node.domain in ("", "ai.onnx"):
            kind = "weight" if self._constant_chain(node.input[0]) else "activation"
            return self._integers(name, node.input[0], kind)
        return None

    def _integers(self, name: str, tensor: str, kind: Literal["weight", "activation"]) -> Quantizer | None:
        """A DequantizeLinear's input: a Clip's bounds (QCDQ), else its integer type."""
        source = self.producer.get(tensor)
        if source is not None and source.op_type == "Clip" and len(source.input) == 3:
            lo, hi = (self.consts.get(i) for i in source.input[1:3])
            if lo is not None and hi is not None:
                return _from_range(name, kind, int(lo), int(hi))
        if tensor in self.consts:
            dtype = self.consts[tensor].dtype
        elif source is not None and source.op_type == "QuantizeLinear":
            zero_point = self.consts.get(source.input[2]) if len(source.input) > 2 else None
            dtype = zero_point.dtype if zero_point is not None else np.dtype(np.uint8)
        else:
            return None
        if dtype.kind not in "iu":
            return None
        info = np.iinfo(dtype)
        return Quantizer(name, "DequantizeLinear", kind, info.bits, dtype.kind == "i", False, "ROUND")

    def _scalar(self, tensor: str) -> int | None:
        value = self.consts.get(tensor)
        return int(value.reshape(())) if value is not None and value.size == 1 else None

    def _constant(self, tensor: str) -> bool:
        return tensor in self.consts

    def _constant_chain(self, tensor: str) -> bool:
        """True when `tensor` is computed from constants only (a QCDQ weight: initializer -> Q -> Clip -> DQ)."""
        if tensor in self.consts:
            return True
        source = self.producer.get(tensor)
        return source is not None and all(not i or self._constant_chain(i) for i in source.input)


def _from_range(name: str, kind: Literal["weight", "activation"], lo: int, hi: int) -> Quantizer:
    """The narrowest QONNX integer range holding [lo, hi]."""
    signed = lo < 0

    def holds(bits: int) -> bool:
        return -(2 ** (bits - 1)) <= lo and hi < 2 ** (bits - 1) if signed else hi < 2**bits

    bits = next(b for b in range(1, 65) if holds(b))
    narrow = signed and lo == -(2 ** (bits - 1)) + 1
    return Quantizer(name, "DequantizeLinear", kind, bits, signed, narrow, "ROUND")


# ----------------------------------------------------------------------------- what QCDQ cannot express


def qcdq_blockers(model: onnx.ModelProto) -> dict[str, str]:
    """QONNX node name -> why QuantToQCDQ must not convert it; empty when every QONNX node may be converted.

    The conditions are those QuantToQCDQ documents: a Quant node, constant scale, zero point and bit width,
    2..8 bits, a zero point of zero, a scalar or per-channel scale, rounding half to even. They are checked
    here because qonnx 1.0.0 does not enforce all of them: it converts a Quant whose rounding_mode is FLOOR
    (or CEIL ...) as if it rounded half to even, puts a per-channel scale of lower rank than its input on the
    wrong axis, and fails on a per-channel zero point of zeros.
    """
    graph = _Graph(model)
    ranks = _ranks(model)
    blockers = {}
    for index, node in enumerate(model.graph.node):
        if node.domain in QONNX_DOMAINS:
            reason = _blocker(node, graph, ranks)
            if reason:
                blockers[node.name or f"{node.op_type}#{index}"] = f"{node.op_type}, {reason}"
    return blockers


def _blocker(node: onnx.NodeProto, graph: _Graph, ranks: dict[str, int]) -> str:
    if node.op_type != "Quant":
        return "QuantToQCDQ converts Quant nodes only"
    scale, zero_point, bits = (graph.consts.get(i) for i in node.input[1:4])
    if scale is None or zero_point is None or bits is None:
        return "scale, zero point and bit width must be constants"
    quantizer = graph.quantizer(node)
    assert quantizer is not None  # a Quant node with a constant bit width
    if quantizer.bits is None or not _QCDQ_BITS[0] <= quantizer.bits <= _QCDQ_BITS[1]:
        return f"{quantizer.bits}-bit; QuantizeLinear/Clip/DequantizeLinear holds {_QCDQ_BITS[0]}..{_QCDQ_BITS[1]} bits"
    if zero_point.size != 1 or float(zero_point.reshape(())) != 0:
        return "zero point other than a single 0"
    if quantizer.rounding not in ("ROUND", "HALF_EVEN"):
        return f"rounding_mode {quantizer.rounding}; QuantizeLinear rounds half to even (ROUND) only"
    per_channel = np.squeeze(scale).ndim
    if per_channel > 1:
        return f"scale of shape {list(scale.shape)} (a scalar or one value per channel converts)"
    rank = graph.consts[node.input[0]].ndim if node.input[0] in graph.consts else ranks.get(node.input[0])
    if per_channel == 1 and rank != scale.ndim:
        return f"per-channel scale of shape {list(scale.shape)} without the input's rank: its axis is ambiguous"
    return ""


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """The rank of every tensor ONNX's shape inference can tell (QONNX ops leave their outputs unknown)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - a graph it cannot infer: ranks from the declarations alone
        inferred = model
    graph = inferred.graph
    ranks = {t.name: len(t.dims) for t in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        if value.type.tensor_type.HasField("shape"):
            ranks[value.name] = len(value.type.tensor_type.shape.dim)
    return ranks


# ----------------------------------------------------------------------------- qonnx, imported lazily


class _Qonnx:
    """The parts of qonnx this module uses, imported on first use."""

    def __init__(self) -> None:
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx
        from qonnx.transformation.change_batchsize import ChangeBatchSize
        from qonnx.transformation.infer_shapes import InferShapes
        from qonnx.transformation.qonnx_to_qcdq import QuantToQCDQ

        self.ModelWrapper, self.execute_onnx = ModelWrapper, execute_onnx
        self.ChangeBatchSize, self.InferShapes, self.QuantToQCDQ = ChangeBatchSize, InferShapes, QuantToQCDQ


def _qonnx() -> _Qonnx:
    try:
        return _Qonnx()
    except ImportError as exc:
        raise DataError(f"QONNX models need the qonnx package ({exc}); install it with {INSTALL}") from exc


def _name(model: onnx.ModelProto) -> str:
    return f"model '{model.graph.name}'" if model.graph.name else "the model"
