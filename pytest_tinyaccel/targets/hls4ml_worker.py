"""The hls4ml target's subprocess: `python -m pytest_tinyaccel.targets.hls4ml_worker build BUILD_DIR`
or `... run BUILD_DIR RUN_DIR`. Started by `Hls4mlTarget` (targets/hls4ml.py), which owns the
timeouts and turns failures into test failures; this process may die (the compiled library
calls exit(1) when it cannot read its weights) without taking pytest with it.

build: reads BUILD_DIR/spec.json, cleans the float ONNX model up with qonnx, converts it with
hls4ml, compiles the generated C++ with the project's own build_lib.sh (g++), calls the
library once, and for hw_emu runs C synthesis and C/RTL co-simulation with the HLS tool the
target found, parsing the reports into BUILD_DIR/perf.json. Writes BUILD_DIR/hls4ml.json.

run: calls the library's `<project>_float` once per sample of RUN_DIR/input_<i>.npy and
writes RUN_DIR/output_<k>.npy and RUN_DIR/done.json.

A failure the user can act on (hls4ml cannot convert an op, g++ rejects the code, the HLS
tool fails) is written to error.json as {"stage", "message"} and exits with status 3; a
model hls4ml cannot convert is refused before qonnx or hls4ml see it (stage "unsupported by
hls4ml", hls4ml_onnx.refusals). The worker's process group (g++, the HLS tool) dies with it
and with the pytest process that started it (`die_with_parent`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import importlib
import json
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .hls4ml import UNSUPPORTED, parse_fixed
from .hls4ml_onnx import normalise, refusals
from .hls4ml_prepare import (
    calibration_ranges,
    cap_onnx_ir_version,
    eight_bit_config,
    fixed_type,
    layout_ops_to_channels_last,
    pools_to_channels_last,
    qonnx_clean,
)

SOFTMAX_INPUT_INTEGER_BITS = 4
"""The stable softmax indexes its exp table with x_max - x in ufixed<18,4>: exp(-16) is below
the table's resolution, so the table spans [0, 16) and larger differences saturate."""
PR_SET_PDEATHSIG = 1
HLS_FLAGS = {"reset": 1, "csim": 0, "synth": 1, "cosim": 1, "validation": 0, "export": 0, "vsynth": 0, "fifo_opt": 0}
"""The steps of hls4ml's build_prj.tcl the HLS tool runs: C synthesis and C/RTL co-simulation."""


class StageError(Exception):
    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


@contextlib.contextmanager
def _stage(stage: str) -> Iterator[None]:
    """`with _stage("conversion"):` logs the stage and turns its exceptions into StageError."""
    print(f"[tinyaccel] {stage} ...", flush=True)
    try:
        yield
    except StageError:
        raise
    except Exception as exc:
        traceback.print_exc()
        raise StageError(stage, f"{type(exc).__name__}: {exc}") from exc


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


def match_outputs(model, hls_model) -> list[int]:
    """For each output of the cleaned ONNX `model`, in order, the position of the hls4ml output
    variable holding it. hls4ml names a variable after the ONNX tensor it holds: the output
    itself, or, when hls4ml fused the node writing the output into an earlier one (a bias Add
    into its Dense), the tensor that earlier node wrote (`_fusable_chain`)."""
    names = [o.name for o in model.graph.output]
    found: dict[int, int] = {}
    for position, var in enumerate(hls_model.outputs):
        owners = [i for i, name in enumerate(names) if var in _fusable_chain(model, name)]
        if len(owners) != 1 or owners[0] in found:
            raise StageError(
                "hls4ml conversion", f"cannot tell which ONNX output the HLS design's output {var!r} holds"
            )
        found[owners[0]] = position
    return [found[i] for i in range(len(names))]


def _fusable_chain(model, tensor: str, depth: int = 3) -> list[str]:
    """`tensor` and the tensors before it along single-input nodes, each read by nothing but
    the next node, at most `depth`: what hls4ml may fuse into the layer writing `tensor`."""
    chain = [tensor]
    node = model.find_producer(tensor)
    while node is not None and len(chain) < depth:
        data = [t for t in node.input if t and model.get_initializer(t) is None]
        if len(data) != 1 or len(model.find_consumers(data[0]) or []) != 1:
            break
        chain.append(data[0])
        node = model.find_producer(data[0])
    return chain


# ----- hls4ml configuration -----------------------------------------------------------------


def hls_config(
    model,
    spec: dict[str, Any],
    backend: str,
    ranges: dict[str, tuple[float, float]] | None = None,
    calibrated: dict[str, str] | None = None,
) -> dict[str, Any]:
    import hls4ml

    options = spec["options"]
    precision = parse_fixed(spec["precision"])
    config = hls4ml.utils.config_from_onnx_model(
        model,
        granularity="name",
        backend=backend,
        default_precision=spec["precision"],
        default_reuse_factor=options["reuse_factor"],
    )
    config["Model"]["Strategy"] = options["strategy"]
    layers = config["LayerName"]
    for value in model.graph.input:
        layers.setdefault(value.name, {})["Precision"] = {"result": spec["input_precision"]}
    if ranges is not None and calibrated is not None:
        calibrated.update(eight_bit_config(config, model, ranges, precision.width))
    table = options["softmax_table_size"]
    for node in model.graph.node:
        if node.op_type != "Softmax":
            continue
        layer = layers.setdefault(node.name, {})
        shape = model.get_tensor_shape(node.input[0]) or [1]
        classes = int(shape[-1])
        sum_bits = max(1, math.ceil(math.log2(classes + 1)))
        layer["TableSize"] = table
        layer["Implementation"] = options["softmax"]
        if options["softmax"] == "stable":
            layer["Precision"] = {"result": fixed_type(False, precision.width, 0)}
            layer.update(
                {
                    "inp_norm_t": fixed_type(False, 18, SOFTMAX_INPUT_INTEGER_BITS),
                    "exp_table_t": fixed_type(False, 18, 1),
                    "accum_t": fixed_type(False, 17 + sum_bits, sum_bits),
                    "inv_inp_t": fixed_type(False, 18, sum_bits),
                    "inv_table_t": fixed_type(False, 18, 1),
                }
            )
        else:  # legacy: one table type; saturate instead of wrapping large exponentials
            layer["Precision"] = {"result": spec["precision"]}
            layer["table_t"] = "fixed<18,8,RND,SAT>"
    return config


# ----- build --------------------------------------------------------------------------------


def _tool_argv(tool: dict[str, str]) -> list[str]:
    if tool["name"] == "vivado_hls":
        return [tool["path"], "-f", "build_prj.tcl", " ".join(f"{k}={v}" for k, v in HLS_FLAGS.items())]
    if tool["name"] == "vitis-run":
        return [tool["path"], "--tcl", "build_prj.tcl", "--mode", "hls"]
    return [tool["path"], "-f", "build_prj.tcl"]


def _write_build_options(project_dir: Path) -> None:
    """The Vitis backend's build_prj.tcl reads its switches from build_opt.tcl."""
    body = "".join(f"    {k} {v}\n" for k, v in HLS_FLAGS.items())
    (project_dir / "build_opt.tcl").write_text("array set opt {\n" + body + "}\n")


def _run_logged(argv: list[str], cwd: Path, stage: str) -> None:
    """Run a tool with its output in this worker's log; nonzero exit is a StageError.

    Not through pytest_tinyaccel.process on purpose: the tool must stay in this worker's
    process group, which the target kills (with the tool) on timeout."""
    print(f"[tinyaccel] $ {' '.join(argv)}  (in {cwd})", flush=True)
    sys.stderr.flush()
    code = subprocess.run(
        argv, check=False, cwd=cwd, stdout=sys.stdout.fileno(), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    ).returncode
    if code != 0:
        raise StageError(stage, f"{argv[0]} exited with status {code}; its output is in the log")


SIDE_BY_SIDE = "build_lib_side_by_side.sh"
"""hls4ml's build_lib.sh with its two compilations started together (`side_by_side`), beside the original."""


def side_by_side(script: str) -> str | None:
    """`script` (hls4ml's build_lib.sh) with its two g++ compilations, the design and its ctypes bridge,
    started together: they are independent, and the bridge (about 4 s, mostly the ap_types headers)
    then takes the second core while the design compiles (11-20 s). Same commands, flags and objects.
    None when the script does not hold two consecutive `${CC} ... -c` lines (another hls4ml
    release): it then runs as it is."""
    lines = script.splitlines()
    compiles = [i for i, line in enumerate(lines) if line.startswith("${CC}") and " -c " in line]
    if len(compiles) != 2 or compiles[1] != compiles[0] + 1:
        return None
    first, second = compiles
    lines[first] += " &\nfirst_compile=$!\ntrap 'kill \"$first_compile\" 2>/dev/null || true' EXIT"
    lines[second] += '\nwait "$first_compile"\ntrap - EXIT'  # under `set -e` a failed compilation ends the script
    return "\n".join(lines) + "\n"


def _call_library(lib_path: Path, function: str, sizes_in: list[int], sizes_out: list[int]):
    import ctypes

    library = ctypes.CDLL(str(lib_path))
    fn = getattr(library, function)
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p] * (len(sizes_in) + len(sizes_out))
    return fn


def _start_calibration(spec: dict[str, Any], stack: contextlib.ExitStack) -> concurrent.futures.Future:
    """The 8-bit formats' calibration ranges (qonnx's clean-up at the calibration batch, then its
    executor), computed in a forked process: it runs beside this process's own clean-up at batch 1,
    the two slowest Python steps of an int8 build and independent of each other."""
    pool = stack.enter_context(
        concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
    )
    data = np.load(spec["calibration"], allow_pickle=False)[: spec["calibration_samples"]]
    return pool.submit(calibration_ranges, Path(spec["onnx"]), data)


def build(build_dir: Path) -> None:
    spec = json.loads((build_dir / "spec.json").read_text())
    options = spec["options"]
    project = spec["project"]
    hls_tool = spec.get("hls_tool")
    backend = ("Vivado" if hls_tool["name"] == "vivado_hls" else "Vitis") if hls_tool else options["backend"]
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    with _stage("import"):
        import hls4ml
        import onnx

        cap_onnx_ir_version()
    with _stage("ONNX normalisation"):
        # The module, not the function hls4ml.converters re-exports under the same name.
        handlers = importlib.import_module("hls4ml.converters.onnx_to_hls")
        normalised = normalise(Path(spec["onnx"]))
        refused = refusals(normalised, set(handlers.get_supported_onnx_layers()))
    if refused:
        raise StageError(UNSUPPORTED, "; ".join(refused))
    with contextlib.ExitStack() as stack:
        calibration = None
        if spec.get("calibration"):
            with _stage("calibration of the 8-bit formats"):
                calibration = _start_calibration(spec, stack)
        with _stage("qonnx clean-up"):
            original = onnx.load(spec["onnx"], load_external_data=False)
            initializers = {t.name for t in original.graph.initializer}
            onnx_inputs = [v for v in original.graph.input if v.name not in initializers]
            onnx_outputs = list(original.graph.output)
            model = qonnx_clean(normalised)
            rewrites = layout_ops_to_channels_last(model) + pools_to_channels_last(model)
        ranges: dict[str, tuple[float, float]] | None = None
        calibrated: dict[str, str] | None = None
        if calibration is not None:
            with _stage("calibration of the 8-bit formats"):
                ranges = calibration.result()
                calibrated = {}
    with _stage("hls4ml conversion"):
        config = hls_config(model, spec, backend, ranges, calibrated)
        kwargs: dict[str, Any] = {
            "output_dir": str(build_dir / "hls"),
            "project_name": project,
            "backend": backend,
            "hls_config": config,
            "io_type": options["io_type"],
            "clock_period": options["clock_period"],
        }
        if options.get("part"):
            kwargs["part"] = options["part"]
        if spec.get("tb_inputs"):
            kwargs["input_data_tb"] = spec["tb_inputs"]
        hls_model = hls4ml.converters.convert_from_onnx_model(model, **kwargs)
        hls_model.write()
        sizes_in = [int(v.size()) for v in hls_model.get_input_variables()]
        sizes_out = [int(v.size()) for v in hls_model.get_output_variables()]
        order = match_outputs(model, hls_model) if len(sizes_out) == len(onnx_outputs) else []
        layers = [[layer.name, layer.class_name] for layer in hls_model.get_layers()]
    seconds["convert"] = time.perf_counter() - start

    def per_sample(value) -> list[int]:
        return [d.dim_value for d in value.type.tensor_type.shape.dim][1:]

    if len(sizes_in) != len(onnx_inputs) or len(sizes_out) != len(onnx_outputs):
        raise StageError(
            "hls4ml conversion",
            f"hls4ml made {len(sizes_in)} input(s) / {len(sizes_out)} output(s), "
            f"the ONNX model has {len(onnx_inputs)} / {len(onnx_outputs)}",
        )
    for kind, values, sizes in (
        ("input", onnx_inputs, sizes_in),
        ("output", onnx_outputs, [sizes_out[k] for k in order]),
    ):
        for value, size in zip(values, sizes, strict=True):
            if math.prod(per_sample(value)) != size:
                raise StageError(
                    "hls4ml conversion",
                    f"{kind} {value.name!r}: ONNX per-sample shape "
                    f"{per_sample(value)} but the HLS design has {size} values",
                )

    project_dir = build_dir / "hls"
    start = time.perf_counter()
    script = side_by_side((project_dir / "build_lib.sh").read_text())
    if script is not None:
        (project_dir / SIDE_BY_SIDE).write_text(script)
    _run_logged(
        ["bash", "build_lib.sh" if script is None else SIDE_BY_SIDE],
        project_dir,
        "g++ compilation of the generated HLS C++",
    )
    libraries = sorted((project_dir / "firmware").glob(f"{project}-*.so"))
    if len(libraries) != 1:
        raise StageError(
            "g++ compilation of the generated HLS C++", f"expected one {project}-*.so, found {len(libraries)}"
        )
    seconds["compile"] = time.perf_counter() - start

    with _stage("first call of the compiled model"):
        fn = _call_library(libraries[0], f"{project}_float", sizes_in, sizes_out)
        buffers = [np.zeros(s, np.float32) for s in sizes_in + sizes_out]
        fn(*[b.ctypes.data for b in buffers])

    meta: dict[str, Any] = {
        "hls4ml": hls4ml.__version__,
        "project": project,
        "backend": backend,
        "library": str(libraries[0].relative_to(build_dir)),
        "function": f"{project}_float",
        "inputs": [
            {"name": v.name, "size": s, "shape": per_sample(v)} for v, s in zip(onnx_inputs, sizes_in, strict=True)
        ],
        "outputs": [  # in ONNX order; "index": the design's output position (match_outputs)
            {"name": v.name, "size": sizes_out[k], "shape": per_sample(v), "index": k}
            for v, k in zip(onnx_outputs, order, strict=True)
        ],
        "precision": spec["precision"],
        "label": spec["label"],
        "input_precision": spec["input_precision"],
        "input_precision_source": spec["input_precision_source"],
        "io_type": options["io_type"],
        "strategy": options["strategy"],
        "reuse_factor": options["reuse_factor"],
        "softmax": options["softmax"],
        "softmax_table_size": options["softmax_table_size"],
        "rewrites": rewrites,
        "layers": layers,
        "seconds": seconds,
        "calibrated_formats": calibrated,
    }

    if hls_tool:
        from ..readers.hlsreport import (
            ReportError,
            parse_cosim_rpt,
            perf_fields,
            read_synthesis,
        )

        meta["hls_tool"] = hls_tool["name"]
        start = time.perf_counter()
        if backend == "Vitis":
            _write_build_options(project_dir)
        _run_logged(_tool_argv(hls_tool), project_dir, f"{hls_tool['name']} synthesis and co-simulation")
        seconds["hls"] = time.perf_counter() - start
        solution = project_dir / f"{project}_prj" / "solution1"
        with _stage("reading the HLS reports"):
            try:
                synth = read_synthesis(solution / "syn" / "report", project)
                cosim_path = solution / "sim" / "report" / f"{project}_cosim.rpt"
                cosim = parse_cosim_rpt(cosim_path) if cosim_path.is_file() else None
            except ReportError as exc:
                raise StageError("reading the HLS reports", str(exc)) from None
        if cosim is None:
            raise StageError("C/RTL co-simulation", f"no co-simulation report {cosim_path}")
        if not cosim.passed:
            raise StageError(
                "C/RTL co-simulation", f"{cosim.rtl} co-simulation status {cosim.status!r} in {cosim_path}"
            )
        (build_dir / "perf.json").write_text(json.dumps(perf_fields(synth, cosim), indent=1))

    (build_dir / "hls4ml.json").write_text(json.dumps(meta, indent=1))
    print(f"[tinyaccel] build done: {json.dumps(seconds)}", flush=True)


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
    fn = _call_library(build_dir / meta["library"], meta["function"], sizes_in, sizes_out)
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
        module = __spec__.name if __spec__ else "hls4ml_worker"
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
