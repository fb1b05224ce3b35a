"""Stand-in for a flow that dumps every kernel's output (an AIE graph with a probe
per kernel, an FPGA design with debug taps): runs the model with ONNX Runtime and
writes the graph outputs as <output>.npy into -o DIR and every intermediate tensor
as <tensor>.npy (non [A-Za-z0-9_.-] characters replaced by '_') into --layers DIR.

With --fault NODE the "hardware" computes that node wrongly (its weights 5 % too
large), so every kernel from NODE on diverges, as a real kernel bug would.

    kernel_dump.py -m model.onnx -i input.npy -o outdir --layers DIR [--fault NODE]
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-m", dest="model", required=True)
    parser.add_argument("-i", dest="input", required=True)
    parser.add_argument("-o", dest="outdir", required=True)
    parser.add_argument("--layers", required=True)
    parser.add_argument("--fault")
    args = parser.parse_args()

    from pytest_tinyaccel.intermediates import ort_intermediates

    model = onnx.load(args.model)
    if args.fault:
        (node,) = [n for n in model.graph.node if n.name == args.fault]
        weights = next(t for t in model.graph.initializer if t.name == node.input[1])
        weights.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weights) * np.float32(1.05), weights.name))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(model, path)
        values = ort_intermediates(path, {model.graph.input[0].name: np.load(args.input, allow_pickle=False)})
    layers, outdir = Path(args.layers), Path(args.outdir)
    layers.mkdir(parents=True, exist_ok=True)
    outdir.mkdir(parents=True, exist_ok=True)
    outputs = {o.name for o in model.graph.output}
    for name, value in values.items():
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        np.save(layers / f"{safe}.npy", value)
        if name in outputs:
            np.save(outdir / f"{safe}.npy", value)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
