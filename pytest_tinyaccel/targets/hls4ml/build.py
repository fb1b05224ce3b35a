"""The build stages of the hls4ml worker (worker.py runs them in its own process): each stage
logs its name and turns its exceptions into a `StageError` naming it, which the target shows
as "<stage> failed: ...".

    normalise_and_refuse   the ONNX model in the form qonnx and hls4ml read (a quantized one as
                           QONNX, quantized.to_qonnx); what they cannot convert is refused here
                           (normalise.refusals)
    clean_up               qonnx's clean-up and channels-last rewrites; for a quantized model, what
                           hls4ml's QONNX front end mis-converts is refused here (quantized.refusals)
    convert                hls4ml's configuration and conversion; the HLS C++ written
    check_shapes           the design's inputs and outputs against the ONNX model's
    compile_library        g++ through hls4ml's build_lib.sh (its two compilations side by side)
    first_call             the compiled design called once
    synthesise             (hw_emu) C synthesis and C/RTL co-simulation, their reports read
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import quantized
from .normalise import normalise, refusals
from .prepare import cap_onnx_ir_version, fixed_type, layout_ops_to_channels_last, pools_to_channels_last, qonnx_clean
from .settings import CSIM_OPTIMISATION, UNSUPPORTED, parse_fixed

SOFTMAX_INPUT_INTEGER_BITS = 4
"""The stable softmax indexes its exp table with x_max - x in ufixed<18,4>: exp(-16) is below
the table's resolution, so the table spans [0, 16) and larger differences saturate."""
HLS_FLAGS = {"reset": 1, "csim": 0, "synth": 1, "cosim": 1, "validation": 0, "export": 0, "vsynth": 0, "fifo_opt": 0}
"""The steps of hls4ml's build_prj.tcl the HLS tool runs: C synthesis and C/RTL co-simulation."""


class StageError(Exception):
    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


@contextlib.contextmanager
def _stage(stage: str) -> Iterator[None]:
    """`with _stage("conversion"):` logs the stage and its time and turns its exceptions into StageError."""
    print(f"[tinyaccel] {stage} ...", flush=True)
    start = time.perf_counter()
    try:
        yield
    except StageError:
        raise
    except Exception as exc:
        traceback.print_exc()
        raise StageError(stage, f"{type(exc).__name__}: {exc}") from exc
    print(f"[tinyaccel] {stage}: {time.perf_counter() - start:.2f} s", flush=True)


def match_outputs(model, hls_model) -> list[int]:
    """For each output of the cleaned ONNX `model`, in order, the position of the hls4ml output
    variable holding it. hls4ml names a variable after the ONNX tensor it holds: the output
    itself, or, when hls4ml fused the node writing the output into an earlier one (a bias Add
    into its Dense), the tensor that earlier node wrote (`_fusable_chain`)."""
    names = [o.name for o in model.graph.output]
    found: dict[int, int] = {}
    for position, var in enumerate(hls_model.outputs):
        held = _quant_output(model, var)
        owners = [i for i, name in enumerate(names) if held in _fusable_chain(model, name)]
        if len(owners) != 1 or owners[0] in found:
            raise StageError(
                "hls4ml conversion", f"cannot tell which ONNX output the HLS design's output {var!r} holds"
            )
        found[owners[0]] = position
    return [found[i] for i in range(len(names))]


QUANT_LAYER_SUFFIXES = ("_rescale", "_act", "_scale")
"""hls4ml names the layers it makes of a QONNX Quant node '<node>' '<node>_scale', '<node>_act' and
'<node>_rescale' (hls4ml's quant_opt.py); an output variable so named holds the Quant's output."""


def _quant_output(model, var: str) -> str:
    """The ONNX tensor hls4ml's output variable `var` holds: `var` itself, or the output of the Quant
    node whose layers it names (QUANT_LAYER_SUFFIXES)."""
    for suffix in QUANT_LAYER_SUFFIXES:
        node = next((n for n in model.graph.node if n.name == var.removesuffix(suffix)), None)
        if var.endswith(suffix) and node is not None and node.op_type == "Quant":
            return node.output[0]
    return var


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


def hls_config(model, spec: dict[str, Any], backend: str) -> dict[str, Any]:
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
    if spec.get("quantized"):
        quantized.hls_precisions(config)
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


# ----- the build, stage by stage ---------------------------------------------------------------


@dataclass
class Cleaned:
    """The model after qonnx's clean-up, with the ONNX interface."""

    model: Any
    """qonnx's ModelWrapper."""
    inputs: list[Any]
    outputs: list[Any]
    """The original model's graph inputs (without initializers) and outputs, in ONNX order."""
    rewrites: int


@dataclass
class Design:
    """What hls4ml made: value counts per input and output, the output order, the layers."""

    sizes_in: list[int]
    sizes_out: list[int]
    order: list[int]
    layers: list[list[str]]


def build(build_dir: Path) -> None:
    """Convert, compile and (hw_emu) synthesise the model of BUILD_DIR/spec.json; write hls4ml.json."""
    spec = json.loads((build_dir / "spec.json").read_text())
    hls_tool = spec.get("hls_tool")
    backend = ("Vivado" if hls_tool["name"] == "vivado_hls" else "Vitis") if hls_tool else spec["options"]["backend"]
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    with _stage("import"):
        import hls4ml

        cap_onnx_ir_version()
    cleaned = clean_up(spec, normalise_and_refuse(spec))
    design = convert(build_dir, spec, backend, cleaned)
    seconds["convert"] = time.perf_counter() - start
    check_shapes(design, cleaned)
    start = time.perf_counter()
    library = compile_library(build_dir / "hls", spec["project"])
    seconds["compile"] = time.perf_counter() - start
    first_call(library, f"{spec['project']}_float", design)
    meta = describe(spec, backend, design, cleaned, seconds)
    meta.update(hls4ml=hls4ml.__version__, library=str(library.relative_to(build_dir)))
    if hls_tool:
        meta["hls_tool"] = hls_tool["name"]
        start = time.perf_counter()
        synthesise(build_dir, spec, backend)
        seconds["hls"] = time.perf_counter() - start
    (build_dir / "hls4ml.json").write_text(json.dumps(meta, indent=1))
    print(f"[tinyaccel] build done: {json.dumps(seconds)}", flush=True)


def normalise_and_refuse(spec: dict[str, Any]) -> Any:
    """The normalised ONNX model (QONNX for a quantized one); a StageError (UNSUPPORTED) naming, one
    line per op type, what hls4ml cannot convert."""
    with _stage("ONNX normalisation"):
        # The module, not the function hls4ml.converters re-exports under the same name.
        handlers = importlib.import_module("hls4ml.converters.onnx_to_hls")
        normalised = normalise(Path(spec["onnx"]))
    if spec.get("quantized"):
        _refuse(quantized.per_axis_refusals(normalised))
        with _stage("QDQ to QONNX (qonnx QCDQToQuant)"):
            normalised = quantized.to_qonnx(normalised).model
    refused = refusals(normalised, set(handlers.get_supported_onnx_layers()))
    _refuse(refused)
    return normalised


def _refuse(refused: list[str]) -> None:
    if refused:
        for line in refused:
            print(f"[tinyaccel] {UNSUPPORTED}: {line}", flush=True)
        raise StageError(UNSUPPORTED, "; ".join(refused))


def clean_up(spec: dict[str, Any], normalised: Any) -> Cleaned:
    """qonnx's clean-up and the channels-last rewrites; a quantized model is refused here when hls4ml's
    QONNX front end would convert it into a wrong design (quantized.refusals)."""
    with _stage("qonnx clean-up"):
        import onnx

        original = onnx.load(spec["onnx"], load_external_data=False)
        initializers = {t.name for t in original.graph.initializer}
        inputs = [v for v in original.graph.input if v.name not in initializers]
        model = qonnx_clean(normalised)
        rewrites = layout_ops_to_channels_last(model) + pools_to_channels_last(model)
        if spec.get("quantized"):
            rewrites += quantized.flatten_input(model)
    if spec.get("quantized"):
        _refuse(quantized.refusals(model))
    return Cleaned(model, inputs, list(original.graph.output), rewrites)


def convert(build_dir: Path, spec: dict[str, Any], backend: str, cleaned: Cleaned) -> Design:
    """hls4ml's configuration and conversion; the HLS project written to BUILD_DIR/hls."""
    import hls4ml

    options = spec["options"]
    with _stage("hls4ml conversion"):
        config = hls_config(cleaned.model, spec, backend)
        kwargs: dict[str, Any] = {
            "output_dir": str(build_dir / "hls"),
            "project_name": spec["project"],
            "backend": backend,
            "hls_config": config,
            "io_type": options["io_type"],
            "clock_period": options["clock_period"],
        }
        if options.get("part"):
            kwargs["part"] = options["part"]
        if spec.get("tb_inputs"):
            kwargs["input_data_tb"] = spec["tb_inputs"]
        hls_model = hls4ml.converters.convert_from_onnx_model(cleaned.model, **kwargs)
        hls_model.write()
        sizes_in = [int(v.size()) for v in hls_model.get_input_variables()]
        sizes_out = [int(v.size()) for v in hls_model.get_output_variables()]
        order = match_outputs(cleaned.model, hls_model) if len(sizes_out) == len(cleaned.outputs) else []
        layers = [[layer.name, layer.class_name] for layer in hls_model.get_layers()]
    return Design(sizes_in, sizes_out, order, layers)


def per_sample(value: Any) -> list[int]:
    """The per-sample shape of an ONNX graph input or output."""
    return [d.dim_value for d in value.type.tensor_type.shape.dim][1:]


def check_shapes(design: Design, cleaned: Cleaned) -> None:
    """The design takes and gives as many values per sample as the ONNX model."""
    if len(design.sizes_in) != len(cleaned.inputs) or len(design.sizes_out) != len(cleaned.outputs):
        raise StageError(
            "hls4ml conversion",
            f"hls4ml made {len(design.sizes_in)} input(s) / {len(design.sizes_out)} output(s), "
            f"the ONNX model has {len(cleaned.inputs)} / {len(cleaned.outputs)}",
        )
    for kind, values, sizes in (
        ("input", cleaned.inputs, design.sizes_in),
        ("output", cleaned.outputs, [design.sizes_out[k] for k in design.order]),
    ):
        for value, size in zip(values, sizes, strict=True):
            if math.prod(per_sample(value)) != size:
                raise StageError(
                    "hls4ml conversion",
                    f"{kind} {value.name!r}: ONNX per-sample shape "
                    f"{per_sample(value)} but the HLS design has {size} values",
                )


def compile_library(project_dir: Path, project: str) -> Path:
    """g++ through hls4ml's build_lib.sh at CSIM_OPTIMISATION, its two compilations side by side (the
    script run is SIDE_BY_SIDE beside it); the one shared library."""
    original = (project_dir / "build_lib.sh").read_text()
    script = optimised(original, CSIM_OPTIMISATION)
    script = side_by_side(script) or script
    if script != original:
        (project_dir / SIDE_BY_SIDE).write_text(script)
    stage = "g++ compilation of the generated HLS C++"
    _run_logged(["bash", "build_lib.sh" if script == original else SIDE_BY_SIDE], project_dir, stage)
    libraries = sorted((project_dir / "firmware").glob(f"{project}-*.so"))
    if len(libraries) != 1:
        raise StageError(stage, f"expected one {project}-*.so, found {len(libraries)}")
    return libraries[0]


def first_call(library: Path, function: str, design: Design) -> None:
    """Call the compiled design once on zeros: a library that cannot load or read its weights stops here."""
    with _stage("first call of the compiled model"):
        fn = call_library(library, function, design.sizes_in, design.sizes_out)
        buffers = [np.zeros(s, np.float32) for s in design.sizes_in + design.sizes_out]
        fn(*[b.ctypes.data for b in buffers])


def describe(
    spec: dict[str, Any], backend: str, design: Design, cleaned: Cleaned, seconds: dict[str, float]
) -> dict[str, Any]:
    """hls4ml.json: what the target's run and perf read back."""
    options = spec["options"]
    return {
        "project": spec["project"],
        "backend": backend,
        "function": f"{spec['project']}_float",
        "inputs": [
            {"name": v.name, "size": s, "shape": per_sample(v)}
            for v, s in zip(cleaned.inputs, design.sizes_in, strict=True)
        ],
        "outputs": [  # in ONNX order; "index": the design's output position (match_outputs)
            {"name": v.name, "size": design.sizes_out[k], "shape": per_sample(v), "index": k}
            for v, k in zip(cleaned.outputs, design.order, strict=True)
        ],
        **{key: spec[key] for key in ("precision", "label", "input_precision", "input_precision_source")},
        **{key: options[key] for key in ("io_type", "strategy", "reuse_factor", "softmax", "softmax_table_size")},
        "rewrites": cleaned.rewrites,
        "layers": design.layers,
        "seconds": seconds,
        "quantized": spec.get("quantized"),
    }


def synthesise(build_dir: Path, spec: dict[str, Any], backend: str) -> None:
    """C synthesis and C/RTL co-simulation with the HLS tool the target found; BUILD_DIR/perf.json."""
    from ...readers.hlsreport import ReportError, parse_cosim_rpt, perf_fields, read_synthesis

    hls_tool, project = spec["hls_tool"], spec["project"]
    project_dir = build_dir / "hls"
    if backend == "Vitis":
        _write_build_options(project_dir)
    _run_logged(_tool_argv(hls_tool), project_dir, f"{hls_tool['name']} synthesis and co-simulation")
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
        raise StageError("C/RTL co-simulation", f"{cosim.rtl} co-simulation status {cosim.status!r} in {cosim_path}")
    (build_dir / "perf.json").write_text(json.dumps(perf_fields(synth, cosim), indent=1))


# ----- pieces ------------------------------------------------------------------------------------


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
"""hls4ml's build_lib.sh with its two compilations started together (`side_by_side`) at CSIM_OPTIMISATION
(`optimised`), beside the original."""


HLS4ML_CFLAGS = 'CFLAGS="-O3 -fPIC"'
"""The line of hls4ml's build_lib.sh that sets the optimisation level (`optimised`)."""


def optimised(script: str, level: str | None) -> str:
    """`script` (hls4ml's build_lib.sh) compiling at `level` instead of -O3 (settings.CSIM_OPTIMISATION
    says why that changes no result); as it is when `level` is None or the script sets its flags
    otherwise (another hls4ml release)."""
    if level is None or script.count(HLS4ML_CFLAGS) != 1:
        return script
    return script.replace(HLS4ML_CFLAGS, HLS4ML_CFLAGS.replace("-O3", level))


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


def call_library(lib_path: Path, function: str, sizes_in: list[int], sizes_out: list[int]):
    import ctypes

    library = ctypes.CDLL(str(lib_path))
    fn = getattr(library, function)
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p] * (len(sizes_in) + len(sizes_out))
    return fn
