"""The command target's data files: the input files it writes for a run command and
the output files it reads back, as `.npy` arrays or AIE-style text (values per
line, last dimension padded, aiesimulator's `T` and `TLAST` lines skipped).

A tool's output is not trusted: a missing file, a wrong number of values, a token
that is not a number, NaN/Inf, or a value an integer output cannot hold is an
error naming the file and what was expected, never a silently wrong tensor.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...readers import simlogs
from ...runtime import TensorSpec
from .schema import IOConfig
from .templates import fill


def safe_name(name: str) -> str:
    """A tensor name usable in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "tensor"


def write_inputs(io: IOConfig, values: dict[str, str], inputs: dict[str, np.ndarray]) -> list[Path]:
    """Write one file per input tensor at `io.path` (filled from `values`); their paths, in order."""
    paths = []
    for name, x in inputs.items():
        path = Path(fill(io.path, {**values, "input": safe_name(name)}, "inputs.path"))
        path.parent.mkdir(parents=True, exist_ok=True)
        if io.format == "npy":
            np.save(path, np.ascontiguousarray(x), allow_pickle=False)
        else:
            path.write_text(simlogs.array_to_text(x, io.values_per_line, io.pad, io.pad_value, io.fmt))
        paths.append(path)
    return paths


def read_output(path: Path, io: IOConfig, spec: TensorSpec, count: int) -> np.ndarray:
    """Read one output tensor for `count` samples as [count, *sample shape] in
    the model's output dtype. Raises ValueError (malformed) or OSError (missing)."""
    if not path.is_file():
        raise FileNotFoundError(f"the output file {path} was not written")
    sample_shape = tuple(d for d in spec.shape[1:] if d is not None)
    symbolic = len(sample_shape) < len(spec.shape) - 1
    if io.format == "npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{path} is not a readable .npy array ({exc})") from None
        if symbolic:
            if array.ndim < 1 or array.shape[0] != count:
                raise ValueError(f"{path} has shape {list(array.shape)}; expected {count} samples on the first axis")
        elif array.shape != (count, *sample_shape):
            expected = count * int(np.prod(sample_shape, dtype=np.int64))
            if array.size != expected:
                raise ValueError(
                    f"{path} holds {array.size} values (shape {list(array.shape)}); expected "
                    f"{expected} = {count} samples x shape {list(sample_shape)}"
                )
            array = array.reshape((count, *sample_shape))
    else:
        if symbolic:
            raise ValueError(
                f"the model's output '{spec.name}' has a symbolic dimension {list(spec.shape)}; "
                "text outputs need a fixed per-sample shape (use .npy outputs)"
            )
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            array = simlogs.text_to_array(simlogs.read_stream(text).values, count, sample_shape, io.pad)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    return coerce(array, spec.dtype, path)


def coerce(array: np.ndarray, dtype: np.dtype, path: Path) -> np.ndarray:
    """Cast to the model's output dtype; NaN/Inf or non-integral/out-of-range
    values for an integer output are malformed."""
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{path} holds {array.dtype} values, not numbers")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{path} holds {int(bad.sum())} NaN/Inf value(s), first at index {list(first)}")
    if dtype.kind in "iu":
        if array.dtype.kind == "f" and not np.array_equal(array, np.rint(array)):
            raise ValueError(f"{path} holds non-integer values for the {dtype} output")
        info = np.iinfo(dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise ValueError(f"{path} holds values outside the {dtype} range [{info.min}, {info.max}]")
    return array.astype(dtype)
