"""Stand-in for Gemmini's ONNX Runtime runner (`ort_test`) under spike or qemu.

Used by tests/test_command_target.py through the `command` target. Like the real
runner it takes the model with `-m`, the execution mode with `-x` (0: CPU, 1:
Gemmini/systolic), an optimization level with `-O`, and with `-t FILE` writes a
Chrome trace (ONNX Runtime's own profiler output, produced here by
`SessionOptions.enable_profiling`), prints the Top-5 of the first sample and a
cycle count. It reads its inputs from a .npy file (`-i`, [N, ...]) and writes
the outputs as .npy files named after the graph outputs into `-o DIR` (the real
runner reads one image; a team adapts it the same way to feed test sets).

    gemmini_runner.py -m model.onnx -i input.npy -o outdir -x 1 [-O 99] [-t trace.json]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-m", dest="model", required=True)
    parser.add_argument("-i", dest="input", required=True)
    parser.add_argument("-o", dest="outdir", required=True)
    parser.add_argument("-x", dest="execution", type=int, default=1)
    parser.add_argument("-O", dest="opt", type=int, default=0)
    parser.add_argument("-t", dest="trace")
    args = parser.parse_args()

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    if args.trace:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(args.outdir) / "ort_profile")
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    print(f"Loaded runner program; mode {'Gemmini' if args.execution else 'CPU'} (-x {args.execution}), -O {args.opt}")
    x = np.load(args.input, allow_pickle=False)
    spec = session.get_inputs()[0]
    names = [o.name for o in session.get_outputs()]
    start = time.perf_counter_ns()
    chunks = [session.run(names, {spec.name: x[i : i + 1]}) for i in range(len(x))]
    elapsed = time.perf_counter_ns() - start
    outputs = {n: np.concatenate([c[k] for c in chunks]) for k, n in enumerate(names)}
    if args.trace:
        shutil.move(session.end_profiling(), args.trace)
    first = outputs[names[0]][0].reshape(-1)
    print(f"Element count {first.size}. Top 5 classes:")
    for c in np.argsort(first)[-5:]:
        print(f"{first[c]:.6f} class {c}")
    for name, value in outputs.items():
        np.save(Path(args.outdir) / f"{name}.npy", value)
    # Like the runner's own summary line (rdcycle on the target); here wall time
    # in ns stands in for cycles at 1 GHz.
    print(f"Done! Inference took {elapsed // max(1, len(x))} cycles!")
    return 0


if __name__ == "__main__":
    sys.exit(main())
