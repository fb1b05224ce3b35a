"""The golden store: `golden/<model>/` holds the reference samples, ONNX Runtime's
outputs per dtype, Top-5 references and the metadata that makes staleness visible.

Layout (plain .npy files so that git diffs stay meaningful and bytes are
reproducible):

    golden.json        metadata, file hashes, Top-5 references
    inputs.npy         the first `ndata` model inputs, as fed to the model
    <dtype>.<i>.npy    ONNX Runtime's i-th output for that dtype
    <dtype>.<arithmetic>.<i>.npy
                       the same output in another int8 arithmetic, where ONNX
                       Runtime's outputs depend on the CPU (goldens/arithmetic.py)
    layers.<dtype>.npz every intermediate tensor (per-kernel golden) for the
                       first `layer_samples` inputs, keyed t000, t001, ... in
                       graph order; golden.json maps keys to tensor names

An update writes the whole new golden into a staging folder next to it
(`.<model>.new-*`, golden.json last, every file fsynced) and then switches old
for new in one atomic step: Linux `renameat2(RENAME_EXCHANGE)` swaps the two
folders; elsewhere two renames, and a reader that finds the golden missing
rolls the switch forward. A kill at any instant leaves the old or the new golden
complete; leftovers of killed updates are removed by the next update. Files in
the folder that the store did not write are carried over, never deleted.
golden.json records each file's sha256, so a hand-edited or damaged golden is
detected instead of used.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

META = "golden.json"
FORMAT = 1
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_OWN_FILE = re.compile(r"inputs\.npy|golden\.json|[A-Za-z0-9_]+(\.[a-z0-9_]+)?\.\d+\.npy|layers\.[A-Za-z0-9_]+\.npz")
"""Names the store writes; anything else in a golden folder belongs to the user."""
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "model": str,
    "model_sha256": str,
    "ndata": int,
    "layer_samples": int,
    "onnxruntime": str,
    "onnx": str,
    "dtypes": dict,
    "files": dict,
}


class GoldenError(Exception):
    """A golden that is missing, stale or damaged; the message says what to run."""


@dataclass
class Golden:
    folder: Path
    meta: dict[str, Any]
    inputs: np.ndarray
    outputs: dict[str, dict[str, np.ndarray]]
    """dtype -> output name -> array."""
    variants: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)
    """dtype -> int8 arithmetic -> output name -> array: the outputs of the arithmetics that differ from
    `outputs` (goldens/arithmetic.py); empty where every CPU gives the same outputs."""

    def arithmetics(self, dtype: str) -> dict[str, str]:
        return arithmetics_of(self.meta, dtype)

    def expected(self, dtype: str, arithmetic: str | None) -> tuple[dict[str, np.ndarray], str | None]:
        """The outputs to compare a target with: those of `arithmetic` when the golden holds them
        apart (with what made them), else the main ones (and None)."""
        variant = self.variants.get(dtype, {}).get(arithmetic or "")
        if variant is None:
            return self.outputs[dtype], None
        return variant, self.meta["dtypes"][dtype]["variants"][arithmetic]["made_by"]

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


def arithmetics_of(meta: dict[str, Any], dtype: str) -> dict[str, str]:
    """The int8 arithmetics a golden has outputs for in `dtype`, each with what made them. A golden that
    records none (fp32, or one made before arithmetics were recorded) holds the one it was made in."""
    entry = meta["dtypes"].get(dtype, {})
    if "arithmetics" not in entry:
        return {str(meta.get("int8_accumulation", "exact")): f"ONNX Runtime {meta.get('onnxruntime')}"}
    found = dict(entry["arithmetics"])
    found.update({name: variant["made_by"] for name, variant in entry.get("variants", {}).items()})
    return found


def array_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_meta(folder: Path) -> dict[str, Any]:
    """golden.json alone, checked: cheap, for questions such as which ONNX Runtime made the golden."""
    _finish_interrupted_switch(folder)
    meta_path = folder / META
    if not meta_path.is_file():
        raise GoldenError(f"no golden at {folder}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GoldenError(
            f"{meta_path} is not valid JSON ({exc}); regenerate it with --tinyaccel-update-golden"
        ) from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise GoldenError(f"{meta_path}: golden format {found!r}, this plugin reads {FORMAT}; regenerate it")
    _check_meta(meta, meta_path)
    return meta


def _check_meta(meta: dict[str, Any], path: Path) -> None:
    """Keys and types of golden.json, and file names that stay inside the folder."""

    def bad(key: str, problem: str) -> GoldenError:
        return GoldenError(f"{path}: key '{key}': {problem}; regenerate the golden with --tinyaccel-update-golden")

    for key, kind in _REQUIRED.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise bad(key, f"expected {getattr(kind, '__name__', kind)}, got {meta.get(key)!r}")
    for name, digest in meta["files"].items():
        if not isinstance(name, str) or not _FILE_NAME.fullmatch(name) or not isinstance(digest, str):
            raise bad(f"files.{name}", "a file of the golden must be a plain name in its folder, with a sha256 string")
    if "inputs.npy" not in meta["files"]:
        raise bad("files", "inputs.npy is not listed")
    for dtype, entry in meta["dtypes"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("model_sha256"), str):
            raise bad(f"dtypes.{dtype}", "expected a table with model_sha256 and outputs")
        outputs = entry.get("outputs")
        if not isinstance(outputs, dict) or not outputs or any(f not in meta["files"] for f in outputs.values()):
            raise bad(f"dtypes.{dtype}.outputs", "expected output name -> a file listed in 'files'")
        layers = entry.get("layers")
        if layers is not None and (
            not isinstance(layers, dict)
            or layers.get("file") not in meta["files"]
            or not isinstance(layers.get("tensors"), list)
        ):
            raise bad(f"dtypes.{dtype}.layers", "expected {file: a listed file, tensors: [names]}")
        top5 = entry.get("top5")
        if top5 is not None and not isinstance(top5, list):
            raise bad(f"dtypes.{dtype}.top5", "expected a list per golden sample")
        made = entry.get("arithmetics", {})
        if not isinstance(made, dict) or not all(isinstance(v, str) for v in made.values()):
            raise bad(f"dtypes.{dtype}.arithmetics", "expected arithmetic -> what made its outputs")
        variants = entry.get("variants", {})
        if not isinstance(variants, dict) or any(
            not isinstance(v, dict)
            or not isinstance(v.get("made_by"), str)
            or not isinstance(v.get("outputs"), dict)
            or set(v["outputs"]) != set(outputs)
            or any(f not in meta["files"] for f in v["outputs"].values())
            for v in variants.values()
        ):
            raise bad(f"dtypes.{dtype}.variants", "expected arithmetic -> {made_by, outputs: the same outputs}")


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
    variants = {
        dtype: {
            arithmetic: {out: arrays[file] for out, file in variant["outputs"].items()}
            for arithmetic, variant in entry.get("variants", {}).items()
        }
        for dtype, entry in meta["dtypes"].items()
        if entry.get("variants")
    }
    return Golden(folder=folder, meta=meta, inputs=arrays["inputs.npy"], outputs=outputs, variants=variants)


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
    variants: dict[str, dict[str, dict[str, np.ndarray]]] | None = None,
) -> None:
    """Replace the golden in `folder` in one atomic switch (see the module docstring). `variants`: dtype ->
    arithmetic -> outputs, each arithmetic's `made_by` in meta["dtypes"][dtype]["variants"][arithmetic]."""
    files: dict[str, bytes] = {"inputs.npy": array_bytes(inputs)}
    dtypes = {}
    for dtype, named in outputs.items():
        entry = {k: v for k, v in meta["dtypes"][dtype].items() if k not in ("layers", "variants")}
        entry["outputs"] = {}
        for i, (name, array) in enumerate(named.items()):
            file = f"{dtype}.{i}.npy"
            files[file] = array_bytes(array)
            entry["outputs"][name] = file
        for arithmetic, arrays in sorted((variants or {}).get(dtype, {}).items()):
            made_by = meta["dtypes"][dtype]["variants"][arithmetic]["made_by"]
            entry.setdefault("variants", {})[arithmetic] = {"made_by": made_by, "outputs": {}}
            for i, (name, array) in enumerate(arrays.items()):
                file = f"{dtype}.{arithmetic}.{i}.npy"
                files[file] = array_bytes(array)
                entry["variants"][arithmetic]["outputs"][name] = file
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
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists() and (folder.is_symlink() or not folder.is_dir()):
        raise GoldenError(f"{folder} is not a folder; move it away so the golden can be written there")
    clean_leftovers(folder)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.new-", dir=folder.parent))
    try:
        for name, data in files.items():
            _write_synced(staging / name, data)
        if folder.is_dir():  # the user's own files in the folder move with the golden
            for item in folder.iterdir():
                if not _OWN_FILE.fullmatch(item.name) and item.name not in files:
                    _copy(item, staging / item.name)
        _write_synced(staging / META, text.encode())  # last: a staging folder with golden.json is complete
        _fsync(staging)
        _switch(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after an exchange it holds the old golden


def clean_leftovers(folder: Path) -> None:
    """Remove what killed updates of `folder` left beside it (staging and old folders)."""
    for pattern in (f".{folder.name}.new-*", f".{folder.name}.old-*"):
        for leftover in folder.parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _copy(item: Path, dest: Path) -> None:
    if item.is_dir():
        shutil.copytree(item, dest, symlinks=True)
    else:
        shutil.copy2(item, dest, follow_symlinks=False)


def _fsync(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _switch(staging: Path, folder: Path) -> None:
    """Put the complete `staging` folder in place of `folder` in one atomic step."""
    if not folder.exists():
        os.rename(staging, folder)
        staging.mkdir()  # so the caller's clean-up has something to remove
    elif not _exchange(staging, folder):
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.rename(folder, old)  # a reader arriving now rolls the switch forward (load_meta)
        os.rename(staging, folder)
        shutil.rmtree(old, ignore_errors=True)
        staging.mkdir()
    _fsync(folder.parent)


def _finish_interrupted_switch(folder: Path) -> None:
    """A kill between the two renames of the portable switch leaves `folder` missing, the old
    golden in `.<model>.old-*` and the complete new one in `.<model>.new-*`: move the new
    one into place (or, if none is complete, the old one back)."""
    if folder.exists() or not folder.parent.is_dir():
        return
    old = sorted(folder.parent.glob(f".{folder.name}.old-*"))
    if not old:
        return
    complete = [p for p in sorted(folder.parent.glob(f".{folder.name}.new-*")) if (p / META).is_file()]
    os.rename(complete[-1] if complete else old[-1], folder)
