"""What kind of model a manifest points at, read from the graph itself: already quantized (it defines
the int8 case as it is) or float, and whether an undeclared scored output looks like logits.

Both are manifest rules (models.py calls them while loading a manifest): a quantized `model` with an
fp32 case, or a float `model_int8`, is a manifest error; logits without a role are a warning.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from .cache import remembered
from .config import ConfigError, ManifestWarning
from .errors import DataError
from .modelfiles import load_inline
from .quantinfo import Quantization, quantization
from .runtime import load_onnx

_NORMALIZERS = {"Softmax", "LogSoftmax", "Sigmoid", "QLinearSoftmax", "QLinearSigmoid", "ZipMap"}
_PASS_THROUGH = {
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Identity",
    "Transpose",
    "QuantizeLinear",
    "DequantizeLinear",
    "Cast",
}


def warn_unscored_logits(
    onnx_path: Path, manifest: Path, scored: str, classification: bool, outputs: dict[str, dict[str, Any]]
) -> None:
    """A classifier whose scored output has no declared role is scored as probabilities; when no softmax
    (or sigmoid) produces it, it is probably logits, and Top-5 would store raw scores: say so."""
    if not classification or outputs.get(scored, {}).get("role"):
        return
    try:
        source = remembered(f"scored_by:{scored}", onnx_path, lambda: _scored_by(onnx_path, scored))
    except DataError:
        return
    if source is None or source in _NORMALIZERS:
        return
    warnings.warn(
        ManifestWarning(
            f"{manifest}: output '{scored}' comes from a {source}, not a softmax, "
            f"and declares no role, so it is scored as probabilities; if it holds logits, declare "
            f'[outputs."{scored}"] role = "logits" (accuracy is the same, Top-5 probabilities are not)'
        ),
        stacklevel=2,
    )


def _scored_by(onnx_path: Path, scored: str) -> str | None:
    """The op that computes output `scored`, looking through ops that only move or (de)quantize values."""
    graph = load_onnx(onnx_path).graph
    producer = {o: n for n in graph.node for o in n.output}
    node = producer.get(scored)
    while node is not None and node.op_type in _PASS_THROUGH and node.input:
        node = producer.get(node.input[0])
    return None if node is None else str(node.op_type)


def _quantization(path: Path) -> Quantization | None:
    """The model's quantization (remembered while the file is unchanged); None when it cannot be read."""

    def read() -> dict[str, Any]:
        found = quantization(load_inline(path))
        return {"ops": found.ops, "weight_bits": found.weight_bits, "activation_bits": found.activation_bits}

    try:
        kept = remembered("quantization", path, read)
    except (DataError, ValueError):  # an unreadable model fails its cases, with its own message
        return None
    return Quantization(dict(kept["ops"]), tuple(kept["weight_bits"]), tuple(kept["activation_bits"]))


def prequantized(manifest: Path, raw: dict[str, Any], v: dict[str, Any]) -> str:
    """A `model` that is already quantized defines the int8 case as it is (never quantized again) and has no
    fp32 case; a `model_int8` must be quantized. Fills in dtypes and model_int8; returns the int8 bit widths."""
    found = _quantization(v["model"])
    if found:
        name = v["model"].name
        if "dtypes" in raw and "fp32" in v["dtypes"]:
            raise ConfigError(
                manifest,
                "dtypes",
                f"{name} is already quantized ({found.describe()}): it has no float version to run as fp32; set "
                'dtypes = ["int8"], or give the float model as `model` and this one as `model_int8`',
            )
        if v["model_int8"] is not None and v["model_int8"] != v["model"]:
            raise ConfigError(
                manifest,
                "model_int8",
                f"`model` ({name}) is already quantized ({found.describe()}); leave model_int8 out, or give the "
                "float model as `model`",
            )
        v["dtypes"], v["model_int8"] = ["int8"], v["model"]
        return found.label
    if v["model_int8"] is None:
        return ""
    int8 = _quantization(v["model_int8"])
    if int8 is not None and not int8:
        raise ConfigError(
            manifest,
            "model_int8",
            f"{v['model_int8'].name} has no quantization nodes (QuantizeLinear, QLinear*, QONNX Quant ...): it "
            "computes in float, so it cannot be the int8 model; quantize it, or leave model_int8 out",
        )
    return int8.label if int8 else ""
