"""The graph ONNX Runtime actually runs for a quantized model, so the emulator can follow it.

A QDQ or QCDQ graph (ONNX Runtime's quantizer, Brevitas, the MLPerf Tiny int8
references) describes integer arithmetic with float ops between
DequantizeLinear and QuantizeLinear. ONNX Runtime does not run it as written:
its optimizer quantizes float biases (level 1), rewrites the QDQ groups it can
into integer kernels (QLinearConv, QGemm, QLinearAdd ..., level 2) and leaves
the others in float. Which groups it fuses follows rules of its own (single
consumers, int32 bias on the right scale, types the CPU kernels take), and on x86
CPUs without VNNI it first turns int8 activations into uint8 (x + 128) where it
can (QDQS8ToU8Transformer), so those sums saturate like every uint8 x int8 one.

`ort_optimized` asks ONNX Runtime itself for that graph: the session's
optimized model at the extended level, saved and read back. The configuration
is fixed so the graph is the same on every CPU: int8 activations are always
converted as on a CPU without VNNI (`session.qdqisint8allowed = 0`). On a CPU
with exact int8 sums the conversion changes no value (x + 128 with zero point +
128 is the same number), so one graph serves both int8 arithmetics: the
emulator sums it exactly or in saturating int16 pairs (emulator/accumulation.py).
The layout level above (NCHWc, NHWC) changes no integer arithmetic and is
CPU-specific, so it is left out.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DataError

if TYPE_CHECKING:  # onnx loads when a graph is optimized, not with the plugin
    import onnx

LEVEL = "extended"
"""ONNX Runtime's graph optimization level whose result the emulator follows."""
SESSION_CONFIG = {
    "session.qdqisint8allowed": "0",
    # every initializer stays in the saved file: no external data beside a temporary model
    "session.optimized_model_external_initializers_min_size_in_bytes": str(2**31 - 1),
}
INTEGER_KERNELS = frozenset(
    {
        "QLinearConv",
        "QLinearMatMul",
        "MatMulInteger",
        "ConvInteger",
        "QGemm",
        "QLinearAdd",
        "QLinearMul",
        "QLinearConcat",
        "QLinearAveragePool",
        "QLinearGlobalAveragePool",
        "QLinearSigmoid",
        "QLinearLeakyRelu",
        "QLinearSoftmax",
        "MatMulIntegerToFloat",
        "DynamicQuantizeMatMul",
    }
)


@dataclass(frozen=True)
class OrtGraph:
    """ONNX Runtime's optimized graph of a model and what its optimizer made integer."""

    model: onnx.ModelProto
    integer_nodes: tuple[str, ...]
    """Nodes ONNX Runtime runs as integer kernels that the model wrote as float ops (fused QDQ groups)."""


def has_qdq(model: onnx.ModelProto) -> bool:
    """True when the graph quantizes activations (a QuantizeLinear node: QDQ, QCDQ or QOperator edges);
    weights stored as int8 behind a DequantizeLinear alone leave the arithmetic in float."""
    return any(n.op_type == "QuantizeLinear" for n in model.graph.node)


def ort_optimized(model: onnx.ModelProto) -> OrtGraph:
    """ONNX Runtime's optimized graph of `model` (see the module docstring); cached by content, each caller
    gets its own copy of the graph (callers add outputs to it, for intermediates)."""
    import onnx

    data = model.SerializeToString()
    cached = _optimized(hashlib.sha256(data).hexdigest(), data)
    copy = onnx.ModelProto()
    copy.CopyFrom(cached.model)
    return OrtGraph(copy, cached.integer_nodes)


@lru_cache(maxsize=16)
def _optimized(digest: str, data: bytes) -> OrtGraph:
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.log_severity_level = 3
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    for key, value in SESSION_CONFIG.items():
        options.add_session_config_entry(key, value)
    with tempfile.TemporaryDirectory(prefix="tinyaccel-ortgraph-") as tmp:
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        try:
            ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise DataError(f"ONNX Runtime cannot load the model to optimize it: {exc}") from exc
        optimized = onnx.load(options.optimized_model_filepath)
    written = {n.name: n.op_type for n in onnx.load_from_string(data).graph.node}
    integer = tuple(
        n.name for n in optimized.graph.node if n.op_type in INTEGER_KERNELS and written.get(n.name) != n.op_type
    )
    return OrtGraph(optimized, integer)
