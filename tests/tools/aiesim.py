"""Stand-in for an AI Engine make flow (aiecompiler + aiesimulator / x86simulator).

Used by tests/test_command_target.py through the `command` target. It behaves the
way the real flow does from the outside: a build step that writes a package
folder and a resource report, a simulation step that reads PLIO-style text
inputs and writes PLIO-style text outputs (several values per line, the last
dimension padded to the line width; in hw_emu a `T <time> ns` line before every
line and `TLAST` on the last line of each inference), kernel cycle prints in its
log, and the failure modes real tools have (nonzero exit, crash, hang with a
child process, missing or malformed output).

The outputs themselves are ONNX Runtime's, so goldens match; the timings are a
deterministic function of the model so tests can check the parsers exactly:
inference i's output beat j leaves at LATENCY_NS + i*PERIOD_NS + j*BEAT_NS, and
kernel k prints total = 100*(k+1) cycles.

    aiesim.py build --model M --workdir W [--fail exit]
    aiesim.py run (--pkg W/Work | --model M) --input X.txt --output Y.txt --vpl-in 3 --vpl-out 4
                  [--pad-in line|none] [--pad-out line|none] [--timed] [--fail MODE] [--pidfile F]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LATENCY_NS = 5000
PERIOD_NS = 1000
BEAT_NS = 2
RESOURCES = {"Kernels": 7, "Buffers": 9, "Stream": 14, "PLIO": 2, "GMIO": 0}


def padded(size: int, multiple: int | None) -> int:
    return size if not multiple else -(-size // multiple) * multiple


def build(args: argparse.Namespace) -> int:
    import onnx

    print(f"INFO: [aiecompiler 77-0] compiling {args.model}")
    if args.fail == "exit":
        print("ERROR: [aiecompiler 77-295] cannot map kernel conv_3 to a tile: not enough memory", file=sys.stderr)
        return 2
    model = onnx.load(args.model)
    work = Path(args.workdir) / "Work"
    (work / "reports").mkdir(parents=True, exist_ok=True)
    kernels = [f"{n.op_type}<{i}>" for i, n in enumerate(model.graph.node)]
    (work / "graph.json").write_text(json.dumps({"model": str(Path(args.model).resolve()), "kernels": kernels}))
    (work / "reports" / "resources.txt").write_text("".join(f"{k}: {v}\n" for k, v in RESOURCES.items()))
    print("INFO: [aiecompiler 77-404] compilation finished successfully")
    return 0


def run(args: argparse.Namespace) -> int:
    import onnxruntime as ort

    if args.pkg:
        package = json.loads((Path(args.pkg) / "graph.json").read_text())
    else:  # simulate straight from the model (no build step configured)
        import onnx

        package = {
            "model": args.model,
            "kernels": [f"{n.op_type}<{i}>" for i, n in enumerate(onnx.load(args.model).graph.node)],
        }
    print("INFO: [aiesimulator] Simulation started")
    if args.fail == "exit":
        print("ERROR: [aiesimulator] deadlock detected on port in_0", file=sys.stderr)
        return 3
    if args.fail == "crash":
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGSEGV)
    if args.fail == "hang":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        Path(args.pidfile).write_text(str(child.pid))
        print("INFO: [aiesimulator] waiting for input stream", flush=True)
        time.sleep(3600)

    session = ort.InferenceSession(package["model"], providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    sample_shape = [int(d) for d in spec.shape[1:]]
    values = [
        float(v)
        for line in Path(args.input).read_text().splitlines()
        if line.strip() and not line.startswith("T")
        for v in line.split()
    ]
    last = padded(sample_shape[-1], args.vpl_in if args.pad_in == "line" else None)
    per_sample = int(np.prod(sample_shape[:-1])) * last
    if len(values) % per_sample:
        print(f"ERROR: input holds {len(values)} values, not a multiple of {per_sample}", file=sys.stderr)
        return 4
    x = np.asarray(values, np.float32).reshape([-1, *sample_shape[:-1], last])[..., : sample_shape[-1]]
    (y,) = session.run(None, {spec.name: x})

    for k, kernel in enumerate(package["kernels"]):
        start = 1000 + 500 * k
        print(f"Running {kernel}")
        print(f"start = {start},end = {start + 100 * (k + 1)},total = {100 * (k + 1)}")

    vpl = args.vpl_out
    width = padded(y.shape[-1], vpl if args.pad_out == "line" else None)
    y = np.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, width - y.shape[-1])])
    per_instance = y[0].size
    flat = y.reshape(-1).astype(np.float64)
    if args.fail == "nan":
        flat[5] = np.nan
    lines = []
    for i in range(0, flat.size, vpl):
        instance, offset = divmod(i, per_instance)
        beat = offset // vpl
        if args.timed:
            lines.append(f"T {LATENCY_NS + instance * PERIOD_NS + beat * BEAT_NS} ns")
            if offset + vpl >= per_instance:
                lines.append("TLAST")
        lines.append(" ".join(f"{v:.9g}" for v in flat[i : i + vpl]) + " ")
    if args.fail == "short":
        lines = lines[:-1]
    if args.fail == "garbage":
        lines[1] = "0.25 0.5 x7f 0.75"
    if args.fail != "missing":
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text("\n".join(lines) + "\n")
    print(f"INFO: [aiesimulator] Simulation completed: {len(y)} iterations")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="step", required=True)
    b = sub.add_parser("build")
    b.add_argument("--model", required=True)
    b.add_argument("--workdir", required=True)
    b.add_argument("--fail")
    r = sub.add_parser("run")
    where = r.add_mutually_exclusive_group(required=True)
    where.add_argument("--pkg")
    where.add_argument("--model")
    r.add_argument("--input", required=True)
    r.add_argument("--output", required=True)
    r.add_argument("--vpl-in", type=int, default=4)
    r.add_argument("--vpl-out", type=int, default=4)
    r.add_argument("--pad-in", default="line")
    r.add_argument("--pad-out", default="line")
    r.add_argument("--timed", action="store_true")
    r.add_argument("--fail")
    r.add_argument("--pidfile")
    args = parser.parse_args()
    return build(args) if args.step == "build" else run(args)


if __name__ == "__main__":
    sys.exit(main())
