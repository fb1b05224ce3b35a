"""Op registry: one builder per ONNX op, run once per node at load time.

A builder validates the node's attributes and constant inputs (raising
UnsupportedOpError for anything it cannot execute, so a model fails at load
time, not halfway through a run), precomputes what it can (integer weights
minus zero points, requantization scales, lookup tables) and returns a kernel:
a function from the node's runtime input values to its output values.
`core` holds the registry; importing the other modules registers their ops.
"""

from . import (  # noqa: F401  (importing registers the ops)
    convtranspose,
    elementwise,
    indexing,
    integer,
    normalization,
    qonnx_ops,
    quant,
    quant_tables,
    recurrent,
    reduce,
    resize,
    shape,
    spatial,
)
from .core import REGISTRY, BuildContext, Kernel, OpSpec, lookup_op, supported_ops, unsupported_ops

__all__ = ["REGISTRY", "BuildContext", "Kernel", "OpSpec", "lookup_op", "supported_ops", "unsupported_ops"]
