"""ONNX Runtime and model I/O helpers shared by goldens, quantization and the cpu target.

Models come with float inputs (ours) or integer inputs (QDQ graphs such as the
MLPerf Tiny int8 references). Test data is float; it is converted to what the
model's input wants using the scale and zero point of the DequantizeLinear that
consumes that input, and integer outputs are dequantized with the parameters of
the QuantizeLinear that produces them, so accuracy and Top-5 see real values.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .cache import remembered
from .errors import DataError
from .modelfiles import external_files

if TYPE_CHECKING:  # onnx loads when a graph is read, not with the plugin (a warm run reads none)
    import onnx

_LAYOUT_OPS = {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity"}


@lru_cache(maxsize=1)
def _np_types() -> dict[int, type[np.generic]]:
    from onnx import TensorProto as T

    return {
        T.FLOAT: np.float32,
        T.UINT8: np.uint8,
        T.INT8: np.int8,
        T.INT32: np.int32,
        T.INT64: np.int64,
        T.FLOAT16: np.float16,
        T.DOUBLE: np.float64,
    }


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: shape (None for symbolic dims), dtype, quantization."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype
    scale: float | None = None
    zero_point: int | None = None


def input_specs(path: Path) -> list[TensorSpec]:
    return [TensorSpec(*_decoded(s)) for s in _specs(path)[0]]


def output_specs(path: Path) -> list[TensorSpec]:
    return [TensorSpec(*_decoded(s)) for s in _specs(path)[1]]


def _decoded(kept: list[Any]) -> tuple[Any, ...]:
    name, shape, dtype, scale, zero_point = kept
    return name, tuple(shape), np.dtype(dtype), scale, zero_point


def _specs(path: Path) -> list[list[list[Any]]]:
    """[inputs, outputs] as [name, shape, dtype, scale, zero point] lists: remembered while the file is unchanged."""
    return remembered("specs", path, lambda: _read_specs(path))


def load_onnx(path: Path) -> onnx.ModelProto:
    """onnx.load with an error that names the file and says what to do; a model whose
    graph is empty or whose external data lies outside its folder is refused."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, OSError, ...
        raise DataError(f"{Path(path).name} is not a readable ONNX model ({exc}); re-export or restore it") from exc
    if not model.graph.node or not model.graph.output:
        raise DataError(f"{Path(path).name} has an empty graph (no nodes or no outputs); re-export the model")
    external_files(path)  # inside the model's folder and present, or a DataError that says which
    return model


def _read_specs(path: Path) -> list[list[list[Any]]]:
    from onnx import numpy_helper

    model = load_onnx(path)
    graph = model.graph
    consts = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute:
            consts[node.output[0]] = node.attribute[0].t
    initializer_names = {t.name for t in graph.initializer}

    def qparams(node: onnx.NodeProto | None) -> tuple[float | None, int | None]:
        if node is None or len(node.input) < 2 or node.input[1] not in consts:
            return None, None
        scale = numpy_helper.to_array(consts[node.input[1]]).reshape(-1)
        zp = (
            numpy_helper.to_array(consts[node.input[2]]).reshape(-1)
            if len(node.input) > 2 and node.input[2] in consts
            else np.zeros(1, np.int64)
        )
        if scale.size != 1:
            return None, None
        return float(scale[0]), int(zp[0])

    def spec(value: onnx.ValueInfoProto, qnode: onnx.NodeProto | None) -> list[Any]:
        ttype = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim]
        dtype = np.dtype(_np_types().get(ttype.elem_type, np.float32))
        scale, zp = qparams(qnode) if dtype.kind in "iu" else (None, None)
        return [value.name, shape, dtype.str, scale, zp]

    by_input: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        if n.input:
            by_input.setdefault(n.input[0], []).append(n)
    by_output = {out: n for n in graph.node for out in n.output}

    def dequantizer(name: str) -> onnx.NodeProto | None:
        """The DequantizeLinear reading `name`, looking through layout-only ops."""
        for node in by_input.get(name, []):
            if node.op_type == "DequantizeLinear":
                return node
            if node.op_type in _LAYOUT_OPS:
                found = dequantizer(node.output[0])
                if found is not None:
                    return found
        return None

    def quantizer(name: str) -> onnx.NodeProto | None:
        """The QuantizeLinear producing `name`, looking through layout-only ops."""
        node = by_output.get(name)
        while node is not None and node.op_type in _LAYOUT_OPS:
            node = by_output.get(node.input[0])
        return node if node is not None and node.op_type == "QuantizeLinear" else None

    inputs = [spec(v, dequantizer(v.name)) for v in graph.input if v.name not in initializer_names]
    outputs = [spec(v, quantizer(v.name)) for v in graph.output]
    return [inputs, outputs]


def to_model_inputs(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Check `x` against the model's single input and convert it to the input's dtype."""
    specs = input_specs(path)
    if len(specs) != 1:
        raise DataError(f"{path.name}: the model has {len(specs)} inputs; tinyaccel feeds single-input models")
    spec = specs[0]
    expected = spec.shape[1:]
    if x.ndim != len(spec.shape) or any(e is not None and e != got for e, got in zip(expected, x.shape[1:])):
        want = "[N, " + ", ".join("?" if e is None else str(e) for e in expected) + "]"
        raise DataError(
            f"input data has shape {list(x.shape)} but model input '{spec.name}' expects {want} (first axis = samples)"
        )
    if spec.dtype.kind == "f":
        if x.dtype.kind != "f":
            raise DataError(f"input data is {x.dtype} but model input '{spec.name}' is {spec.dtype}; store float data")
        x = x.astype(spec.dtype)
        if not np.isfinite(x).all():
            raise DataError(f"input data holds {int((~np.isfinite(x)).sum())} NaN/Inf values; fix the data file")
        return {spec.name: x}
    if x.dtype == spec.dtype:
        return {spec.name: x}
    if x.dtype.kind != "f" or spec.scale is None:
        raise DataError(
            f"input data is {x.dtype} but model input '{spec.name}' is {spec.dtype} with no DequantizeLinear to "
            f"take its scale from"
        )
    info = np.iinfo(spec.dtype)
    q = np.rint(x.astype(np.float32) / np.float32(spec.scale)) + spec.zero_point
    return {spec.name: np.clip(q, info.min, info.max).astype(spec.dtype)}


def dequantized(path: Path, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs as float: integer outputs scaled by their QuantizeLinear parameters."""
    result = {}
    for spec in output_specs(path):
        value = outputs[spec.name]
        if value.dtype.kind in "iu" and spec.scale is not None:
            value = (value.astype(np.float32) - np.float32(spec.zero_point or 0)) * np.float32(spec.scale)
        result[spec.name] = value.astype(np.float32, copy=False)
    return result


def create_session(
    source: Path | bytes,
    threads: int = 1,
    optimize: bool = True,
    arithmetic: str | None = None,
    config: dict[str, str] | None = None,
):
    """An ORT CPU session; single-threaded by default so timings are reproducible.

    `arithmetic` asks for int8 sums other than this CPU's own (`arithmetic_config`);
    `config` adds session configuration entries."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    entries = {**(arithmetic_config(arithmetic) if arithmetic else {}), **(config or {})}
    for key, value in entries.items():
        options.add_session_config_entry(key, value)
    name = source.name if isinstance(source, Path) else "the model"
    try:
        return ort.InferenceSession(
            str(source) if isinstance(source, Path) else source, options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise DataError(f"ONNX Runtime cannot load {name}: {exc}") from exc


def fixed_batch(session) -> int | None:
    """The batch size a session's model fixes on its input's first axis (None when it is dynamic)."""
    size = session.get_inputs()[0].shape[0]
    return size if isinstance(size, int) and size > 0 else None


def run_session(session, feed: dict[str, np.ndarray], batch: int = 256) -> dict[str, np.ndarray]:
    """Run all samples of `feed` in chunks: `batch` at a time, or the model's own batch size when its
    first axis is fixed (the last chunk padded with copies of its last sample, the padding dropped)."""
    ((name, x),) = feed.items()
    fixed = fixed_batch(session)
    step = fixed or batch
    names = [o.name for o in session.get_outputs()]
    chunks = []
    for i in range(0, len(x), step):
        part = x[i : i + step]
        short = step - len(part) if fixed else 0
        if short:
            part = np.concatenate([part, np.repeat(part[-1:], short, axis=0)])
        values = session.run(names, {name: part})
        chunks.append([v[: len(v) - short] for v in values])
    if len(chunks) == 1:  # one batch (a throughput run): its outputs as ONNX Runtime returned them, not a copy
        return dict(zip(names, chunks[0], strict=True))
    return {n: np.concatenate([c[k] for c in chunks]) for k, n in enumerate(names)}


ARITHMETICS = ("exact", "avx2_int16_pairs")
"""The int8 sums ONNX Runtime's CPU kernels can make (see emulator/accumulation.py)."""
_PRECISE = {"session.x64quantprecision": "1"}
"""ONNX Runtime's own switch to exact int8 sums on x86 CPUs without VNNI (slower uint8 x uint8 kernels)."""


class ArithmeticUnavailable(DataError):
    """This process's ONNX Runtime cannot make the asked int8 arithmetic (AVX2 pairs on a VNNI CPU)."""


def arithmetic_config(arithmetic: str) -> dict[str, str]:
    """Session configuration that makes this machine's ONNX Runtime sum int8 products in `arithmetic`.

    Exact sums are always possible: native on VNNI and ARM, `session.x64quantprecision = 1` on AVX2.
    The saturating AVX2 pairs exist only on a CPU without VNNI (or under an emulated one: see
    `goldens/arithmetic.py`), hence ArithmeticUnavailable elsewhere.
    """
    if arithmetic not in ARITHMETICS:
        raise ValueError(f"int8 arithmetic {arithmetic!r} is not one of {ARITHMETICS}")
    native = int8_accumulation()
    if arithmetic == native:
        return {}
    if arithmetic == "exact":
        return dict(_PRECISE)
    raise ArithmeticUnavailable(
        f"this CPU sums int8 products exactly; ONNX Runtime's {arithmetic} arithmetic needs a CPU without VNNI"
    )


PROBE_MODEL = (
    b'\x08\x08:j\n\x18\n\x01a\n\x01b\x12\x01y"\rMatMulInteger\x12\x17int8_accumulation_probe*\x0f\x08\x04\x08\x01'
    b"\x10\x03B\x01bJ\x04\x7f\x7f\x00\x00Z\x11\n\x01a\x12\x0c\n\n\x08\x02\x12\x06\n\x00\n\x02\x08\x04b\x11\n\x01y\x12\x0c\n\n"
    b"\x08\x06\x12\x06\n\x00\n\x02\x08\x01B\x04\n\x00\x10\r"
)
"""The int8 probe, serialized (ir_version 8, opset 13): y[N, 1] int32 = MatMulInteger(a[N, 4] uint8,
b = [[127], [127], [0], [0]] int8). Bytes, so that every run need not import onnx to build it;
tests/test_warm_run.py builds it with onnx.helper and compares."""


@lru_cache(maxsize=1)
def int8_accumulation() -> str:
    """How this machine's ONNX Runtime sums uint8 x int8 products: "exact" (the ONNX
    specification; VNNI and ARM CPUs) or "avx2_int16_pairs" (x86 AVX2 without VNNI).

    Measured, not guessed from CPU flags: one MatMulInteger whose pair of products
    (255*127 twice) only fits when nothing saturates. Goldens record the answer, so
    the emulator can reproduce the arithmetic of the CPU that made them.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # one thread: a default session starts a pool of a thread per core, which spins after the run
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(PROBE_MODEL, options, providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"a": np.tile(np.array([255, 255, 0, 0], np.uint8), (16, 1))})
    value = int(y[0, 0])
    if value == 2 * 255 * 127:
        return "exact"
    if value == 32767:
        return "avx2_int16_pairs"
    raise DataError(
        f"ONNX Runtime's int8 kernels sum 255*127 + 255*127 to {value}: an arithmetic tinyaccel does not know; "
        "please report it with your CPU model and ONNX Runtime version"
    )
