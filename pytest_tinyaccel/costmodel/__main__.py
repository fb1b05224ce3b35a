"""Command line: cost float ONNX models on Gemmini / AIE-ML and time ZigZag.

    python -m pytest_tinyaccel.costmodel models/*/model.onnx --cache-dir .tinyaccel-cache/zigzag

For every model x target x dtype it runs ZigZag once into the cache (cold, unless
already cached) and once more from it, and prints cycles, latency, throughput,
efficiency, resources and both ZigZag times. `--trace DIR` also writes a Chrome
trace per row.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from . import zigzag_unavailable

    parser = argparse.ArgumentParser(prog="python -m pytest_tinyaccel.costmodel", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--target", choices=["gemmini", "aie"], action="append")
    parser.add_argument("--dtype", choices=["int8", "fp32"], action="append")
    parser.add_argument("--cache-dir", type=Path, default=Path(".tinyaccel-cache") / "zigzag")
    parser.add_argument("--trace", type=Path, help="write Chrome traces into this folder")
    args = parser.parse_args(argv)
    reason = zigzag_unavailable()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    from tabulate import tabulate

    from .aie import aie_perf
    from .gemmini import gemmini_perf
    from .trace import write_trace

    funcs = {"gemmini": gemmini_perf, "aie": aie_perf}
    rows = []
    for model in args.models:
        label = model.parent.name if model.stem == "model" else model.stem
        for target in args.target or ["gemmini", "aie"]:
            for dtype in args.dtype or ["int8", "fp32"]:
                t0 = time.perf_counter()
                perf = funcs[target](model, dtype, cache_dir=args.cache_dir)
                first = time.perf_counter() - t0
                t0 = time.perf_counter()
                perf = funcs[target](model, dtype, cache_dir=args.cache_dir)
                cached = time.perf_counter() - t0
                res = ", ".join(f"{k} {v}" for k, v in perf.resources.items())
                rows.append(
                    [
                        label,
                        target,
                        dtype,
                        f"{perf.cycles:,.0f}",
                        f"{(perf.latency_ns or 0) / 1e3:,.2f}",
                        f"{perf.throughput:,.0f}",
                        f"{perf.efficiency:.3f}",
                        res,
                        f"{perf.extra['zigzag_elapsed_s']:.2f}",
                        f"{first:.2f}",
                        f"{cached:.3f}",
                    ]
                )
                if args.trace:
                    write_trace(perf, args.trace / f"{label}-{target}-hw_emu-{dtype}.json")
                print(" ".join(rows[-1]), file=sys.stderr)
    print(
        tabulate(
            rows,
            headers=[
                "model",
                "target",
                "dtype",
                "cycles",
                "latency us",
                "inst/s",
                "efficiency",
                "resources",
                "ZigZag cold s",
                "first call s",
                "cached call s",
            ],
            tablefmt="github",
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
