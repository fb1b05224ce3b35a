"""The hls4ml target's subprocess: `python -m pytest_tinyaccel.targets.hls4ml.worker build BUILD_DIR`
or `... run BUILD_DIR RUN_DIR`. Started by `Hls4mlTarget` (target.py), which owns the
timeouts and turns failures into test failures; this process may die (the compiled library
calls exit(1) when it cannot read its weights) without taking pytest with it.

build (the stages of build.py): reads BUILD_DIR/spec.json, cleans the float ONNX model up with qonnx, converts it with
hls4ml, compiles the generated C++ with the project's own build_lib.sh (g++), calls the
library once, and for hw_emu runs C synthesis and C/RTL co-simulation with the HLS tool the
target found, parsing the reports into BUILD_DIR/perf.json. Writes BUILD_DIR/hls4ml.json.

run: calls the library's `<project>_float` once per sample of RUN_DIR/input_<i>.npy and
writes RUN_DIR/output_<k>.npy and RUN_DIR/done.json.

A failure the user can act on (hls4ml cannot convert an op, g++ rejects the code, the HLS
tool fails) is written to error.json as {"stage", "message"} and exits with status 3; a
model hls4ml cannot convert is refused before qonnx or hls4ml see it (stage "unsupported by
hls4ml", normalise.refusals). The worker's process group (g++, the HLS tool) dies with it
and with the pytest process that started it (`die_with_parent`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .build import StageError, build, call_library
from .settings import UNSUPPORTED

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Kill this worker's whole process group (itself, g++, the HLS tool: what it started) when
    it gets SIGTERM (a timeout: pytest_tinyaccel.process signals the group) or when the pytest
    process that started it dies, even by SIGKILL: the kernel then sends SIGTERM
    (PR_SET_PDEATHSIG, Linux), which the handler turns into SIGKILL for the group. The kernel's
    own SIGKILL for the worker alone would leave its compiler running as an orphan."""
    if os.getpgid(0) != os.getpid():
        return  # not a group leader (started by hand): the group is not ours to kill
    signal.signal(signal.SIGTERM, _kill_group)
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        _kill_group()


def _kill_group(*_: object) -> None:
    os.killpg(os.getpid(), signal.SIGKILL)


# ----- run ----------------------------------------------------------------------------------


def run(build_dir: Path, run_dir: Path, jobs: int = 1) -> None:
    meta = json.loads((build_dir / "hls4ml.json").read_text())
    sizes_in = [i["size"] for i in meta["inputs"]]
    sizes_out = [o["size"] for o in sorted(meta["outputs"], key=lambda o: o["index"])]
    xs = [np.load(run_dir / f"input_{i}.npy", allow_pickle=False) for i in range(len(sizes_in))]
    count = len(xs[0])
    for x, size, spec in zip(xs, sizes_in, meta["inputs"], strict=True):
        if len(x) != count or x[0].size != size:
            raise StageError(
                "C simulation", f"input {spec['name']!r} has shape {x.shape}; the design takes {size} values per sample"
            )
    flat = [np.ascontiguousarray(x.reshape(count, -1), dtype=np.float32) for x in xs]
    # The outputs are the result files, mapped shared, so forked workers write their samples in place.
    outputs = [
        np.lib.format.open_memmap(run_dir / f"output_{k}.npy", mode="w+", dtype=np.float32, shape=(count, size))
        for k, size in enumerate(sizes_out)
    ]
    fn = call_library(build_dir / meta["library"], meta["function"], sizes_in, sizes_out)
    start = time.perf_counter()
    _simulate_in_parallel(fn, flat, outputs, jobs)
    seconds = time.perf_counter() - start
    for out in outputs:
        out.flush()
    (run_dir / "done.json").write_text(json.dumps({"seconds": seconds, "samples": count, "processes": jobs}))
    print(f"[tinyaccel] C simulation of {count} samples in {jobs} process(es): {seconds:.2f} s", flush=True)


def _simulate_in_parallel(fn: Any, flat: Sequence[np.ndarray], outputs: Sequence[np.ndarray], jobs: int) -> None:
    """Samples are independent calls of the compiled design (fixed-point C++, about 80 ms per kws
    sample): forked copies of this process each run a contiguous share into the shared outputs."""
    count = len(flat[0])
    bounds = np.linspace(0, count, max(1, min(jobs, count)) + 1).astype(int)
    children = []
    for lo, hi in zip(bounds[1:-1], bounds[2:], strict=True):
        pid = os.fork()
        if pid == 0:  # child: its share, then leave without running the parent's exit handlers
            code = 1
            try:
                _simulate_samples(fn, flat, outputs, lo, hi)
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    _simulate_samples(fn, flat, outputs, bounds[0], bounds[1])
    failed = [pid for pid in children if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0]
    if failed:
        raise StageError("C simulation", f"{len(failed)} of {len(children) + 1} simulation processes failed")


def _simulate_samples(fn: Any, flat: Sequence[np.ndarray], outputs: Sequence[np.ndarray], lo: int, hi: int) -> None:
    for s in range(lo, hi):
        fn(*[x[s].ctypes.data for x in flat], *[o[s].ctypes.data for o in outputs])


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "build":
        work, action = Path(argv[1]), lambda: build(Path(argv[1]))
    elif len(argv) in (3, 4) and argv[0] == "run" and (len(argv) == 3 or argv[3].isdigit()):
        jobs = int(argv[3]) if len(argv) == 4 else 1
        work, action = Path(argv[2]), lambda: run(Path(argv[1]), Path(argv[2]), max(1, jobs))
    else:
        module = __spec__.name if __spec__ else "pytest_tinyaccel.targets.hls4ml.worker"
        print(f"usage: python -m {module} build BUILD_DIR | run BUILD_DIR RUN_DIR [PROCESSES]", file=sys.stderr)
        return 2
    die_with_parent()
    try:
        action()
    except StageError as exc:
        (work / "error.json").write_text(json.dumps({"stage": exc.stage, "message": str(exc)}))
        said = f"{exc.stage}: {exc}" if exc.stage == UNSUPPORTED else f"{exc.stage} failed: {exc}"
        print(f"[tinyaccel] {said}", file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
