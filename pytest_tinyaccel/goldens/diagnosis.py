"""Why outputs miss their golden: the int8 arithmetic, ONNX Runtime's graph optimizations, another ONNX
Runtime version, or a real difference. One line for the failure message, so the reader knows which.

Each explanation is tried against ONNX Runtime itself, on the golden's inputs and with the check's own
tolerances: the outputs are explained by a cause when they match what ONNX Runtime gives under it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..runtime import create_session, run_session, to_model_inputs
from .compare import describe_mismatch
from .store import Golden

Tolerances = Mapping[str, Mapping[str, float]]


def _matches(obtained: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], tols: Tolerances) -> bool:
    return all(
        name in obtained
        and describe_mismatch(name, obtained[name], value, tols[name]["atol"], tols[name]["rtol"]) is None
        for name, value in reference.items()
        if name in tols
    )


def diagnose(
    golden: Golden,
    dtype: str,
    path: Path,
    obtained: Mapping[str, np.ndarray],
    arithmetic: str | None,
    tols: Tolerances,
) -> str:
    """The likeliest cause of a golden mismatch, as one line starting with "cause: ".

    `obtained` are the target's outputs on the golden samples, `arithmetic` the int8 arithmetic they were
    checked in (None: the golden's main outputs), `path` the dtype's model, `tols` per output."""
    import onnxruntime

    held = golden.arithmetics(dtype) if dtype != "fp32" else {}
    tried = []
    if arithmetic is not None and held and arithmetic not in held:
        return (
            f"cause: int8 arithmetic. This target sums int8 products as {arithmetic}; the golden holds outputs "
            f"of {', '.join(held)} only. Regenerate it with this plugin: it records each arithmetic ONNX Runtime "
            "can take where they differ"
        )
    for other, made_by in held.items():
        if (
            other == arithmetic
            or other not in golden.variants.get(dtype, {})
            and arithmetic not in golden.variants.get(dtype, {})
        ):
            continue  # the same outputs as the ones checked
        tried.append(f"the golden's {other} outputs")
        reference, _ = golden.expected(dtype, other)
        if _matches(obtained, reference, tols):
            return (
                f"cause: int8 arithmetic. The outputs match the golden's {other} outputs ({made_by}), not the "
                f"{arithmetic or 'main'} ones they were checked against: the target sums int8 products as {other}"
            )
    try:
        feed = to_model_inputs(path, golden.inputs)
        installed = onnxruntime.__version__
        if golden.meta.get("onnxruntime") != installed:
            tried.append(f"ONNX Runtime {installed}")
            now = run_session(create_session(path, arithmetic=arithmetic), feed)
            if _matches(obtained, now, tols):
                return (
                    f"cause: ONNX Runtime version. The outputs match ONNX Runtime {installed}; the golden was made "
                    f"by {golden.meta.get('onnxruntime')}. Review the change (pytest -k upgrade_review), then "
                    "regenerate the golden"
                )
        tried.append("ONNX Runtime without graph optimizations")
        plain = run_session(create_session(path, optimize=False), feed)
        if _matches(obtained, plain, tols):
            fused = golden.meta["dtypes"][dtype].get("ort_graph", {}).get("integer_nodes", [])
            what = f"; it runs {len(fused)} QDQ group(s) as integer kernels" if fused else ""
            return (
                "cause: graph optimization level. The outputs match ONNX Runtime with its graph optimizations off; "
                f"the golden ran with them on (level all{what}): the target does not reproduce ONNX Runtime's "
                "graph rewriting (quantized biases, fused QDQ groups)"
            )
    except DataError as exc:
        return f"cause: not determined (ONNX Runtime could not rerun the model: {exc})"
    return f"cause: a real difference. The outputs match none of: {'; '.join(tried)}"
