"""Data files users bring are untrusted: `.npy` arrays are loaded without pickles, after a
header check that refuses a file promising more data than it holds (before any memory is
allocated), with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DataError


def load_array(path: Path, rows: int | None = None) -> np.ndarray:
    """np.load without pickles, with errors that name the file; a header that promises more
    data than the file holds is refused before any memory is allocated. With `rows`, only the
    first rows are read (a copy of them, as a view of a memory map: not the whole file for ten samples)."""
    pickled = _check_npy_header(path)
    try:
        if rows is None or pickled:  # np.load refuses pickles with its own message, which is said below
            array = np.load(path, allow_pickle=False)
        else:
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)
            array = np.array(mapped[:rows]) if isinstance(mapped, np.ndarray) else mapped
            del mapped
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(
                f"{path}: refused, the file holds pickled Python objects; "
                "save plain numeric arrays (np.save of a numeric ndarray)"
            ) from exc
        raise DataError(f"{path}: not a readable .npy file ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    if not isinstance(array, np.ndarray):
        raise DataError(f"{path}: expected a single array (.npy), got an archive")
    if array.dtype.kind not in "biuf":
        raise DataError(f"{path}: dtype {array.dtype} is not numeric")
    return array


def _check_npy_header(path: Path) -> bool:
    """Refuse a header that promises more data than the file holds; True when it declares Python objects."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            offset = handle.tell()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    except ValueError as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from exc
    if dtype.hasobject:
        return True  # np.load refuses it below with the pickle message
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    have = path.stat().st_size - offset
    if need > have:
        raise DataError(
            f"{path}: the header declares shape {list(shape)} ({need} bytes) but the file holds {have} "
            "bytes of data; the file is truncated or damaged: save it again"
        )
    return False
