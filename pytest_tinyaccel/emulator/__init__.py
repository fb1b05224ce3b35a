"""The tinyaccel functional emulator: ONNX graphs executed with the project's own NumPy kernels.

Shared by the `aie` and `gemmini` targets. It is an independent implementation,
so a golden test against it can fail, and when it does, `first_divergence`
names the layer.

- fp32 graphs run in float32 (im2col + BLAS), within the golden tolerance of ORT.
- Quantized QOperator graphs (what `quantize.quantize_model` writes) run in
  integer arithmetic, as the accelerators do: 8-bit operands minus zero points,
  exact int32 accumulation, int32 bias, requantization by a float32 multiplier
  with round-half-to-even and saturation. Where ONNX Runtime's x86 kernels use
  their own formula (QLinearAdd's FMA form, QLinearSoftmax's table, the float
  path of QLinearAveragePool ...), the emulator uses the same one, so the
  results are bit-identical to ORT's.
- QDQ graphs (the MLPerf Tiny int8 references) run as written by default;
  `Graph.load(..., qdq="integer")` rewrites DequantizeLinear -> op ->
  QuantizeLinear groups into integer operators, `qdq="ort"` runs the graph
  ONNX Runtime's optimizer makes of the model (see `ortgraph.py`).

Loading validates everything: an op, attribute or input the emulator does not
execute raises UnsupportedOpError, a tensor type it does not hold (bfloat16,
float8, int4, string, a sequence ...) UnsupportedTypeError; nothing unsupported
is ever approximated. `backend.EmulatorBackend` exposes the emulator as an
`onnx.backend.base.Backend` (tests/test_onnx_backend.py runs the ONNX node tests
through it). docs/emulator.md describes the types, ops and int8 arithmetic.

Usage::

    graph = Graph.load(path)                                  # validates every node (or a ModelProto)
    outputs = graph.run({"input": x})                         # whole batch at once
    outputs, tensors = graph.run(feed, intermediates=True)    # every node output
    where = first_divergence(tensors, ort_tensors, graph.nodes, atol=1e-5, rtol=1e-3)

Pure NumPy plus onnx (for parsing); no pytest, no onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .accumulation import ACCUMULATION_MODES
from .compare import Divergence, first_divergence
from .errors import UnsupportedOpError, UnsupportedTypeError
from .kernels import ROUNDING_MODES

EMULATOR_VERSION = "2"
"""Bumped when the emulator's outputs change for a model it already ran (2: QDQ graphs follow ONNX Runtime's
optimized graph), so cached simulated results are not reused across the change."""

if TYPE_CHECKING:
    from .graph import Graph, Node, TensorInfo
    from .ops import supported_ops, unsupported_ops

_LOADED_ON_USE = {
    "Graph": ".graph",
    "Node": ".graph",
    "TensorInfo": ".graph",
    "supported_ops": ".ops",
    "unsupported_ops": ".ops",
}
"""The graph and its op table (onnx and every kernel) load when first used, not when a
target that may never run is registered: a `-m cpu` run does not pay for them."""


def __getattr__(name: str) -> Any:
    if name in _LOADED_ON_USE:
        return getattr(importlib.import_module(_LOADED_ON_USE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACCUMULATION_MODES",
    "EMULATOR_VERSION",
    "ROUNDING_MODES",
    "Divergence",
    "Graph",
    "Node",
    "TensorInfo",
    "UnsupportedOpError",
    "UnsupportedTypeError",
    "first_divergence",
    "supported_ops",
    "unsupported_ops",
]
