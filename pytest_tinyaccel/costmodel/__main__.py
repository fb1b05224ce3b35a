"""Command line of the cost models.

python -m pytest_tinyaccel.costmodel calibrate LOGS... -o calibration.toml
    fit the AIE model's per-kernel-class parameters on aiesimulator per-kernel
    cycle logs (see pytest_tinyaccel/costmodel/aie/calibrate.py)

python -m pytest_tinyaccel.costmodel gemmini-fit CSV -o gemmini_timing.toml
    fit the Gemmini timing constants on per-layer FireSim measurements and write
    them with their held-out error (see pytest_tinyaccel/costmodel/gemmini_fit.py)

python -m pytest_tinyaccel.costmodel [cost] MODELS... [--target aie|gemmini] [--dtype int8|fp32]
    cost ONNX models and print cycles, latency, throughput, efficiency and
    resources; for int8 pass the quantized model to `aie` (it costs the graph it
    is given) and the float model to `gemmini`. `--trace DIR` writes a Chrome
    trace per row. Gemmini: the library-tiling model (`--gemmini-timing zigzag`:
    ZigZag, cached in --cache-dir).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "calibrate":
        from .aie.calibrate import main as calibrate_main

        return calibrate_main(argv[1:])
    if argv and argv[0] == "gemmini-fit":
        from .gemmini_fit import main as fit_main

        return fit_main(argv[1:])
    if argv and argv[0] == "cost":
        argv = argv[1:]
    return cost(argv)


def cost(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_tinyaccel.costmodel", description="Cost ONNX models.")
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--target", choices=["gemmini", "aie"], action="append")
    parser.add_argument("--dtype", choices=["int8", "fp32"], action="append")
    parser.add_argument("--device", default="vck190", help="aie device: vck190 (default) or aie-ml")
    parser.add_argument("--calibration", help="aie calibration file (default: the shipped one)")
    parser.add_argument("--cache-dir", type=Path, default=Path(".tinyaccel-cache") / "zigzag")
    parser.add_argument("--gemmini-timing", choices=["library", "zigzag"], default="library")
    parser.add_argument("--trace", type=Path, help="write Chrome traces into this folder")
    args = parser.parse_args(argv)
    from tabulate import tabulate

    from . import zigzag_unavailable
    from .trace import write_trace

    rows = []
    for model in args.models:
        label = model.parent.name if model.stem == "model" else model.stem
        for target in args.target or ["gemmini", "aie"]:
            if target == "gemmini" and args.gemmini_timing == "zigzag" and zigzag_unavailable():
                print(f"gemmini: {zigzag_unavailable()}", file=sys.stderr)
                continue
            for dtype in args.dtype or ["int8", "fp32"]:
                t0 = time.perf_counter()
                if target == "aie":
                    from .aie import aie_perf

                    perf = aie_perf(model, dtype, device=args.device, calibration=args.calibration)
                else:
                    from .gemmini import gemmini_perf

                    perf = gemmini_perf(model, dtype, cache_dir=args.cache_dir, timing=args.gemmini_timing)
                elapsed = time.perf_counter() - t0
                ideal = perf.extra.get("ideal_cycles")
                rows.append(
                    [
                        label,
                        target,
                        dtype,
                        f"{perf.cycles:,.0f}",
                        f"{ideal:,.0f}" if ideal is not None else "-",
                        f"{(perf.latency_ns or 0) / 1e3:,.2f}",
                        f"{perf.throughput:,.0f}" if perf.throughput else "-",
                        f"{perf.efficiency:.3f}" if perf.efficiency else "-",
                        "/".join(str(v) for v in perf.resources.values()),
                        f"{elapsed:.2f}",
                    ]
                )
                if args.trace:
                    write_trace(perf, args.trace / f"{label}-{target}-hw_emu-{dtype}.json")
    headers = ["model", "target", "dtype", "cycles", "ideal cycles", "latency us", "inst/s", "efficiency"]
    print(tabulate(rows, headers=[*headers, "resources", "seconds"], tablefmt="github"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
