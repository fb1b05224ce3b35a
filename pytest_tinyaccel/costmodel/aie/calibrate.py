"""The calibration command: per-kernel aiesimulator logs -> a calibration file.

    python -m pytest_tinyaccel.costmodel calibrate LOGS... -o calibration.toml

LOGS are CSV tables (`graph,kernel,template_args,start,end`) or aiesimulator
logs with the kernels' `Running <Kernel><args>` / `start = A,end = B,total = C`
prints (one graph per log, named after the file). The kernel classes and dtypes
found in the logs are fitted (`fit.py`); the others are taken from `--base`
(default: the shipped calibration) so the file is complete. The file records
its source: the logs' names and sha256, the graphs, the command line. Point the
aie target at it with `calibration = "calibration.toml"` in
`[tool.tinyaccel.targets.aie]`.
"""

from __future__ import annotations

import argparse
import math
import shlex
from pathlib import Path

from ...cache import file_sha256
from . import calibration as cal_mod
from .device import load_device
from .fit import fit, log_ratio
from .logs import LogSet, read_logs


def calibrate(
    logs: list[Path],
    *,
    name: str,
    device: str = "vck190",
    base: cal_mod.Calibration | None = None,
    command: str = "",
) -> tuple[cal_mod.Calibration, LogSet]:
    """Fit a calibration on `logs` (see the module docstring)."""
    found = read_logs(logs)
    dev = load_device(device)
    source = {
        "logs": [p.name for p in logs],
        "sha256": [file_sha256(p) for p in logs],
        "graphs": found.graphs(),
        "samples": len(found.samples),
        "device": dev.name,
        "method": "exposed cycles per kernel (logs.py), log-space soft-L1 fit per class and dtype (fit.py)",
    }
    if command:
        source["command"] = command
    calibration = fit(
        found.samples,
        name=name,
        device=dev.name,
        peak_macs_per_cycle=dev.peak_macs_per_cycle,
        source=source,
        base=base,
    )
    return calibration, found


def fit_table(calibration: cal_mod.Calibration, found: LogSet) -> list[list[str]]:
    """Per class x dtype: samples, graphs, overhead, rates, and the in-sample error."""
    errors: dict[str, list[float]] = {}
    for s in found.samples:
        predicted = calibration.cycles(s.kind, s.dtype, s.features)
        errors.setdefault(f"{s.kind}.{s.dtype}", []).append(abs(log_ratio(predicted, s.exposed)))
    rows = []
    for key in sorted(calibration.params):
        p = calibration.params[key]
        err = sorted(errors.get(key, []))
        rate = ", ".join(f"{f} {c:.4g}" for f, c in p.cycles_per.items() if c)
        rows.append(
            [
                key,
                str(p.samples),
                ",".join(p.graphs) if p.graphs else f"(from {p.fallback_from})",
                f"{p.overhead:.0f}",
                rate or "-",
                f"x{math.exp(err[len(err) // 2]):.2f}" if err else "-",
            ]
        )
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_tinyaccel.costmodel calibrate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("logs", nargs="+", type=Path, help="CSV tables or aiesimulator logs")
    parser.add_argument("-o", "--output", type=Path, required=True, help="calibration file (.toml or .json)")
    parser.add_argument("--name", help="calibration name (default: the output file's stem)")
    parser.add_argument("--device", default="vck190", help="device the logs come from (default vck190)")
    parser.add_argument(
        "--base", default="default", help="classes the logs lack come from: 'default' (shipped), 'none', or a file"
    )
    args = parser.parse_args(argv)
    from tabulate import tabulate

    base = None if args.base == "none" else cal_mod.load(None if args.base == "default" else args.base)
    command = shlex.join(["python", "-m", "pytest_tinyaccel.costmodel", "calibrate", *argv])
    try:
        calibration, found = calibrate(
            args.logs, name=args.name or args.output.stem, device=args.device, base=base, command=command
        )
    except (OSError, ValueError) as exc:
        parser.exit(2, f"calibrate: {exc}\n")
    for line in found.skipped:
        print(f"skipped: {line}")
    header = f"Fitted by: {command}\nFrom: {', '.join(p.name for p in args.logs)} (see [source])."
    calibration.save(args.output, header)
    headers = ["class.dtype", "samples", "graphs", "overhead", "cycles per unit", "median error (in-sample)"]
    print(tabulate(fit_table(calibration, found), headers=headers, tablefmt="github"))
    print(f"wrote {args.output}")
    return 0
