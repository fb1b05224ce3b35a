"""`hls4ml`: the model as hls4ml-generated HLS C++ in fixed point.

Modes
- `sw_emu`: C simulation. The float ONNX model is cleaned up with qonnx
  (`cleanup_model` -> `ConvertToChannelsLastAndClean` -> `GemmToMatMul` ->
  `cleanup_model`), converted with `hls4ml.converters.convert_from_onnx_model`
  (Vitis backend by default), and the generated C++ is compiled with g++ into a
  shared library. Running it is hls4ml's bit-accurate C simulation of the
  design (`ap_fixed` arithmetic): the library's `<project>_float` function is
  called once per sample. No timing: a C simulation has none.
- `hw_emu`: the same build, then C synthesis and C/RTL co-simulation with
  Vitis HLS (`vitis_hls`, or `vitis-run` of Vitis 2024.2+) or Vivado HLS
  (`vivado_hls`, Vivado backend) when one is on PATH; latency, initiation
  interval, clock and LUT/FF/DSP/BRAM come from their reports
  (`pytest_tinyaccel.hlsreport`). Outputs are still the C simulation's.

Every build and every run happens in a subprocess
(`python -m pytest_tinyaccel.targets.hls4ml_worker`) in its own process group:
the compiled library calls `exit(1)` when its weight files are missing, a
compiler or simulator can hang or crash, and two processes sharing an hls4ml
project folder break each other. Each build has its own folder (the build
cache's folder, whose absolute path the library bakes in); a crash, compile
error or timeout becomes a `TargetError` carrying the tail of the log and its
path, and a timeout kills the worker's whole process group.

Graph rewrite: qonnx's channels-last conversion does not cover AveragePool /
GlobalAveragePool, and hls4ml then either refuses them or (GlobalAveragePool
after the NHWC->NCHW Transpose qonnx leaves in front of it) reads the
channels-first data as channels-last and computes garbage. The worker moves
that Transpose behind the pool (a channels-last AveragePool over the same
window), which is the same function; pools with padding or ceil_mode are left
alone and reach hls4ml's own error.

Precision (settings `[tool.tinyaccel.targets.hls4ml]`, per model
`[targets.hls4ml]` in model.toml; see OPTIONS):
- `precision` (default `fixed<16,6,RND,SAT>`): weights, biases and
  activations; accumulators and layer results are hls4ml's `auto` (wide
  enough to be exact);
- `input_precision` (default `auto`): same width as `precision`, integer bits
  from the largest absolute value of the model's calibration set (so MFCC
  features up to ~90 do not saturate a 6-integer-bit input); `precision` when
  the model has no calibration set;
- softmax: hls4ml's `stable` implementation with explicit table types
  (normalised input `ufixed<18,4,RND,SAT>`, exp/inverse tables of
  `softmax_table_size` entries, sums wide enough for the class count) and
  probabilities as `ufixed<W,0,RND,SAT>` (W = width of `precision`). hls4ml's
  defaults are not usable on these graphs: with layer-level (`name`)
  configuration the softmax input is a wide `auto` type whose top bits index
  the exp table, so every output became 0.1, and `legacy` wraps exponentials
  beyond 128 and cannot express a probability below 1/64;
- `io_type` (default `io_stream`, hls4ml's own default is `io_parallel`): the
  same C simulation outputs (bit-identical on ic and kws), but g++ needs 13 s
  instead of 13 min for the kws DS-CNN (fully unrolled io_parallel convs);
  `strategy` (Latency), `reuse_factor` (1), `backend` (Vitis), `clock_period`
  (5 ns), `part` pass through to hls4ml.

dtype `int8`: hls4ml cannot read ONNX Runtime's quantized (QOperator) graph, so
the int8 case builds the float model as an 8-bit design (`int8_width`): weights
and biases per layer in fixed<8,I> with I from their largest magnitude,
activations (ReLU and pool outputs) in fixed<8,I> / ufixed<8,I> with I from
their range on the model's calibration set (the first `calibration_samples`
of [quantization], run through the cleaned graph with qonnx's executor), input
likewise, conv/dense/add accumulators exact (`auto`, like int32 accumulators),
probabilities ufixed<8,0>. It is compared with ONNX Runtime's int8 golden at
the tolerance derived below: an 8-bit hls4ml design with power-of-two scales,
not a bit-exact replica of ONNX Runtime's integer kernels.

Default tolerance (atol; rtol stays the suite's): 32 LSB of the activation
format, 2**(5 - F) for `precision` with F fractional bits, at most 1/8, plus,
for a softmax output, two steps of its exp table (2 * 16 / softmax_table_size;
the table spans [0, 16)). int8 compares two different 8-bit designs (hls4ml's
power-of-two formats and ONNX Runtime's scaled integers), so it gets the
budget once per design, counted in LSB of the probabilities' ufixed<8,0>:
2 * 1/8 plus the table term. Defaults: fp32 (fixed<16,6>, 4096-entry tables)
2**-5 + 2**-7 = 0.039; int8 0.258.
Measured max abs error on the 10 golden samples (all test samples in brackets),
hls4ml 1.3.0: ic fp32 0.0017 (0.013), kws fp32 0.011 (0.028), ad fp32 0.013
(0.044); ic int8 0.0039 (0.11), kws int8 0.19 (0.37), ad int8 0.074 (0.21).
On kws int8 sample 1 ONNX Runtime's int8 is itself 0.11 from fp32 and the
hls4ml design 0.08 (on the other side). The accuracy check is the primary gate;
the tolerance catches broken arithmetic (wrong layouts, saturated tables,
uniform outputs), not rounding. A model's own `precision` changes its derived
tolerance: `Hls4mlTarget.default_tolerance_for` computes it; the suite reads
`default_tolerance`, which follows the target-wide settings.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Build, Perf, RunResult, Target, TargetError

if TYPE_CHECKING:
    from ..models import Model

INSTALL_HINT = "hls4ml is not installed: pip install 'pytest-tinyaccel[hls4ml]'"
WORKER_MODULE = "pytest_tinyaccel.targets.hls4ml_worker"
META = "hls4ml.json"
PERF = "perf.json"
ERROR = "error.json"
BUILD_LOG = "build.log"
HLS_TOOLS = ("vitis_hls", "vitis-run", "vivado_hls")
"""hw_emu tools in order of preference; vivado_hls implies hls4ml's Vivado backend."""
LOG_TAIL_LINES = 40

ROUNDING = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_INF", "RND_MIN_INF", "RND_CONV")
SATURATION = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM")
_FIXED = re.compile(r"^\s*(u?fixed)\s*<\s*(\d+)\s*,\s*(-?\d+)\s*(?:,\s*([A-Z_]+)\s*)?(?:,\s*([A-Z_]+)\s*)?(?:,\s*(\d+)\s*)?>\s*$")


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


def calibrated_input(base: FixedPoint, max_abs: float) -> FixedPoint:
    """`base`'s width and modes, with just enough integer bits to hold +-max_abs."""
    if not math.isfinite(max_abs):
        raise ValueError("calibration data holds NaN or infinity")
    integer = (math.floor(math.log2(max_abs)) + 1 if max_abs > 0 else 0) + (1 if base.signed else 0)
    return replace(base, integer=min(max(integer, 1 if base.signed else 0), base.width))


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
    """32 LSB of `precision` (at most 1/8), plus two steps of a softmax exp table (module doc)."""
    return lsb_budget(precision) + softmax_table_term(softmax_table_size)


def _choice(values: tuple[str, ...]):
    def check(value: Any) -> str:
        if isinstance(value, str):
            for v in values:
                if v.lower() == value.lower():
                    return v
        raise ValueError(f"must be one of {', '.join(repr(v) for v in values)}, got {value!r}")
    return check


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"must be a positive integer, got {value!r}")
    return value


def _positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"must be a positive number, got {value!r}")
    return float(value)


def _table_size(value: Any) -> int:
    value = _positive_int(value)
    if value & (value - 1) or not 64 <= value <= 65536:
        raise ValueError(f"must be a power of two from 64 to 65536, got {value!r}")
    return value


def _width(value: Any) -> int:
    value = _positive_int(value)
    if not 2 <= value <= 32:
        raise ValueError(f"must be 2..32 bits, got {value!r}")
    return value


def _precision(value: Any) -> str:
    return str(parse_fixed(value))


def _input_precision(value: Any) -> str:
    return "auto" if value == "auto" else _precision(value)


def _part(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.-]+", value)):
        return value
    raise ValueError(f"must be an FPGA part name like 'xcvu13p-flga2577-2-e', got {value!r}")


OPTIONS: dict[str, tuple[Any, Any, str]] = {
    # name: (default, validator, meaning)
    "precision": ("fixed<16,6,RND,SAT>", _precision, "weights, biases and activations (fp32 cases)"),
    "int8_width": (8, _width, "int8 cases: bits of weights, biases, activations (integer bits calibrated per layer)"),
    "input_precision": ("auto", _input_precision, "model input; 'auto' = width of the precision, integer bits from the calibration set"),
    "reuse_factor": (1, _positive_int, "hls4ml ReuseFactor (multipliers shared by this many operations)"),
    "strategy": ("Latency", _choice(("Latency", "Resource")), "hls4ml Strategy"),
    "io_type": ("io_stream", _choice(("io_stream", "io_parallel")), "hls4ml IOType"),
    "backend": ("Vitis", _choice(("Vitis", "Vivado")), "hls4ml backend for sw_emu (hw_emu follows the HLS tool found)"),
    "softmax": ("stable", _choice(("stable", "legacy")), "hls4ml softmax implementation"),
    "softmax_table_size": (4096, _table_size, "entries of the softmax exp and inverse tables"),
    "clock_period": (5.0, _positive_number, "target clock period in ns (synthesis, hw_emu)"),
    "part": (None, _part, "FPGA part for synthesis (default: the backend's)"),
    "cosim_samples": (5, _positive_int, "samples the C/RTL co-simulation testbench runs (hw_emu)"),
    "build_timeout": (3600.0, _positive_number, "seconds a build (convert, compile, synthesis) may take"),
    "run_timeout": (600.0, _positive_number, "seconds a C simulation run may take"),
}
NOT_IN_KEY = ("build_timeout", "run_timeout")
"""Options that do not change what is built."""
DEFAULTS = {key: default for key, (default, _, _) in OPTIONS.items()}


def int8_default(width: int) -> str:
    """The nominal format of an int8 build (layers without a calibrated format)."""
    return f"fixed<{width},{width // 2},RND,SAT>"


def option_atol(options: dict[str, Any], dtype: str) -> float:
    """The default atol for `dtype` under `options` (the module doc gives the derivation).
    int8: activations carry per-layer formats; the budget is counted in LSB of the
    probabilities' ufixed<W,0> (capped), once for each of the two 8-bit designs compared."""
    if dtype == "int8":
        # Two different 8-bit designs are compared (hls4ml's power-of-two formats and ONNX
        # Runtime's scaled integers): each gets the 32-LSB budget.
        probabilities = FixedPoint(False, options["int8_width"], 0)
        return 2 * lsb_budget(probabilities) + softmax_table_term(options["softmax_table_size"])
    return derived_atol(parse_fixed(options["precision"]), options["softmax_table_size"])


def validate_options(options: dict[str, Any], where: str) -> dict[str, Any]:
    """Validated, normalised copies of `options`; unknown keys and bad values raise ValueError naming `where`."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown}; known: {', '.join(OPTIONS)}")
    out = {}
    for key, value in options.items():
        try:
            out[key] = OPTIONS[key][1](value)
        except ValueError as exc:
            raise ValueError(f"{where}: key '{key}': {exc}") from None
    return out


@functools.lru_cache(maxsize=1)
def _compiler_version() -> str | None:
    gxx = shutil.which("g++")
    if gxx is None:
        return None
    try:
        out = subprocess.run([gxx, "--version"], check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.splitlines()[0].strip() if out.returncode == 0 and out.stdout else None


def _version(package: str) -> str | None:
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


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, limit: int = 6000) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    tail = "\n".join(text.rstrip().splitlines()[-lines:])
    return tail[-limit:] if tail else "(log is empty)"


class Hls4mlTarget(Target):
    name = "hls4ml"
    version = "1"
    modes = ("sw_emu", "hw_emu")
    description = "hls4ml-generated HLS C++: C simulation (g++), C/RTL co-simulation with Vitis/Vivado HLS"
    default_tolerance = {dtype: {"atol": option_atol(DEFAULTS, dtype)} for dtype in ("fp32", "int8")}
    """Derived from the default precisions (see the module doc); instances recompute it from their settings."""

    def __init__(self, **settings: Any) -> None:
        try:
            given = validate_options(settings, "[tool.tinyaccel.targets.hls4ml]")
        except ValueError as exc:
            raise TypeError(str(exc)) from None
        self.settings = {**DEFAULTS, **given}
        self.default_tolerance = {dtype: {"atol": option_atol(self.settings, dtype)} for dtype in ("fp32", "int8")}

    # ----- options ---------------------------------------------------------------------

    def options(self, model: Model) -> dict[str, Any]:
        """Target settings overridden by the model's `[targets.hls4ml]` table, validated."""
        try:
            own = validate_options(model.target_options(self.name), f"{model.manifest_path}: [targets.{self.name}]")
        except ValueError as exc:
            raise TargetError(str(exc)) from None
        return {**self.settings, **own}

    def default_tolerance_for(self, model: Model, dtype: str) -> dict[str, float]:
        """The default tolerance derived from the model's effective precision (see module doc)."""
        return {"atol": option_atol(self.options(model), dtype)}

    def _input_precision(self, model: Model, options: dict[str, Any], dtype: str) -> tuple[str, str]:
        int8 = dtype == "int8"
        base = parse_fixed(int8_default(options["int8_width"]) if int8 else options["precision"])
        if options["input_precision"] != "auto":
            chosen = parse_fixed(options["input_precision"])
            if int8:
                chosen = replace(chosen, width=base.width, integer=min(chosen.integer, base.width))
            return str(chosen), "input_precision setting"
        if model.calibration_path is None:
            return str(base), "precision (the model has no calibration set)"
        data = np.asarray(model.load_calibration(), dtype=np.float64)
        if int8 and data.size and float(np.min(data)) >= 0:
            base = replace(base, signed=False)  # like a uint8 input: one more bit for values >= 0
        try:
            return str(calibrated_input(base, float(np.max(np.abs(data))) if data.size else 0.0)), \
                f"calibrated on {model.calibration_path.name}"
        except ValueError as exc:
            raise TargetError(f"{model.calibration_path}: {exc}") from None

    # ----- Target API ----------------------------------------------------------------------

    def availability(self, mode: str) -> str | None:
        if importlib.util.find_spec("hls4ml") is None or importlib.util.find_spec("qonnx") is None:
            return INSTALL_HINT
        if shutil.which("g++") is None:
            return "hls4ml's C simulation needs g++ on PATH (not found)"
        if mode == "hw_emu" and find_hls_tool() is None:
            return "hw_emu needs Vitis HLS or Vivado HLS on PATH (vitis_hls / vitis-run / vivado_hls not found)"
        return None

    def simulator(self, mode: str) -> str:
        version = _version("hls4ml") or "?"
        if mode == "hw_emu":
            tool = find_hls_tool()
            return f"hls4ml {version} C/RTL co-simulation ({tool[0] if tool else 'no HLS tool'}), {self.settings['precision']}"
        return f"hls4ml {version} C simulation (g++), {self.settings['precision']}"

    def cache_settings(self, model: Model, dtype: str, mode: str) -> dict[str, Any]:
        options = self.options(model)
        parts: dict[str, Any] = {
            "options": {k: v for k, v in options.items() if k not in NOT_IN_KEY},
            "hls4ml": _version("hls4ml"), "qonnx": _version("qonnx"), "onnx": _version("onnx"),
            "compiler": _compiler_version(),
        }
        if options["input_precision"] == "auto" and model.calibration_path is not None:
            from ..models import file_sha256

            parts["calibration_sha256"] = file_sha256(model.calibration_path)
        if mode == "hw_emu":
            tool = find_hls_tool()
            parts["hls_tool"] = list(tool) if tool else None
        return parts

    def worker_argv(self, *args: str) -> list[str]:
        """The worker command line (a test can point it elsewhere)."""
        return [sys.executable, "-m", WORKER_MODULE, *args]

    def build(self, build: Build) -> None:
        model = build.model
        options = self.options(model)
        int8 = build.dtype == "int8"
        precision = int8_default(options["int8_width"]) if int8 else options["precision"]
        input_precision, input_source = self._input_precision(model, options, build.dtype)
        spec: dict[str, Any] = {
            # hls4ml reads the float model; int8 is an 8-bit fixed-point build of it (module doc).
            "onnx": str(model.onnx_path), "model": model.name, "dtype": build.dtype, "mode": build.mode,
            "options": options, "precision": precision,
            "input_precision": input_precision, "input_precision_source": input_source,
            "project": _project_name(model.name),
            "label": (f"{options['int8_width']}-bit fixed point calibrated per layer" if int8 else precision),
        }
        if int8:
            if model.calibration_path is None:
                raise TargetError(f"{model.name}: an int8 hls4ml build calibrates its per-layer 8-bit formats on the "
                                  f"model's calibration set; {model.manifest_path} names none ('calibration' key)")
            spec["calibration"] = str(model.calibration_path)
            spec["calibration_samples"] = int(model.quantization.get("calibration_samples", 200))
        if build.mode == "hw_emu":
            tool = find_hls_tool()
            if tool is None:
                raise TargetError(self.availability("hw_emu") or "no HLS tool")
            spec["hls_tool"] = {"name": tool[0], "path": tool[1]}
            x = model.load_x(options["cosim_samples"])
            tb = build.dir / "tb_inputs.npy"
            np.save(tb, np.ascontiguousarray(x, dtype=np.float32), allow_pickle=False)
            spec["tb_inputs"] = str(tb)
        (build.dir / "spec.json").write_text(json.dumps(spec, indent=1))
        log = build.dir / BUILD_LOG
        try:
            self._call(self.worker_argv("build", str(build.dir)), build.dir, log, options["build_timeout"],
                       f"hls4ml build of {model.name} ({build.dtype}, {build.mode})", error_file=build.dir / ERROR)
        except TargetError:
            # The cache wipes a failed build's folder: keep the log next to it.
            kept = build.dir.with_name(build.dir.name + ".failed.log")
            with contextlib.suppress(OSError):
                shutil.copyfile(log, kept)
            raise
        if not (build.dir / META).is_file():
            raise TargetError(f"hls4ml build of {model.name} finished without writing {META}; log: {log}")

    def run(self, build: Build, inputs: dict[str, np.ndarray]) -> RunResult:
        meta = json.loads((build.dir / META).read_text())
        options = self.options(build.model)
        names = [i["name"] for i in meta["inputs"]]
        if sorted(names) != sorted(inputs):
            raise TargetError(f"the hls4ml build takes inputs {names}, got {sorted(inputs)}")
        run_dir = Path(tempfile.mkdtemp(prefix=build.dir.name + ".run-", dir=build.dir.parent))
        for i, name in enumerate(names):
            np.save(run_dir / f"input_{i}.npy", np.ascontiguousarray(inputs[name], dtype=np.float32), allow_pickle=False)
        log = run_dir / "run.log"
        self._call(self.worker_argv("run", str(build.dir), str(run_dir)), run_dir, log, options["run_timeout"],
                   f"hls4ml C simulation of {build.model.name} ({build.dtype}, {build.mode})", error_file=run_dir / ERROR)
        try:
            outputs = {o["name"]: np.load(run_dir / f"output_{k}.npy", allow_pickle=False).reshape([-1, *o["shape"]])
                       for k, o in enumerate(meta["outputs"])}
            done = json.loads((run_dir / "done.json").read_text())
        except (OSError, ValueError) as exc:
            raise TargetError(f"hls4ml C simulation of {build.model.name} left unreadable outputs in {run_dir}: {exc}") from None
        shutil.rmtree(run_dir, ignore_errors=True)
        return RunResult(outputs, self._perf(build, meta, done))

    def _perf(self, build: Build, meta: dict[str, Any], done: dict[str, Any]) -> Perf:
        extra = {key: meta.get(key) for key in ("precision", "input_precision", "input_precision_source", "io_type",
                                                 "strategy", "reuse_factor", "backend", "softmax", "rewrites",
                                                 "calibrated_formats")}
        extra["build_seconds"] = meta.get("seconds")
        extra["csim_seconds"] = done.get("seconds")
        if build.mode != "hw_emu":
            return Perf(simulator=f"hls4ml {meta['hls4ml']} C simulation (g++), {meta['label']}", extra=extra)
        fields = json.loads((build.dir / PERF).read_text())
        extra.update(fields.pop("extra", {}))
        return Perf(simulator=f"hls4ml {meta['hls4ml']} {meta['hls_tool']} C/RTL co-simulation, {meta['label']}",
                    extra=extra, **fields)

    # ----- subprocesses ------------------------------------------------------------------

    @staticmethod
    def _call(argv: list[str], cwd: Path, log: Path, timeout: float, what: str, error_file: Path) -> None:
        """Run `argv` in its own process group, output to `log`; failures become TargetError."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        start = time.monotonic()
        with open(log, "ab") as handle:
            try:
                proc = subprocess.Popen(argv, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env, start_new_session=True)
            except OSError as exc:
                raise TargetError(f"{what}: cannot start the worker {argv[0]}: {exc}") from None
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise TargetError(f"{what} timed out after {timeout:g} s; its process group was killed "
                                  f"(raise build_timeout / run_timeout if this is expected)\n"
                                  f"--- last lines of {log} ---\n{log_tail(log)}") from None
            except BaseException:  # KeyboardInterrupt: leave nothing running behind
                _kill_group(proc)
                raise
        if code == 0:
            return
        reason = None
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            error = json.loads(error_file.read_text())
            reason = f"{error['stage']} failed: {error['message']}"
        if reason is None:
            if code < 0:
                with contextlib.suppress(ValueError):
                    reason = f"the worker was killed by signal {signal.Signals(-code).name}"
                reason = reason or f"the worker was killed by signal {-code}"
            else:
                reason = f"the worker exited with status {code}"
        raise TargetError(f"{what}: {reason} (after {time.monotonic() - start:.1f} s)\n"
                          f"--- last lines of {log} ---\n{log_tail(log)}")


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, the process group led by `proc` (children a tool spawned included).

    `proc` was started with start_new_session=True, so its pid is the group id."""
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _project_name(model_name: str) -> str:
    """A C identifier for the HLS project and top function."""
    name = re.sub(r"\W", "_", model_name)
    return f"{name}_hls" if name[:1].isalpha() else f"m_{name}_hls"
