"""How well the `aie` hw_emu model predicts aiesimulator: per kernel, per logged graph, and
end to end on the MLPerf Tiny reference models — beside two baselines.

    python benchmarks/aie_validation.py [--csv LOG.csv | --logs A.log B.log ...]
                                        [--models ../shared/mlperf_tiny] [--write-errors]
                                        [--loso] [--kernels FACTOR]

Models compared (pytest_tinyaccel/costmodel/aie/validate.py):
  model      loop nests + token-level simulation; constants fitted on isolated kernel runs
             only (kernels/onnx2versal_isolated.toml), so every logged kernel is held out
             whichever network is left out;
  floor      the same simulation with every kernel's own cycles at zero (interfaces only);
  per-class  the per-class calibration, fitted without the kernel's network (both dtypes).
Leave-one-shape-out (`--loso`): the model refitted without isolated runs of the kernel's
template and arguments, the per-class calibration without every logged kernel of them.

1. isolated runs, each predicted with constants fitted without it;
2. exposed cycles per kernel class: median and p90 |error| as a factor;
3. logged graphs: measured latency against each model on the rebuilt graph;
4. the MLPerf Tiny models mapped from their ONNX files (fp32 float model, int8 reference)
   against the published aiesimulator figures (onnx2versal's table; see docs/aie-model.md);
5. with `--kernels FACTOR`: every logged kernel the model misses by more than FACTOR.

`--write-errors` stores section 2's model figures in the package
(costmodel/aie/kernels/heldout_errors.toml): the error band the Perf records carry.
Runs on any per-kernel log set; unknown templates are listed, never fatal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tabulate import tabulate  # noqa: E402  (after the path insert)

from pytest_tinyaccel.costmodel.aie import aie_perf, levels, templates, validate  # noqa: E402
from pytest_tinyaccel.costmodel.aie import calibration as cal_mod  # noqa: E402
from pytest_tinyaccel.costmodel.aie.device import load_device  # noqa: E402
from pytest_tinyaccel.costmodel.aie.graph import load as load_graph  # noqa: E402
from pytest_tinyaccel.costmodel.aie.logs import read_csv, read_simlog  # noqa: E402
from pytest_tinyaccel.costmodel.aie.mapping import map_graph  # noqa: E402
from pytest_tinyaccel.costmodel.aie.schedule import ERRORS, schedule  # noqa: E402

SHARED = ROOT.parent / "shared"

# Published aiesimulator latencies (cycles), onnx2versal's MLPerf Tiny table (docs/md/profile.md):
# KWS, IC and VWW at the revision of the per-kernel logs (392b325), AD at the later revision
# (f5803c1, 2023-08-18: batch 1, the 640-wide layers in 8 GMIO-streamed column chunks; its
# 392b325 AD figures are 20-1000x slower than that revision's own logged Gemm kernels run).
# The last field is the 8-bit weight type of the graph that was measured (onnx2versal
# requantizes the float model with its own python/quantize_onnx.py): KWS int8 as its log
# prints it (TTPARAM int8_t); IC int8 likewise (uint8_t); VWW and AD int8 were added to the
# table (844b98b, 2023-07-30; f5803c1) after that script switched to weight_type=QUInt8
# (c111858, 2023-07-24).
PUBLISHED = {
    ("KWS DS-CNN", "fp32"): ("kws_ref_model_float32.onnx", 839_599, "392b325", None),
    ("KWS DS-CNN", "int8"): ("kws_ref_model_int8.onnx", 402_772, "392b325", "int8"),
    ("IC ResNet-8", "fp32"): ("pretrainedResnet_float.onnx", 1_028_165, "392b325", None),
    ("IC ResNet-8", "int8"): ("pretrainedResnet_quant.onnx", 763_915, "392b325", "uint8"),
    ("AD autoencoder", "fp32"): ("ad01_fp32.onnx", 28_453, "f5803c1", None),
    ("AD autoencoder", "int8"): ("ad01_int8.onnx", 4_625, "f5803c1", "uint8"),
    ("VWW MobileNet", "int8"): ("vww_96_int8.onnx", 2_249_859, "844b98b (= later)", "uint8"),
}
MODELS = ("model", "floor", "per_class")


def read(args: argparse.Namespace):
    kernels = []
    if args.csv:
        kernels += read_csv(args.csv.read_text(), str(args.csv))
    for log in args.logs or []:
        kernels += read_simlog(log.read_text(), log.stem)[0]
    return kernels


def isolated_table() -> list[list[str]]:
    rows = []
    runs, _ = levels.load_isolated()
    for run in runs:
        w = templates.work(run.template, run.args)
        fitted = levels.fit_groups(frozenset({run.shape}))
        out = levels.isolated_prediction(w, fitted) if w else float("nan")
        c = levels.constants_for(w.family, fitted) if w else None
        rows.append([run.shape, f"{run.cycles:,.0f}", f"{out:,.0f}", f"{out / run.cycles:.2f}", c.source if c else "-"])
    return rows


def class_table(results, loso: bool) -> list[list[str]]:
    names = [*MODELS, *(("model_loso", "per_class_loso") if loso else ())]
    sums = {m: validate.summary(results, m) for m in names}
    rows = []
    for key in sorted(sums["model"], key=lambda k: (k == "all", k)):
        row = [key, str(sums["model"][key]["kernels"])]
        for m in names:
            s = sums[m].get(key)
            row.append(f"x{s['median']:.2f} / x{s['p90']:.2f}" if s else "-")
        rows.append(row)
    return rows


def graph_table(graphs) -> list[list[str]]:
    rows = []
    for g in graphs:
        row = [g.graph, f"{g.measured:,.0f}"]
        row += [f"{g.predicted[m]:,.0f} ({g.predicted[m] / g.measured:.2f})" for m in MODELS]
        rows.append([*row, ", ".join(sorted(set(g.unknown))) or "-"])
    return rows


def mlperf(models: Path) -> list[list[str]]:
    rows = []
    cal = cal_mod.load()
    device = load_device()
    for (name, dtype), (onnx_file, published, revision, weights) in PUBLISHED.items():
        path = models / onnx_file
        if not path.is_file():
            continue
        perf = aie_perf(path, dtype, weights=weights)
        mapping = map_graph(load_graph(path, dtype), device)
        peak = device.peak_macs_per_cycle[mapping.dtype]
        cycles = {  # today's per-class rule: calibrated cycles, at least the streamed weights' time
            k.name: max(cal.cycles(k.kind, mapping.dtype, k.features, peak=peak), k.streamed_weight_bytes / 4, 1.0)
            for k in mapping.kernels
        }
        old = max(schedule(mapping, cycles).values())
        ratio = (perf.cycles or 0.0) / published
        rows.append(
            [
                name,
                dtype,
                f"{published:,} [{revision}]",
                f"{perf.cycles:,.0f}",
                f"{ratio:.2f}",
                "yes" if 1 / 1.5 <= ratio <= 1.5 else "NO",
                f"{old:,.0f} ({old / published:.2f})",
                f"{perf.throughput:,.0f}" if perf.throughput else "-",
                "/".join(str(v) for v in perf.resources.values()),
            ]
        )
    return rows


def kernel_table(results, worse_than: float) -> list[list[str]]:
    """Every logged kernel whose model figure is off by more than `worse_than` (either way)."""
    rows = []
    for r in results:
        p = r.predicted["model"]
        if max(p / r.measured, r.measured / p) > worse_than:
            shape = f"{r.kernel}<{','.join(r.args)}>"
            rows.append([r.graph, r.key, shape, f"{r.measured:,.0f}", f"{p:,.0f}", f"{p / r.measured:.2f}"])
    return rows


def write_errors(results) -> None:
    summary = validate.summary(results, "model")
    lines = [
        "# Held-out |error| of the AIE model's exposed cycles per kernel class, as factors, written by",
        "# python benchmarks/aie_validation.py --write-errors (on the logs it was given; see docs/aie-model.md).",
        "# Every prediction is held out: the model's constants come from isolated kernel runs only.",
    ]
    for key, s in sorted(summary.items()):
        lines += [f'\n[class."{key}"]'] + [f"{k} = {v}" for k, v in s.items()]
    ERRORS.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {ERRORS.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, help="graph,kernel,template_args,start,end table")
    parser.add_argument("--logs", type=Path, nargs="*", help="aiesimulator logs with kernel cycle prints")
    parser.add_argument("--models", type=Path, default=SHARED / "mlperf_tiny")
    parser.add_argument("--loso", action="store_true", help="also leave one shape out (slower)")
    parser.add_argument("--write-errors", action="store_true", help="store the model's per-class error band")
    parser.add_argument("--kernels", type=float, metavar="FACTOR", help="list the kernels off by more than FACTOR")
    args = parser.parse_args(argv)
    if not args.csv and not args.logs:
        args.csv = SHARED / "aie_profiles" / "onnx2versal_vck190_kernels.csv"
    kernels = read(args)
    print("1. isolated kernel runs (kernel headers at 392b325), each predicted without itself\n")
    print(tabulate(isolated_table(), ["run", "cycles", "predicted", "ratio", "constants"], tablefmt="github"))
    results, graphs = validate.compare(kernels, shape_out=args.loso)
    print("\n2. exposed cycles per kernel class, median / p90 |error| as a factor (held out)\n")
    headers = ["class.dtype", "kernels", "model", "floor only", "per-class (held out)"]
    headers += ["model, shape out", "per-class, shape out"] if args.loso else []
    print(tabulate(class_table(results, args.loso), headers, tablefmt="github"))
    print("\n3. logged graphs, latency (cycles) on the rebuilt graph: measured and predicted (ratio)\n")
    headers = ["graph", "measured", "model", "floor only", "per-class", "unknown kernels"]
    print(tabulate(graph_table(graphs), headers, tablefmt="github"))
    if args.models.is_dir():
        print("\n4. MLPerf Tiny reference models, ONNX -> mapping -> simulation, vs published aiesimulator cycles\n")
        headers = ["model", "dtype", "published [revision]", "predicted", "ratio", "within 1.5x"]
        headers += ["per-class (ratio)", "throughput /s", "Kernels/Buffers/Stream/PLIO/GMIO"]
        print(tabulate(mlperf(args.models), headers, tablefmt="github"))
    if args.kernels:
        print(f"\n5. logged kernels whose model figure is off by more than x{args.kernels:g} (exposed cycles)\n")
        headers = ["graph", "class.dtype", "kernel", "measured", "model", "ratio"]
        print(tabulate(kernel_table(results, args.kernels), headers, tablefmt="github"))
    if args.write_errors:
        write_errors(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
