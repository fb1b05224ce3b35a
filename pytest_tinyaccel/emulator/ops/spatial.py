"""Convolution, pooling and reductions (float and integer inputs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from onnx import NodeProto, helper

from .. import kernels as K
from ..conv import bias_relu, conv2d
from .core import (
    _MS,
    BuildContext,
    Kernel,
    Value,
    register,
)

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
        (top, bottom), (left, right) = (
            K.same_pads(hw[a], kernel[a], self.strides[a], self.dilations[a], upper) for a in (0, 1)
        )
        return (top, left, bottom, right)


def _window(ctx: BuildContext, a: dict[str, Any], rank: int | None, kernel: Sequence[int] | None) -> Window:
    """Check kernel/strides/pads/dilations/auto_pad; 1-D windows become 1xK."""
    if kernel is not None:
        rank = len(kernel)
    if rank not in (1, 2):
        ctx.unsupported_value(
            "kernel_shape", list(kernel) if kernel is not None else None, "only 1-D and 2-D windows are supported"
        )
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
        return Window(
            1, (1, kernel[0]) if kernel else None, (1, strides[0]), (1, dil[0]), (0, pads[0], 0, pads[1]), auto_pad
        )
    return Window(
        2,
        (kernel[0], kernel[1]) if kernel else None,
        (strides[0], strides[1]),
        (dil[0], dil[1]),
        (pads[0], pads[1], pads[2], pads[3]),
        auto_pad,
    )


def _as_2d(x: Value, rank: int) -> Value:
    return x[:, :, None, :] if rank == 1 else x


def _from_2d(y: Value, rank: int) -> Value:
    return y[:, :, 0, :] if rank == 1 else y


def _check_rank(ctx: BuildContext, x: Value, win: Window, what: str = "input") -> None:
    if x.ndim != win.rank + 2:
        raise ValueError(
            f"{ctx.model}: node '{ctx.name}' ({ctx.op}): {what} has shape {list(x.shape)}, expected rank {win.rank + 2}"
        )


def _conv_attrs(ctx: BuildContext, w: Value | None, w_index: int = 1) -> tuple[Window, int]:
    """Window and group of a convolution; the kernel size from kernel_shape, else the weights' (declared) shape
    (input `w_index`)."""
    a = ctx.attrs(auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None)
    w_shape = ctx.static_shape(w_index)
    kernel = a["kernel_shape"] or (list(w_shape[2:]) if w_shape is not None else None)
    if kernel is None:
        ctx.fail("kernel_shape is needed when the weights are a graph input of unknown shape")
    if w is not None and list(w.shape[2:]) != list(kernel):
        ctx.unsupported_value("kernel_shape", kernel, f"weights have spatial shape {list(w.shape[2:])}")
    group = int(a["group"])
    if group < 1 or (w is not None and w.shape[0] % group):
        ctx.unsupported_value("group", group)
    return _window(ctx, a, None, kernel), group


@register("Conv", fuses=("Relu",))
def _conv(ctx: BuildContext) -> Kernel:
    ctx.n_inputs(2, 3)
    win, group = _conv_attrs(ctx, ctx.consts.get(ctx.node.input[1]))
    relu = ctx.activation == "Relu"

    def run(v: list[Value | None]) -> list[Value]:
        x, w, b = v[0], v[1], (v[2] if len(v) > 2 else None)
        assert x is not None and w is not None
        _check_rank(ctx, x, win)
        x2, w2 = _as_2d(x, win.rank), _as_2d(w, win.rank)
        # float16 is computed in float32 and rounded once at the end (the compiled loops have no float16)
        dtype = np.dtype(np.float32) if x.dtype == np.float16 else x.dtype
        pads = win.pads_for(x2.shape[2:], w2.shape[2:])
        args = (x2.astype(dtype, copy=False), w2.astype(dtype, copy=False), win.strides, pads, win.dilations)
        epilogue = bias_relu(b, relu, w.shape[0], dtype)
        direct = _direct_shape(args[0], args[1], win, pads) if group == 1 and dtype == np.float32 else None
        if direct is not None:
            from ..direct_conv import conv2d_direct  # numba's import, on first use

            y = conv2d_direct(*args, direct, epilogue)
        else:
            y = conv2d(*args, group, dtype.type, epilogue=epilogue)
        return [_from_2d(y, win.rank).astype(x.dtype, copy=False)]

    return run


def _direct_shape(x: Value, w: Value, win: Window, pads: Sequence[int]) -> tuple[int, int] | None:
    """The output's (OH, OW) when the direct float32 kernel is the faster one for this convolution, else None."""
    from ..direct_conv import worthwhile  # numba's import, on first use

    s, d = win.strides, win.dilations
    size = K.pool_output_size
    oh, ow = (size(x.shape[a + 2], w.shape[a + 2], s[a], d[a], pads[a], pads[a + 2], False) for a in (0, 1))
    fits = oh > 0 and ow > 0 and worthwhile(x.shape, w.shape, s, d, (oh, ow))
    return (oh, ow) if fits else None


@register("FusedConv", domain=_MS)
def _fused_conv(ctx: BuildContext) -> Kernel:
    """ONNX Runtime's Conv + activation, which its optimizer makes of Conv -> Relu in the float parts of a
    quantized graph (`ortgraph.py`); the Relu form only."""
    found = {a.name: helper.get_attribute_value(a) for a in ctx.node.attribute}
    activation = found.get("activation", b"").decode()
    if activation != "Relu":
        ctx.fail(f"activation={activation!r} is not supported by the tinyaccel emulator (Relu is)")
    node = NodeProto()
    node.CopyFrom(ctx.node)
    node.op_type, node.domain = "Conv", ""
    del node.attribute[:]
    node.attribute.extend(a for a in ctx.node.attribute if a.name not in ("activation", "activation_params"))
    return _conv(replace(ctx, node=node, activation="Relu"))


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
    count: Literal["inside", "padded"] = "padded" if a["count_include_pad"] else "inside"

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
