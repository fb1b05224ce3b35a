"""Resize (opsets 10-19) and the older Upsample: nearest, linear and cubic, every coordinate mode.

Interpolation is separable: each resized axis gets an (output x input) weight
matrix built from the ONNX formulas (coordinate transform, kernel, antialias,
exclude_outside, edge clamping), applied in float64 with one tensordot. Nearest
gathers instead, so any element type is copied exactly. Linear and cubic on
integer inputs round half to even and saturate. tf_crop_and_resize positions
outside the input take `extrapolation_value`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .core import (
    BuildContext,
    Kernel,
    Value,
    register,
)

_COORDINATES = (
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_crop_and_resize",
    "tf_half_pixel_for_nn",
)
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


@dataclass(frozen=True)
class _Mode:
    """The node's interpolation settings."""

    mode: str
    coordinates: str
    nearest: str
    cubic_a: float
    exclude_outside: bool
    antialias: bool
    extrapolation: float


def _source(m: _Mode, n_in: int, n_out: int, scale: float, roi: tuple[float, float]) -> Value:
    """x_original for every output index along one axis, computed in float32 as ONNX Runtime does (ties of
    nearest mode then fall the same way: (3 + 0.5) / 0.7f - 0.5 is exactly 4.5 in float32)."""
    f = np.float32
    o, s, n = np.arange(n_out, dtype=f), f(scale), f(n_in)
    length = s * n  # the ONNX output length scale * n_in, unrounded
    c = m.coordinates
    if c == "asymmetric":
        return o / s
    if c == "align_corners":
        return np.zeros(n_out, f) if n_out == 1 else o * (n - f(1)) / (length - f(1))
    if c == "tf_crop_and_resize":
        start, end = f(roi[0]), f(roi[1])
        if n_out == 1:
            return np.full(n_out, (end - start) * (n - f(1)) / f(2) + start * (n - f(1)), f)
        return o * (end - start) * (n - f(1)) / (length - f(1)) + start * (n - f(1))
    if c == "pytorch_half_pixel" and n_out == 1:
        return np.full(n_out, -0.5, f)
    if c == "tf_half_pixel_for_nn":
        return (o + f(0.5)) / s
    if c == "half_pixel_symmetric":
        offset = n / f(2) * (f(1) - f(n_out) / length)
        return offset + (o + f(0.5)) / s - f(0.5)
    return (o + f(0.5)) / s - f(0.5)  # half_pixel, pytorch_half_pixel


def _nearest_index(m: _Mode, x: Value, n_in: int) -> Value:
    if m.nearest == "round_prefer_floor":
        index = np.ceil(x - 0.5)
    elif m.nearest == "round_prefer_ceil":
        index = np.floor(x + 0.5)
    elif m.nearest == "floor":
        index = np.floor(x)
    else:
        index = np.ceil(x)
    return np.clip(index, 0, n_in - 1).astype(np.intp)


def _kernel(m: _Mode, d: Value) -> Value:
    """Interpolation weight at distance d (triangle for linear, Keys' cubic with coefficient A)."""
    d = np.abs(d)
    if m.mode == "linear":
        return np.clip(1 - d, 0, None)
    a = m.cubic_a
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _weights(m: _Mode, x: Value, n_in: int, scale: float) -> Value:
    """(n_out, n_in) interpolation matrix; out-of-range taps clamp to the edge (or drop: exclude_outside)."""
    shrink = min(scale, 1.0) if m.antialias else 1.0
    support = (1.0 if m.mode == "linear" else 2.0) / shrink
    offsets = np.arange(int(np.floor(-support)), int(np.ceil(support)) + 2)
    taps = np.floor(x)[:, None] + offsets[None, :]
    w = _kernel(m, (taps - x[:, None]) * shrink)
    if m.antialias:
        w = w / w.sum(axis=1, keepdims=True)
    if m.exclude_outside:
        w = np.where((taps < 0) | (taps > n_in - 1), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    matrix = np.zeros((x.size, n_in))
    rows = np.broadcast_to(np.arange(x.size)[:, None], taps.shape)
    np.add.at(matrix, (rows, np.clip(taps, 0, n_in - 1).astype(np.intp)), w)
    return matrix


def _resize_axis(m: _Mode, y: Value, axis: int, n_out: int, scale: float, roi: tuple[float, float]) -> Value:
    n_in = y.shape[axis]
    x = _source(m, n_in, n_out, scale, roi).astype(np.float64)
    outside = (x < 0) | (x > n_in - 1) if m.coordinates == "tf_crop_and_resize" else None
    if m.mode == "nearest":
        out = np.take(y, _nearest_index(m, x, n_in), axis=axis)
    else:
        out = np.moveaxis(np.tensordot(_weights(m, x, n_in, scale), y, axes=([1], [axis])), 0, axis)
    if outside is not None and outside.any():
        shape = [1] * y.ndim
        shape[axis] = n_out
        out = np.where(outside.reshape(shape), np.asarray(m.extrapolation, dtype=out.dtype), out)
    return out


def _plan(
    x: Value, axes: list[int], scales: Value | None, sizes: Value | None, policy: str
) -> tuple[list[float], list[int]]:
    """Per-axis scale and output length (ONNX: sizes win when scales are absent or empty)."""
    if scales is not None and scales.size:
        factors = [float(s) for s in scales.reshape(-1)]
        # floor(length * scale) in float32, as ORT computes it (10 * 0.7f is 7, not 6.99999988)
        return factors, [int(np.floor(np.float32(x.shape[a]) * np.float32(f))) for a, f in zip(axes, factors)]
    if sizes is None:
        raise ValueError("Resize needs scales or sizes")
    wanted = [int(s) for s in sizes.reshape(-1)]
    factors = [w / x.shape[a] for a, w in zip(axes, wanted)]
    if policy == "stretch":
        return factors, wanted
    common = min(factors) if policy == "not_larger" else max(factors)
    return [common] * len(axes), [int(common * x.shape[a] + 0.5) for a in axes]


def _ort_axis(m: _Mode, n_in: int, n_out: int, scale: float) -> tuple[Value, Value, Value, Value]:
    """ONNX Runtime's bilinear taps along one axis, in float32: (i1, i2, weight of i1, weight of i2)."""
    f32 = np.float32
    x = np.clip(_source(m, n_in, n_out, scale, (0.0, 1.0)), f32(0), f32(n_in - 1)).astype(f32)
    i1 = np.minimum(x.astype(np.intp), n_in - 1)
    i2 = np.minimum(i1 + 1, n_in - 1)
    same = i1 == i2
    d1 = np.where(same, f32(0.5), np.abs(x - i1.astype(f32))).astype(f32)
    d2 = np.where(same, f32(0.5), np.abs(x - i2.astype(f32))).astype(f32)
    return i1, i2, d2, d1  # the weight of a tap is the distance to the other one


def _bilinear_ort(m: _Mode, x: Value, factors: list[float], lengths: list[int]) -> Value:
    """Linear resize of the last two axes as ONNX Runtime computes it (float32, its operation order, and a
    truncating cast for integer types), so int8 models stay bit-exact with ORT."""
    (y1, y2, wy1, wy2), (x1, x2, wx1, wx2) = (
        _ort_axis(m, x.shape[k], lengths[i], factors[i]) for i, k in ((0, -2), (1, -1))
    )
    xf = x.astype(np.float32)
    top, bottom = xf[..., y1, :], xf[..., y2, :]
    wy1, wy2 = wy1[:, None], wy2[:, None]
    value = (
        wx1 * wy1 * top[..., x1] + wx2 * wy1 * top[..., x2] + wx1 * wy2 * bottom[..., x1] + wx2 * wy2 * bottom[..., x2]
    )
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        return np.clip(np.trunc(value), info.min, info.max).astype(x.dtype)
    return value.astype(x.dtype)


def _ort_kernel_applies(m: _Mode, x: Value, axes: list[int], factors: list[float], lengths: list[int]) -> bool:
    """ORT's bilinear kernel: linear mode resizing only the last two axes of a float32 or integer tensor."""
    leading_kept = all(n == x.shape[a] and f == 1.0 for a, n, f in zip(axes[:-2], lengths[:-2], factors[:-2]))
    return (
        m.mode == "linear"
        and not m.antialias
        and m.coordinates in ("half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners")
        and (x.dtype == np.float32 or x.dtype.kind in "iu")
        and x.ndim >= 2
        and axes[-2:] == [x.ndim - 2, x.ndim - 1]
        and leading_kept
    )


def _resize(
    m: _Mode, x: Value, axes_attr: list[int] | None, roi_in: Value | None, factors: list[float], lengths: list[int]
) -> Value:
    axes = list(range(x.ndim)) if axes_attr is None else [a % x.ndim for a in axes_attr]
    roi_values = [] if roi_in is None else [float(r) for r in roi_in.reshape(-1)]
    if not roi_values and _ort_kernel_applies(m, x, axes, factors, lengths):
        return _bilinear_ort(m, x, factors[-2:], lengths[-2:])
    y = x.astype(np.float64) if m.mode != "nearest" else x
    for k, axis in enumerate(axes):
        roi = (roi_values[k], roi_values[k + len(axes)]) if roi_values else (0.0, 1.0)
        if lengths[k] == y.shape[axis] and factors[k] == 1.0 and roi == (0.0, 1.0):
            continue
        y = _resize_axis(m, y, axis, lengths[k], factors[k], roi)
    if y.dtype == x.dtype:
        return y
    if x.dtype.kind in "iu":  # ORT casts interpolated integers by truncation
        info = np.iinfo(x.dtype)
        return np.clip(np.trunc(y), info.min, info.max).astype(x.dtype)
    return y.astype(x.dtype)


@register("Resize")
def _resize_op(ctx: BuildContext) -> Kernel:
    legacy = ctx.opset < 11  # Resize-10: (X, scales), asymmetric coordinates, nearest rounds down
    a = ctx.attrs(
        mode="nearest",
        coordinate_transformation_mode="asymmetric" if legacy else "half_pixel",
        nearest_mode="floor" if legacy else "round_prefer_floor",
        cubic_coeff_a=-0.75,
        exclude_outside=0,
        extrapolation_value=0.0,
        antialias=0,
        axes=None,
        keep_aspect_ratio_policy="stretch",
    )
    m = _Mode(
        a["mode"],
        a["coordinate_transformation_mode"],
        a["nearest_mode"],
        float(a["cubic_coeff_a"]),
        bool(a["exclude_outside"]),
        bool(a["antialias"]),
        float(a["extrapolation_value"]),
    )
    if m.mode not in ("nearest", "linear", "cubic"):
        ctx.unsupported_value("mode", m.mode)
    if m.coordinates not in _COORDINATES:
        ctx.unsupported_value("coordinate_transformation_mode", m.coordinates)
    if m.nearest not in _NEAREST:
        ctx.unsupported_value("nearest_mode", m.nearest)
    if a["keep_aspect_ratio_policy"] not in ("stretch", "not_larger", "not_smaller"):
        ctx.unsupported_value("keep_aspect_ratio_policy", a["keep_aspect_ratio_policy"])
    policy, axes = a["keep_aspect_ratio_policy"], a["axes"]

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        if legacy:
            roi, scales, sizes = None, v[1], None
        else:
            roi, scales, sizes = (v[i] if len(v) > i else None for i in (1, 2, 3))
        used = list(range(x.ndim)) if axes is None else [i % x.ndim for i in axes]
        factors, lengths = _plan(x, used, scales, sizes, policy)
        keep_roi = roi if m.coordinates == "tf_crop_and_resize" and roi is not None and roi.size else None
        return [_resize(m, x, axes, keep_roi, factors, lengths)]

    return run


@register("Upsample")
def _upsample(ctx: BuildContext) -> Kernel:
    """Upsample-7 (scales attribute) and -9 (scales input): asymmetric coordinates, nearest rounds down."""
    a = ctx.attrs(mode="nearest", scales=None)
    mode = {"bilinear": "linear"}.get(a["mode"], a["mode"])
    if mode not in ("nearest", "linear"):
        ctx.unsupported_value("mode", a["mode"])
    m = _Mode(mode, "asymmetric", "floor", -0.75, False, False, 0.0)
    fixed = None if a["scales"] is None else np.asarray(a["scales"], np.float32)

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        scales = fixed if fixed is not None else v[1]
        factors, lengths = _plan(x, list(range(x.ndim)), scales, None, "stretch")
        return [_resize(m, x, None, None, factors, lengths)]

    return run
