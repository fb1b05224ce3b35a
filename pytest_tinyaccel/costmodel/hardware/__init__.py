"""Hardware descriptions shipped with the cost model (ZigZag accelerator yaml).

Each file is a ZigZag accelerator description plus a top-level `tinyaccel:`
section (clock, peak MAC rate, precision, memory sizes, spatial-mapping hints)
that `load_hardware` splits off before ZigZag sees the rest. Every number in
the files carries a comment naming its source.

| target  | dtype | file             | array / rate                                     |
|---------|-------|------------------|--------------------------------------------------|
| gemmini | int8  | gemmini.yaml     | 16x16 WS int8 (Gemmini defaultConfig)            |
| gemmini | fp32  | gemmini_fp32.yaml| 4x4 fp32 (Gemmini FP32DefaultConfig)             |

PyYAML (a ZigZag dependency) is imported lazily.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

FILES = {
    ("gemmini", "int8"): "gemmini.yaml",
    ("gemmini", "fp32"): "gemmini_fp32.yaml",
}


@dataclass
class Hardware:
    """A parsed hardware description."""

    name: str
    path: Path
    sha256: str
    target: str
    dtype: str
    clock_hz: float
    peak_macs_per_cycle: float
    cycles_per_op: float
    precision_bits: dict[str, int]
    mapping: dict[str, Any]
    zigzag_data: dict[str, Any]
    """The ZigZag part of the file (without `tinyaccel`)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """The whole `tinyaccel` section."""


def hardware_file(target: str, dtype: str) -> Path:
    """The shipped description for `target` ('gemmini') and `dtype`."""
    try:
        return HERE / FILES[(target, dtype)]
    except KeyError:
        known = ", ".join(f"{t}/{d}" for t, d in FILES)
        raise ValueError(f"no hardware description for {target}/{dtype} (known: {known})") from None


def load_hardware(path: str | Path) -> Hardware:
    try:
        import yaml
    except ImportError as exc:  # PyYAML comes with the zigzag extra
        raise RuntimeError(
            "reading hardware descriptions needs PyYAML: pip install 'pytest-tinyaccel[zigzag]'"
        ) from exc
    path = Path(path)
    raw = path.read_bytes()
    data = yaml.safe_load(raw)
    meta = data.pop("tinyaccel", None)
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: missing the 'tinyaccel:' section")  # noqa: TRY004 (a file error)
    for key in ("target", "dtype", "clock_hz", "peak_macs_per_cycle", "precision_bits", "mapping"):
        if key not in meta:
            raise ValueError(f"{path}: 'tinyaccel.{key}' is missing")
    return Hardware(
        name=str(data.get("name", path.stem)),
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        target=str(meta["target"]),
        dtype=str(meta["dtype"]),
        clock_hz=float(meta["clock_hz"]),
        peak_macs_per_cycle=float(meta["peak_macs_per_cycle"]),
        cycles_per_op=float(meta.get("cycles_per_op", 1.0)),
        precision_bits={k: int(v) for k, v in meta["precision_bits"].items()},
        mapping=copy.deepcopy(meta["mapping"]),
        zigzag_data=data,
        meta=meta,
    )
