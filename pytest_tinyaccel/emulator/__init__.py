"""The tinyaccel functional emulator: ONNX graphs executed with the project's own NumPy kernels.

Shared by the `aie` and `gemmini` targets. It is an independent implementation,
so a golden test against it can fail, and when it does, `first_divergence`
names the layer. Quantized (QOperator) graphs run in integer arithmetic, as
the accelerators do: int8/uint8 operands minus zero points, exact int32
accumulation, int32 bias, requantization by a float32 multiplier with
round-half-to-even and saturation, which is what ONNX Runtime's kernels do too.

Pure NumPy plus onnx (for parsing); no pytest, no onnxruntime.
"""

from .compare import Divergence, first_divergence
from .errors import UnsupportedOpError
from .graph import Graph, Node, TensorInfo
from .kernels import ROUNDING_MODES
from .ops import supported_ops

__all__ = [
    "Divergence",
    "Graph",
    "Node",
    "ROUNDING_MODES",
    "TensorInfo",
    "UnsupportedOpError",
    "first_divergence",
    "supported_ops",
]
