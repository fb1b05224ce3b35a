"""The element types the emulator executes, and the load-time check that refuses every other type.

NumPy has a native type for each of these, so every kernel computes in the
model's own type. ONNX's other types (bfloat16, the float8/float4 and int4/int2
families, strings, complex numbers) and its non-tensor values (sequences,
optionals, maps, sparse tensors) are refused when the model is loaded, naming the
tensor and the type: never mapped to float32, never a crash halfway through a run.
"""

from __future__ import annotations

import numpy as np
import onnx

from .errors import UnsupportedTypeError

ONNX_TO_NUMPY: dict[int, np.dtype] = {
    onnx.TensorProto.FLOAT: np.dtype(np.float32),
    onnx.TensorProto.DOUBLE: np.dtype(np.float64),
    onnx.TensorProto.FLOAT16: np.dtype(np.float16),
    onnx.TensorProto.UINT8: np.dtype(np.uint8),
    onnx.TensorProto.INT8: np.dtype(np.int8),
    onnx.TensorProto.UINT16: np.dtype(np.uint16),
    onnx.TensorProto.INT16: np.dtype(np.int16),
    onnx.TensorProto.UINT32: np.dtype(np.uint32),
    onnx.TensorProto.INT32: np.dtype(np.int32),
    onnx.TensorProto.UINT64: np.dtype(np.uint64),
    onnx.TensorProto.INT64: np.dtype(np.int64),
    onnx.TensorProto.BOOL: np.dtype(np.bool_),
}
SUPPORTED_NUMPY = frozenset(ONNX_TO_NUMPY.values())
SUPPORTED_NAMES = ", ".join(onnx.TensorProto.DataType.Name(t).lower() for t in ONNX_TO_NUMPY)


def type_name(elem_type: int) -> str:
    """ONNX's name of an element type ("bfloat16"), or its number when ONNX has no name for it."""
    try:
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"element type {elem_type}"


def numpy_dtype(elem_type: int) -> np.dtype | None:
    """The NumPy type the emulator computes an ONNX element type in; None when it does not support it."""
    return ONNX_TO_NUMPY.get(elem_type)


def check_value_type(model: str, value: onnx.ValueInfoProto, role: str) -> np.dtype | None:
    """The NumPy dtype of a graph input/output; UnsupportedTypeError for a type the emulator does not run.

    None when the element type is left unspecified (allowed for outputs: the
    kernels decide the type).
    """
    kind = value.type.WhichOneof("value")
    if kind is None:
        return None
    if kind != "tensor_type":
        what = {"sequence_type": "a sequence", "optional_type": "an optional", "map_type": "a map"}.get(kind, kind)
        raise UnsupportedTypeError(
            model, value.name, role, f"is {what}; the tinyaccel emulator runs tensors only ({SUPPORTED_NAMES})"
        )
    elem = value.type.tensor_type.elem_type
    if elem == onnx.TensorProto.UNDEFINED:
        return None
    dtype = numpy_dtype(elem)
    if dtype is None:
        raise UnsupportedTypeError(model, value.name, role, _unsupported(type_name(elem)))
    return dtype


def check_array(model: str, name: str, role: str, array: np.ndarray) -> None:
    """Refuse a constant (initializer, Constant value) whose NumPy type the emulator does not run."""
    if array.dtype not in SUPPORTED_NUMPY:
        raise UnsupportedTypeError(model, name, role, _unsupported(str(array.dtype)))


def _unsupported(name: str) -> str:
    return f"has element type {name}, which the tinyaccel emulator does not support (supported: {SUPPORTED_NAMES})"
