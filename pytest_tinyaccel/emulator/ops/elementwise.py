"""Float elementwise ops and matrix products."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import kernels as K
from .core import (
    BuildContext,
    Kernel,
    Value,
    register,
)

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
    scale, bias, mean, var = (
        ctx.const(i, n).astype(np.float32) for i, n in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var"))
    )
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
