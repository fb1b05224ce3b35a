"""ConvTranspose in any number of spatial dimensions (1-D, 2-D, 3-D ...), grouped, dilated, strided.

Computed as the transpose of a convolution: every input element scatters its
products with the kernel into a full-size output, one kernel tap at a time (a
channel contraction per tap, so a 3x3 kernel costs nine matrix products), then
the ONNX padding is cropped off (or the output_shape window taken). Output
geometry follows the ONNX formulas for pads, output_padding, output_shape and
auto_pad.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from .core import (
    BuildContext,
    Kernel,
    Value,
    register,
)


def _geometry(
    a: dict, in_hw: Sequence[int], kernel: Sequence[int]
) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    """strides, dilations, full lengths (before cropping), begin crops and output lengths per spatial axis."""
    rank = len(in_hw)
    strides = list(a["strides"] or [1] * rank)
    dil = list(a["dilations"] or [1] * rank)
    out_pad = list(a["output_padding"] or [0] * rank)
    pads = list(a["pads"] or [0] * (2 * rank))
    full = [s * (n - 1) + op + (k - 1) * d + 1 for s, n, op, k, d in zip(strides, in_hw, out_pad, kernel, dil)]
    wanted = list(a["output_shape"] or [])[-rank:] if a["output_shape"] else None
    if wanted is None and a["auto_pad"] in ("SAME_UPPER", "SAME_LOWER"):
        wanted = [n * s for n, s in zip(in_hw, strides)]
    if wanted is None:
        begin = pads[:rank]
        return strides, dil, full, begin, [f - b - e for f, b, e in zip(full, begin, pads[rank:])]
    total = [f - w for f, w in zip(full, wanted)]
    upper = a["auto_pad"] == "SAME_UPPER"
    begin = [t // 2 if upper else t - t // 2 for t in total]
    return strides, dil, full, begin, wanted


@register("ConvTranspose")
def _conv_transpose(ctx: BuildContext) -> Kernel:
    a = ctx.attrs(
        auto_pad="NOTSET",
        dilations=None,
        group=1,
        kernel_shape=None,
        output_padding=None,
        output_shape=None,
        pads=None,
        strides=None,
    )
    ctx.n_inputs(2, 3)
    if a["auto_pad"] not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        ctx.unsupported_value("auto_pad", a["auto_pad"])
    group = int(a["group"])
    if group < 1:
        ctx.unsupported_value("group", group)

    def run(v: list[Value | None]) -> list[Value]:
        x, w, b = v[0], v[1], (v[2] if len(v) > 2 else None)
        assert x is not None and w is not None
        kernel = list(a["kernel_shape"] or w.shape[2:])
        in_hw = x.shape[2:]
        strides, dil, full, begin, out_len = _geometry(a, in_hw, kernel)
        n, c = x.shape[:2]
        cg, mg = c // group, w.shape[1]
        y = np.zeros((n, group * mg, *full), dtype=x.dtype)
        for tap in itertools.product(*(range(k) for k in kernel)):
            where = tuple(slice(t * d, t * d + s * (i - 1) + 1, s) for t, d, s, i in zip(tap, dil, strides, in_hw))
            for g in range(group):
                index: tuple[slice | int, ...] = (slice(g * cg, (g + 1) * cg), slice(None), *tap)
                part = np.tensordot(x[:, g * cg : (g + 1) * cg], w[index], axes=([1], [0]))
                y[(slice(None), slice(g * mg, (g + 1) * mg), *where)] += np.moveaxis(part, -1, 1)
        out = np.zeros((n, group * mg, *out_len), dtype=x.dtype)
        src, dst = [slice(None)] * 2, [slice(None)] * 2
        for f, bgn, length in zip(full, begin, out_len):  # crop the padding; zeros where the window leaves y
            lo, hi = max(bgn, 0), min(bgn + length, f)
            src.append(slice(lo, max(hi, lo)))
            dst.append(slice(lo - bgn, lo - bgn + max(hi - lo, 0)))
        out[tuple(dst)] = y[tuple(src)]
        if b is not None:
            out += b.astype(x.dtype).reshape(1, -1, *([1] * len(in_hw)))
        return [out]

    return run
