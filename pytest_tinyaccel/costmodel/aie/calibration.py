"""Per-kernel-class timing parameters: what calibration produces and the model reads.

A kernel's cycles are ``overhead + sum(cycles_per[f] * features[f])`` for its
class and dtype (`CLASSES` lists each class's work features). The parameters of
every class and dtype are data, in a TOML file (JSON if the name ends in .json):

    schema = 1
    name = "onnx2versal_vck190"
    device = "vck190"
    [peak_macs_per_cycle]      int8 = 128, fp32 = 8 (the device the logs came from)
    [source]                   how the file was made: logs, their sha256, graphs, command
    [params."conv.int8"]       overhead = ..., samples = ..., graphs = [...],
                               efficiency = ... (compute classes), fallback_from = "..."
    [params."conv.int8".cycles_per]   macs = ...

`efficiency` (MACs per cycle / peak of the fitted device) is written for
compute classes to be read by people; the model uses `cycles_per`.

**Missing classes.** A class without samples takes the parameters of the first
class with samples along `FALLBACK` (e.g. `split` -> `concat`: a split moves
what a concat moves, the other way), then the other dtype of the same chain; a
data-movement class first tries its own class in the other dtype;
a calibration fitted on a team's own logs takes the classes its logs lack from
the shipped default. Every such entry records where it came from
(`fallback_from`).

**Other devices.** Compute classes are fitted as a share of the fitted
device's peak MAC rate; applied to a device with another peak, the per-MAC
cycles scale by the ratio of the peaks (same share of peak). Data movement
and overheads are used as fitted.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = 1
HERE = Path(__file__).resolve().parent
DEFAULT_CALIBRATION = HERE / "calibrations" / "onnx2versal_vck190.toml"

CLASSES: dict[str, tuple[str, ...]] = {
    "conv": ("macs",),
    "conv1x1": ("macs",),
    "dwconv": ("macs",),
    "gemm": ("macs",),
    "pad": ("elems", "scalar_elems"),
    "concat": ("elems",),
    "split": ("elems",),
    "transpose": ("elems",),
    "quantize": ("elems",),
    "dequantize": ("elems",),
    "add": ("elems",),
    "pool": ("elems",),
    "softmax": ("elems",),
}
"""Kernel classes and their work features (MACs; elements written, or read for pool)."""

COMPUTE = frozenset({"conv", "conv1x1", "dwconv", "gemm"})

FALLBACK: dict[str, str] = {
    "conv1x1": "conv",
    "dwconv": "conv",
    "conv": "gemm",
    "gemm": "conv",
    "split": "concat",
    "concat": "pad",
    "pad": "concat",
    "transpose": "concat",
    "quantize": "dequantize",
    "dequantize": "quantize",
    "add": "concat",
    "pool": "add",
    "softmax": "pool",
}
"""Where a class without samples takes its parameters from (first with samples wins)."""

DTYPES = ("int8", "fp32")


@dataclass
class KernelParams:
    """Fitted (or borrowed) timing of one kernel class in one dtype."""

    overhead: float
    cycles_per: dict[str, float]
    samples: int = 0
    graphs: list[str] = field(default_factory=list)
    fallback_from: str | None = None
    """None when fitted on this class's own samples; else the key it was taken from."""

    def cycles(self, features: dict[str, float]) -> float:
        return self.overhead + sum(c * features.get(f, 0.0) for f, c in self.cycles_per.items())

    def to_dict(self, peak: dict[str, float] | None = None, key: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {
            "overhead": round(self.overhead, 3),
            "cycles_per": {f: float(f"{c:.6g}") for f, c in self.cycles_per.items()},
            "samples": self.samples,
            "graphs": self.graphs,
        }
        if self.fallback_from:
            out["fallback_from"] = self.fallback_from
        kind, _, dtype = key.partition(".")
        per_mac = self.cycles_per.get("macs", 0.0)
        if peak and kind in COMPUTE and per_mac > 0:
            out["efficiency"] = round(1.0 / (per_mac * peak[dtype]), 4)
        return out


@dataclass
class Calibration:
    """Parameters for every class and dtype, and where they came from."""

    name: str
    device: str
    peak_macs_per_cycle: dict[str, float]
    params: dict[str, KernelParams]
    source: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def params_for(self, kind: str, dtype: str) -> KernelParams:
        """The parameters of `kind` in `dtype` (complete() guarantees every pair exists)."""
        try:
            return self.params[f"{kind}.{dtype}"]
        except KeyError:
            raise KeyError(f"calibration {self.name!r} has no parameters for {kind}.{dtype}") from None

    def cycles(self, kind: str, dtype: str, features: dict[str, float], peak: float | None = None) -> float:
        """Predicted cycles; `peak` = the target device's peak MACs/cycle for `dtype`
        (compute classes keep their share of peak on another device)."""
        p = self.params_for(kind, dtype)
        scale = 1.0
        if kind in COMPUTE and peak:
            scale = self.peak_macs_per_cycle[dtype] / peak
        per = {f: c * (scale if f == "macs" else 1.0) for f, c in p.cycles_per.items()}
        return p.overhead + sum(c * features.get(f, 0.0) for f, c in per.items())

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "name": self.name,
            "device": self.device,
            "peak_macs_per_cycle": self.peak_macs_per_cycle,
            "source": self.source,
            "params": {k: self.params[k].to_dict(self.peak_macs_per_cycle, k) for k in sorted(self.params)},
        }

    def save(self, path: str | Path, header: str = "") -> Path:
        """Write TOML (JSON when `path` ends in .json); `header` becomes leading comment lines."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        else:
            comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
            path.write_text(comment + to_toml(self.to_dict()))
        return path


def complete(params: dict[str, KernelParams], base: Calibration | None = None) -> dict[str, KernelParams]:
    """Every class x dtype: own fit, else `base`'s entry for it, else along FALLBACK.
    Raises ValueError when a pair stays empty."""
    out = dict(params)
    for kind in CLASSES:
        for dtype in DTYPES:
            key = f"{kind}.{dtype}"
            if key in params:
                continue
            if base is not None:
                out[key] = _borrow(base.params_for(kind, dtype), f"{base.name}:{key}")
                continue
            donor = _fallback(params, kind, dtype)
            if donor is None:
                raise ValueError(f"no samples for {key} nor for any class it falls back to")
            out[key] = _borrow(params[donor], donor)
    return out


def _fallback(params: dict[str, KernelParams], kind: str, dtype: str) -> str | None:
    other = [x for x in DTYPES if x != dtype]
    if kind not in COMPUTE:  # moving an element costs about the same in either dtype
        same = next((f"{kind}.{d}" for d in other if f"{kind}.{d}" in params), None)
        if same:
            return same
    for d in (dtype, *other):
        seen = set()
        k: str | None = kind
        while k is not None and k not in seen:
            seen.add(k)
            if f"{k}.{d}" in params:
                return f"{k}.{d}"
            k = FALLBACK.get(k)
    return None


def _borrow(p: KernelParams, origin: str) -> KernelParams:
    return KernelParams(p.overhead, dict(p.cycles_per), 0, [], p.fallback_from or origin)


def from_dict(data: dict[str, Any], where: str = "calibration") -> Calibration:
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{where}: schema {data.get('schema')!r}, expected {SCHEMA} (re-run the calibrate command)")
    try:
        params = {
            key: KernelParams(
                float(v["overhead"]),
                {f: float(c) for f, c in v["cycles_per"].items()},
                int(v.get("samples", 0)),
                list(v.get("graphs", [])),
                v.get("fallback_from"),
            )
            for key, v in data["params"].items()
        }
        cal = Calibration(
            name=str(data["name"]),
            device=str(data["device"]),
            peak_macs_per_cycle={k: float(v) for k, v in data["peak_macs_per_cycle"].items()},
            params=params,
            source=dict(data.get("source", {})),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{where}: not a tinyaccel AIE calibration ({exc!r})") from None
    missing = [f"{k}.{d}" for k in CLASSES for d in DTYPES if f"{k}.{d}" not in cal.params]
    if missing:
        raise ValueError(f"{where}: no parameters for {', '.join(missing)}")
    return cal


def load(path: str | Path | None = None) -> Calibration:
    """A calibration file (default: the shipped one, fitted on onnx2versal's VCK190 logs)."""
    path = Path(path) if path else DEFAULT_CALIBRATION
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read calibration {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: not a calibration file ({exc})") from None
    cal = from_dict(data, str(path))
    cal.path = path
    return cal


def to_toml(data: dict[str, Any]) -> str:
    """TOML for the nested dicts of strings, numbers and lists a calibration holds."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    def key(k: str) -> str:
        return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)

    def table(prefix: str, d: dict[str, Any]) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict) and v is not None}
        if prefix:
            lines.append(f"\n[{prefix}]")
        lines.extend(f"{key(k)} = {value(v)}" for k, v in scalars.items())
        for k, v in d.items():
            if isinstance(v, dict):
                table(f"{prefix}.{key(k)}" if prefix else key(k), v)

    table("", data)
    return "\n".join(lines) + "\n"
