#!/usr/bin/env python3
"""Cross-check ZigZag's Gemmini cycles against SCALE-Sim, layer by layer.

    python benchmarks/scalesim_crosscheck.py                  # every models/*/model.onnx
    python benchmarks/scalesim_crosscheck.py a.onnx b.onnx    # given float ONNX models
    python benchmarks/scalesim_crosscheck.py --mlperf ../shared/mlperf_tiny

For each Conv/Gemm/MatMul layer it prints SCALE-Sim's cycles, ZigZag's cycles
(`pytest_tinyaccel.costmodel`, hardware/gemmini.yaml, int8) and their ratio,
plus per-model totals, as a Markdown table (`--output FILE` also writes it).

SCALE-Sim (scalesim 3.0.0) needs numpy < 2.3, so it runs in its own venv, made
on first use under the cache directory (default `.tinyaccel-scalesim/`, which
.gitignore ignores) with ``pip install --no-deps scalesim==3.0.0 'numpy<2.3'
tqdm``; the project's numpy is left alone. It is driven through a subprocess
(an argv list) that loads the generated topology/layout/config files and prints
each layer's compute report as JSON.

The SCALE-Sim configuration mirrors hardware/gemmini.yaml: a 16x16
weight-stationary array; Gemmini's 256 KiB scratchpad split into 128 KiB for
input feature maps and 128 KiB for filters (SCALE-Sim has separate buffers),
the 64 KiB accumulator as the output buffer; user-given DRAM bandwidth with
Gemmini's 16 bytes/cycle bus split 8 + 8 bytes/cycle between the ifmap and
filter reads and 16 bytes/cycle for output writes (1-byte words, int8).
Layers are written as SCALE-Sim convolutions with the padding added to the
input size; a Gemm/MatMul is a 1x1 convolution of a 1x1 input; a depthwise
conv is one single-channel layer per channel (SCALE-Sim's "DP" layers), summed
back per ONNX layer. The SCALE-Sim figure is its per-layer "total cycles"
(first DRAM read to last DRAM write), which, like ZigZag's latency_total2,
includes loading and draining; its compute cycles (array busy + stalls, without
the initial load) are shown too. Neither is silicon: the table reports both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pytest_tinyaccel.costmodel import layergraph  # noqa: E402  (after the path insert)
from pytest_tinyaccel.costmodel.hardware import hardware_file, load_hardware  # noqa: E402
from pytest_tinyaccel.costmodel.zigzag_runner import run_zigzag, zigzag_unavailable  # noqa: E402

SCALESIM_PACKAGES = ["scalesim==3.0.0", "numpy<2.3", "tqdm"]

CONFIG_TEMPLATE = """\
[general]
run_name = {run_name}

[architecture_presets]
ArrayHeight : {rows}
ArrayWidth : {cols}
IfmapSramSzkB : {ifmap_kb}
FilterSramSzkB : {filter_kb}
OfmapSramSzkB : {ofmap_kb}
IfmapOffset : 0
FilterOffset : 10000000
OfmapOffset : 20000000
Bandwidth : {ofmap_bw}
Dataflow : ws
ReadRequestBuffer : 32
WriteRequestBuffer : 32

[layout]
IfmapCustomLayout : False
IfmapSRAMBankBandwidth : {ifmap_bw}
IfmapSRAMBankNum : 1
IfmapSRAMBankPort : 2
FilterCustomLayout : False
FilterSRAMBankBandwidth : {filter_bw}
FilterSRAMBankNum : 1
FilterSRAMBankPort : 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth : USER
UseRamulatorTrace : False
"""

TOPOLOGY_HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
LAYOUT_HEADER = (
    "Layer name, IFMAP Height Intraline Factor, IFMAP Width Intraline Factor, Filter Height Intraline "
    "Factor, Filter Width Intraline Factor, Channel Intraline Factor, Num Filter Intraline Factor, IFMAP "
    "Height Intraline Order, IFMAP Width Intraline Order, Channel Intraline Order, IFMAP Height Interline "
    "Order, IFMAP Width Interline Order, Channel Interline Order, Num Filter Intraline Order, Channel "
    "Intraline Order, Filter Height Intraline Order, Filter Width Intraline Order, Num Filter Interline "
    "Order, Channel Interline Order, Filter Height Interline Order, Filter Width Interline Order,\n"
)

DRIVER = r"""
import contextlib, io, json, sys
from scalesim.scale_sim import scalesim
cfg, topo, layout, out = sys.argv[1:5]
with contextlib.redirect_stdout(io.StringIO()):
    sim = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=layout,
                   input_type_gemm=False)
    sim.run_scale(top_path=out)
rows = []
for layer in sim.runner.single_layer_sim_object_list:
    total, compute, stall, util, mapping_eff, compute_util = layer.get_compute_report_items()[:6]
    rows.append({"layer_id": layer.get_layer_id(), "total_cycles": float(total),
                 "compute_cycles": float(compute), "stall_cycles": float(stall),
                 "mapping_efficiency": float(mapping_eff)})
names = [t[0] for t in sim.topo.topo_arrays]
for row, name in zip(rows, names):
    row["name"] = name
print(json.dumps(rows))
"""


def ensure_venv(cache_dir: Path) -> Path:
    """The isolated SCALE-Sim interpreter, created on first use."""
    env_dir = cache_dir / "venv"
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    marker = env_dir / ".tinyaccel-scalesim-ok"
    if marker.is_file() and python.is_file():
        return python
    print(f"creating the SCALE-Sim venv in {env_dir} ...", file=sys.stderr)
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", *SCALESIM_PACKAGES], check=True)
    subprocess.run([str(python), "-c", "import scalesim.scale_sim"], check=True)
    marker.write_text(" ".join(SCALESIM_PACKAGES) + "\n")
    return python


def scalesim_layers(prepared: layergraph.LayerGraph) -> list[dict]:
    """One SCALE-Sim layer description per Conv/Gemm/MatMul node."""
    out = []
    for index, node in enumerate(n for n in prepared.nodes if n.is_matrix):
        if node.op == "Conv":
            in_shape = prepared.shapes[node.inputs[0]]
            w = prepared.shapes[node.inputs[1]]
            kh, kw = int(w[2]), int(w[3])
            pads = list(node.attrs.get("pads", [0, 0, 0, 0]))
            strides = list(node.attrs.get("strides", [1, 1]))
            if strides[0] != strides[1]:
                raise SystemExit(f"{node.name}: SCALE-Sim takes one stride, got {strides}")
            if node.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
                raise SystemExit(f"{node.name}: auto_pad is not supported here")
            ih = int(in_shape[2]) + pads[0] + pads[2]
            iw = int(in_shape[3]) + pads[1] + pads[3]
            channels = int(w[1]) * node.group if node.is_depthwise else int(w[1])
            filters = 1 if node.is_depthwise else int(w[0])
            if node.is_depthwise and (node.group != int(w[0]) or int(w[1]) != 1):
                raise SystemExit(f"{node.name}: only depthwise grouping (group == channels) is supported")
            row = [ih, iw, kh, kw, channels, filters, int(strides[0])]
        else:
            out_shape = prepared.shapes[node.outputs[0]]
            k = int(out_shape[-1])
            c = node.macs // max(int(out_shape[-1]) * max(node.out_rows, 1), 1)
            if node.out_rows != 1:
                raise SystemExit(f"{node.name}: only matrix-vector Gemm/MatMul (batch 1) is supported")
            row = [1, 1, 1, 1, int(c), k, 1]
        name = f"L{index}{'DP' if node.is_depthwise else ''}"
        out.append(
            {
                "sim_name": name,
                "node": node.name,
                "op": node.op,
                "macs": node.macs,
                "depthwise": node.is_depthwise,
                "row": row,
            }
        )
    return out


def write_inputs(layers: list[dict], workdir: Path, hw) -> tuple[Path, Path, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    topo = workdir / "topology.csv"
    layout = workdir / "layout.csv"
    cfg = workdir / "gemmini.cfg"
    with topo.open("w") as fh:
        fh.write(TOPOLOGY_HEADER)
        for layer in layers:
            fh.write(", ".join([layer["sim_name"], *map(str, layer["row"])]) + ",\n")
    rows, cols = hw.zigzag_data["operational_array"]["sizes"]
    with layout.open("w") as fh:
        fh.write(LAYOUT_HEADER)
        for layer in layers:
            # Not used (custom layouts are off) but parsed: a row-major line of `cols` channels.
            values = [1, 1, 1, 1, cols, cols, 0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 3]
            fh.write(", ".join([layer["sim_name"], *map(str, values)]) + ",\n")
    bus = int(hw.meta["dram_bytes_per_cycle"])
    cfg.write_text(
        CONFIG_TEMPLATE.format(
            run_name="gemmini_16x16_ws",
            rows=rows,
            cols=cols,
            ifmap_kb=int(hw.meta["scratchpad_bytes"]) // 2048,
            filter_kb=int(hw.meta["scratchpad_bytes"]) // 2048,
            ofmap_kb=int(hw.meta["accumulator_bytes"]) // 1024,
            ifmap_bw=bus // 2,
            filter_bw=bus // 2,
            ofmap_bw=bus,
        )
    )
    return cfg, topo, layout


def run_scalesim(python: Path, cfg: Path, topo: Path, layout: Path, workdir: Path) -> list[dict]:
    driver = workdir / "driver.py"
    driver.write_text(DRIVER)
    proc = subprocess.run(
        [str(python), str(driver), str(cfg), str(topo), str(layout), str(workdir / "out")],
        capture_output=True,
        text=True,
        cwd=workdir,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"SCALE-Sim failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def short(name: str, width: int = 44) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3) :]


def crosscheck(model_path: Path, label: str, python: Path, cache_dir: Path, hw) -> tuple[list, dict]:
    prepared, sha = layergraph.prepare_model(model_path)
    layers = scalesim_layers(prepared)
    workdir = cache_dir / "runs" / f"{label}-{sha[:12]}"
    cfg, topo, layout = write_inputs(layers, workdir, hw)
    t0 = time.perf_counter()
    sim_rows = run_scalesim(python, cfg, topo, layout, workdir)
    sim_s = time.perf_counter() - t0
    zz = run_zigzag(model_path, hw, "int8", cache_dir / "zigzag-cache", prepared=prepared, model_sha256=sha)
    per_sim: dict[str, float] = {}
    per_sim_compute: dict[str, float] = {}
    for row in sim_rows:
        base = row["name"].split("Channel_")[0]
        per_sim[base] = per_sim.get(base, 0.0) + row["total_cycles"]
        per_sim_compute[base] = per_sim_compute.get(base, 0.0) + row["compute_cycles"]
    table = []
    tot_s = tot_z = 0.0
    for layer in layers:
        s = per_sim[layer["sim_name"]]
        z = zz.layers[layer["node"]].cycles
        tot_s += s
        tot_z += z
        table.append(
            [
                label,
                short(layer["node"]),
                layer["op"] + (" dw" if layer["depthwise"] else ""),
                layer["macs"],
                int(s),
                int(per_sim_compute[layer["sim_name"]]),
                int(z),
                s / z,
            ]
        )
    summary = {
        "model": label,
        "layers": len(layers),
        "scalesim_cycles": tot_s,
        "zigzag_cycles": tot_z,
        "ratio": tot_s / tot_z,
        "scalesim_s": sim_s,
        "zigzag_s": zz.elapsed_s,
        "zigzag_cached": zz.cached,
    }
    return table, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, help="float ONNX models (default: models/*/model.onnx)")
    parser.add_argument("--mlperf", type=Path, help="also the MLPerf Tiny reference float models in this folder")
    parser.add_argument("--cache-dir", type=Path, default=REPO / ".tinyaccel-scalesim")
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)

    reason = zigzag_unavailable()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    from tabulate import tabulate

    models: list[tuple[str, Path]] = []
    if args.models:
        models += [(p.stem if p.stem != "model" else p.parent.name, p) for p in args.models]
    else:
        models += [(p.parent.name, p) for p in sorted((REPO / "models").glob("*/model.onnx"))]
    if args.mlperf:
        for name in ("ad01_fp32", "kws_ref_model_float32", "pretrainedResnet_float", "vww_96_float"):
            p = args.mlperf / f"{name}.onnx"
            if p.is_file():
                models.append((f"mlperf:{name}", p))
    if not models:
        print("no models found", file=sys.stderr)
        return 1

    cache_dir = args.cache_dir.resolve()
    python = ensure_venv(cache_dir)
    hw = load_hardware(hardware_file("gemmini", "int8"))
    rows, summaries = [], []
    for label, path in models:
        print(f"{label}: {path}", file=sys.stderr)
        table, summary = crosscheck(path, label, python, cache_dir, hw)
        rows += table
        summaries.append(summary)

    headers = [
        "model",
        "layer",
        "op",
        "MACs",
        "SCALE-Sim cycles",
        "SCALE-Sim compute",
        "ZigZag cycles",
        "SCALE-Sim / ZigZag",
    ]
    lines = [
        (
            "SCALE-Sim 3.0.0 vs ZigZag 3.9.1 on Gemmini's default configuration (16x16 weight-stationary "
            "int8, 256 KiB scratchpad, 64 KiB accumulator, 16 B/cycle bus); cycles per layer, batch 1."
        ),
        "",
        tabulate(rows, headers=headers, tablefmt="github", floatfmt=".2f", intfmt=","),
        "",
        tabulate(
            [
                [
                    s["model"],
                    s["layers"],
                    int(s["scalesim_cycles"]),
                    int(s["zigzag_cycles"]),
                    s["ratio"],
                    s["scalesim_s"],
                    s["zigzag_s"],
                ]
                for s in summaries
            ],
            headers=["model", "layers", "SCALE-Sim total", "ZigZag total", "ratio", "SCALE-Sim s", "ZigZag s (cold)"],
            tablefmt="github",
            floatfmt=".2f",
            intfmt=",",
        ),
    ]
    report = "\n".join(lines)
    print(report)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
