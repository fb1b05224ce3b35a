"""A model as the plugin runs it: the user's file, with the parts no tensor-based check can read unwrapped,
and a QONNX model in the form ONNX Runtime runs where qonnx can express it.

skl2onnx ends classifiers with ZipMap (ai.onnx.ml) by default: the probabilities become a sequence of
{class label: probability} maps, one per sample, which no golden, tolerance or accuracy can be computed
on. The ZipMap's input is the probability tensor itself ([N, classes], columns in the order of the
ZipMap's class labels), so the runnable model ends with that tensor under the ZipMap output's name;
ONNX Runtime's values are the same numbers.

A QONNX model (Quant nodes: Brevitas, FINN) becomes its QCDQ form by qonnx's own QuantToQCDQ where every
quantizer fits ONNX's quantization ops (qonnx_route.py), so ONNX Runtime makes its golden and the emulator
follows ONNX Runtime's graph; otherwise it stays QONNX, and qonnx's executor makes the golden.

Nothing else changes, and a model that needs neither is used as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .cache import remembered
from .errors import DataError
from .modelfiles import load_inline
from .runtime import load_onnx

if TYPE_CHECKING:  # onnx loads when a model is changed, not with the plugin
    import onnx

ML_DOMAIN = "ai.onnx.ml"


def zipmap_outputs(model: onnx.ModelProto) -> list[str]:
    """Graph outputs a ZipMap produces."""
    outputs = {o.name for o in model.graph.output}
    return [n.output[0] for n in model.graph.node if n.op_type == "ZipMap" and n.output[0] in outputs]


def needs_changes(path: Path) -> bool:
    """Whether `path` runs as it is (False) or through `make_runnable` (DataError if it is no ONNX model);
    remembered while the file is unchanged."""

    def read() -> bool:
        from .qonnx_route import is_qonnx  # with onnx, when a graph is read

        model = load_onnx(path)
        return bool(zipmap_outputs(model)) or is_qonnx(model)

    return bool(remembered("needs_changes", path, read))


def make_runnable(src: Path, dst: Path) -> str | None:
    """Write the runnable form of `src` to `dst`; returns what the report should say of it (None: nothing)."""
    import onnx

    from .qonnx_route import is_qonnx, qonnx_route

    model = load_inline(src)
    note = None
    if zipmap_outputs(model):
        model = unwrap(model, src.name)
    if is_qonnx(model):
        route = qonnx_route(model)
        if route.golden == "onnxruntime":
            model = route.model
            note = f"QONNX model ({route.bits}) run in its QCDQ form (qonnx's QuantToQCDQ)"
        else:
            note = f"QONNX model ({route.bits}) run as written, its golden by qonnx's executor: {route.reason}"
    onnx.save(model, str(dst))
    return note


def unwrap(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """`model` with every ZipMap graph output replaced by its probability tensor."""
    import onnx
    from onnx import helper

    wrapped = set(zipmap_outputs(model))
    for node in model.graph.node:
        if node.op_type == "ZipMap" and node.output[0] in wrapped:
            classes = sum(len(helper.get_attribute_value(a)) for a in node.attribute if "classlabels" in a.name)
            node.op_type, node.domain = "Identity", ""
            del node.attribute[:]
            tensor = helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, [None, classes])
            for output in model.graph.output:
                if output.name == node.output[0]:
                    output.CopyFrom(tensor)
    if not any(n.domain == ML_DOMAIN for n in model.graph.node):
        kept = [o for o in model.opset_import if o.domain != ML_DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(kept)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise DataError(f"{name}: its ZipMap outputs could not be unwrapped into tensors ({exc})") from exc
    return model
