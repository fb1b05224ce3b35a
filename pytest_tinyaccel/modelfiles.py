"""The files an ONNX model is made of: the .onnx file and the external data files it names.

torch.onnx.export's default (dynamo) exporter writes weights to `model.onnx.data`
beside the graph, and so do other exporters for large tensors. Every place that
hashes, copies or rewrites a model goes through here, so an external data file
is never left behind (a build folder without it, a cache key blind to it).
External files must lie in the model's own folder and exist; anything else is
an error that names the tensor and the file.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from .cache import file_sha256, remembered
from .errors import DataError

if TYPE_CHECKING:  # onnx loads when a graph is read, not with the plugin
    import onnx


def external_files(path: Path) -> list[Path]:
    """The external data files `path` names, in first-use order (checked: inside its folder, present)."""
    resolved = Path(path).resolve()
    folder = resolved.parent
    found: dict[Path, None] = {}
    for tensor, location in remembered("external_data", resolved, lambda: _locations(resolved)):
        target = (folder / location).resolve()
        if not location or not target.is_relative_to(folder):
            raise DataError(
                f"{Path(path).name}: the external data of tensor '{tensor}' ({location or 'no location'}) lies "
                "outside the model's folder; keep it beside the model"
            )
        if not target.is_file():
            raise DataError(
                f"{Path(path).name}: the external data file {location!r} of tensor '{tensor}' is missing; copy "
                f"it beside the model (the exporter wrote it next to the .onnx file), or re-export with the "
                "weights inside the model"
            )
        found[target] = None
    return list(found)


def _locations(path: Path) -> list[tuple[str, str]]:
    """(tensor, external location) of every externally stored tensor."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, OSError ...
        raise DataError(f"{Path(path).name} is not a readable ONNX model ({exc}); re-export or restore it") from exc
    return [
        (tensor.name, next((e.value for e in tensor.external_data if e.key == "location"), ""))
        for tensor in _tensors(model.graph)
        if tensor.data_location == onnx.TensorProto.EXTERNAL
    ]


def _tensors(graph: onnx.GraphProto):
    """Initializers and Constant values of a graph and its subgraphs."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for sub in attribute.graphs:
                yield from _tensors(sub)


def model_sha256(path: Path) -> str:
    """The content hash of a model with its external data: the .onnx file's own sha256 when it has none
    (so existing goldens keep their hashes), else one hash over the file and each data file's name and hash."""
    main = file_sha256(path)
    extra = external_files(path)
    if not extra:
        return main
    digest = hashlib.sha256(main.encode())
    for file in extra:
        digest.update(f"\0{file.name}\0{file_sha256(file)}".encode())
    return digest.hexdigest()


def copy_model(path: Path, dst: Path) -> None:
    """Copy a model to `dst` with its external data files beside it (under the names the model uses)."""
    shutil.copyfile(path, dst)
    source = Path(path).resolve().parent
    for file in external_files(path):
        target = dst.parent / file.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)


def load_inline(path: Path) -> onnx.ModelProto:
    """The model with its external data read in, as one self-contained ModelProto."""
    import onnx

    external_files(path)  # checked first: a clear message instead of onnx's
    model = onnx.load(str(path))
    for tensor in _tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:  # onnx leaves nothing external after a full load
            raise DataError(f"{Path(path).name}: tensor '{tensor.name}' could not be read from its external data")
    return model
