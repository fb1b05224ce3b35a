"""A model as the plugin runs it: the user's file, with the parts no tensor-based check can read unwrapped.

skl2onnx ends classifiers with ZipMap (ai.onnx.ml) by default: the probabilities become a sequence of
{class label: probability} maps, one per sample, which no golden, tolerance or accuracy can be computed
on. The ZipMap's input is the probability tensor itself ([N, classes], columns in the order of the
ZipMap's class labels), so the runnable model ends with that tensor under the ZipMap output's name;
ONNX Runtime's values are the same numbers. Nothing else changes, and a model without ZipMap is used
as it is.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper

from .errors import DataError
from .modelfiles import load_inline

ML_DOMAIN = "ai.onnx.ml"


def zipmap_outputs(model: onnx.ModelProto) -> list[str]:
    """Graph outputs a ZipMap produces."""
    outputs = {o.name for o in model.graph.output}
    return [n.output[0] for n in model.graph.node if n.op_type == "ZipMap" and n.output[0] in outputs]


def needs_unwrapping(path: Path) -> bool:
    return bool(zipmap_outputs(onnx.load(str(path), load_external_data=False)))


def unwrap(src: Path, dst: Path) -> None:
    """Write `src` to `dst` with every ZipMap graph output replaced by its probability tensor."""
    model = load_inline(src)
    wrapped = set(zipmap_outputs(model))
    for node in model.graph.node:
        if node.op_type == "ZipMap" and node.output[0] in wrapped:
            classes = sum(
                len(helper.get_attribute_value(a)) for a in node.attribute if a.name.startswith("classlabels")
            )
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
        raise DataError(f"{src.name}: its ZipMap outputs could not be unwrapped into tensors ({exc})") from exc
    onnx.save(model, str(dst))
