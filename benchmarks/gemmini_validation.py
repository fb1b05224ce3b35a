"""How well the `gemmini` hw_emu timing predicts FireSim, layer by layer.

    python benchmarks/gemmini_validation.py [--csv ../shared/gemmini_profiles/dosa_firesim_layers.csv]
                                            [--zigzag]

Measured: `target.gemmini_auto_cycle`, the cycles FireSim (Gemmini's RTL on an FPGA)
took for one layer with Gemmini's own library choosing the tiling, on the memories of
that row (`arch.*`). Predicted: the library-tiling model (costmodel/gemmini_timing.py)
on the row's configuration. Baseline beside it: DOSA's analytical figure
(`target.cycle`, a Timeloop-style model of DOSA's own mapping), and with `--zigzag` the
ZigZag model the target used before (Gemmini's default configuration for every row,
the `zigzag` extra, about a minute cold).

Held-out rule: leave one layer *shape* out (all its memory configurations): every
held-out figure comes from constants fitted without that shape. "In sample" uses the
constants fitted on the whole CSV. Errors are |log(predicted / measured)| shown as
factors (x1.25 = 25 % off either way); "ratio" is the median predicted / measured.
Rows the CSV cannot give a layer for are skipped and listed. Nothing is asserted here;
tests/test_gemmini_model.py checks the rules and a held-out bound on a sample.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tabulate import tabulate  # noqa: E402  (after the path insert)

from pytest_tinyaccel.costmodel.gemmini_fit import Row, error_stats, fit, held_out, predict, read_rows  # noqa: E402
from pytest_tinyaccel.costmodel.gemmini_timing import load_timing  # noqa: E402

SHARED = ROOT.parent / "shared"
MAC_RANGES = ((0, 1e6, "< 1 M"), (1e6, 1e7, "1-10 M"), (1e7, 1e8, "10-100 M"), (1e8, float("inf"), ">= 100 M"))


def _groups(rows: list[Row]) -> list[tuple[str, list[int]]]:
    groups = [("all", list(range(len(rows))))]
    groups.append(("under 10 M MACs", [i for i, r in enumerate(rows) if r.layer.macs < 1e7]))
    for kind in ("conv", "1x1", "matmul"):
        groups.append((f"kind {kind}", [i for i, r in enumerate(rows) if r.kind == kind]))
    for low, high, label in MAC_RANGES:
        groups.append((f"MACs {label}", [i for i, r in enumerate(rows) if low <= r.layer.macs < high]))
    return [(name, idx) for name, idx in groups if idx]


def _cell(predicted: list[float | None], measured: list[float], idx: list[int]) -> str:
    pairs = [(predicted[i], measured[i]) for i in idx if predicted[i]]
    if not pairs:
        return "-"
    stats = error_stats([p for p, _ in pairs], [m for _, m in pairs])
    return f"x{stats['median']:.2f} / x{stats['p90']:.2f} ({stats['ratio']:.2f})"


def _zigzag(rows: list[Row]) -> list[float | None]:
    """The ZigZag model (Gemmini's default configuration) on each row's layer, one ONNX layer each."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from pytest_tinyaccel.costmodel import zigzag_unavailable
    from pytest_tinyaccel.costmodel.gemmini import gemmini_perf

    if zigzag_unavailable():
        print(f"--zigzag: {zigzag_unavailable()}")
        return [None] * len(rows)
    out: list[float | None] = []
    for r in rows:
        lay = r.layer
        w_shape = (lay.in_channels, lay.out_channels)
        if lay.kind == "matmul":
            node = helper.make_node("MatMul", ["x", "w"], ["y"], name="layer")
            x_shape, y_shape = [lay.out_rows, lay.in_channels], [lay.out_rows, lay.out_channels]
        else:
            w_shape = (lay.out_channels, lay.in_channels, lay.kernel_rows, lay.kernel_cols)
            node = helper.make_node(
                "Conv",
                ["x", "w"],
                ["y"],
                name="layer",
                kernel_shape=[lay.kernel_rows, lay.kernel_cols],
                strides=[lay.stride, lay.stride],
            )
            x_shape = [lay.n, lay.in_channels, *lay.input_size()]
            y_shape = [lay.n, lay.out_channels, lay.out_rows, lay.out_cols]
        weights = numpy_helper.from_array(np.zeros(w_shape, np.float32), "w")
        graph = helper.make_graph(
            [node],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
            [weights],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        out.append(gemmini_perf(model, "int8", timing="zigzag").cycles)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=SHARED / "gemmini_profiles" / "dosa_firesim_layers.csv")
    parser.add_argument("--zigzag", action="store_true", help="also the ZigZag model (default configuration)")
    args = parser.parse_args(argv)
    try:
        rows, skipped = read_rows(args.csv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for message in skipped:
        print(f"skipped {message}")
    if not rows:
        print(f"{args.csv}: no usable rows")
        return 1
    shipped = load_timing()
    fitted = fit(rows, shipped, start=shipped.params)
    measured = [r.measured for r in rows]
    columns: dict[str, list[float | None]] = {
        "model, in sample": list(predict(rows, fitted)),
        "model, held out": list(held_out(rows, fitted)) if len({r.shape for r in rows}) > 1 else [None] * len(rows),
        "shipped constants": list(predict(rows, shipped)),
        "DOSA target.cycle": [r.baseline for r in rows],
    }
    if args.zigzag:
        columns["ZigZag (default config)"] = _zigzag(rows)
    shapes = len({r.shape for r in rows})
    print(f"{args.csv.name}: {len(rows)} layers, {shapes} shapes; measured: FireSim target.gemmini_auto_cycle")
    print(f"shipped constants: {shipped.path}, fitted on {shipped.source.get('csv', '?')}")
    print("cells: median |error| / p90 |error| (median predicted/measured); held out: leave one shape out\n")
    table = [[name, len(idx)] + [_cell(col, measured, idx) for col in columns.values()] for name, idx in _groups(rows)]
    print(tabulate(table, headers=["layers", "n", *columns], tablefmt="github"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
