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
tool fails) is written to error.json as {"stage", "message"} and exits with status 3.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

CHANNELS_LAST = "qonnx.custom_op.channels_last"
SOFTMAX_INPUT_INTEGER_BITS = 4
"""The stable softmax indexes its exp table with x_max - x in ufixed<18,4>: exp(-16) is below
the table's resolution, so the table spans [0, 16) and larger differences saturate."""


class StageError(Exception):
    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


class _stage:
    """`with _stage("conversion"):` logs the stage and turns its exceptions into StageError."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def __enter__(self) -> None:
        print(f"[tinyaccel] {self.stage} ...", flush=True)

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, StageError) or not isinstance(exc, Exception):
            return False
        traceback.print_exception(kind, exc, tb)
        raise StageError(self.stage, f"{type(exc).__name__}: {exc}") from exc


# ----- ONNX preparation -------------------------------------------------------------------


def _cap_onnx_ir_version() -> None:
    """qonnx executes single nodes through ONNX Runtime in models made with onnx.helper, which
    stamps onnx's newest IR version; cap it to what the installed ONNX Runtime reads (this
    process only)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    for version in range(onnx.IR_VERSION, 6, -1):
        probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        probe.ir_version = version
        try:
            ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001, S112 - ORT raises its own types for "unsupported IR version"
            continue
        onnx.IR_VERSION = version
        return


def _attr(node, name: str, default: Any = None) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def load_clean(path: Path, batch: int = 1):
    """The model with a fixed batch, through qonnx's clean-up and channels-last conversion."""
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    proto = onnx.load(str(path))
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_value = batch
    model = cleanup_model(ModelWrapper(proto))
    model = model.transform(ConvertToChannelsLastAndClean())
    model = model.transform(GemmToMatMul())
    return cleanup_model(model)


def pools_to_channels_last(model) -> int:
    """Move the NHWC->NCHW Transpose qonnx leaves before (Global)AveragePool / GlobalMaxPool
    behind it, as a channels-last pool (module doc of targets/hls4ml.py). Returns the count."""
    from onnx import helper

    graph = model.graph
    changed = 0
    for node in list(graph.node):
        if node.domain or node.op_type not in ("GlobalAveragePool", "AveragePool", "GlobalMaxPool"):
            continue
        producer = model.find_producer(node.input[0])
        if (producer is None or producer.op_type != "Transpose" or list(_attr(producer, "perm", [])) != [0, 3, 1, 2]
                or len(model.find_consumers(producer.output[0])) != 1):
            continue
        shape = model.get_tensor_shape(producer.input[0])
        if shape is None or len(shape) != 4:
            continue
        n, h, w, c = shape
        if node.op_type.startswith("Global"):
            kernel, strides = [h, w], [h, w]
        else:
            auto_pad = _attr(node, "auto_pad", b"NOTSET")
            auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
            if (_attr(node, "ceil_mode", 0) or auto_pad not in ("NOTSET", "VALID") or any(_attr(node, "pads", [0]))
                    or any(d != 1 for d in _attr(node, "dilations", [1, 1]))):
                continue
            kernel = list(_attr(node, "kernel_shape"))
            strides = list(_attr(node, "strides", [1, 1]))
        out_h, out_w = (h - kernel[0]) // strides[0] + 1, (w - kernel[1]) // strides[1] + 1
        op = "MaxPool" if "Max" in node.op_type else "AveragePool"
        consumers = model.find_consumers(node.output[0]) or []
        # A 1x1 result flattens the same in either layout: no Transpose needed (hls4ml's
        # transpose-before-flatten optimisation trips over the bias fusion that follows).
        direct = out_h * out_w == 1 and consumers and all(
            c.op_type == "Flatten" and _attr(c, "axis", 1) == 1 for c in consumers)
        pooled = node.output[0] if direct else node.output[0] + "_channels_last"
        pool = helper.make_node(op, [producer.input[0]], [pooled], name=node.name, domain=CHANNELS_LAST,
                                kernel_shape=kernel, strides=strides, pads=[0, 0, 0, 0])
        index = list(graph.node).index(node)
        graph.node.remove(node)
        if not direct:
            graph.node.insert(index, helper.make_node("Transpose", [pooled], [node.output[0]],
                                                      name=node.name + "_to_nchw", perm=[0, 3, 1, 2]))
        graph.node.insert(index, pool)
        graph.node.remove(producer)
        model.set_tensor_shape(pooled, [n, out_h, out_w, c])
        changed += 1
    return changed


# ----- 8-bit formats from calibration ranges ------------------------------------------------

ACTIVATION_OPS = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "Elu", "Selu",
                  "AveragePool", "GlobalAveragePool", "MaxPool", "GlobalMaxPool"}
"""Nodes whose outputs hls4ml stores in the default precision (activations); conv, dense and
add results stay `auto` (exact, like the int32 accumulators of integer hardware)."""


def integer_bits(max_abs: float, signed: bool) -> int:
    """Integer bits (sign included) for values up to max_abs."""
    bits = math.floor(math.log2(max_abs)) + 1 if max_abs > 0 else 0
    return bits + (1 if signed else 0)


def calibration_ranges(onnx_path: Path, calibration: np.ndarray) -> dict[str, tuple[float, float]]:
    """(min, max) of every tensor of the cleaned graph over `calibration`, by tensor name,
    computed with qonnx's executor on the graph cleaned at that batch size (its node and
    tensor names are those of the batch-1 graph hls4ml converts)."""
    import qonnx.core.onnx_exec as oxe

    model = load_clean(onnx_path, batch=len(calibration))
    context = oxe.execute_onnx(model, {model.graph.input[0].name: calibration.astype(np.float32)},
                               return_full_exec_context=True)
    return {name: (float(np.min(v)), float(np.max(v))) for name, v in context.items()
            if isinstance(v, np.ndarray) and v.size and v.dtype.kind == "f"}


def eight_bit_config(config: dict[str, Any], model, ranges: dict[str, tuple[float, float]], width: int) -> dict[str, str]:
    """Per-layer `width`-bit formats: weights and biases from their largest magnitude,
    activations from their calibrated range (unsigned when never negative). Returns what was set."""
    chosen: dict[str, str] = {}
    layers = config["LayerName"]

    def fmt(lo: float, hi: float, force_signed: bool = False) -> str:
        signed = force_signed or lo < 0
        return _fixed(signed, width, integer_bits(max(abs(lo), abs(hi)), signed))

    for node in model.graph.node:
        layer = layers.get(node.name)
        if layer is None:
            continue
        precision = layer.setdefault("Precision", {})
        params = [name for name in node.input[1:] if model.get_initializer(name) is not None]
        if node.op_type in ("Conv", "MatMul") and params:
            weights = model.get_initializer(params[0])
            precision["weight"] = chosen[f"{node.name}.weight"] = fmt(float(weights.min()), float(weights.max()), True)
            if len(params) > 1:
                bias = model.get_initializer(params[1])
                precision["bias"] = chosen[f"{node.name}.bias"] = fmt(float(bias.min()), float(bias.max()), True)
        elif node.op_type == "Add" and params:  # the bias of a MatMul (GemmToMatMul) becomes the Dense bias
            producer = model.find_producer(node.input[0])
            bias = model.get_initializer(params[0])
            if producer is not None and producer.op_type == "MatMul" and producer.name in layers:
                layers[producer.name].setdefault("Precision", {})["bias"] = chosen[f"{producer.name}.bias"] = \
                    fmt(float(bias.min()), float(bias.max()), True)
        elif node.op_type in ACTIVATION_OPS:
            # A pool moved behind its Transpose writes "<name>_channels_last": same values.
            tensor = node.output[0].removesuffix("_channels_last")
            if tensor in ranges:
                precision["result"] = chosen[node.name] = fmt(*ranges[tensor])
    return chosen


# ----- hls4ml configuration -----------------------------------------------------------------


def _fixed(signed: bool, width: int, integer: int) -> str:
    return f"{'' if signed else 'u'}fixed<{width},{integer},RND,SAT>"


def hls_config(model, spec: dict[str, Any], backend: str, ranges: dict[str, tuple[float, float]] | None = None,
               calibrated: dict[str, str] | None = None) -> dict[str, Any]:
    import hls4ml

    from .hls4ml import parse_fixed

    options = spec["options"]
    precision = parse_fixed(spec["precision"])
    config = hls4ml.utils.config_from_onnx_model(model, granularity="name", backend=backend,
                                                 default_precision=spec["precision"],
                                                 default_reuse_factor=options["reuse_factor"])
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
            layer["Precision"] = {"result": _fixed(False, precision.width, 0)}
            layer.update({
                "inp_norm_t": _fixed(False, 18, SOFTMAX_INPUT_INTEGER_BITS),
                "exp_table_t": _fixed(False, 18, 1),
                "accum_t": _fixed(False, 17 + sum_bits, sum_bits),
                "inv_inp_t": _fixed(False, 18, sum_bits),
                "inv_table_t": _fixed(False, 18, 1),
            })
        else:  # legacy: one table type; saturate instead of wrapping large exponentials
            layer["Precision"] = {"result": spec["precision"]}
            layer["table_t"] = "fixed<18,8,RND,SAT>"
    return config


# ----- build --------------------------------------------------------------------------------


def _tool_argv(tool: dict[str, str]) -> list[str]:
    flags = {"reset": 1, "csim": 0, "synth": 1, "cosim": 1, "validation": 0, "export": 0, "vsynth": 0, "fifo_opt": 0}
    if tool["name"] == "vivado_hls":
        return [tool["path"], "-f", "build_prj.tcl", " ".join(f"{k}={v}" for k, v in flags.items())]
    if tool["name"] == "vitis-run":
        return [tool["path"], "--tcl", "build_prj.tcl", "--mode", "hls"]
    return [tool["path"], "-f", "build_prj.tcl"]


def _write_build_options(project_dir: Path) -> None:
    """The Vitis backend's build_prj.tcl reads its switches from build_opt.tcl."""
    flags = {"reset": 1, "csim": 0, "synth": 1, "cosim": 1, "validation": 0, "export": 0, "vsynth": 0, "fifo_opt": 0}
    body = "".join(f"    {k} {v}\n" for k, v in flags.items())
    (project_dir / "build_opt.tcl").write_text("array set opt {\n" + body + "}\n")


def _run_logged(argv: list[str], cwd: Path, stage: str) -> None:
    """Run a tool with its output in this worker's log; nonzero exit is a StageError."""
    print(f"[tinyaccel] $ {' '.join(argv)}  (in {cwd})", flush=True)
    sys.stderr.flush()
    code = subprocess.run(argv, check=False, cwd=cwd, stdout=sys.stdout.fileno(), stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL).returncode
    if code != 0:
        raise StageError(stage, f"{argv[0]} exited with status {code}; its output is in the log")


def _call_library(lib_path: Path, function: str, sizes_in: list[int], sizes_out: list[int]):
    import ctypes

    library = ctypes.CDLL(str(lib_path))
    fn = getattr(library, function)
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p] * (len(sizes_in) + len(sizes_out))
    return fn


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

        _cap_onnx_ir_version()
    with _stage("qonnx clean-up"):
        original = onnx.load(spec["onnx"], load_external_data=False)
        initializers = {t.name for t in original.graph.initializer}
        onnx_inputs = [v for v in original.graph.input if v.name not in initializers]
        onnx_outputs = list(original.graph.output)
        model = load_clean(Path(spec["onnx"]))
        rewrites = pools_to_channels_last(model)
    ranges, calibrated = None, None
    if spec.get("calibration"):
        with _stage("calibration of the 8-bit formats"):
            data = np.load(spec["calibration"], allow_pickle=False)[: spec["calibration_samples"]]
            ranges = calibration_ranges(Path(spec["onnx"]), data)
            calibrated = {}
    with _stage("hls4ml conversion"):
        config = hls_config(model, spec, backend, ranges, calibrated)
        kwargs: dict[str, Any] = {"output_dir": str(build_dir / "hls"), "project_name": project, "backend": backend,
                                  "hls_config": config, "io_type": options["io_type"],
                                  "clock_period": options["clock_period"]}
        if options.get("part"):
            kwargs["part"] = options["part"]
        if spec.get("tb_inputs"):
            kwargs["input_data_tb"] = spec["tb_inputs"]
        hls_model = hls4ml.converters.convert_from_onnx_model(model, **kwargs)
        hls_model.write()
        sizes_in = [int(v.size()) for v in hls_model.get_input_variables()]
        sizes_out = [int(v.size()) for v in hls_model.get_output_variables()]
        layers = [[layer.name, layer.class_name] for layer in hls_model.get_layers()]
    seconds["convert"] = time.perf_counter() - start

    def per_sample(value) -> list[int]:
        return [d.dim_value for d in value.type.tensor_type.shape.dim][1:]

    if len(sizes_in) != len(onnx_inputs) or len(sizes_out) != len(onnx_outputs):
        raise StageError("hls4ml conversion", f"hls4ml made {len(sizes_in)} input(s) / {len(sizes_out)} output(s), "
                         f"the ONNX model has {len(onnx_inputs)} / {len(onnx_outputs)}")
    for kind, values, sizes in (("input", onnx_inputs, sizes_in), ("output", onnx_outputs, sizes_out)):
        for value, size in zip(values, sizes):
            if math.prod(per_sample(value)) != size:
                raise StageError("hls4ml conversion", f"{kind} {value.name!r}: ONNX per-sample shape {per_sample(value)} "
                                 f"but the HLS design has {size} values")

    project_dir = build_dir / "hls"
    start = time.perf_counter()
    _run_logged(["bash", "build_lib.sh"], project_dir, "g++ compilation of the generated HLS C++")
    libraries = sorted((project_dir / "firmware").glob(f"{project}-*.so"))
    if len(libraries) != 1:
        raise StageError("g++ compilation of the generated HLS C++", f"expected one {project}-*.so, found {len(libraries)}")
    seconds["compile"] = time.perf_counter() - start

    with _stage("first call of the compiled model"):
        fn = _call_library(libraries[0], f"{project}_float", sizes_in, sizes_out)
        buffers = [np.zeros(s, np.float32) for s in sizes_in + sizes_out]
        fn(*[b.ctypes.data for b in buffers])

    meta: dict[str, Any] = {
        "hls4ml": hls4ml.__version__, "project": project, "backend": backend,
        "library": str(libraries[0].relative_to(build_dir)), "function": f"{project}_float",
        "inputs": [{"name": v.name, "size": s, "shape": per_sample(v)} for v, s in zip(onnx_inputs, sizes_in)],
        "outputs": [{"name": v.name, "size": s, "shape": per_sample(v)} for v, s in zip(onnx_outputs, sizes_out)],
        "precision": spec["precision"], "label": spec["label"], "input_precision": spec["input_precision"],
        "input_precision_source": spec["input_precision_source"],
        "io_type": options["io_type"], "strategy": options["strategy"], "reuse_factor": options["reuse_factor"],
        "softmax": options["softmax"], "softmax_table_size": options["softmax_table_size"],
        "rewrites": rewrites, "layers": layers, "seconds": seconds, "calibrated_formats": calibrated,
    }

    if hls_tool:
        from ..hlsreport import (
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
            raise StageError("C/RTL co-simulation", f"{cosim.rtl} co-simulation status {cosim.status!r} in {cosim_path}")
        (build_dir / "perf.json").write_text(json.dumps(perf_fields(synth, cosim), indent=1))

    (build_dir / "hls4ml.json").write_text(json.dumps(meta, indent=1))
    print(f"[tinyaccel] build done: {json.dumps(seconds)}", flush=True)


# ----- run ----------------------------------------------------------------------------------


def run(build_dir: Path, run_dir: Path) -> None:
    meta = json.loads((build_dir / "hls4ml.json").read_text())
    sizes_in = [i["size"] for i in meta["inputs"]]
    sizes_out = [o["size"] for o in meta["outputs"]]
    xs = [np.load(run_dir / f"input_{i}.npy", allow_pickle=False) for i in range(len(sizes_in))]
    count = len(xs[0])
    for x, size, spec in zip(xs, sizes_in, meta["inputs"]):
        if len(x) != count or x[0].size != size:
            raise StageError("C simulation", f"input {spec['name']!r} has shape {x.shape}; the design takes {size} values per sample")
    flat = [np.ascontiguousarray(x.reshape(count, -1), dtype=np.float32) for x in xs]
    outputs = [np.zeros((count, size), np.float32) for size in sizes_out]
    fn = _call_library(build_dir / meta["library"], meta["function"], sizes_in, sizes_out)
    start = time.perf_counter()
    for s in range(count):
        fn(*[x[s].ctypes.data for x in flat], *[o[s].ctypes.data for o in outputs])
    seconds = time.perf_counter() - start
    for k, out in enumerate(outputs):
        np.save(run_dir / f"output_{k}.npy", out, allow_pickle=False)
    (run_dir / "done.json").write_text(json.dumps({"seconds": seconds, "samples": count}))
    print(f"[tinyaccel] C simulation of {count} samples: {seconds:.2f} s", flush=True)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "build":
        work, action = Path(argv[1]), lambda: build(Path(argv[1]))
    elif len(argv) == 3 and argv[0] == "run":
        work, action = Path(argv[2]), lambda: run(Path(argv[1]), Path(argv[2]))
    else:
        print(f"usage: python -m {__spec__.name if __spec__ else 'hls4ml_worker'} build BUILD_DIR | run BUILD_DIR RUN_DIR",
              file=sys.stderr)
        return 2
    try:
        action()
    except StageError as exc:
        (work / "error.json").write_text(json.dumps({"stage": exc.stage, "message": str(exc)}))
        print(f"[tinyaccel] {exc.stage} failed: {exc}", file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
