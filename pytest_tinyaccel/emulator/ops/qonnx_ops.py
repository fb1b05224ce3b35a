"""QONNX's quantizers (domain qonnx.custom_op.general, and onnx.brevitas as older Brevitas exports write it):
Quant (IntQuant), BipolarQuant and Trunc, bit-exact with qonnx's own executor.

QONNX defines these ops by a NumPy reference (qonnx.custom_op.general), so the
emulator runs the same arithmetic in the same order and types: the input
divided by the scale, plus the zero point; Quant clamps to the integer range
of its bit width *before* rounding; the rounding modes are qonnx's (ROUND =
HALF_EVEN, CEIL, FLOOR, UP, DOWN, HALF_UP, HALF_DOWN, either case), HALF_UP,
HALF_DOWN and UP computed as qonnx does, from |y| +- 0.5 in the input's float
type. Any bit width from 1 to 32 runs (a signed 1-bit Quant is bipolar, as in
qonnx). Scale, zero point and bit widths must be constants, as an accelerator
is programmed with them; what qonnx's executor would refuse (a rounding mode it
does not know, a missing required attribute) is refused here at load time.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .core import BuildContext, Kernel, Value, register

DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas")

_ROUNDING: dict[str, Callable[[Value], Value]] = {
    "ROUND": np.round,
    "HALF_EVEN": np.round,
    "CEIL": np.ceil,
    "FLOOR": np.floor,
    "UP": lambda y: np.sign(y) * np.ceil(np.abs(y)),
    "DOWN": np.trunc,
    "HALF_UP": lambda y: np.sign(y) * np.floor(np.abs(y) + 0.5),
    "HALF_DOWN": lambda y: np.sign(y) * np.ceil(np.abs(y) - 0.5),
}
"""qonnx's rounding modes (qonnx.custom_op.general.intquant.resolve_rounding_mode), by upper-case name."""
ROUNDING_MODES = tuple(_ROUNDING)
MAX_BITS = 32


def integer_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    """The integers a `bits`-wide quantizer holds, as QONNX defines them (narrow drops the lowest signed
    value, and the highest unsigned one)."""
    if signed:
        return -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1 - int(narrow)


def _rounding(ctx: BuildContext, mode: str) -> Callable[[Value], Value]:
    rule = _ROUNDING.get(mode.upper())
    if rule is None:
        hint = " (qonnx calls rounding toward zero DOWN)" if mode.upper() == "ROUND_TO_ZERO" else ""
        ctx.unsupported_value("rounding_mode", mode, f"qonnx's rounding modes are {', '.join(ROUNDING_MODES)}{hint}")
    return rule


def _required(ctx: BuildContext, *names: str) -> None:
    given = {a.name for a in ctx.node.attribute}
    missing = [n for n in names if n not in given]
    if missing:
        ctx.fail(f"required attribute {', '.join(missing)} is missing (qonnx's executor refuses the node too)")


def _flag(ctx: BuildContext, name: str, value: object) -> bool:
    if value not in (0, 1):
        ctx.unsupported_value(name, value, "0 or 1")
    return bool(value)


def _bits(ctx: BuildContext, index: int, what: str) -> int:
    """A constant bit width: a scalar holding a whole number in 1..32 (float32 or integer, as QONNX allows)."""
    value = ctx.const(index, what)
    if value.size != 1:
        ctx.fail(f"{what} must be a scalar, got shape {list(value.shape)}")
    number = float(value.reshape(()))
    if not number.is_integer() or not 1 <= number <= MAX_BITS:
        ctx.fail(f"{what} = {number:g} is not supported by the tinyaccel emulator (a whole number of bits, 1..32)")
    return int(number)


def _bounds(ctx: BuildContext, index: int, limits: tuple[int, int]) -> tuple[Value, Value]:
    """The integer limits as qonnx holds them: in the bit width's type when that is a float type (float32 rounds
    the limits of widths above 24 bits), exact otherwise."""
    dtype = ctx.const(index, "bit width").dtype
    held = dtype if dtype.kind == "f" else np.dtype(np.int64)
    return np.asarray(limits[0], held), np.asarray(limits[1], held)


def _clamp(y: Value, lo: Value, hi: Value) -> Value:
    """y limited to [lo, hi] by comparisons, as qonnx does (NaN stays NaN, -0.0 stays -0.0)."""
    low, high = lo.astype(y.dtype), hi.astype(y.dtype)
    y = np.where(y > high, high, y)
    return np.where(y < low, low, y)


@register("Quant", "IntQuant", domain=DOMAINS[0])
@register("Quant", "IntQuant", domain=DOMAINS[1])
def _quant(ctx: BuildContext) -> Kernel:
    """Quant(x, scale, zeropt, bitwidth): clamp(x / scale + zeropt) rounded, minus zeropt, times scale (float32)."""
    ctx.n_inputs(4, 4)
    _required(ctx, "signed", "narrow")
    a = ctx.attrs(signed=1, narrow=1, rounding_mode="ROUND")
    signed, narrow = _flag(ctx, "signed", a["signed"]), _flag(ctx, "narrow", a["narrow"])
    rounding = _rounding(ctx, a["rounding_mode"])
    scale, zeropt = ctx.const(1, "scale"), ctx.const(2, "zeropt")
    bits = _bits(ctx, 3, "bitwidth")
    lo, hi = _bounds(ctx, 3, integer_range(bits, signed, narrow))
    bipolar = bits == 1 and signed

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        y = x / scale + zeropt
        if bipolar:
            one = np.ones((), y.dtype)
            y = np.where(y >= 0.0, one, -one)
        else:
            y = rounding(_clamp(y, lo, hi))
        return [np.asarray((y - zeropt) * scale).astype(np.float32, copy=False)]

    return run


@register("BipolarQuant", domain=DOMAINS[0])
@register("BipolarQuant", domain=DOMAINS[1])
def _bipolar_quant(ctx: BuildContext) -> Kernel:
    """BipolarQuant(x, scale): +scale where x >= 0, else -scale."""
    ctx.n_inputs(2, 2)
    ctx.attrs()
    scale = ctx.const(1, "scale")

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        one = np.ones((), x.dtype)
        return [np.where(x >= 0.0, one, -one) * scale]

    return run


@register("Trunc", domain=DOMAINS[0])
@register("Trunc", domain=DOMAINS[1])
def _trunc(ctx: BuildContext) -> Kernel:
    """Trunc: drop low bits of a quantized tensor. Version 1 (five inputs: x, scale, zeropt, input and output bit
    width) shifts by the difference of the bit widths and keeps the scale; version 2 (six inputs: an output scale
    before the output bit width) shifts by the power of two nearest output_scale / scale and clamps to the output
    bit width. The input count tells the versions apart, as qonnx's opset version does for a well-formed model."""
    ctx.n_inputs(5, 6)
    _required(ctx, "rounding_mode")
    v2 = len(ctx.node.input) == 6
    a = ctx.attrs(rounding_mode="FLOOR", **({"narrow": 0, "signed": 1} if v2 else {}))
    rounding = _rounding(ctx, a["rounding_mode"])
    scale, zeropt = ctx.const(1, "scale"), ctx.const(2, "zeropt")
    _bits(ctx, 3, "input bit width")
    out_bits = _bits(ctx, len(ctx.node.input) - 1, "output bit width")
    if v2:
        out_scale = ctx.const(4, "output scale")
        bounds = _bounds(
            ctx, 5, integer_range(out_bits, _flag(ctx, "signed", a["signed"]), _flag(ctx, "narrow", a["narrow"]))
        )
        shift = 2 ** np.round(np.log2(out_scale / scale))
        out_zeropt, final_scale = zeropt / shift, out_scale
    else:
        shift = 2.0 ** (ctx.const(3, "input bit width") - ctx.const(4, "output bit width"))
        bounds, out_zeropt, final_scale = None, zeropt, scale

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        y = np.round(x / scale + zeropt) / shift
        if bounds is not None:
            y = _clamp(y, *bounds)
        return [(rounding(y) - out_zeropt) * final_scale]

    return run
