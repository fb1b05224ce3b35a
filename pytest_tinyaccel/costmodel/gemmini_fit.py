"""Fit the Gemmini timing constants on per-layer FireSim measurements, and measure how well
they predict layers they were not fitted on.

The measurements are a CSV in DOSA's notation (ucb-bar/dosa, `data/firesim_test_data`):
one layer per row, `prob.*` its shape (Timeloop: N, C, K, P x Q output, R x S kernel,
strides), `arch.*` the Gemmini it ran on, `target.gemmini_auto_cycle` the cycles FireSim
measured with Gemmini's library choosing the tiling (`target.cycle`: DOSA's analytical
figure, read as a baseline when present). `read_rows` turns each row into a layer and the
configuration it ran on, and skips a malformed row with the reason.

`fit` minimises the soft-L1 loss of log(predicted / measured) over the rows (SciPy).
`held_out` fits once per layer shape on every other shape and predicts that shape's rows
(leave one shape out: a shape's rows differ only in memory sizes), so every held-out
figure comes from constants that never saw the shape.

    python -m pytest_tinyaccel.costmodel gemmini-fit CSV -o gemmini_timing.toml
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .gemmini_config import GemminiConfig, config_file, from_arch, load_config
from .gemmini_tiling import Layer, LayerWork, layer_work
from .gemmini_timing import PARAMS, Timing, load_timing, work_cycles

MEASURED = "target.gemmini_auto_cycle"
BASELINE = "target.cycle"
PROB = ("N", "C", "K", "P", "Q", "R", "S", "Hstride", "Wstride")
ARCH = ("meshX", "mem1_depth", "mem2_depth", "mem2_width")
REQUIRED = tuple(f"prob.{k}" for k in PROB) + tuple(f"arch.{k}" for k in ARCH) + (MEASURED,)
START = {"l2": 6.0, "llc": 10.0, "dram": 25.0, "warm": 1.0, "store": 3.0, "per_compute": 1.0}
START |= {"per_weight_block": 8.0, "conv1x1_execute": 2.0, "per_tile": 30.0, "per_layer": 1000.0}
"""Where the search starts: a read costs ~latency / 16 in flight, a tile ~ the host's loop."""
FLOOR = 1e-3


@dataclass
class Row:
    """One measured layer: its shape, the Gemmini it ran on, and the cycles."""

    number: int
    """Line in the CSV (the header is line 1)."""
    layer: Layer
    config: GemminiConfig
    measured: float
    baseline: float | None
    shape: str
    work: LayerWork | None = None

    @property
    def kind(self) -> str:
        """'matmul', '1x1' or 'conv' (what the report groups by)."""
        if self.layer.kind == "matmul":
            return "matmul"
        return "1x1" if self.layer.kernel_rows * self.layer.kernel_cols == 1 else "conv"

    def tiles(self) -> LayerWork:
        if self.work is None:
            self.work = layer_work(self.layer, self.config)
        return self.work


def _positive_int(row: dict[str, Any], key: str) -> int:
    value = row.get(key)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{key} is {value!r}, not a number") from None
    if not math.isfinite(number) or number <= 0 or number != int(number):
        raise ValueError(f"{key} is {value!r}, not a positive integer")
    return int(number)


def row_layer(row: dict[str, Any]) -> Layer:
    """The layer of a CSV row. A 1x1, stride-1 layer of P > 1 rows and Q = 1 column is a
    matrix product (`tiled_matmul_auto`: DOSA's matmul workloads are written so); every
    other row is a convolution (`tiled_conv_auto`) with the input that gives P x Q outputs
    without padding, as in Timeloop's notation."""
    g = {k: _positive_int(row, f"prob.{k}") for k in PROB}
    dilation = _positive_int(row, "prob.Hdilation") if row.get("prob.Hdilation") not in (None, "") else 1
    if g["Hstride"] != g["Wstride"]:
        raise ValueError(f"prob.Hstride {g['Hstride']} != prob.Wstride {g['Wstride']}: the library takes one stride")
    if g["R"] != g["S"]:
        raise ValueError(f"prob.R {g['R']} != prob.S {g['S']}: the library takes square kernels")
    if g["R"] == g["S"] == 1 and g["Q"] == 1 and g["P"] > 1 and g["Hstride"] == 1:
        return Layer("matmul", n=g["N"], in_channels=g["C"], out_channels=g["K"], out_rows=g["P"], out_cols=1)
    return Layer(
        "conv",
        n=g["N"],
        in_channels=g["C"],
        out_channels=g["K"],
        out_rows=g["P"],
        out_cols=g["Q"],
        kernel_rows=g["R"],
        kernel_cols=g["S"],
        stride=g["Hstride"],
        dilation=dilation,
    )


def read_rows(path: str | Path, base: GemminiConfig | None = None) -> tuple[list[Row], list[str]]:
    """(usable rows, one message per skipped row). A missing column is a ValueError naming it."""
    path = Path(path)
    base = base or load_config(config_file("int8"))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)} (DOSA's FireSim CSV columns are needed)")
    rows: list[Row] = []
    skipped: list[str] = []
    for number, raw in enumerate(reader, start=2):
        try:
            layer = row_layer(raw)
            config = from_arch({k[5:]: v for k, v in raw.items() if k and k.startswith("arch.")}, base)
            measured = _baseline(raw.get(MEASURED))
            if measured is None:
                raise ValueError(f"{MEASURED} is {raw.get(MEASURED)!r}, not a positive number of cycles")
            baseline = _baseline(raw.get(BASELINE))
            row = Row(number, layer, config, measured, baseline, _shape_key(raw))
            row.tiles()  # a shape the library cannot tile is skipped here, with the reason
        except (ValueError, TypeError, OverflowError) as exc:
            skipped.append(f"line {number}: {exc}")
            continue
        rows.append(row)
    return rows, skipped


def _baseline(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _shape_key(raw: dict[str, Any]) -> str:
    return "x".join(str(raw.get(f"prob.{k}")) for k in PROB)


def predict(rows: list[Row], timing: Timing) -> list[float]:
    return [work_cycles(r.tiles(), timing).cycles for r in rows]


def fit(rows: list[Row], template: Timing | None = None, start: dict[str, float] | None = None) -> Timing:
    """Constants minimising the soft-L1 loss of log(predicted / measured) over `rows`."""
    import numpy as np
    from scipy.optimize import least_squares

    if not rows:
        raise ValueError("no rows to fit on")
    template = template or load_timing()
    begin = start or START
    x0 = np.log([max(begin[p], FLOOR) for p in PARAMS])
    measured = np.log([r.measured for r in rows])

    def residuals(x: Any) -> Any:
        timing = _with(template, np.exp(x))
        return np.log(predict(rows, timing)) - measured

    bounds = (math.log(FLOOR * 1e-4), math.log(1e7))  # keeps every constant finite while searching
    result = least_squares(residuals, np.clip(x0, *bounds), loss="soft_l1", f_scale=0.2, bounds=bounds)
    return _with(template, np.exp(result.x))


def _with(template: Timing, values: Any) -> Timing:
    params = {p: float(v) for p, v in zip(PARAMS, values)}
    return Timing(params=params, l2_kib=template.l2_kib, llc_kib=template.llc_kib, name=template.name)


def held_out(rows: list[Row], template: Timing | None = None) -> list[float]:
    """Each row predicted by constants fitted on the rows of every other shape."""
    template = template or load_timing()
    out: dict[int, float] = {}
    for shape in sorted({r.shape for r in rows}):
        train = [r for r in rows if r.shape != shape]
        test = [r for r in rows if r.shape == shape]
        timing = fit(train, template, start=template.params or None) if train else template
        for r, cycles in zip(test, predict(test, timing)):
            out[id(r)] = cycles
    return [out[id(r)] for r in rows]


def error_stats(predicted: list[float], measured: list[float]) -> dict[str, float]:
    """Median and p90 of |error| as factors (x1.00 = exact), and the median ratio."""
    errors = sorted(abs(math.log(p / m)) for p, m in zip(predicted, measured))
    ratios = sorted(p / m for p, m in zip(predicted, measured))
    if not errors:
        return {}
    return {
        "median": math.exp(_quantile(errors, 0.5)),
        "p90": math.exp(_quantile(errors, 0.9)),
        "ratio": _quantile(ratios, 0.5),
        "rows": len(errors),
    }


def _quantile(values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    position = q * (len(values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else '"nan"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def write_timing(timing: Timing, path: Path, header: str) -> None:
    from ..cache import atomic_write_text

    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [f"name = {_toml_value(timing.name)}", "", "[memory]"]
    lines += [f"l2_kib = {timing.l2_kib:g}", f"llc_kib = {timing.llc_kib:g}", "", "[params]"]
    lines += [f"{p} = {timing.params[p]:.6g}" for p in PARAMS]
    lines += ["", "[source]"] + [f"{k} = {_toml_value(v)}" for k, v in timing.source.items()]
    lines += ["", "[error]"] + [f"{k} = {_toml_value(v)}" for k, v in timing.error.items() if not isinstance(v, dict)]
    for name, stats in timing.error.items():
        if isinstance(stats, dict):
            lines += ["", f"[error.{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in stats.items()]
    atomic_write_text(path, "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_tinyaccel.costmodel gemmini-fit", description=__doc__)
    parser.add_argument("csv", type=Path, help="per-layer FireSim CSV (DOSA's columns)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="timing constants to write (TOML)")
    parser.add_argument("--name", default="gemmini_timing")
    args = parser.parse_args(argv)
    template = load_timing()
    rows, skipped = read_rows(args.csv)
    for message in skipped:
        print(f"skipped {message}")
    timing = fit(rows, template)
    measured = [r.measured for r in rows]
    small = [i for i, r in enumerate(rows) if r.layer.macs < 10_000_000]
    outside = held_out(rows, timing)
    inside = predict(rows, timing)
    timing.name = args.name
    timing.source = {
        "csv": args.csv.name,
        "sha256": hashlib.sha256(args.csv.read_bytes()).hexdigest(),
        "rows": len(rows),
        "shapes": len({r.shape for r in rows}),
        "array_dims": sorted({r.config.dim for r in rows}),
        "input_bytes": sorted({r.config.input_bytes for r in rows}),
        "method": "soft-L1 least squares of log(predicted / measured), SciPy",
        "command": f"python -m pytest_tinyaccel.costmodel gemmini-fit {args.csv} -o {args.output}",
    }
    timing.error = {
        "against": f"FireSim {MEASURED} ({args.csv.name})",
        "held_out_rule": "leave one layer shape out (all its memory configurations)",
        "in_sample": error_stats(inside, measured),
        "held_out": error_stats(outside, measured),
        "held_out_under_10M_macs": error_stats([outside[i] for i in small], [measured[i] for i in small]),
    }
    header = f"Gemmini timing constants, fitted by: {timing.source['command']}\n"
    header += "See pytest_tinyaccel/costmodel/gemmini_timing.py for what each constant is.\n"
    header += "[memory]: the SoC the FireSim runs used, an LLC of 4 MiB (the FireSim build\n"
    header += "firesim_rocket_singlecore_16pe4kdummygemmini_nofirstlayer_no_nic_l2_llc4mb_ddr3 named in\n"
    header += "charleshong3/firesim-dosa deploy/built-hwdb-entries, revision 989eb97) and an L2 of 512 KiB\n"
    header += "(ASSUMPTION: Chipyard's default inclusive L2; the build name does not give its size)."
    write_timing(timing, args.output, header)
    print(f"wrote {args.output}: {timing.describe_error()}")
    return 0
