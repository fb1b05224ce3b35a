"""int8: ONNX Runtime static post-training quantization with the model's calibration set.

Deterministic (same model, calibration data and settings give the same bytes),
so the quantized model can be a content-addressed build product.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .modelfiles import load_inline


def quantize_model(src: Path, dst: Path, calibration: np.ndarray, settings: dict[str, Any]) -> str | None:
    """Write the statically quantized version of `src` to `dst`; returns a note when the quantization
    had to leave ONNX Runtime's recommended path (None otherwise).

    `settings` are the manifest's `[quantization]` table merged with defaults
    (format, activation/weight types, per_channel, reduce_range,
    calibrate_method, calibration_samples). A model with external data is read
    in whole first (the quantizer writes one self-contained file). When ONNX
    Runtime's pre-processing (`quant_pre_process`: shape inference and graph
    clean-up) fails, the model is quantized without it, as `quantize_static`
    alone would: that failure is ONNX Runtime's, not the user's settings.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .runtime import input_specs, to_model_inputs

    spec = input_specs(src)[0]
    samples = to_model_inputs(src, calibration[: settings["calibration_samples"]])[spec.name]

    class Reader(CalibrationDataReader):
        """One sample per call, so fixed-batch models calibrate too."""

        def __init__(self) -> None:
            self._iter: Iterator[np.ndarray] = iter(samples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            sample = next(self._iter, None)
            return None if sample is None else {spec.name: sample[None]}

    def quantize(source: Path) -> None:
        quantize_static(
            str(source),
            str(dst),
            Reader(),
            quant_format=getattr(QuantFormat, settings["format"]),
            activation_type=QuantType.QUInt8 if settings["activation_type"] == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8 if settings["weight_type"] == "int8" else QuantType.QUInt8,
            per_channel=settings["per_channel"],
            reduce_range=settings["reduce_range"],
            calibrate_method=getattr(CalibrationMethod, settings["calibrate_method"]),
        )

    with tempfile.TemporaryDirectory(prefix="tinyaccel-quant-") as tmp:  # each attempt reads a fresh Reader
        whole, prepared = Path(tmp) / "model.onnx", Path(tmp) / "prepared.onnx"
        onnx.save(load_inline(src), str(whole))
        try:
            # ORT's recommended pre-processing (shape inference + graph clean-up);
            # symbolic shape inference would need sympy and adds nothing for these models.
            quant_pre_process(str(whole), str(prepared), skip_symbolic_shape=True)
            quantize(prepared)
            return None
        except Exception as exc:  # onnx / onnxruntime raise many types here
            first = (str(exc).strip().splitlines() or [""])[0]
            failure = exc
        try:
            quantize(whole)
        except Exception:
            raise failure from None
        return (
            "quantized without ONNX Runtime's pre-processing (with it, quantization failed: "
            f"{type(failure).__name__}: {first})"
        )
