"""Op registry: one builder per ONNX op, run once per node at load time.

A builder validates the node's attributes and constant inputs (raising
UnsupportedOpError for anything it cannot execute, so a model fails at load
time, not halfway through a run), precomputes what it can (integer weights
minus zero points, requantization scales, lookup tables) and returns a kernel:
a function from the node's runtime input values to its output values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import onnx
from onnx import helper, numpy_helper

from . import accumulation as A
from . import kernels as K
from .errors import UnsupportedOpError

Value = np.ndarray
Kernel = Callable[[list[Value | None]], list[Value]]
Builder = Callable[["BuildContext"], Kernel]

_MS = "com.microsoft"
_U8, _I8 = np.dtype(np.uint8), np.dtype(np.int8)
_QTYPES = (_U8, _I8, np.dtype(np.uint16), np.dtype(np.int16))


@dataclass(frozen=True)
class OpSpec:
    builder: Builder
    requantizes: bool
    """True when the op rounds to an integer grid, so a `rounding` override applies."""


REGISTRY: dict[tuple[str, str], OpSpec] = {}


def register(*op_types: str, domain: str = "", requantizes: bool = False) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        for op in op_types:
            REGISTRY[(domain, op)] = OpSpec(fn, requantizes)
        return fn

    return deco


def lookup_op(domain: str, op_type: str) -> OpSpec | None:
    return REGISTRY.get(("" if domain in ("", "ai.onnx") else domain, op_type))


def supported_ops() -> list[str]:
    """Sorted op names ('com.microsoft.QGemm' for contrib ops)."""
    return sorted(op if not dom else f"{dom}.{op}" for dom, op in REGISTRY)


@dataclass
class BuildContext:
    """What a builder may look at: the node, the constants known so far, the opset."""

    node: onnx.NodeProto
    name: str
    model: str
    opset: int
    consts: Mapping[str, Value]
    rounding: str = "half_even"
    accumulation: str = "exact"

    @property
    def op(self) -> str:
        return self.node.op_type

    def fail(self, problem: str) -> NoReturn:
        raise UnsupportedOpError(self.model, self.name, self.op, problem)

    def attrs(self, **defaults: Any) -> dict[str, Any]:
        """The node's attributes with defaults; any attribute not listed is unsupported."""
        values = dict(defaults)
        for attr in self.node.attribute:
            if attr.name not in defaults:
                self.fail(f"attribute {attr.name}={_show(helper.get_attribute_value(attr))} is not supported by the tinyaccel emulator")
            value = helper.get_attribute_value(attr)
            if isinstance(value, bytes):
                value = value.decode()
            elif isinstance(value, onnx.TensorProto):
                value = numpy_helper.to_array(value)
            elif isinstance(value, list):
                value = [v.decode() if isinstance(v, bytes) else v for v in value]
            values[attr.name] = value
        return values

    def unsupported_value(self, attr: str, value: Any, why: str = "") -> NoReturn:
        self.fail(f"attribute {attr}={_show(value)} is not supported by the tinyaccel emulator" + (f" ({why})" if why else ""))

    def has(self, index: int) -> bool:
        return index < len(self.node.input) and bool(self.node.input[index])

    def const(self, index: int, what: str) -> Value:
        """A constant input (initializer or folded); executing hardware needs these fixed."""
        if not self.has(index):
            self.fail(f"input {index} ({what}) is missing")
        if self.node.input[index] not in self.consts:
            self.fail(f"input '{self.node.input[index]}' ({what}) must be a constant initializer for the tinyaccel emulator")
        return self.consts[self.node.input[index]]

    def opt_const(self, index: int, what: str) -> Value | None:
        return self.const(index, what) if self.has(index) else None

    def n_inputs(self, low: int, high: int) -> None:
        n = len(self.node.input)
        if not low <= n <= high:
            self.fail(f"expects {low}..{high} inputs, has {n}")


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, onnx.TensorProto):
        return "<tensor>"
    return str(value)


def _scalar(ctx: BuildContext, value: Value, what: str) -> Value:
    if value.size != 1:
        ctx.fail(f"{what} must be a scalar (per-tensor), got shape {list(value.shape)}")
    return value.reshape(())


def _qdtype(ctx: BuildContext, zp: Value | None, default: np.dtype = _U8) -> np.dtype:
    dtype = zp.dtype if zp is not None else default
    if dtype not in _QTYPES:
        ctx.fail(f"quantized type {dtype} is not supported by the tinyaccel emulator (uint8, int8, uint16, int16)")
    return np.dtype(dtype)


def _f32(value: Value) -> Value:
    return np.asarray(value, dtype=np.float32)


# =========================================================================== float elementwise

_UNARY: dict[str, Callable[[Value], Value]] = {
    "Relu": lambda x: np.maximum(x, np.zeros((), x.dtype)),
    "Sigmoid": K.sigmoid,
    "Tanh": np.tanh,
    "Exp": np.exp,
    "Log": np.log,
    "Sqrt": np.sqrt,
    "Neg": np.negative,
    "Abs": np.abs,
    "Reciprocal": lambda x: np.reciprocal(x),
    "Floor": np.floor,
    "Ceil": np.ceil,
    "Identity": lambda x: x,
}


@register(*_UNARY)
def _unary(ctx: BuildContext) -> Kernel:
    ctx.attrs()
    ctx.n_inputs(1, 1)
    fn = _UNARY[ctx.op]
    return lambda v: [fn(v[0])]


@register("Dropout")
def _dropout(ctx: BuildContext) -> Kernel:
    ctx.attrs(seed=0, ratio=0.5, is_test=1)
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        ctx.fail("the mask output is not supported (inference only)")
    return lambda v: [v[0]]


@register("LeakyRelu")
def _leaky(ctx: BuildContext) -> Kernel:
    alpha = np.float32(ctx.attrs(alpha=0.01)["alpha"])
    return lambda v: [np.where(v[0] >= 0, v[0], v[0] * alpha)]


@register("HardSigmoid")
def _hard_sigmoid(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(alpha=0.2, beta=0.5)
    alpha, beta = np.float32(a["alpha"]), np.float32(a["beta"])
    return lambda v: [np.clip(v[0] * alpha + beta, 0, 1).astype(v[0].dtype)]


@register("Clip")
def _clip(ctx: BuildContext) -> Kernel:
    if ctx.opset < 11:
        a = ctx.attrs(min=-3.4028234663852886e38, max=3.4028234663852886e38)
        lo, hi = np.float32(a["min"]), np.float32(a["max"])
        return lambda v: [np.clip(v[0], lo, hi)]
    ctx.attrs()
    lo_c = ctx.const(1, "min") if ctx.has(1) else None
    hi_c = ctx.const(2, "max") if ctx.has(2) else None

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        lo = lo_c.astype(x.dtype) if lo_c is not None else None
        hi = hi_c.astype(x.dtype) if hi_c is not None else None
        return [np.clip(x, lo, hi) if (lo is not None or hi is not None) else x]

    return run


def _int_div(a: Value, b: Value) -> Value:
    if a.dtype.kind in "iu":
        return np.trunc(a / b).astype(np.result_type(a, b))
    return a / b


_BINARY: dict[str, Callable[[Value, Value], Value]] = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": _int_div,
    "Pow": lambda a, b: np.power(a, b).astype(a.dtype),
    "Equal": np.equal,
    "Less": np.less,
    "Greater": np.greater,
}


@register(*_BINARY)
def _binary(ctx: BuildContext) -> Kernel:
    ctx.attrs()
    ctx.n_inputs(2, 2)
    fn = _BINARY[ctx.op]
    return lambda v: [np.asarray(fn(v[0], v[1]))]


@register("Max", "Min", "Sum", "Mean")
def _variadic(ctx: BuildContext) -> Kernel:
    ctx.attrs()
    op = ctx.op

    def run(v: list[Value | None]) -> list[Value]:
        xs = [x for x in v if x is not None]
        if op == "Max":
            out = xs[0]
            for x in xs[1:]:
                out = np.maximum(out, x)
        elif op == "Min":
            out = xs[0]
            for x in xs[1:]:
                out = np.minimum(out, x)
        else:
            out = xs[0]
            for x in xs[1:]:
                out = out + x
            if op == "Mean":
                out = out / np.asarray(len(xs), dtype=out.dtype)
        return [out]

    return run


@register("Softmax", "LogSoftmax")
def _softmax(ctx: BuildContext) -> Kernel:
    legacy = ctx.opset < 13
    axis = ctx.attrs(axis=1 if legacy else -1)["axis"]
    log = ctx.op == "LogSoftmax"

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        ax = axis % x.ndim
        if legacy:  # opset < 13: softmax over the flattened trailing dims
            flat = x.reshape(int(np.prod(x.shape[:ax])), -1)
            y = K.softmax(flat, 1)
            y = np.log(y) if log else y
            return [y.reshape(x.shape).astype(x.dtype)]
        y = K.softmax(x, ax)
        return [(np.log(y) if log else y).astype(x.dtype)]

    return run


@register("BatchNormalization")
def _batchnorm(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(epsilon=1e-5, momentum=0.9, training_mode=0, spatial=1)
    if a["training_mode"]:
        ctx.unsupported_value("training_mode", a["training_mode"], "inference only")
    if len([o for o in ctx.node.output if o]) > 1:
        ctx.fail("running mean/var outputs are not supported (inference only)")
    scale, bias, mean, var = (ctx.const(i, n).astype(np.float32) for i, n in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var")))
    mul = scale / np.sqrt(var + np.float32(a["epsilon"]))
    add = bias - mean * mul

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return [(x * mul.reshape(shape) + add.reshape(shape)).astype(x.dtype)]

    return run


# =========================================================================== matrix products


@register("MatMul")
def _matmul(ctx: BuildContext) -> Kernel:
    ctx.attrs()
    return lambda v: [np.matmul(v[0], v[1])]


@register("Gemm")
def _gemm(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(alpha=1.0, beta=1.0, transA=0, transB=0, broadcast=1)
    alpha, beta = np.float32(a["alpha"]), np.float32(a["beta"])
    ta, tb = bool(a["transA"]), bool(a["transB"])

    def run(v: list[Value | None]) -> list[Value]:
        A, B, C = v[0], v[1], (v[2] if len(v) > 2 else None)
        assert A is not None and B is not None
        y = np.matmul(A.T if ta else A, B.T if tb else B)
        if alpha != 1:
            y = y * alpha
        if C is not None:
            y = y + (C * beta if beta != 1 else C)
        return [y.astype(A.dtype, copy=False)]

    return run


# =========================================================================== convolution and pooling


@dataclass(frozen=True)
class Window:
    """Validated window geometry (conv or pool), normalized to 2-D."""

    rank: int
    kernel: tuple[int, int] | None
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[int, int, int, int]
    auto_pad: str

    def pads_for(self, hw: Sequence[int], kernel: Sequence[int]) -> tuple[int, int, int, int]:
        if self.auto_pad in ("NOTSET", "VALID"):
            return self.pads
        upper = self.auto_pad == "SAME_UPPER"
        (t, b), (l, r) = (K.same_pads(hw[a], kernel[a], self.strides[a], self.dilations[a], upper) for a in (0, 1))
        return (t, l, b, r)


def _window(ctx: BuildContext, a: dict[str, Any], rank: int | None, kernel: Sequence[int] | None) -> Window:
    """Check kernel/strides/pads/dilations/auto_pad; 1-D windows become 1xK."""
    if kernel is not None:
        rank = len(kernel)
    if rank not in (1, 2):
        ctx.unsupported_value("kernel_shape", list(kernel) if kernel is not None else None, "only 1-D and 2-D windows are supported")
    auto_pad = a.get("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        ctx.unsupported_value("auto_pad", auto_pad)

    def vec(name: str, default: int, length: int) -> list[int]:
        value = a.get(name)
        if value is None or value == []:
            return [default] * length
        if len(value) != length:
            ctx.unsupported_value(name, value, f"expected {length} values")
        if any(int(x) < (0 if name == "pads" else 1) for x in value):
            ctx.unsupported_value(name, value)
        return [int(x) for x in value]

    strides, dil, pads = vec("strides", 1, rank), vec("dilations", 1, rank), vec("pads", 0, 2 * rank)
    if auto_pad != "NOTSET" and any(pads):
        ctx.fail(f"attribute auto_pad={auto_pad} together with explicit pads is not valid ONNX")
    if rank == 1:
        return Window(1, (1, kernel[0]) if kernel else None, (1, strides[0]), (1, dil[0]), (0, pads[0], 0, pads[1]), auto_pad)
    return Window(2, (kernel[0], kernel[1]) if kernel else None, (strides[0], strides[1]), (dil[0], dil[1]), (pads[0], pads[1], pads[2], pads[3]), auto_pad)


def _as_2d(x: Value, rank: int) -> Value:
    return x[:, :, None, :] if rank == 1 else x


def _from_2d(y: Value, rank: int) -> Value:
    return y[:, :, 0, :] if rank == 1 else y


def _check_rank(ctx: BuildContext, x: Value, win: Window, what: str = "input") -> None:
    if x.ndim != win.rank + 2:
        raise ValueError(f"{ctx.model}: node '{ctx.name}' ({ctx.op}): {what} has shape {list(x.shape)}, expected rank {win.rank + 2}")


def _conv_attrs(ctx: BuildContext, w: Value | None) -> tuple[Window, int]:
    a = ctx.attrs(auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None)
    kernel = a["kernel_shape"] or (list(w.shape[2:]) if w is not None else None)
    if kernel is None:
        ctx.fail("kernel_shape is needed when the weights are not constant")
    if w is not None and list(w.shape[2:]) != list(kernel):
        ctx.unsupported_value("kernel_shape", kernel, f"weights have spatial shape {list(w.shape[2:])}")
    group = int(a["group"])
    if group < 1 or (w is not None and w.shape[0] % group):
        ctx.unsupported_value("group", group)
    return _window(ctx, a, None, kernel), group


@register("Conv")
def _conv(ctx: BuildContext) -> Kernel:
    ctx.n_inputs(2, 3)
    win, group = _conv_attrs(ctx, ctx.consts.get(ctx.node.input[1]))

    def run(v: list[Value | None]) -> list[Value]:
        x, w, b = v[0], v[1], (v[2] if len(v) > 2 else None)
        assert x is not None and w is not None
        _check_rank(ctx, x, win)
        x2, w2 = _as_2d(x, win.rank), _as_2d(w, win.rank)
        dtype = x.dtype
        y = K.conv2d(x2, w2.astype(dtype, copy=False), win.strides, win.pads_for(x2.shape[2:], w2.shape[2:]), win.dilations, group, dtype.type)
        if b is not None:
            y += b.astype(dtype).reshape(1, -1, 1, 1)
        return [_from_2d(y, win.rank)]

    return run


def _pool_attrs(ctx: BuildContext, extra: dict[str, Any]) -> tuple[Window, dict[str, Any]]:
    a = ctx.attrs(auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None, strides=None, **extra)
    if not a["kernel_shape"]:
        ctx.fail("kernel_shape is required")
    return _window(ctx, a, None, a["kernel_shape"]), a


@register("MaxPool")
def _maxpool(ctx: BuildContext) -> Kernel:
    win, a = _pool_attrs(ctx, {"storage_order": 0})
    if a["storage_order"]:
        ctx.unsupported_value("storage_order", a["storage_order"])
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        ctx.fail("the Indices output is not supported by the tinyaccel emulator")
    assert win.kernel is not None
    kernel = win.kernel

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        _check_rank(ctx, x, win)
        x2 = _as_2d(x, win.rank)
        pads = win.pads_for(x2.shape[2:], kernel)
        return [_from_2d(K.max_pool2d(x2, kernel, win.strides, pads, win.dilations, bool(a["ceil_mode"])), win.rank)]

    return run


@register("AveragePool")
def _avgpool(ctx: BuildContext) -> Kernel:
    win, a = _pool_attrs(ctx, {"count_include_pad": 0})
    assert win.kernel is not None
    kernel = win.kernel
    count = "padded" if a["count_include_pad"] else "inside"

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        _check_rank(ctx, x, win)
        x2 = _as_2d(x, win.rank)
        pads = win.pads_for(x2.shape[2:], kernel)
        total, n = K.avg_pool2d_parts(x2, kernel, win.strides, pads, win.dilations, bool(a["ceil_mode"]), count)
        return [_from_2d(total / n, win.rank)]

    return run


@register("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(ctx: BuildContext) -> Kernel:
    ctx.attrs()
    is_max = ctx.op == "GlobalMaxPool"

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        axes = tuple(range(2, x.ndim))
        return [x.max(axis=axes, keepdims=True) if is_max else x.mean(axis=axes, keepdims=True, dtype=x.dtype)]

    return run


# =========================================================================== reductions


@register("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin")
def _reduce(ctx: BuildContext) -> Kernel:
    axes_as_input = ctx.opset >= 18 or (ctx.op == "ReduceSum" and ctx.opset >= 13)
    a = ctx.attrs(keepdims=1, noop_with_empty_axes=0) if axes_as_input else ctx.attrs(keepdims=1, axes=None)
    axes = ctx.const(1, "axes") if axes_as_input and ctx.has(1) else a.get("axes")
    axes_t = tuple(int(x) for x in np.asarray(axes).reshape(-1)) if axes is not None and np.asarray(axes).size else None
    if axes_t is None and a.get("noop_with_empty_axes"):
        return lambda v: [v[0]]
    keep = bool(a["keepdims"])
    fn = {"ReduceMean": np.mean, "ReduceSum": np.sum, "ReduceMax": np.max, "ReduceMin": np.min}[ctx.op]

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        return [np.asarray(fn(x, axis=axes_t, keepdims=keep)).astype(x.dtype, copy=False)]

    return run


# =========================================================================== shape and data movement


def _int_list(value: Value | Sequence[int] | None) -> list[int]:
    return [] if value is None else [int(x) for x in np.asarray(value).reshape(-1)]


@register("Flatten")
def _flatten(ctx: BuildContext) -> Kernel:
    axis = ctx.attrs(axis=1)["axis"]

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        ax = axis % x.ndim if x.ndim else 0
        return [x.reshape(int(np.prod(x.shape[:ax])), -1)]

    return run


@register("Reshape")
def _reshape(ctx: BuildContext) -> Kernel:
    allowzero = ctx.attrs(allowzero=0)["allowzero"] if ctx.opset >= 14 else ctx.attrs(shape=None)["shape"] and 0
    if ctx.opset < 5:
        ctx.fail("Reshape-1 (shape as an attribute) is not supported by the tinyaccel emulator")

    def run(v: list[Value | None]) -> list[Value]:
        x, shape = v[0], _int_list(v[1])
        assert x is not None
        if not allowzero:
            shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return [x.reshape(shape)]

    return run


@register("Transpose")
def _transpose(ctx: BuildContext) -> Kernel:
    perm = ctx.attrs(perm=None)["perm"]
    # A view: kernels accept any memory layout (an NHWC input transposed to NCHW costs nothing).
    return lambda v: [np.transpose(v[0], perm)]


@register("Squeeze", "Unsqueeze")
def _squeeze(ctx: BuildContext) -> Kernel:
    if ctx.opset >= 13:
        ctx.attrs()
        axes = _int_list(ctx.const(1, "axes")) if ctx.has(1) else None
    else:
        axes = ctx.attrs(axes=None)["axes"]
    unsq = ctx.op == "Unsqueeze"
    if unsq and not axes:
        ctx.fail("Unsqueeze needs axes")

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        if unsq:
            assert axes is not None
            rank = x.ndim + len(axes)
            return [np.expand_dims(x, tuple(sorted(a % rank for a in axes)))]
        if axes is None:
            return [np.squeeze(x)]
        return [np.squeeze(x, axis=tuple(a % x.ndim for a in axes))]

    return run


@register("Concat")
def _concat(ctx: BuildContext) -> Kernel:
    axis = ctx.attrs(axis=None)["axis"]
    if axis is None:
        ctx.fail("attribute axis is required")
    return lambda v: [np.concatenate([x for x in v if x is not None], axis=axis)]


@register("Shape")
def _shape(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(start=0, end=None)
    return lambda v: [np.array(v[0].shape[a["start"] : a["end"]], dtype=np.int64)]


@register("Gather")
def _gather(ctx: BuildContext) -> Kernel:
    axis = ctx.attrs(axis=0)["axis"]

    def run(v: list[Value | None]) -> list[Value]:
        x, idx = v[0], v[1]
        assert x is not None and idx is not None
        ax = axis % x.ndim
        idx = np.where(idx < 0, idx + x.shape[ax], idx)
        return [np.take(x, idx, axis=ax)]

    return run


_ONNX_TO_NP = {
    onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64, onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.INT64: np.int64, onnx.TensorProto.INT32: np.int32, onnx.TensorProto.INT16: np.int16,
    onnx.TensorProto.INT8: np.int8, onnx.TensorProto.UINT8: np.uint8, onnx.TensorProto.UINT16: np.uint16,
    onnx.TensorProto.BOOL: np.bool_,
}


@register("Cast")
def _cast(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(to=None, saturate=1)
    if a["to"] not in _ONNX_TO_NP:
        ctx.unsupported_value("to", a["to"])
    dtype = _ONNX_TO_NP[a["to"]]
    return lambda v: [np.asarray(v[0]).astype(dtype)]


@register("Constant")
def _constant(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(value=None, value_float=None, value_floats=None, value_int=None, value_ints=None, sparse_value=None)
    if a["sparse_value"] is not None:
        ctx.unsupported_value("sparse_value", "<sparse>")
    if a["value"] is not None:
        value = np.asarray(a["value"])
    elif a["value_float"] is not None:
        value = np.array(a["value_float"], dtype=np.float32)
    elif a["value_floats"] is not None:
        value = np.array(a["value_floats"], dtype=np.float32)
    elif a["value_int"] is not None:
        value = np.array(a["value_int"], dtype=np.int64)
    elif a["value_ints"] is not None:
        value = np.array(a["value_ints"], dtype=np.int64)
    else:
        ctx.fail("Constant without a value")
    return lambda v: [value]


@register("ConstantOfShape")
def _constant_of_shape(ctx: BuildContext) -> Kernel:
    value = ctx.attrs(value=None)["value"]
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return lambda v: [np.full(_int_list(v[0]), fill[0], dtype=fill.dtype)]


@register("Slice")
def _slice(ctx: BuildContext) -> Kernel:
    if ctx.opset < 10:
        a = ctx.attrs(starts=None, ends=None, axes=None)
        fixed = (a["starts"], a["ends"], a["axes"], None)
    else:
        ctx.attrs()
        fixed = None

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        if fixed is not None:
            starts, ends, axes, steps = fixed
        else:
            starts, ends = _int_list(v[1]), _int_list(v[2])
            axes = _int_list(v[3]) if len(v) > 3 and v[3] is not None else None
            steps = _int_list(v[4]) if len(v) > 4 and v[4] is not None else None
        axes = list(range(len(starts))) if axes is None else axes
        steps = [1] * len(starts) if steps is None else steps
        index = [slice(None)] * x.ndim
        for s, e, ax, st in zip(starts, ends, axes, steps):
            index[ax % x.ndim] = slice(s, e, st)  # Python clamps out-of-range starts/ends as ONNX does
        return [x[tuple(index)]]

    return run


@register("Pad")
def _pad(ctx: BuildContext) -> Kernel:
    if ctx.opset < 11:
        a = ctx.attrs(mode="constant", pads=None, value=0.0)
        pads_c: list[int] | None = a["pads"]
        value_c: Value | None = np.float32(a["value"])
        axes_c = None
    else:
        a = ctx.attrs(mode="constant")
        pads_c = _int_list(ctx.const(1, "pads"))
        value_c = ctx.const(2, "constant_value") if ctx.has(2) else None
        axes_c = _int_list(ctx.const(3, "axes")) if ctx.has(3) else None
    mode = a["mode"]
    if mode not in ("constant", "reflect", "edge"):
        ctx.unsupported_value("mode", mode)

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None and pads_c is not None
        axes = list(range(x.ndim)) if axes_c is None else [ax % x.ndim for ax in axes_c]
        n = len(axes)
        width = [(0, 0)] * x.ndim
        for i, ax in enumerate(axes):
            width[ax] = (pads_c[i], pads_c[i + n])
        if any(b < 0 or e < 0 for b, e in width):
            index = tuple(slice(-b if b < 0 else None, e if e < 0 else None) for b, e in width)
            x = x[index]
            width = [(max(b, 0), max(e, 0)) for b, e in width]
        if mode == "constant":
            fill = value_c.reshape(()).astype(x.dtype) if value_c is not None else x.dtype.type(0)
            return [np.pad(x, width, mode="constant", constant_values=fill)]
        return [np.pad(x, width, mode=mode)]

    return run


# =========================================================================== quantization: QuantizeLinear / DequantizeLinear


def _axis_shape(scale: Value, axis: int, ndim: int) -> tuple[int, ...]:
    if scale.ndim == 0 or scale.size == 1:
        return ()
    shape = [1] * ndim
    shape[axis % ndim] = scale.size
    return tuple(shape)


@register("QuantizeLinear", requantizes=True)
def _quantize(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(axis=1, saturate=1, block_size=0, output_dtype=0)
    if a["block_size"]:
        ctx.unsupported_value("block_size", a["block_size"], "blocked quantization")
    scale = _f32(ctx.const(1, "y_scale"))
    zp = ctx.opt_const(2, "y_zero_point")
    if zp is None and a["output_dtype"]:
        if a["output_dtype"] not in _ONNX_TO_NP:
            ctx.unsupported_value("output_dtype", a["output_dtype"])
        zp = np.zeros((), _ONNX_TO_NP[a["output_dtype"]])
    dtype = _qdtype(ctx, zp)
    zp = np.zeros((), dtype) if zp is None else zp
    if zp.size != scale.size and zp.size != 1:
        ctx.fail("y_scale and y_zero_point have different sizes")
    rounding, axis = ctx.rounding, int(a["axis"])

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        shape = _axis_shape(scale, axis, x.ndim)
        s = scale.reshape(shape) if shape else scale.reshape(())
        z = zp.reshape(shape) if shape and zp.size > 1 else zp.reshape(())
        return [K.quantize_linear(x, s, z, dtype, rounding)]

    return run


@register("DequantizeLinear")
def _dequantize(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(axis=1, block_size=0)
    if a["block_size"]:
        ctx.unsupported_value("block_size", a["block_size"], "blocked quantization")
    scale = ctx.const(1, "x_scale")
    if scale.dtype != np.float32:
        ctx.fail(f"x_scale of type {scale.dtype} is not supported by the tinyaccel emulator (float32 only)")
    zp_c = ctx.opt_const(2, "x_zero_point")
    axis = int(a["axis"])

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        shape = _axis_shape(scale, axis, x.ndim)
        s = scale.reshape(shape) if shape else scale.reshape(())
        zp = np.zeros((), x.dtype) if zp_c is None else zp_c
        z = zp.reshape(shape) if shape and zp.size > 1 else zp.reshape(())
        return [K.dequantize_linear(x, s, z)]

    return run


# =========================================================================== quantization: QOperator kernels


@dataclass(frozen=True)
class QParams:
    """Scale (float32) and zero point of one quantized tensor."""

    scale: Value
    zero_point: Value
    dtype: np.dtype


def _qparams(ctx: BuildContext, scale_i: int, zp_i: int, what: str, per_channel: bool = False, default: np.dtype = _U8) -> QParams:
    scale = _f32(ctx.const(scale_i, f"{what}_scale"))
    zp = ctx.opt_const(zp_i, f"{what}_zero_point")
    dtype = _qdtype(ctx, zp, default)
    zp = np.zeros((), dtype) if zp is None else zp
    if not per_channel:
        scale, zp = _scalar(ctx, scale, f"{what}_scale"), _scalar(ctx, zp, f"{what}_zero_point")
    return QParams(scale.reshape(-1) if per_channel else scale, zp.reshape(-1) if per_channel else zp, dtype)


def _check_input_dtype(ctx: BuildContext, x: Value, q: QParams, what: str) -> None:
    if x.dtype != q.dtype:
        raise ValueError(f"{ctx.model}: node '{ctx.name}' ({ctx.op}): {what} is {x.dtype}, its zero point is {q.dtype}")


def _int_operand(x: Value, zp: Value, dtype: type[np.generic] = np.float64) -> Value:
    """x - zero point as exact integers in `dtype` (float32/float64 for BLAS, int32 for taps)."""
    out = x.astype(dtype)
    out -= zp.astype(dtype)
    return out


def _acc_dtype(xq: QParams, w_int: Value, out_axis: int, depthwise: bool = False) -> type[np.generic]:
    """Accumulator type that holds the exact integer dot products.

    Products of 8-bit operands are exact in float32, and so is every partial sum
    below 2^24, whatever order BLAS adds them in; larger layers use float64
    (exact below 2^53). Depthwise taps accumulate in int32 directly.
    """
    if depthwise:
        return np.int32
    info = np.iinfo(xq.dtype)
    x_max = float(max(abs(info.min - int(xq.zero_point)), abs(info.max - int(xq.zero_point))))
    return np.float32 if K.exact_in_float32(x_max, w_int, out_axis) else np.float64


def _add_bias(acc: Value, bias: Value) -> Value:
    """acc + int32 bias, exactly: as an int32 accumulator (acc holds exact integers)."""
    if acc.dtype == np.float64:
        return acc + bias.astype(np.float64)
    out = acc.astype(np.int32)
    out += bias
    return out


@register("QLinearConv", requantizes=True)
def _qlinear_conv(ctx: BuildContext) -> Kernel:
    ctx.n_inputs(8, 9)
    xq = _qparams(ctx, 1, 2, "x")
    w = ctx.const(3, "w")
    wq = _qparams(ctx, 4, 5, "w", per_channel=True, default=_I8)
    yq = _qparams(ctx, 6, 7, "y")
    bias = ctx.opt_const(8, "B")
    win, group = _conv_attrs(ctx, w)
    m = w.shape[0]
    if wq.scale.size not in (1, m) or wq.zero_point.size not in (1, m):
        ctx.fail(f"w_scale/w_zero_point must have 1 or {m} (output channels) values")
    depthwise = group > 1 and w.shape[1] == 1
    w_int = _int_operand(w, wq.zero_point.reshape(-1, *([1] * (w.ndim - 1))) if wq.zero_point.size > 1 else wq.zero_point.reshape(()), np.float64)
    acc_dtype = _acc_dtype(xq, w_int, 0, depthwise)
    w_int = _as_2d(w_int.astype(acc_dtype), win.rank)
    # ONNX Runtime: output_scale[i] = x_scale * w_scale[i] / y_scale, in float32.
    scale = (xq.scale * wq.scale / yq.scale).astype(np.float32).reshape(1, -1, 1, 1)
    b = None if bias is None else bias.astype(np.int32).reshape(1, -1, 1, 1)
    rounding = ctx.rounding
    saturating = not depthwise and A.saturates(ctx.accumulation, xq.dtype, w.dtype)
    w_raw = _as_2d(w, win.rank)

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        _check_rank(ctx, x, win)
        _check_input_dtype(ctx, x, xq, "x")
        x2 = _as_2d(_int_operand(x, xq.zero_point, acc_dtype), win.rank)
        pads = win.pads_for(x2.shape[2:], w_int.shape[2:])
        acc = K.conv2d(x2, w_int, win.strides, pads, win.dilations, group, acc_dtype)
        if saturating:
            fix = A.conv_correction(_as_2d(x, win.rank), int(xq.zero_point), w_raw, win.strides, pads, win.dilations, group, acc.shape[2:])
            acc = acc if fix is None else acc.astype(np.float64) + K.nchw(fix)
        if b is not None:
            acc = _add_bias(acc, b)
        return [_from_2d(K.requantize(acc, scale, int(yq.zero_point), yq.dtype, rounding), win.rank)]

    return run


@register("QLinearMatMul", requantizes=True)
def _qlinear_matmul(ctx: BuildContext) -> Kernel:
    ctx.attrs()
    aq = _qparams(ctx, 1, 2, "a")
    bq = _qparams(ctx, 4, 5, "b", per_channel=True, default=_I8)
    yq = _qparams(ctx, 6, 7, "y")
    b_const = ctx.consts.get(ctx.node.input[3])
    b_zp = bq.zero_point if bq.zero_point.size > 1 else bq.zero_point.reshape(())
    b_int = _int_operand(b_const, b_zp) if b_const is not None else None
    acc_dtype = _acc_dtype(aq, b_int, -1) if b_int is not None else np.float64
    b_int = b_int.astype(acc_dtype) if b_int is not None else None
    scale = (aq.scale * bq.scale / yq.scale).astype(np.float32)
    scale = scale if scale.size > 1 else scale.reshape(())
    rounding = ctx.rounding
    saturating = A.saturates(ctx.accumulation, aq.dtype, bq.dtype)

    def run(v: list[Value | None]) -> list[Value]:
        a, b = v[0], v[3]
        assert a is not None and b is not None
        _check_input_dtype(ctx, a, aq, "a")
        bi = b_int if b_int is not None else _int_operand(b, b_zp)
        acc = np.matmul(_int_operand(a, aq.zero_point, acc_dtype), bi)
        if saturating and b.ndim == 2:
            fix = A.gemm_correction(a, b)
            acc = acc if fix is None else acc.astype(np.float64) + fix
        return [K.requantize(acc, scale, int(yq.zero_point), yq.dtype, rounding)]

    return run


@register("QGemm", domain=_MS, requantizes=True)
def _qgemm(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(alpha=1.0, transA=0, transB=0)
    aq = _qparams(ctx, 1, 2, "a")
    b = ctx.const(3, "B")
    bq = _qparams(ctx, 4, 5, "b", per_channel=True, default=_I8)
    c = ctx.opt_const(6, "C")
    has_y = ctx.has(7)
    yq = _qparams(ctx, 7, 8, "y") if has_y else None
    tb = bool(a["transB"])
    n = b.shape[0] if tb else b.shape[1]
    if bq.scale.size not in (1, n):
        ctx.fail(f"b_scale must have 1 or {n} values")
    b_zp = bq.zero_point.reshape(-1, 1) if (tb and bq.zero_point.size > 1) else (bq.zero_point if bq.zero_point.size > 1 else bq.zero_point.reshape(()))
    b_int = _int_operand(b, b_zp)
    b_int = b_int.T if tb else b_int
    acc_dtype = _acc_dtype(aq, b_int, 1)
    b_int = np.ascontiguousarray(b_int.astype(acc_dtype))
    # ONNX Runtime: output_scale[i] = alpha * a_scale * b_scale[i] (/ y_scale), float32 left to right.
    scale = (np.float32(a["alpha"]) * aq.scale * bq.scale).astype(np.float32)
    if yq is not None:
        scale = (scale / yq.scale).astype(np.float32)
    scale = scale if scale.size > 1 else scale.reshape(())
    c_int = None if c is None else c.astype(np.int32)
    ta, rounding = bool(a["transA"]), ctx.rounding
    b_raw = b.T if tb else b
    saturating = A.saturates(ctx.accumulation, aq.dtype, b.dtype)

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        _check_input_dtype(ctx, x, aq, "A")
        xa = _int_operand(x, aq.zero_point, acc_dtype)
        acc = np.matmul(xa.T if ta else xa, b_int)
        if saturating:
            fix = A.gemm_correction(x.T if ta else x, b_raw)
            acc = acc if fix is None else acc.astype(np.float64) + fix
        if c_int is not None:
            acc = _add_bias(acc, c_int)
        if yq is None:
            return [acc.astype(np.float32) * scale]
        return [K.requantize(acc, scale, int(yq.zero_point), yq.dtype, rounding)]

    return run


@register("QLinearAdd", "QLinearMul", domain=_MS, requantizes=True)
def _qlinear_binary(ctx: BuildContext) -> Kernel:
    ctx.attrs()
    aq, bq, cq = _qparams(ctx, 1, 2, "A"), _qparams(ctx, 4, 5, "B"), _qparams(ctx, 6, 7, "C")
    if aq.dtype.itemsize != 1 or bq.dtype != aq.dtype:
        ctx.fail(f"inputs must share one 8-bit type, got {aq.dtype} and {bq.dtype}")
    # Two 8-bit inputs have 65536 combinations: evaluate the exact formula once for all
    # of them and look the outputs up (bit-identical, and fast on large tensors).
    raw = np.arange(256, dtype=np.uint8).view(aq.dtype)
    a_all, b_all = np.meshgrid(raw, raw, indexing="ij")
    if ctx.op == "QLinearAdd":
        tables = (_qladd(a_all, b_all, aq, bq, cq, False, ctx.rounding), _qladd(a_all, b_all, aq, bq, cq, True, ctx.rounding))
    else:
        table = _qlmul(a_all, b_all, aq, bq, cq, ctx.rounding)
        tables = (table, table)

    def run(v: list[Value | None]) -> list[Value]:
        x, y = v[0], v[3]
        assert x is not None and y is not None
        _check_input_dtype(ctx, x, aq, "A")
        _check_input_dtype(ctx, y, bq, "B")
        index = np.left_shift(x.view(np.uint8), 8, dtype=np.uint16) | y.view(np.uint8)
        table = tables[1] if x.size < y.size else tables[0]
        return [table.reshape(-1)[index]]

    return run


def _qladd(a: Value, b: Value, aq: QParams, bq: QParams, cq: QParams, a_broadcast: bool, rounding: str) -> Value:
    """ONNX Runtime's x86 (AVX2) QLinearAdd, which works on raw, not zero-point-shifted, values:

        ra = sa / sc, rb = sb / sc,  fixed = zc - fma(ra, za, rb * zb),  c = fma(a, ra, fma(b, rb, fixed))

    (the compiler contracts the scalar setup into an FMA too). When A is the broadcast
    operand, ORT swaps the operands, which changes the rounding; so do we.
    """
    za, zb, zc = (np.float32(int(q.zero_point)) for q in (aq, bq, cq))
    ra, rb = np.float32(aq.scale / cq.scale), np.float32(bq.scale / cq.scale)
    af, bf = a.astype(np.float32), b.astype(np.float32)
    if a_broadcast:
        fixed = np.float32(zc - K.fma32(rb, zb, np.float32(ra * za)))
        value = K.fma32(bf, rb, K.fma32(af, ra, fixed))
    else:
        fixed = np.float32(zc - K.fma32(ra, za, np.float32(rb * zb)))
        value = K.fma32(af, ra, K.fma32(bf, rb, fixed))
    return K.saturate(K.round_to_int(value, rounding), cq.dtype)


def _qlmul(a: Value, b: Value, aq: QParams, bq: QParams, cq: QParams, rounding: str) -> Value:
    """ONNX Runtime's QLinearMul (SSE2 kernel): float32((a-za)*(b-zb)) * (sa*sb/sc) + zc, no FMA."""
    prod = (a.astype(np.int32) - np.int32(aq.zero_point)) * (b.astype(np.int32) - np.int32(bq.zero_point))
    ratio = np.float32(aq.scale * bq.scale / cq.scale)
    value = prod.astype(np.float32) * ratio + np.float32(int(cq.zero_point))
    return K.saturate(K.round_to_int(value, rounding), cq.dtype)


@register("QLinearGlobalAveragePool", domain=_MS, requantizes=True)
def _qlinear_gap(ctx: BuildContext) -> Kernel:
    channels_last = bool(ctx.attrs(channels_last=0)["channels_last"])
    xq, yq = _qparams(ctx, 1, 2, "x"), _qparams(ctx, 3, 4, "y")
    rounding = ctx.rounding

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        _check_input_dtype(ctx, x, xq, "x")
        axes = tuple(range(1, x.ndim - 1)) if channels_last else tuple(range(2, x.ndim))
        return [_global_avg_int(x, axes, xq, yq, rounding)]

    return run


def _global_avg_int(x: Value, axes: tuple[int, ...], xq: QParams, yq: QParams, rounding: str) -> Value:
    """MLAS QLinearGlobalAveragePool: int32 sum - zp*size, requantized by x_scale/(y_scale*size)."""
    size = int(np.prod([x.shape[a] for a in axes]))
    acc = x.sum(axis=axes, keepdims=True, dtype=np.int64) - int(xq.zero_point) * size
    scale = np.float32(xq.scale / (yq.scale * np.float32(size)))
    return K.requantize(acc, scale, int(yq.zero_point), yq.dtype, rounding)


@register("QLinearAveragePool", domain=_MS, requantizes=True)
def _qlinear_avgpool(ctx: BuildContext) -> Kernel:
    win, a = _pool_attrs(ctx, {"count_include_pad": 0, "channels_last": 0})
    xq, yq = _qparams(ctx, 1, 2, "x"), _qparams(ctx, 3, 4, "y")
    if a["dilations"] and any(d != 1 for d in a["dilations"]):
        ctx.unsupported_value("dilations", a["dilations"])
    assert win.kernel is not None
    kernel, channels_last, rounding = win.kernel, bool(a["channels_last"]), ctx.rounding
    count = "kernel" if a["count_include_pad"] else "inside"

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        _check_input_dtype(ctx, x, xq, "x")
        if channels_last:
            x = np.moveaxis(x, -1, 1)
        _check_rank(ctx, x, win)
        x2 = _as_2d(x, win.rank)
        pads = win.pads_for(x2.shape[2:], kernel)
        if tuple(x2.shape[2:]) == tuple(kernel) and not any(pads):
            # ONNX Runtime falls back to its integer global average pool here.
            y = _global_avg_int(x2, (2, 3), xq, yq, rounding)
        else:
            xf = K.dequantize_linear(x2, xq.scale, xq.zero_point)
            total, n = K.avg_pool2d_parts(xf, kernel, win.strides, pads, win.dilations, bool(a["ceil_mode"]), count)
            # ONNX Runtime rounds y / y_scale + zero_point (the zero point added before rounding).
            y = K.saturate(K.round_to_int(total / n / yq.scale + np.float32(int(yq.zero_point)), rounding), yq.dtype)
        y = _from_2d(y, win.rank)
        return [np.ascontiguousarray(np.moveaxis(y, 1, -1)) if channels_last else y]

    return run


@register("QLinearSoftmax", domain=_MS, requantizes=True)
def _qlinear_softmax(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(axis=None, opset=None)
    if a["opset"] is None:
        ctx.fail("attribute opset is required")
    legacy = int(a["opset"]) < 13
    axis = a["axis"] if a["axis"] is not None else (1 if legacy else -1)
    xq, yq = _qparams(ctx, 1, 2, "x"), _qparams(ctx, 3, 4, "y")
    if xq.dtype not in (np.dtype(np.uint8), np.dtype(np.int8)):
        ctx.fail(f"input type {xq.dtype} is not supported (uint8, int8)")
    x_scale = float(xq.scale)
    # ONNX Runtime multiplies by floor(1 / y_scale), not by 1 / y_scale.
    y_mult = np.float32(math.floor(np.float32(1.0) / yq.scale))
    zp, rounding = int(yq.zero_point), ctx.rounding

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        ax = axis % x.ndim
        if legacy:
            rows = x.reshape(int(np.prod(x.shape[:ax])), -1)
        else:
            rows = np.moveaxis(x, ax, -1)
        flat = rows.reshape(-1, rows.shape[-1]).astype(np.int32)
        table = _softmax_table(x_scale, flat.shape[1])
        # Index 255 + x - max(x): the table holds exp((i - 255 + shift) * x_scale).
        vals = table[255 + flat - flat.max(axis=1, keepdims=True)]
        vsum = np.zeros(flat.shape[0], np.float32)
        for j in range(flat.shape[1]):  # sequential float32 sum, as ORT does (loop over classes)
            vsum += vals[:, j]
        q = K.round_to_int((vals * y_mult) / vsum[:, None], rounding) + np.float32(zp)
        out = K.saturate(q, yq.dtype).reshape(rows.shape)
        return [out.reshape(x.shape) if legacy else np.ascontiguousarray(np.moveaxis(out, -1, ax))]

    return run


def _softmax_table(x_scale: float, reduce_len: int) -> Value:
    """ORT's QLinearSoftmax table: float32(exp((i - 255 + shift) * x_scale)), shift keeping sums finite."""
    bit_shift = math.log(float(np.float32(np.finfo(np.float32).max) / np.float32(reduce_len)))
    bit_shift = max(0.0, bit_shift - 5) / x_scale
    i = np.arange(256, dtype=np.float64)
    return np.exp((i - 255 + bit_shift) * x_scale).astype(np.float32)


def _byte_table(ctx: BuildContext, xq: QParams, yq: QParams, fn: Callable[[Value], Value]) -> Value:
    """256-entry table over the raw input bytes: quantize(fn(dequantize(x))), as ORT builds it."""
    raw = np.arange(256, dtype=np.uint8).view(xq.dtype) if xq.dtype.itemsize == 1 else None
    if raw is None:
        ctx.fail(f"lookup-table ops need 8-bit inputs, got {xq.dtype}")
    deq = xq.scale * (raw.astype(np.int32) - np.int32(xq.zero_point)).astype(np.float32)
    q = K.quantize_linear(fn(deq.astype(np.float32)), yq.scale, yq.zero_point, yq.dtype, ctx.rounding)
    return q


@register("QLinearSigmoid", "QLinearLeakyRelu", domain=_MS, requantizes=True)
def _qlinear_table_op(ctx: BuildContext) -> Kernel:
    if ctx.op == "QLinearLeakyRelu":
        alpha = np.float32(ctx.attrs(alpha=0.01)["alpha"])
        fn: Callable[[Value], Value] = lambda x: np.where(x >= 0, x, x * alpha).astype(np.float32)
    else:
        ctx.attrs()
        fn = K.logistic_mlas
    xq, yq = _qparams(ctx, 1, 2, "X"), _qparams(ctx, 3, 4, "Y")
    table = _byte_table(ctx, xq, yq, fn)

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        _check_input_dtype(ctx, x, xq, "X")
        return [K.lookup(table, x)]

    return run


@register("QLinearConcat", domain=_MS, requantizes=True)
def _qlinear_concat(ctx: BuildContext) -> Kernel:
    axis = ctx.attrs(axis=None)["axis"]
    if axis is None:
        ctx.fail("attribute axis is required")
    n = len(ctx.node.input)
    if n < 5 or (n - 2) % 3:
        ctx.fail("inputs must be Y_scale, Y_zero_point, then (X, X_scale, X_zero_point) tuples")
    yq = _qparams(ctx, 0, 1, "Y")
    tables: list[Value | None] = []
    for i in range(2, n, 3):
        xq = _qparams(ctx, i + 1, i + 2, f"X{(i - 2) // 3}")
        if xq.dtype != yq.dtype:
            ctx.fail("inputs and output must have the same quantized type")
        same = float(xq.scale) == float(yq.scale) and int(xq.zero_point) == int(yq.zero_point)
        tables.append(None if same else _byte_table(ctx, xq, yq, lambda x: x))

    def run(v: list[Value | None]) -> list[Value]:
        parts = []
        for k, table in enumerate(tables):
            x = v[2 + 3 * k]
            assert x is not None
            parts.append(x if table is None else K.lookup(table, x))
        return [np.concatenate(parts, axis=axis)]

    return run
