"""Device descriptions as data: `devices/<name>.toml`, every number commented with its source.

`vck190` (the default) is the seed's device: AMD VCK190, XCVC1902, first-generation
AI Engine at 1.25 GHz. `aie-ml` is the Versal AI Edge AIE-ML tile; the shipped
calibration was fitted on VCK190 logs, so on `aie-ml` compute kernels keep their
fitted share of peak (see `calibration.py`) and the device's title says it is
uncalibrated. A `[mapping]` table holds how the flow sizes kernels on the device
(window size, most parts per layer, row padding), as observed in the logs.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEVICES = Path(__file__).resolve().parent / "devices"
NAMES = {"vck190": "vck190.toml", "aie-ml": "aie_ml.toml"}


@dataclass(frozen=True)
class Device:
    name: str
    title: str
    architecture: str
    clock_hz: float
    tiles: int
    data_memory_bytes: int
    stack_heap_bytes: int
    stream_bytes_per_cycle: float
    gmio_ports: int
    peak_macs_per_cycle: dict[str, float]
    buffer_bytes: int
    max_parts: int
    width_align: dict[str, int]
    sha256: str
    facts: dict[str, Any]
    """The whole file, for the record (Perf.extra)."""

    def elem_bytes(self, dtype: str) -> int:
        return 1 if dtype == "int8" else 4


def load_device(name: str = "vck190") -> Device:
    """The shipped description `name` ('vck190' or 'aie-ml'), or a path to a TOML file of the same form."""
    path = DEVICES / NAMES[name] if name in NAMES else Path(name)
    try:
        raw = path.read_bytes()
    except OSError:
        raise ValueError(
            f"unknown AIE device {name!r}: use one of {sorted(NAMES)} or a path to a device TOML"
        ) from None
    data = tomllib.loads(raw.decode())
    try:
        mapping = data["mapping"]
        return Device(
            name=str(data["name"]),
            title=str(data["title"]),
            architecture=str(data["architecture"]),
            clock_hz=float(data["clock_hz"]),
            tiles=int(data["tiles"]),
            data_memory_bytes=int(data["data_memory_bytes"]),
            stack_heap_bytes=int(data["stack_heap_bytes"]),
            stream_bytes_per_cycle=float(data["stream_bytes_per_cycle"]),
            gmio_ports=int(data["gmio_ports"]),
            peak_macs_per_cycle={k: float(v) for k, v in data["peak_macs_per_cycle"].items()},
            buffer_bytes=int(mapping["buffer_bytes"]),
            max_parts=int(mapping["max_parts"]),
            width_align={k: int(v) for k, v in mapping["width_align"].items()},
            sha256=hashlib.sha256(raw).hexdigest(),
            facts=data,
        )
    except KeyError as exc:
        raise ValueError(f"{path}: missing key {exc}") from None
