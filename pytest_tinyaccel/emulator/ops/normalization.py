"""Normalization ops: BatchNormalization (inference), Layer-, Instance-, Group-, MeanVariance-Normalization, LRN.

Scale, bias, mean and variance may be initializers or graph inputs; either way
they are read when the node runs (a folded BatchNormalization of constants costs
one multiply-add per element).
"""

from __future__ import annotations

import numpy as np

from .core import (
    BuildContext,
    Kernel,
    Value,
    register,
)


def _compute_type(x: Value) -> type[np.floating]:
    """float64 for float64 inputs, float32 otherwise (float16 is normalized in float32, as ORT does)."""
    return np.float64 if x.dtype == np.float64 else np.float32


@register("BatchNormalization")
def _batchnorm(ctx: BuildContext) -> Kernel:
    """y = x * scale / sqrt(var + epsilon) + (B - mean * scale / sqrt(var + epsilon)), per channel (axis 1)."""
    # Before opset 7, is_test defaults to 0: training mode (batch statistics), refused below.
    is_test = 0 if ctx.opset < 7 else 1
    a = ctx.attrs(epsilon=1e-5, momentum=0.9, training_mode=0, spatial=1, is_test=is_test, consumed_inputs=None)
    if a["training_mode"]:
        ctx.unsupported_value("training_mode", a["training_mode"], "training mode updates statistics; inference only")
    if not a["is_test"] or len([o for o in ctx.node.output if o]) > 1:
        ctx.fail("running mean/var outputs are training-mode outputs; the tinyaccel emulator runs inference only")
    if not a["spatial"]:
        ctx.unsupported_value("spatial", a["spatial"], "per-activation statistics")
    ctx.n_inputs(5, 5)
    epsilon = a["epsilon"]

    def run(v: list[Value | None]) -> list[Value]:
        x, scale, bias, mean, var = v
        assert x is not None and scale is not None and bias is not None and mean is not None and var is not None
        ct = _compute_type(x)
        mul = scale.astype(ct) / np.sqrt(var.astype(ct) + ct(epsilon))
        add = bias.astype(ct) - mean.astype(ct) * mul
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return [(x * mul.reshape(shape) + add.reshape(shape)).astype(x.dtype)]

    return run


@register("LayerNormalization")
def _layernorm(ctx: BuildContext) -> Kernel:
    """Normalize over the axes from `axis` on; outputs Y, and optionally Mean and InvStdDev (stash type)."""
    a = ctx.attrs(axis=-1, epsilon=1e-5, stash_type=1)
    if a["stash_type"] != 1:
        ctx.unsupported_value("stash_type", a["stash_type"], "statistics are computed in float32 (stash_type=1)")
    ctx.n_inputs(2, 3)
    axis, epsilon = int(a["axis"]), np.float32(a["epsilon"])

    def run(v: list[Value | None]) -> list[Value]:
        x, scale, bias = v[0], v[1], (v[2] if len(v) > 2 else None)
        assert x is not None and scale is not None
        ax = axis % x.ndim
        rows = x.reshape(int(np.prod(x.shape[:ax], dtype=np.int64)), -1).astype(np.float32)
        mean = rows.mean(axis=1, keepdims=True)
        diff = rows - mean
        inv_std = np.float32(1) / np.sqrt((diff * diff).mean(axis=1, keepdims=True) + epsilon)
        y = (diff * inv_std).reshape(x.shape).astype(x.dtype) * scale
        if bias is not None:
            y = y + bias
        stats_shape = x.shape[:ax] + (1,) * (x.ndim - ax)
        return [y.astype(x.dtype, copy=False), mean.reshape(stats_shape), inv_std.reshape(stats_shape)]

    return run


@register("InstanceNormalization")
def _instancenorm(ctx: BuildContext) -> Kernel:
    """Per sample and channel over the spatial axes: scale * (x - mean) / sqrt(var + epsilon) + B."""
    epsilon = ctx.attrs(epsilon=1e-5)["epsilon"]
    ctx.n_inputs(3, 3)

    def run(v: list[Value | None]) -> list[Value]:
        x, scale, bias = v
        assert x is not None and scale is not None and bias is not None
        ct = _compute_type(x)
        xc = x.astype(ct)
        axes = tuple(range(2, x.ndim))
        mean = xc.mean(axis=axes, keepdims=True)
        var = ((xc - mean) ** 2).mean(axis=axes, keepdims=True)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        y = (xc - mean) / np.sqrt(var + ct(epsilon)) * scale.astype(ct).reshape(shape) + bias.astype(ct).reshape(shape)
        return [y.astype(x.dtype)]

    return run


@register("GroupNormalization")
def _groupnorm(ctx: BuildContext) -> Kernel:
    """Normalize each group of channels over (channels of the group, spatial axes); scale and bias per group
    (opset 18) or per channel (opset 21), told apart by their size."""
    a = ctx.attrs(epsilon=1e-5, num_groups=None, stash_type=1)
    if not a["num_groups"]:
        ctx.fail("attribute num_groups is required")
    groups, epsilon = int(a["num_groups"]), a["epsilon"]

    def run(v: list[Value | None]) -> list[Value]:
        x, scale, bias = v
        assert x is not None and scale is not None and bias is not None
        ct = _compute_type(x)
        n, c = x.shape[:2]
        xg = x.astype(ct).reshape(n, groups, -1)
        mean = xg.mean(axis=2, keepdims=True)
        var = ((xg - mean) ** 2).mean(axis=2, keepdims=True)
        y = ((xg - mean) / np.sqrt(var + ct(epsilon))).reshape(x.shape)
        per = np.repeat(scale, c // groups) if scale.size == groups != c else scale
        shift = np.repeat(bias, c // groups) if bias.size == groups != c else bias
        shape = (1, c) + (1,) * (x.ndim - 2)
        return [(y * per.astype(ct).reshape(shape) + shift.astype(ct).reshape(shape)).astype(x.dtype)]

    return run


@register("MeanVarianceNormalization")
def _mvn(ctx: BuildContext) -> Kernel:
    axes = tuple(ctx.attrs(axes=[0, 2, 3])["axes"])

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        mean = x.mean(axis=axes, keepdims=True)
        std = np.sqrt(((x - mean) ** 2).mean(axis=axes, keepdims=True))
        return [((x - mean) / (std + x.dtype.type(1e-9))).astype(x.dtype)]

    return run


@register("LRN")
def _lrn(ctx: BuildContext) -> Kernel:
    """x / (bias + alpha / size * sum of squares over `size` neighbouring channels) ** beta."""
    a = ctx.attrs(alpha=1e-4, beta=0.75, bias=1.0, size=None)
    if not a["size"]:
        ctx.fail("attribute size is required")
    size = int(a["size"])
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        sq = np.pad(np.square(x), [(0, 0), (before, after)] + [(0, 0)] * (x.ndim - 2))
        total = sum(sq[:, k : k + x.shape[1]] for k in range(size))
        return [(x / (a["bias"] + a["alpha"] / size * total) ** a["beta"]).astype(x.dtype)]

    return run
