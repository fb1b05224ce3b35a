"""A Gemmini configuration as data: array size, memories, DMA, element sizes.

The shipped files (`hardware/gemmini_default.toml` for int8, `hardware/gemmini_fp32.toml`)
hold Gemmini's own configurations, each number with the source file and revision it
comes from; a user points the target at their own file for another Gemmini. A FireSim
CSV row (DOSA's Timeloop notation, `arch.*` columns) becomes a configuration with
`from_arch` (see its docstring for the mapping), so every measured layer is costed on the
memories it ran with.

File format (TOML):

    [gemmini]
    name = "..."
    dim = 16                   # meshRows * tileRows (the array is dim x dim)
    sp_capacity_kib = 256      # scratchpad
    acc_capacity_kib = 64      # accumulator
    sp_banks = 4
    acc_banks = 2
    dma_buswidth_bits = 128
    dma_maxbytes = 64
    max_in_flight_mem_reqs = 16
    input_bytes = 1            # inputType / weightType
    acc_bytes = 4              # accType
    clock_hz = 1e9
    [sources]                  # free text: where each number comes from
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent / "hardware"
FILES = {"int8": "gemmini_default.toml", "fp32": "gemmini_fp32.toml"}

_INTS = (
    "dim",
    "sp_banks",
    "acc_banks",
    "dma_buswidth_bits",
    "dma_maxbytes",
    "max_in_flight_mem_reqs",
    "input_bytes",
    "acc_bytes",
)


@dataclass(frozen=True)
class GemminiConfig:
    """One Gemmini build, in the units the software library sees (rows of DIM elements)."""

    name: str
    dim: int
    sp_capacity_bytes: int
    acc_capacity_bytes: int
    sp_banks: int
    acc_banks: int
    dma_buswidth_bits: int
    dma_maxbytes: int
    max_in_flight_mem_reqs: int
    input_bytes: int
    acc_bytes: int
    clock_hz: float = 1e9
    source: str = ""
    """The file (and its sha256) or the CSV row it was read from."""

    @property
    def sp_rows(self) -> int:
        """BANK_NUM * BANK_ROWS of gemmini_params.h: scratchpad rows of DIM inputs."""
        return self.sp_banks * (self.sp_capacity_bytes // (self.sp_banks * self.dim * self.input_bytes))

    @property
    def acc_rows(self) -> int:
        """ACC_ROWS of gemmini_params.h: accumulator rows of DIM partial sums."""
        return self.acc_capacity_bytes // (self.dim * self.acc_bytes)

    @property
    def max_block_len(self) -> int:
        """MAX_BLOCK_LEN: DIM-wide blocks one mvin row may carry (dma_maxbytes / (DIM * input bytes))."""
        return max(1, self.dma_maxbytes // (self.dim * self.input_bytes))

    @property
    def bus_bytes(self) -> int:
        return self.dma_buswidth_bits // 8

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.dim * self.dim

    def describe(self) -> str:
        return (
            f"{self.name}: {self.dim}x{self.dim}, scratchpad {self.sp_capacity_bytes // 1024} KiB, "
            f"accumulator {self.acc_capacity_bytes // 1024} KiB, {self.dma_buswidth_bits}-bit DMA"
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def check(self) -> GemminiConfig:
        """Reject a configuration the library could not tile for (named field, and why)."""
        for name in (*_INTS, "sp_capacity_bytes", "acc_capacity_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"Gemmini configuration {self.name!r}: {name} must be a positive integer, not {value!r}"
                )
        if self.acc_rows // 2 < self.dim:
            raise ValueError(
                f"Gemmini configuration {self.name!r}: the accumulator ({self.acc_capacity_bytes} bytes) holds "
                f"{self.acc_rows} rows; the library needs at least {2 * self.dim} (two {self.dim}-row blocks)"
            )
        if self.sp_rows // 4 < self.dim:
            raise ValueError(
                f"Gemmini configuration {self.name!r}: the scratchpad ({self.sp_capacity_bytes} bytes) holds "
                f"{self.sp_rows} rows; the library needs at least {4 * self.dim}"
            )
        return self


def config_file(dtype: str) -> Path:
    """The shipped configuration for `dtype` ('int8': Gemmini's default; 'fp32')."""
    try:
        return HERE / FILES[dtype]
    except KeyError:
        raise ValueError(f"no Gemmini configuration for dtype {dtype!r} (known: {', '.join(FILES)})") from None


def read_toml(path: Path, what: str) -> tuple[dict[str, Any], str]:
    """A Gemmini data file (`what` names its kind in errors) and its label, "name (sha256 <12 hex>)"."""
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: not a TOML {what} ({exc})") from exc
    return data, f"{path.name} (sha256 {hashlib.sha256(raw).hexdigest()[:12]})"


def load_config(path: str | Path) -> GemminiConfig:
    """Read a configuration file (the format in the module docstring); errors name the file and key."""
    path = Path(path)
    data, source = read_toml(path, "Gemmini configuration")
    table = data.get("gemmini")
    if not isinstance(table, dict):
        raise ValueError(f"{path}: missing the [gemmini] table")
    missing = [k for k in (*_INTS, "sp_capacity_kib", "acc_capacity_kib") if k not in table]
    if missing:
        raise ValueError(f"{path}: [gemmini] lacks {', '.join(missing)}")
    known = {*_INTS, "sp_capacity_kib", "acc_capacity_kib", "name", "clock_hz"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"{path}: [gemmini] has unknown keys {unknown} (known: {sorted(known)})")
    try:
        config = GemminiConfig(
            name=str(table.get("name", path.stem)),
            sp_capacity_bytes=_kib(table["sp_capacity_kib"], path, "sp_capacity_kib"),
            acc_capacity_bytes=_kib(table["acc_capacity_kib"], path, "acc_capacity_kib"),
            clock_hz=float(table.get("clock_hz", 1e9)),
            source=source,
            **{k: table[k] for k in _INTS},
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    try:
        return config.check()
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def _kib(value: Any, path: Path, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{path}: {key} must be a positive number of KiB, not {value!r}")
    return round(value * 1024)


def from_arch(arch: dict[str, Any], base: GemminiConfig) -> GemminiConfig:
    """The configuration of one DOSA/FireSim CSV row (its `arch.*` columns, without the prefix).

    DOSA describes Gemmini in Timeloop terms (dataset/hw/gemmini/gemmini_config.py of
    ucb-bar/dosa): `mem1` is the accumulator, `mem1_depth` its rows of `meshX` 32-bit
    sums; `mem2` is the scratchpad, `mem2_depth` its rows of `mem2_width` bits; `meshX`
    is the array side. Everything else (banks, DMA) is `base`'s.
    """

    def positive(key: str) -> int:
        value = arch.get(key)
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"arch.{key} is {value!r}, not a number") from None
        if number <= 0 or number != int(number):
            raise ValueError(f"arch.{key} is {value!r}, not a positive integer")
        return int(number)

    dim = positive("meshX")
    sp_bytes = positive("mem2_depth") * positive("mem2_width") // 8
    acc_bytes = positive("mem1_depth") * dim * base.acc_bytes
    config = GemminiConfig(
        **{
            **base.to_dict(),
            "name": f"{dim}x{dim}, sp {sp_bytes // 1024} KiB, acc {acc_bytes // 1024} KiB",
            "dim": dim,
            "sp_capacity_bytes": sp_bytes,
            "acc_capacity_bytes": acc_bytes,
            "source": "arch.* columns",
        }
    )
    return config.check()
