"""Shape and data movement: reshapes, slices, splits, gathers, pads, casts, constants.

Shape-like inputs (Reshape's shape, Slice's starts, Squeeze's axes, Pad's pads,
Split's split, Expand's shape ...) are read when the node runs, so they may be
initializers, graph inputs or computed by other nodes; with constants they are
folded at load time like any other constant subgraph.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..dtypes import numpy_dtype, type_name
from .core import (
    BuildContext,
    Kernel,
    Value,
    register,
)


def _int_list(value: Value | Sequence[int] | None) -> list[int]:
    return [] if value is None else [int(x) for x in np.asarray(value).reshape(-1)]


def _opt(v: list[Value | None], index: int) -> Value | None:
    """An optional input's value, None when omitted."""
    return v[index] if len(v) > index else None


# =========================================================================== reshapes


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
    if ctx.opset < 5:
        ctx.fail("Reshape-1 (shape as an attribute) is not supported by the tinyaccel emulator")
    allowzero = ctx.attrs(allowzero=0, shape=None)["allowzero"]

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
    """axes: an attribute before opset 13, then an input (Squeeze: optional, all size-1 axes when omitted)."""
    unsq = ctx.op == "Unsqueeze"
    if ctx.opset >= 13:
        ctx.attrs()
        fixed = None
        if unsq and not ctx.has(1):
            ctx.fail("input 1 (axes) is missing")
    else:
        fixed = ctx.attrs(axes=None)["axes"]
        if unsq and not fixed:
            ctx.fail("attribute axes is required")

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        given = fixed if fixed is not None else _opt(v, 1)
        if unsq:
            axes = _int_list(given)
            rank = x.ndim + len(axes)
            return [np.expand_dims(x, tuple(sorted(a % rank for a in axes)))]
        if given is None:
            return [np.squeeze(x)]
        return [np.squeeze(x, axis=tuple(a % x.ndim for a in _int_list(given)))]

    return run


@register("Expand")
def _expand(ctx: BuildContext) -> Kernel:
    ctx.attrs()
    ctx.n_inputs(2, 2)

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        shape = np.broadcast_shapes(x.shape, tuple(_int_list(v[1])))
        return [np.array(np.broadcast_to(x, shape))]

    return run


@register("Tile")
def _tile(ctx: BuildContext) -> Kernel:
    ctx.attrs()
    return lambda v: [np.tile(v[0], _int_list(v[1]))]


@register("DepthToSpace", "SpaceToDepth")
def _depth_space(ctx: BuildContext) -> Kernel:
    """Move blocksize x blocksize pixel blocks between the channel and the spatial axes (DCR or CRD order)."""
    a = ctx.attrs(blocksize=None, mode="DCR")
    if not a["blocksize"] or a["mode"] not in ("DCR", "CRD"):
        ctx.unsupported_value("mode", a["mode"])
    b, to_space, dcr = int(a["blocksize"]), ctx.op == "DepthToSpace", a["mode"] == "DCR"

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        n, c, h, w = x.shape
        if not to_space:
            y = x.reshape(n, c, h // b, b, w // b, b).transpose((0, 3, 5, 1, 2, 4) if dcr else (0, 1, 3, 5, 2, 4))
            return [y.reshape(n, c * b * b, h // b, w // b)]
        if dcr:
            y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
        else:
            y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
        return [y.reshape(n, c // (b * b), h * b, w * b)]

    return run


@register("Concat")
def _concat(ctx: BuildContext) -> Kernel:
    axis = ctx.attrs(axis=None)["axis"]
    if axis is None:
        ctx.fail("attribute axis is required")
    return lambda v: [np.concatenate([x for x in v if x is not None], axis=axis)]


@register("Split")
def _split(ctx: BuildContext) -> Kernel:
    """Sizes from the `split` input (opset 13+) or attribute, else equal parts (num_outputs from opset 18)."""
    a = ctx.attrs(axis=0, split=None, num_outputs=None)
    axis, fixed, n_out = int(a["axis"]), a["split"], len(ctx.node.output)
    if a["num_outputs"] is not None and int(a["num_outputs"]) != n_out:
        ctx.unsupported_value("num_outputs", a["num_outputs"], f"the node has {n_out} outputs")

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        ax = axis % x.ndim
        given = fixed if fixed is not None else _opt(v, 1)
        if given is not None:
            sizes = _int_list(given)
        elif a["num_outputs"] is not None:  # the last part may be smaller
            chunk = -(-x.shape[ax] // n_out)
            sizes = [min(chunk, max(0, x.shape[ax] - k * chunk)) for k in range(n_out)]
        else:
            sizes = [x.shape[ax] // n_out] * n_out
        if sum(sizes) != x.shape[ax] or len(sizes) != n_out:
            raise ValueError(
                f"{ctx.model}: node '{ctx.name}' (Split): sizes {sizes} do not split axis {ax} of {list(x.shape)} "
                f"into {n_out} outputs"
            )
        return np.split(x, np.cumsum(sizes)[:-1], axis=ax)

    return run


# =========================================================================== shapes and constants


@register("Shape")
def _shape(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(start=0, end=None)
    return lambda v: [np.array(v[0].shape[a["start"] : a["end"]], dtype=np.int64)]


@register("Size")
def _size(ctx: BuildContext) -> Kernel:
    ctx.attrs()
    return lambda v: [np.array(v[0].size, dtype=np.int64)]


@register("Range")
def _range(ctx: BuildContext) -> Kernel:
    ctx.attrs()

    def run(v: list[Value | None]) -> list[Value]:
        start, limit, delta = (np.asarray(x) for x in v)
        count = max(int(np.ceil((limit - start) / delta)), 0)
        return [(start + np.arange(count) * delta).astype(start.dtype)]

    return run


def _cast_type(ctx: BuildContext, elem: int) -> np.dtype:
    dtype = numpy_dtype(elem)
    if dtype is None:
        ctx.unsupported_value("to", type_name(elem), "the tinyaccel emulator does not support this element type")
    return dtype


@register("Cast")
def _cast(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(to=None, saturate=1)
    dtype = _cast_type(ctx, a["to"])
    return lambda v: [np.asarray(v[0]).astype(dtype)]


@register("CastLike")
def _castlike(ctx: BuildContext) -> Kernel:
    ctx.attrs(saturate=1)
    ctx.n_inputs(2, 2)
    return lambda v: [np.asarray(v[0]).astype(v[1].dtype)]


@register("Constant")
def _constant(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(value=None, value_float=None, value_floats=None, value_int=None, value_ints=None, sparse_value=None)
    if a["sparse_value"] is not None:
        ctx.unsupported_value("sparse_value", "<sparse>")
    if a["value"] is not None:
        value = np.asarray(a["value"])
        if numpy_dtype(ctx.attr_tensor_type("value")) is None:
            ctx.unsupported_value("value", type_name(ctx.attr_tensor_type("value")), "unsupported element type")
    elif a["value_float"] is not None:
        value = np.array(a["value_float"], dtype=np.float32)
    elif a["value_floats"] is not None:
        value = np.array(a["value_floats"], dtype=np.float32)
    elif a["value_int"] is not None:
        value = np.array(a["value_int"], dtype=np.int64)
    elif a["value_ints"] is not None:
        value = np.array(a["value_ints"], dtype=np.int64)
    else:
        ctx.fail("Constant without a value (value_string(s) are not supported)")
    return lambda v: [value]


@register("ConstantOfShape")
def _constant_of_shape(ctx: BuildContext) -> Kernel:
    value = ctx.attrs(value=None)["value"]
    if value is not None and numpy_dtype(ctx.attr_tensor_type("value")) is None:
        ctx.unsupported_value("value", type_name(ctx.attr_tensor_type("value")), "unsupported element type")
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return lambda v: [np.full(_int_list(v[0]), fill[0], dtype=fill.dtype)]


# =========================================================================== indexing


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


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


@register("Pad")
def _pad(ctx: BuildContext) -> Kernel:
    """pads (and constant_value, axes) as attributes before opset 11, then inputs, read when the node runs."""
    if ctx.opset < 11:
        a = ctx.attrs(mode="constant", pads=None, paddings=None, value=0.0)
        fixed: tuple[list[int], Value] | None = (a["pads"] or a["paddings"], np.asarray(a["value"], np.float32))
    else:
        a = ctx.attrs(mode="constant")
        fixed = None
    mode = a["mode"]
    if mode not in _PAD_MODES:
        ctx.unsupported_value("mode", mode)

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        value: Value | None
        if fixed is not None:
            pads, value, axes_in = fixed[0], fixed[1], None
        else:
            pads, value, axes_in = _int_list(v[1]), _opt(v, 2), _opt(v, 3)
        axes = list(range(x.ndim)) if axes_in is None else [ax % x.ndim for ax in _int_list(axes_in)]
        n = len(axes)
        width = [(0, 0)] * x.ndim
        for i, ax in enumerate(axes):
            width[ax] = (pads[i], pads[i + n])
        if any(b < 0 or e < 0 for b, e in width):  # negative pads crop
            x = x[tuple(slice(-b if b < 0 else None, e if e < 0 else None) for b, e in width)]
            width = [(max(b, 0), max(e, 0)) for b, e in width]
        if mode == "constant":
            fill = np.asarray(value).reshape(()).astype(x.dtype) if value is not None else x.dtype.type(0)
            return [np.pad(x, width, mode="constant", constant_values=fill)]
        return [np.pad(x, width, mode=_PAD_MODES[mode])]  # type: ignore[call-overload]

    return run
