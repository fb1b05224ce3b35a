"""Elementwise ops (activations, arithmetic, comparisons, logic) and matrix products, in the inputs' own type.

Attribute constants (alpha, beta ...) are cast to the input's type at run time,
so a float16 or float64 graph computes in float16/float64 (NumPy 2 would
otherwise promote a float16 array times a float32 scalar to float32).
"""

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

# =========================================================================== unary, no attributes


def _round(x: Value) -> Value:
    return np.rint(x)  # ONNX Round: halves to even, as np.rint


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
    "Round": _round,
    "Sign": np.sign,
    "Erf": K.erf,
    "Softplus": lambda x: np.logaddexp(np.zeros((), x.dtype), x),
    "Softsign": lambda x: x / (np.ones((), x.dtype) + np.abs(x)),
    "Sin": np.sin,
    "Cos": np.cos,
    "Tan": np.tan,
    "Asin": np.arcsin,
    "Acos": np.arccos,
    "Atan": np.arctan,
    "Sinh": np.sinh,
    "Cosh": np.cosh,
    "Asinh": np.arcsinh,
    "Acosh": np.arccosh,
    "Atanh": np.arctanh,
    "Not": np.logical_not,
    "BitwiseNot": np.invert,
    "IsNaN": np.isnan,
    "Identity": lambda x: x,
}


@register(*_UNARY)
def _unary(ctx: BuildContext) -> Kernel:
    ctx.attrs()
    ctx.n_inputs(1, 1)
    fn = _UNARY[ctx.op]

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        with np.errstate(divide="ignore", invalid="ignore"):  # log(0) = -inf, sqrt(-1) = nan, as ONNX says
            return [np.asarray(fn(x))]

    return run


@register("IsInf")
def _isinf(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(detect_negative=1, detect_positive=1)
    neg, pos = bool(a["detect_negative"]), bool(a["detect_positive"])
    return lambda v: [np.isinf(v[0]) & ((v[0] < 0) & neg | (v[0] > 0) & pos)]


@register("Dropout")
def _dropout(ctx: BuildContext) -> Kernel:
    """Inference-mode Dropout: the identity (and an all-true mask). Training mode is random: refused."""
    a = ctx.attrs(seed=0, ratio=0.5, is_test=0 if ctx.opset < 7 else 1)
    if not a["is_test"]:
        ctx.unsupported_value("is_test", a["is_test"], "training-mode Dropout is random; the emulator runs inference")
    if ctx.has(2):
        name = ctx.node.input[2]
        if name not in ctx.consts:
            ctx.fail(
                f"input '{name}' (training_mode) is not a constant: training-mode Dropout is random, "
                "the tinyaccel emulator runs inference only"
            )
        if bool(np.asarray(ctx.consts[name]).reshape(())):
            ctx.fail(f"input '{name}' (training_mode) is true: training-mode Dropout is random, inference only")
    mask_bool = ctx.opset >= 10

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        return [x, np.ones(x.shape, dtype=np.bool_ if mask_bool else x.dtype)]

    return run


# =========================================================================== activations with attributes


def _activation(op: str, a: dict[str, float]) -> Callable[[Value], Value]:
    """The activation `op` with its attributes, computing in the input's own float type."""

    def fn(x: Value) -> Value:
        c = {k: x.dtype.type(val) for k, val in a.items()}
        if op == "LeakyRelu":
            return np.where(x >= 0, x, x * c["alpha"])
        if op == "Elu":
            return np.where(x >= 0, x, c["alpha"] * np.expm1(x))
        if op == "Selu":
            return c["gamma"] * np.where(x > 0, x, c["alpha"] * np.expm1(x))
        if op == "Celu":
            return np.maximum(x, 0) + np.minimum(0, c["alpha"] * np.expm1(x / c["alpha"]))
        if op == "ThresholdedRelu":
            return np.where(x > c["alpha"], x, x.dtype.type(0))
        if op == "HardSigmoid":
            return np.clip(x * c["alpha"] + c["beta"], 0, 1)
        if op == "HardSwish":  # x * HardSigmoid(x) with alpha 1/6, beta 0.5
            return x * np.clip(x * x.dtype.type(1 / 6) + x.dtype.type(0.5), 0, 1)
        if op == "Mish":
            return x * np.tanh(np.logaddexp(x.dtype.type(0), x))
        if op == "Shrink":
            return np.where(x < -c["lambd"], x + c["bias"], np.where(x > c["lambd"], x - c["bias"], 0))
        raise AssertionError(op)

    return fn


_ACTIVATION_ATTRS: dict[str, dict[str, float]] = {
    "LeakyRelu": {"alpha": 0.01},
    "Elu": {"alpha": 1.0},
    "Selu": {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875},
    "Celu": {"alpha": 1.0},
    "ThresholdedRelu": {"alpha": 1.0},
    "HardSigmoid": {"alpha": 0.2, "beta": 0.5},
    "HardSwish": {},
    "Mish": {},
    "Shrink": {"bias": 0.0, "lambd": 0.5},
}


@register(*_ACTIVATION_ATTRS)
def _activation_op(ctx: BuildContext) -> Kernel:
    fn = _activation(ctx.op, ctx.attrs(**_ACTIVATION_ATTRS[ctx.op]))
    return lambda v: [np.asarray(fn(v[0])).astype(v[0].dtype, copy=False)]


@register("Gelu")
def _gelu(ctx: BuildContext) -> Kernel:
    """0.5 x (1 + erf(x / sqrt 2)), or the tanh approximation; computed in float64, returned in x's type."""
    approximate = ctx.attrs(approximate="none")["approximate"]
    if approximate not in ("none", "tanh"):
        ctx.unsupported_value("approximate", approximate)

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        x64 = x.astype(np.float64)
        if approximate == "tanh":
            inner = np.sqrt(2 / np.pi) * (x64 + 0.044715 * x64**3)
            return [(0.5 * x64 * (1 + np.tanh(inner))).astype(x.dtype)]
        return [(0.5 * x64 * (1 + K.erf(x64 / np.sqrt(2)))).astype(x.dtype)]

    return run


@register("Clip")
def _clip(ctx: BuildContext) -> Kernel:
    """min/max: attributes before opset 11, then optional inputs, constant or computed at run time."""
    if ctx.opset < 11:
        a = ctx.attrs(min=-3.4028234663852886e38, max=3.4028234663852886e38)
        lo, hi = np.float32(a["min"]), np.float32(a["max"])
        return lambda v: [np.clip(v[0], lo, hi)]
    ctx.attrs()

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        lo = v[1] if len(v) > 1 else None
        hi = v[2] if len(v) > 2 else None
        if lo is None and hi is None:
            return [x]
        lo = None if lo is None else np.asarray(lo).astype(x.dtype)
        hi = None if hi is None else np.asarray(hi).astype(x.dtype)
        return [np.clip(x, lo, hi)]

    return run


# =========================================================================== binary and variadic


def _int_div(a: Value, b: Value) -> Value:
    if a.dtype.kind in "iu":
        return np.trunc(a / b).astype(np.result_type(a, b))
    return a / b


def _mod(fmod: bool) -> Callable[[Value, Value], Value]:
    return np.fmod if fmod else np.mod


_BINARY: dict[str, Callable[[Value, Value], Value]] = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": _int_div,
    "Pow": lambda a, b: np.power(a, b).astype(a.dtype),
    "Equal": np.equal,
    "Less": np.less,
    "LessOrEqual": np.less_equal,
    "Greater": np.greater,
    "GreaterOrEqual": np.greater_equal,
    "And": np.logical_and,
    "Or": np.logical_or,
    "Xor": np.logical_xor,
    "BitwiseAnd": np.bitwise_and,
    "BitwiseOr": np.bitwise_or,
    "BitwiseXor": np.bitwise_xor,
}


@register(*_BINARY)
def _binary(ctx: BuildContext) -> Kernel:
    ctx.attrs()
    ctx.n_inputs(2, 2)
    fn = _BINARY[ctx.op]
    return lambda v: [np.asarray(fn(v[0], v[1]))]


@register("Mod")
def _mod_op(ctx: BuildContext) -> Kernel:
    fn = _mod(bool(ctx.attrs(fmod=0)["fmod"]))
    return lambda v: [np.asarray(fn(v[0], v[1])).astype(v[0].dtype, copy=False)]


@register("BitShift")
def _bitshift(ctx: BuildContext) -> Kernel:
    direction = ctx.attrs(direction=None)["direction"]
    if direction not in ("LEFT", "RIGHT"):
        ctx.unsupported_value("direction", direction)
    fn = np.left_shift if direction == "LEFT" else np.right_shift
    return lambda v: [np.asarray(fn(v[0], v[1])).astype(v[0].dtype, copy=False)]


@register("PRelu")
def _prelu(ctx: BuildContext) -> Kernel:
    ctx.attrs()
    return lambda v: [np.where(v[0] < 0, v[0] * v[1], v[0]).astype(v[0].dtype, copy=False)]


@register("Where")
def _where(ctx: BuildContext) -> Kernel:
    ctx.attrs()
    ctx.n_inputs(3, 3)
    return lambda v: [np.asarray(np.where(v[0], v[1], v[2]))]


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


# =========================================================================== softmax family


@register("Softmax", "LogSoftmax", "Hardmax")
def _softmax(ctx: BuildContext) -> Kernel:
    legacy = ctx.opset < 13
    axis = ctx.attrs(axis=1 if legacy else -1)["axis"]
    op = ctx.op

    def along(x: Value, ax: int) -> Value:
        if op == "Hardmax":  # one-hot of the first maximum
            first = np.expand_dims(np.argmax(x, axis=ax), ax)
            return (np.arange(x.shape[ax]).reshape([-1 if a == ax else 1 for a in range(x.ndim)]) == first).astype(
                x.dtype
            )
        y = K.softmax(x, ax)
        return (np.log(y) if op == "LogSoftmax" else y).astype(x.dtype)

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        ax = axis % x.ndim
        if legacy:  # opset < 13: over the flattened trailing dims
            flat = x.reshape(int(np.prod(x.shape[:ax])), -1)
            return [along(flat, 1).reshape(x.shape)]
        return [along(x, ax)]

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


@register("Einsum")
def _einsum(ctx: BuildContext) -> Kernel:
    equation = ctx.attrs(equation=None)["equation"]
    if not equation:
        ctx.fail("attribute equation is required")
    return lambda v: [np.asarray(np.einsum(equation, *v))]


@register("Det")
def _det(ctx: BuildContext) -> Kernel:
    ctx.attrs()
    return lambda v: [np.asarray(np.linalg.det(v[0])).astype(v[0].dtype)]
