"""Which model an int8 hls4ml build reads, so that the design implements the golden's quantization:
hls4ml takes quantized networks through its QONNX front end (worker side: quantized.py).

- a QONNX model (Brevitas's QONNX export: `Quant` nodes) as it is;
- a QDQ or QCDQ model (ONNX Runtime's QDQ format, Brevitas's QCDQ export) as it is; the worker converts
  it with qonnx's QCDQToQuant;
- the plugin's own int8 model, which ONNX Runtime writes in its QOperator format by default
  (QLinearConv ...: integer ops that qonnx has no conversion for): its QDQ twin, quantized by ONNX
  Runtime from the same float model, calibration set and settings (only the format differs), checked
  here to carry every scale and zero point of the QOperator model (refused in one line when it does
  not: ONNX Runtime gives QLinearAveragePool an output scale of its own, its QDQ format does not);
- an author's own QOperator model: refused in one line (nothing to make a QDQ twin from).

Main process; no hls4ml or qonnx import.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...modelfiles import load_inline
from ...quantinfo import QONNX_OPS, quantization
from ..base import TargetError, TargetUnsupported

if TYPE_CHECKING:  # onnx loads when a graph is read, not with the plugin
    import onnx

    from ..base import Build

QDQ_TWIN = "qdq_twin.onnx"
INTEGER_OPS = ("QGemm", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "QAttention")
"""ONNX Runtime's QOperator ops besides QLinear*: integer kernels qonnx cannot express as Quant nodes."""
FIXED_OUTPUT_SCALES = ("QLinearSoftmax", "QLinearSigmoid")
"""QOperator ops whose output scale ONNX Runtime fixes (1/256) instead of calibrating; the QDQ twin
calibrates it."""


@dataclass(frozen=True)
class Int8Route:
    onnx: Path
    """The model the worker reads."""
    kind: str
    """"qonnx" (read as it is) or "qdq" (converted by qonnx's QCDQToQuant)."""
    label: str
    """How the report names the design."""


def int8_route(build: Build) -> Int8Route:
    """The int8 model of `build` as hls4ml's QONNX front end reads it (module docstring); a
    TargetUnsupported for a QOperator model the plugin did not quantize."""
    found = quantization(load_inline(build.onnx_path))
    bits = f" {found.label}" if found.label else ""
    if any(op in QONNX_OPS for op in found.ops):
        return Int8Route(build.onnx_path, "qonnx", f"QONNX{bits}, hls4ml's QONNX front end")
    integer = sorted(op for op in found.ops if op.startswith("QLinear") or op in INTEGER_OPS)
    if not integer:
        return Int8Route(build.onnx_path, "qdq", f"QDQ{bits} as QONNX (qonnx QCDQToQuant), hls4ml's QONNX front end")
    model = build.model
    if model.int8_onnx_path is not None:
        listed = ", ".join(f"{op} x{found.ops[op]}" for op in integer)
        raise TargetUnsupported(
            f"hls4ml cannot convert {model.name} (int8): hls4ml reads quantized models as QONNX, and qonnx "
            f"cannot convert ONNX Runtime's QOperator format of {model.int8_onnx_path.name} ({listed}): "
            "give the int8 model in QDQ format (quantize_static(..., quant_format=QuantFormat.QDQ)) or QONNX"
        )
    twin = build.dir / QDQ_TWIN
    _quantize_twin(build, twin)
    missing = missing_parameters(build.onnx_path, twin)
    if missing:
        raise TargetUnsupported(
            f"hls4ml cannot convert {model.name} (int8): ONNX Runtime's QDQ quantization of {model.name} lacks "
            f"{len(missing)} scale(s) of its QOperator int8 model, the golden (e.g. scale {missing[0][0]}, zero "
            f"point {missing[0][1]}), so hls4ml would not implement the golden's quantization; "
            '[quantization] format = "QDQ" makes the QDQ model the golden'
        )
    return Int8Route(twin, "qdq", f"QDQ twin{bits} as QONNX (qonnx QCDQToQuant), hls4ml's QONNX front end")


def _quantize_twin(build: Build, twin: Path) -> None:
    from ...quantize import quantize_model

    model = build.model
    settings = {**model.quantization, "format": "QDQ"}
    try:
        quantize_model(model.onnx_path, twin, model.load_calibration(), settings)
    except Exception as exc:  # onnxruntime raises many types here
        raise TargetError(
            f"ONNX Runtime could not quantize {model.name} in QDQ format for hls4ml ({type(exc).__name__}: {exc})"
        ) from exc


def quantization_parameters(proto: onnx.ModelProto, skip_fixed: bool = False) -> set[tuple[str, str]]:
    """Every (scale, zero point) pair the graph's nodes read, as value strings: a float constant input
    followed by an integer constant of the same shape. `skip_fixed`: without the output scales ONNX
    Runtime fixes (FIXED_OUTPUT_SCALES), wherever they are read."""
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    fixed = {
        n.input[3] for n in proto.graph.node if skip_fixed and n.op_type in FIXED_OUTPUT_SCALES and len(n.input) > 3
    }
    found = set()
    for node in proto.graph.node:
        for scale, zero in _pairs(list(node.input), inits, fixed):
            found.add((repr(scale.astype(np.float32).ravel().tolist()), repr(zero.ravel().tolist())))
    return found


def _pairs(
    names: list[str], inits: dict[str, np.ndarray], skipped: set[str]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for first, second in zip(names, names[1:], strict=False):
        if first in skipped:
            continue
        scale, zero = inits.get(first), inits.get(second)
        if scale is None or zero is None or scale.dtype.kind != "f" or zero.dtype.kind not in "iu":
            continue
        if scale.shape == zero.shape:
            yield scale, zero


def missing_parameters(qoperator: Path, twin: Path) -> list[tuple[str, str]]:
    """The (scale, zero point) pairs of the QOperator model the QDQ twin does not hold."""
    theirs = quantization_parameters(load_inline(qoperator), skip_fixed=True)
    ours = quantization_parameters(load_inline(twin))
    return sorted(theirs - ours)
