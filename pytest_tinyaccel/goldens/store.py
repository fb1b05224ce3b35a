"""The golden store: `golden/<model>/` holds the reference samples, ONNX Runtime's
outputs per dtype, Top-5 references and the metadata that makes staleness visible.

Layout (plain .npy files so that git diffs stay meaningful and bytes are
reproducible):

    golden.json        metadata, file hashes, Top-5 references
    inputs.npy         the first `ndata` model inputs, as fed to the model
    <dtype>.<i>.npy    ONNX Runtime's i-th output for that dtype
    layers.<dtype>.npz every intermediate tensor (per-kernel golden) for the
                       first `layer_samples` inputs, keyed t000, t001, ... in
                       graph order; golden.json maps keys to tensor names

An update writes every file to a temporary name first and renames them only
when all are complete, golden.json last; golden.json records each file's
sha256, so a reader detects a torn update instead of using it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

META = "golden.json"
FORMAT = 1


class GoldenError(Exception):
    """A golden that is missing, stale or damaged; the message says what to run."""


@dataclass
class Golden:
    folder: Path
    meta: dict[str, Any]
    inputs: np.ndarray
    outputs: dict[str, dict[str, np.ndarray]]
    """dtype -> output name -> array."""

    def top5(self, dtype: str) -> list[list[list[float]]] | None:
        return self.meta["dtypes"][dtype].get("top5")

    def layers(self, dtype: str) -> dict[str, np.ndarray]:
        """Per-kernel goldens: ONNX Runtime's value of every intermediate tensor, by name,
        in graph order, for the first `layer_samples` golden inputs ({} if none stored)."""
        entry = self.meta["dtypes"][dtype].get("layers")
        if not entry:
            return {}
        with np.load(self.folder / entry["file"], allow_pickle=False) as archive:
            return {name: archive[f"t{i:03d}"] for i, name in enumerate(entry["tensors"])}


def array_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_meta(folder: Path) -> dict[str, Any]:
    """golden.json alone: cheap, for questions such as which ONNX Runtime made the golden."""
    meta_path = folder / META
    if not meta_path.is_file():
        raise GoldenError(f"no golden at {folder}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise GoldenError(f"{meta_path} is not valid JSON ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise GoldenError(f"{meta_path}: golden format {meta.get('format')!r}, this plugin reads {FORMAT}")
    return meta


def load(folder: Path) -> Golden:
    """Read and verify a golden folder (GoldenError if missing or torn)."""
    meta = load_meta(folder)
    arrays = {}
    for name, digest in meta["files"].items():
        path = folder / name
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise GoldenError(f"{path} is missing although {META} lists it (interrupted update?)") from exc
        if sha256_bytes(data) != digest:
            raise GoldenError(f"{path} does not match the sha256 recorded in {META} (interrupted update or hand edit?)")
        if not name.endswith(".npy"):
            continue  # archives are read on demand
        try:
            arrays[name] = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"{path}: not a plain .npy array ({exc})") from exc
    outputs = {
        dtype: {out: arrays[file] for out, file in entry["outputs"].items()} for dtype, entry in meta["dtypes"].items()
    }
    return Golden(folder=folder, meta=meta, inputs=arrays["inputs.npy"], outputs=outputs)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed .npz with fixed timestamps, so the same arrays give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, array_bytes(array))
    return buffer.getvalue()


def write(
    folder: Path,
    meta: dict[str, Any],
    inputs: np.ndarray,
    outputs: dict[str, dict[str, np.ndarray]],
    layers: dict[str, dict[str, np.ndarray]] | None = None,
) -> None:
    """Replace the golden in `folder`: all files staged first, renamed after, meta last."""
    files: dict[str, bytes] = {"inputs.npy": array_bytes(inputs)}
    dtypes = {}
    for dtype, named in outputs.items():
        entry = {k: v for k, v in meta["dtypes"][dtype].items() if k != "layers"}
        entry["outputs"] = {}
        for i, (name, array) in enumerate(named.items()):
            file = f"{dtype}.{i}.npy"
            files[file] = array_bytes(array)
            entry["outputs"][name] = file
        tensors = (layers or {}).get(dtype)
        if tensors:
            file = f"layers.{dtype}.npz"
            files[file] = npz_bytes({f"t{i:03d}": a for i, a in enumerate(tensors.values())})
            entry["layers"] = {"file": file, "tensors": list(tensors)}
        dtypes[dtype] = entry
    meta = {
        **meta,
        "format": FORMAT,
        "dtypes": dtypes,
        "files": {name: sha256_bytes(data) for name, data in sorted(files.items())},
    }
    text = json.dumps(meta, indent=1, sort_keys=True) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for name, data in files.items():
            staged.append(_stage(folder / name, data))
        staged.append(_stage(folder / META, text.encode()))
        for tmp, final in staged:
            os.replace(tmp, final)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    for stale in [*folder.glob("*.npy"), *folder.glob("*.npz")]:
        if stale.name not in files:
            stale.unlink()


def _stage(final: Path, data: bytes) -> tuple[Path, Path]:
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return tmp, final
