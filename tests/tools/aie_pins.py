"""The AIE model's current per-kernel predictions, pinned (tests/data/aie_pins.csv; tests/test_aie_pins.py).

    python tests/tools/aie_pins.py            # write the pins again, after a deliberate model change
    python tests/tools/aie_pins.py --check    # what differs from the pins, without writing

Two kinds of rows, every figure predicted by the model as it stands:
* `log`: every kernel of the shared aiesimulator per-kernel logs (../shared/aie_profiles,
  onnx2versal at 392b325), its graph rebuilt from the log: measured exposed cycles beside
  the model's (pytest_tinyaccel/costmodel/aie/validate.py), and each graph's latency;
* `mapped`: every kernel the model maps the MLPerf Tiny reference models (../shared/mlperf_tiny)
  to: in-graph duration, start and own cycles, and each model's latency and interval.
Figures are cycles to a thousandth; the pins compare them exactly (tolerance 0).

A model change that moves any figure shows up as a failing pin naming the kernel; review the
change (and docs/aie-model.md's error figures), then write the pins again with this script.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pytest_tinyaccel.costmodel.aie import aie_perf, validate  # noqa: E402
from pytest_tinyaccel.costmodel.aie.logs import read_csv  # noqa: E402

SHARED = ROOT.parent / "shared"
LOGS = SHARED / "aie_profiles" / "onnx2versal_vck190_kernels.csv"
MLPERF = SHARED / "mlperf_tiny"
PINS = ROOT / "tests" / "data" / "aie_pins.csv"
MODELS = {
    "kws-fp32": ("kws_ref_model_float32.onnx", "fp32"),
    "kws-int8": ("kws_ref_model_int8.onnx", "int8"),
    "ic-fp32": ("pretrainedResnet_float.onnx", "fp32"),
    "ic-int8": ("pretrainedResnet_quant.onnx", "int8"),
    "vww-fp32": ("vww_96_float.onnx", "fp32"),
    "vww-int8": ("vww_96_int8.onnx", "int8"),
    "ad-fp32": ("ad01_fp32.onnx", "fp32"),
    "ad-int8": ("ad01_int8.onnx", "int8"),
}
"""The MLPerf Tiny reference models (../shared/mlperf_tiny), by a short name, and the dtype each runs as."""
COLUMNS = ("kind", "source", "index", "kernel", "measured", "predicted", "start", "own")
"""`log` rows: exposed cycles (measured, predicted), or a graph's latency (index empty);
`mapped` rows: a kernel's in-graph duration (predicted), start and own cycles, or the model's
latency (index empty; `start` holds the steady-state interval)."""


def cycles(value: float | None) -> str:
    """A figure as pinned: cycles to a thousandth (the pins compare these strings exactly)."""
    return "" if value is None else f"{value:.3f}"


def rows() -> list[dict[str, str]]:
    """Every pinned figure, as the CSV holds it."""
    out: list[dict[str, str]] = []
    kernels = read_csv(LOGS.read_text(encoding="utf-8"), LOGS.name)
    results, graphs = validate.compare(kernels, shape_out=False)
    count: dict[str, int] = {}
    for r in results:
        i = count[r.graph] = count.get(r.graph, -1) + 1
        name = f"{r.kernel}<{','.join(r.args)}>"
        out.append(_row("log", r.graph, i, name, r.measured, r.predicted["model"]))
    for g in graphs:
        out.append(_row("log", g.graph, "", "latency", g.measured, g.predicted["model"]))
    for source, (name, dtype) in MODELS.items():
        perf = aie_perf(MLPERF / name, dtype)
        for i, layer in enumerate(perf.layers):
            out.append(
                _row("mapped", source, i, _short(layer), None, layer.cycles, layer.start, layer.extra["own_cycles"])
            )
        interval = perf.extra["initiation_interval_cycles"]
        out.append(_row("mapped", source, "", "latency", None, perf.cycles, interval))
    return out


def _short(layer) -> str:
    """`op:template` (`conv:QLinearConvHx4PktStream`): exported layer names run to hundreds of characters."""
    return f"{layer.op}:{layer.extra['template'] or 'per-class'}"


def _row(kind, source, index, kernel, measured, predicted, start=None, own=None) -> dict[str, str]:
    figures = {"measured": measured, "predicted": predicted, "start": start, "own": own}
    return {"kind": kind, "source": source, "index": str(index), "kernel": kernel} | {
        k: cycles(v) for k, v in figures.items()
    }


def render(table: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="print what differs from the pins; write nothing")
    args = parser.parse_args(argv)
    text = render(rows())
    if args.check:
        old = PINS.read_text(encoding="utf-8").splitlines() if PINS.is_file() else []
        changed = sorted(set(text.splitlines()) ^ set(old))
        print("\n".join(changed) or "the pins hold")
        return 1 if changed else 0
    PINS.write_text(text, encoding="utf-8")
    print(f"wrote {PINS.relative_to(ROOT)} ({text.count(chr(10)) - 1} kernels and graphs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
