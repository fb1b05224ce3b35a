"""The hls4ml target's settings: fixed-point types, the options of `[tool.tinyaccel.targets.hls4ml]`
and `[targets.hls4ml]` (validated and normalised), the tolerances derived from a precision
(docs/hls4ml.md), and the tools found on PATH. No hls4ml import: the worker does that."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import math
import platform
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ...config import Field, at_least, positive, validate

INSTALL_HINT = "hls4ml is not installed: pip install 'pytest-tinyaccel[hls4ml]'"
HLS_TOOLS = ("vitis_hls", "vitis-run", "vivado_hls")
"""hw_emu tools in order of preference; vivado_hls implies hls4ml's Vivado backend."""
UNSUPPORTED = "unsupported by hls4ml"
"""The worker's stage for a model hls4ml cannot convert (normalise.refusals)."""

ROUNDING = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_INF", "RND_MIN_INF", "RND_CONV")
SATURATION = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM")
_FIXED = re.compile(
    r"^\s*(u?fixed)\s*<\s*(\d+)\s*,\s*(-?\d+)\s*"
    r"(?:,\s*([A-Z_]+)\s*)?(?:,\s*([A-Z_]+)\s*)?(?:,\s*(\d+)\s*)?>\s*$"
)


@dataclass(frozen=True)
class FixedPoint:
    """An hls4ml fixed-point type: `fixed<W,I,rounding,saturation>` (`ufixed` unsigned)."""

    signed: bool
    width: int
    integer: int
    rounding: str = "TRN"
    saturation: str = "WRAP"

    @property
    def fractional(self) -> int:
        return self.width - self.integer

    def __str__(self) -> str:
        return f"{'' if self.signed else 'u'}fixed<{self.width},{self.integer},{self.rounding},{self.saturation}>"


def parse_fixed(text: Any) -> FixedPoint:
    """Parse `fixed<16,6>`, `fixed<16,6,RND,SAT>`, `ufixed<8,0,RND,SAT>`; ValueError says what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"expected a string like 'fixed<16,6,RND,SAT>', got {text!r}")
    match = _FIXED.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a fixed-point type like 'fixed<16,6,RND,SAT>' or 'ufixed<8,0>'")
    kind, width, integer, rounding, saturation, _ = match.groups()
    width, integer = int(width), int(integer)
    if not 1 <= width <= 64:
        raise ValueError(f"{text!r}: width must be 1..64")
    if not -64 <= integer <= width:
        raise ValueError(f"{text!r}: integer bits must be between -64 and the width")
    if rounding and rounding not in ROUNDING:
        raise ValueError(f"{text!r}: rounding mode {rounding!r} is not one of {', '.join(ROUNDING)}")
    if saturation and saturation not in SATURATION:
        raise ValueError(f"{text!r}: saturation mode {saturation!r} is not one of {', '.join(SATURATION)}")
    return FixedPoint(kind == "fixed", width, integer, rounding or "TRN", saturation or "WRAP")


def integer_bits(max_abs: float, signed: bool) -> int:
    """Integer bits (sign included) for values up to max_abs."""
    bits = math.floor(math.log2(max_abs)) + 1 if max_abs > 0 else 0
    return bits + (1 if signed else 0)


def calibrated_input(base: FixedPoint, max_abs: float) -> FixedPoint:
    """`base`'s width and modes, with just enough integer bits to hold +-max_abs."""
    if not math.isfinite(max_abs):
        raise ValueError("calibration data holds NaN or infinity")
    integer = integer_bits(max_abs, base.signed)
    return replace(base, integer=min(max(integer, 1 if base.signed else 0), base.width))


QUANTIZED_FLOAT = "fixed<32,16,RND,SAT>"
"""int8 designs: the default type of the tensors the quantized graph keeps in float (an activation between
a layer and the next Quant, the softmax input, the model input): 16 fractional bits, far below any 8-bit
step; where the graph quantizes, hls4ml takes the Quant's own bit width (quantized.py)."""
INT8_ATOL = 0.25
"""int8: the design quantizes where the golden does, at its scales (quantized.py), so the outputs differ
only where a value lands on the other side of a rounding step; docs/hls4ml.md has the measured errors."""
ATOL_CAP = 1 / 8
"""32 LSB of a format with few fractional bits exceed any useful probability tolerance; capped
at 1/8, which still fails broken arithmetic (uniform 0.1 outputs, wrapped tables)."""


def lsb_budget(precision: FixedPoint) -> float:
    """32 LSB of `precision`, at most ATOL_CAP."""
    return min(2.0 ** (5 - precision.fractional), ATOL_CAP)


def softmax_table_term(softmax_table_size: int | None) -> float:
    """Two steps of a softmax exp table spanning [0, 16)."""
    return 2 * 16 / softmax_table_size if softmax_table_size else 0.0


def derived_atol(precision: FixedPoint, softmax_table_size: int | None) -> float:
    """32 LSB of `precision` (at most 1/8), plus two steps of a softmax exp table (docs/hls4ml.md)."""
    return lsb_budget(precision) + softmax_table_term(softmax_table_size)


# ----- options (checks for config.Field: a problem sentence, or None) -------------------------


def _fixed_type(value: str) -> str | None:
    try:
        parse_fixed(value)
    except ValueError as exc:
        return str(exc)
    return None


def _fixed_type_or_auto(value: str) -> str | None:
    return None if value == "auto" else _fixed_type(value)


def _power_of_two(value: int) -> str | None:
    if 64 <= value <= 65536 and not value & (value - 1):
        return None
    return f"must be a power of two from 64 to 65536, got {value!r}"


def _part(value: str) -> str | None:
    if re.fullmatch(r"[A-Za-z0-9_.-]+", value):
        return None
    return f"must be an FPGA part name like 'xcvu13p-flga2577-2-e', got {value!r}"


OPTIONS: dict[str, Field] = {  # docs/hls4ml.md explains each
    "precision": Field(str, "fixed<16,6,RND,SAT>", check=_fixed_type),
    "input_precision": Field(str, "auto", check=_fixed_type_or_auto),
    "reuse_factor": Field(int, 1, check=at_least(1)),
    "strategy": Field(str, "Latency", choices=("Latency", "Resource")),
    "io_type": Field(str, "io_stream", choices=("io_stream", "io_parallel")),
    "backend": Field(str, "Vitis", choices=("Vitis", "Vivado")),
    "softmax": Field(str, "stable", choices=("stable", "legacy")),
    "softmax_table_size": Field(int, 4096, check=_power_of_two),
    "clock_period": Field(float, 5.0, check=positive),
    "part": Field(str, None, check=_part),
    "cosim_samples": Field(int, 5, check=at_least(1)),
    "build_timeout": Field(float, None, check=positive),
    "run_timeout": Field(float, 300.0, check=positive),
}
NOT_IN_KEY = ("build_timeout", "run_timeout")
"""Options that do not change what is built."""
DEFAULT_BUILD_TIMEOUT = {"sw_emu": 300.0, "hw_emu": 3600.0}
"""Seconds: a C-simulation build of a tiny model takes well under a minute (docs/hls4ml.md), so five
minutes stop a runaway conversion early; synthesis and co-simulation (hw_emu) legitimately take long."""


def validate_options(options: Mapping[str, Any], where: str | Path, prefix: str = "") -> dict[str, Any]:
    """Every option, checked (`config.validate`: ConfigError naming `where` and the key) and
    normalised: choices in their canonical case, fixed-point types in full (`fixed<16,6>` ->
    `fixed<16,6,TRN,WRAP>`), so equal designs have equal cache keys."""

    def canonical(key: str, value: Any) -> Any:
        choices = OPTIONS[key].choices if key in OPTIONS else None
        if choices and isinstance(value, str):
            return next((c for c in choices if c.lower() == value.lower()), value)
        return value

    values = validate({k: canonical(k, v) for k, v in options.items()}, OPTIONS, where, prefix)
    for key in ("precision", "input_precision"):
        if values[key] != "auto":
            values[key] = str(parse_fixed(values[key]))
    return values


def option_atol(options: dict[str, Any], dtype: str) -> float:
    """The default atol for `dtype` under `options` (docs/hls4ml.md gives the derivation)."""
    if dtype == "int8":
        return INT8_ATOL
    return derived_atol(parse_fixed(options["precision"]), options["softmax_table_size"])


CSIM_OPTIMISATION = "-O1" if platform.machine().lower() in ("x86_64", "amd64") else None
"""g++'s optimisation level for the C simulation library in place of hls4ml's -O3 (None: hls4ml's).
On x86-64, g++ emits no fused multiply-add without -mfma and its SSE arithmetic is IEEE at every level,
so the level changes no result; measured on the bundled models (every sample the suite simulates):
bit-identical outputs, compilation 4-25 % and simulation 7-24 % less CPU than -O3. Elsewhere (aarch64
forms fused multiply-adds where its optimiser finds a*b+c) hls4ml's -O3 stays. In the build's cache key."""


@functools.lru_cache(maxsize=1)
def compiler_version() -> str | None:
    gxx = shutil.which("g++")
    if gxx is None:
        return None
    try:
        out = subprocess.run([gxx, "--version"], check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.splitlines()[0].strip() if out.returncode == 0 and out.stdout else None


def package_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def find_hls_tool() -> tuple[str, str] | None:
    """(name, path) of the first HLS tool on PATH, in HLS_TOOLS order."""
    for name in HLS_TOOLS:
        path = shutil.which(name)
        if path:
            return name, path
    return None
