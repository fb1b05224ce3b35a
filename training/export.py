"""Shared by the training scripts: export a trained torch module to the ONNX the suite expects.

The legacy TorchScript exporter in eval mode folds BatchNormalization into the
preceding Conv (constant folding), keeps the batch axis dynamic, and writes an
IR version (8) that every supported ONNX Runtime reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import torch

QUANTIZATION_TOML = """
[quantization]
# 7-bit weights: ONNX Runtime on x86 CPUs without VNNI adds pairs of uint8 x int8 products in
# saturating int16; with reduce_range no pair can saturate, so every CPU makes the same int8 golden.
reduce_range = true
"""


def bundled_quantization() -> dict[str, Any]:
    """The quantization settings the bundled manifests declare (QUANTIZATION_TOML)."""
    from pytest_tinyaccel.models import QUANTIZATION_DEFAULTS

    return dict(QUANTIZATION_DEFAULTS, reduce_range=True)


def export_onnx(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    input_name: str = "input",
    output_name: str = "output",
    opset: int = 17,
) -> None:
    module.eval()
    torch.onnx.export(
        module,
        (example,),
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=[input_name],
        output_names=[output_name],
        dynamic_axes={input_name: {0: "N"}, output_name: {0: "N"}},
        do_constant_folding=True,
    )
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    if "BatchNormalization" in ops:
        raise RuntimeError(f"{path}: BatchNormalization was not folded; export in eval mode after a Conv/Gemm")
    onnx.checker.check_model(model)
