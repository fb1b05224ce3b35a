"""The tile sizes Gemmini's software library picks, and what each tile moves and computes.

Gemmini's C library (ucb-bar/gemmini-rocc-tests, `include/gemmini.h`) does not search
for a best mapping: `tiled_matmul_auto` and `tiled_conv_auto` grow (or shrink) a tile
greedily until it fills half of the scratchpad and half of the accumulator (the other
halves double-buffer the next tile), and then issue one hardware loop instruction
(`LOOP_WS`, `LOOP_CONV_WS`) per tile. The loop unrollers in the RTL (`LoopMatmul.scala`,
`LoopConv.scala`) expand each into mvin / preload / compute / mvout commands. This
module re-derives both rules from that source, so that a layer is costed with the
tiling a Gemmini user actually gets:

* `matmul_tile` -- `tiled_matmul_auto` for the weight-stationary (double-buffered)
  dataflow: start from sqrt(accumulator blocks) square tiles, then grow J, I, K one
  block at a time while A+B fit half the scratchpad and C half the accumulator.
* `conv_tile` -- `tiled_conv_stride_auto`: start from the whole layer, shrink the
  largest of (batch, out rows, out cols, out channels, kernel rows, kernel cols, in
  channels) until it fits (channels by whole DIM blocks; out cols kept >= DIM while
  there are rows to shrink instead), then grow out cols, then every argument by one
  while it still fits.

`matmul_work` and `conv_work` walk the tiles the library's loops visit (edge tiles
included) and count, per tile, DMA requests and bytes (one request per DRAM row of
a mvin/mvout, at most `dma_maxbytes` wide), compute commands and the rows they
stream, and new weight blocks. `gemmini_timing` turns those counts into cycles.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from .gemmini_config import GemminiConfig


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Layer:
    """One matrix layer in the library's terms. A matmul is `rows` x `reduction` -> `columns`;
    a conv has batch `n`, in/out channels, output size, kernel, stride and padding (square
    padding, as `tiled_conv_auto` takes it)."""

    kind: str
    """'matmul' (tiled_matmul_auto) or 'conv' (tiled_conv_auto)."""
    n: int = 1
    in_channels: int = 1
    out_channels: int = 1
    out_rows: int = 1
    out_cols: int = 1
    kernel_rows: int = 1
    kernel_cols: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    in_rows: int = 0
    """Input rows (0: (out_rows - 1) * stride + dilated kernel - 2 * padding)."""
    in_cols: int = 0
    bias: bool = False
    depthwise: bool = False
    """Conv: one channel group per output channel (`tiled_conv_dw_auto`, one channel at a time)."""

    @property
    def macs(self) -> int:
        if self.depthwise:
            return self.n * self.out_channels * self.out_rows * self.out_cols * self.kernel_rows * self.kernel_cols
        return (
            self.n
            * self.in_channels
            * self.out_channels
            * self.out_rows
            * self.out_cols
            * self.kernel_rows
            * self.kernel_cols
        )

    def input_size(self) -> tuple[int, int]:
        def size(given: int, out: int, kernel: int) -> int:
            return given or (out - 1) * self.stride + self.dilation * (kernel - 1) + 1 - 2 * self.padding

        return size(self.in_rows, self.out_rows, self.kernel_rows), size(self.in_cols, self.out_cols, self.kernel_cols)


@dataclass
class TileWork:
    """What one hardware loop instruction (one tile) moves and computes."""

    ld_requests: float = 0.0
    ld_bytes: float = 0.0
    st_requests: float = 0.0
    st_bytes: float = 0.0
    mvin_cmds: float = 0.0
    mvout_cmds: float = 0.0
    compute_cmds: float = 0.0
    compute_rows: float = 0.0
    """Rows streamed through the array (one per cycle at best), summed over compute commands."""
    weight_blocks: float = 0.0
    """Preloads of new weights (a DIM x DIM block each)."""
    count: int = 1
    """How many identical tiles this entry stands for."""


@dataclass
class LayerWork:
    """A layer's tiles (identical ones merged) and the tile size the library chose."""

    layer: Layer
    tile: dict[str, int]
    tiles: list[TileWork] = field(default_factory=list)
    footprint_bytes: int = 0
    """Input + weight + output bytes in DRAM (what the caches must hold)."""
    unique_read_bytes: int = 0
    """Input + weight bytes: what the tiles read at least once (the rest of their reads are re-reads)."""

    @property
    def n_tiles(self) -> int:
        return sum(t.count for t in self.tiles)


# --------------------------------------------------------------------------- matmul


def matmul_tile(rows: int, columns: int, reduction: int, cfg: GemminiConfig) -> dict[str, int]:
    """`tiled_matmul_auto`'s tile (in DIM blocks) for I=rows, J=columns, K=reduction, WS dataflow."""
    dim = cfg.dim
    bi, bj, bk = _cdiv(rows, dim), _cdiv(columns, dim), _cdiv(reduction, dim)
    sp_half = cfg.sp_rows // 2
    acc_half = cfg.acc_rows // 2
    max_ij = max(1, math.isqrt(acc_half // dim))
    max_k = max(1, ((sp_half // 2) // dim) // max_ij)
    i, j, k = min(bi, max_ij), min(bj, max_ij), min(bk, max_k)

    def fits(i: int, j: int, k: int) -> bool:
        return (i * k + k * j) * dim <= sp_half and i * j * dim <= acc_half

    grew = True
    while grew:
        grew = False
        if j + 1 <= bj and fits(i, j + 1, k):
            j, grew = j + 1, True
        if i + 1 <= bi and fits(i + 1, j, k):
            i, grew = i + 1, True
        if k + 1 <= bk and (i * (k + 1) + (k + 1) * j) * dim <= sp_half:
            k, grew = k + 1, True
    return {"i": i, "j": j, "k": k}


def _split(total: int, tile: int) -> list[tuple[int, int]]:
    """(size, how many) of the pieces a loop over `total` in steps of `tile` visits."""
    full, rest = divmod(total, tile)
    return [(tile, full)] + ([(rest, 1)] if rest else []) if full else [(rest, 1)]


def matmul_work(layer: Layer, cfg: GemminiConfig) -> LayerWork:
    """The tiles of `tiled_matmul_outer` (i0, j0, k0 loops) with LoopMatmul's commands."""
    dim, maxb = cfg.dim, cfg.max_block_len
    rows, columns, reduction = layer.out_rows * layer.out_cols * layer.n, layer.out_channels, layer.in_channels
    tile = matmul_tile(rows, columns, reduction, cfg)
    bi, bj, bk = _cdiv(rows, dim), _cdiv(columns, dim), _cdiv(reduction, dim)
    e, a = cfg.input_bytes, cfg.acc_bytes
    n_i, n_j, n_k = _cdiv(bi, tile["i"]), _cdiv(bj, tile["j"]), _cdiv(bk, tile["k"])
    reuse_a = n_i * n_k <= 2  # the library keeps A in the scratchpad across j0 (b_reuse likewise)
    reuse_b = n_j * n_k <= 2
    reads = (rows * reduction + reduction * columns) * e
    work = LayerWork(layer, tile, footprint_bytes=reads + rows * columns * e, unique_read_bytes=reads)
    for ti, ci in _split(bi, tile["i"]):
        for tj, cj in _split(bj, tile["j"]):
            for tk, ck in _split(bk, tile["k"]):
                first_k = last_k = 1 / n_k  # bias loads and output stores: once per (i0, j0)
                t = TileWork(count=ci * cj * ck)
                r_i, r_k = ti * dim, tk * dim  # rows of A and of B in this tile
                a_share = (1 / n_j) if reuse_a and n_j > 1 else 1.0
                b_share = (1 / n_i) if reuse_b and n_i > 1 else 1.0
                t.ld_requests += a_share * r_i * _cdiv(tk, maxb) + b_share * r_k * _cdiv(tj, maxb)
                t.ld_bytes += a_share * r_i * tk * dim * e + b_share * r_k * tj * dim * e
                t.mvin_cmds += a_share * ti * _cdiv(tk, maxb) + b_share * tk * _cdiv(tj, maxb)
                if layer.bias:
                    t.ld_requests += first_k * r_i * tj
                    t.ld_bytes += first_k * r_i * tj * dim * a
                    t.mvin_cmds += first_k * ti * tj
                t.st_requests += last_k * r_i * _cdiv(tj, maxb)
                t.st_bytes += last_k * r_i * tj * dim * e
                t.mvout_cmds += last_k * ti * _cdiv(tj, maxb)
                t.compute_cmds += ti * tj * tk
                t.compute_rows += ti * tj * tk * dim
                t.weight_blocks += tj * tk
                work.tiles.append(t)
    return work


# --------------------------------------------------------------------------- conv


def _conv_rows(layer: Layer, cfg: GemminiConfig, args: list[int], downsample: bool) -> tuple[int, int]:
    """`tiled_conv_total_spad_rows`: (scratchpad rows for input + weights, accumulator rows)."""
    dim = cfg.dim
    batches, orows, ocols, ochs, krows, kcols, kchs = args
    kr = krows + (layer.dilation - 1) * (krows - 1)
    kc = kcols + (layer.dilation - 1) * (kcols - 1)
    irows = orows * layer.stride + kr - 1
    icols = ocols * layer.stride + kc - 1
    a_rows = _cdiv(kchs, dim) * batches * (irows >> downsample) * (icols >> downsample)
    b_rows = _cdiv(ochs, dim) * kcols * krows * kchs
    c_rows = _cdiv(ochs, dim) * batches * orows * ocols
    return a_rows + b_rows, c_rows


def _downsample(layer: Layer) -> bool:
    in_rows, in_cols = layer.input_size()
    return (
        layer.stride == 2
        and layer.kernel_rows == layer.kernel_cols == 1
        and layer.padding == 0
        and in_rows % 2 == 0
        and in_cols % 2 == 0
    )


def conv_tile(layer: Layer, cfg: GemminiConfig) -> dict[str, int]:
    """`tiled_conv_stride_auto`'s tile (`tiled_conv_dw_auto`'s for a depthwise layer: one channel)."""
    dim = cfg.dim
    channels = 1 if layer.depthwise else None
    full = [
        layer.n,
        layer.out_rows,
        layer.out_cols,
        channels or layer.out_channels,
        layer.kernel_rows,
        layer.kernel_cols,
        channels or layer.in_channels,
    ]
    args = list(full)
    downsample = _downsample(layer) and not layer.depthwise
    sp_max, acc_max = cfg.sp_rows // 2, cfg.acc_rows // 2

    def fits(candidate: list[int]) -> bool:
        sp, acc = _conv_rows(layer, cfg, candidate, downsample)
        return sp <= sp_max and acc <= acc_max

    while not fits(args):
        best, idx = -1, -1
        for i, value in enumerate(args):
            if not (i == 2 and value <= dim and args[1] > 1) and value > best:
                best, idx = value, i
        if best <= 1:
            raise ValueError(
                f"no tile of this layer fits half of a {cfg.sp_rows}-row scratchpad and "
                f"{cfg.acc_rows}-row accumulator (Gemmini's library would stop here)"
            )
        if idx in (3, 6):  # channels: whole DIM blocks
            args[idx] = (args[idx] // dim) * dim if args[idx] % dim else args[idx] - dim
            args[idx] = max(args[idx], 1)
        else:
            args[idx] -= 1
    while args[2] + 1 <= full[2] and fits([*args[:2], args[2] + 1, *args[3:]]):
        args[2] += 1
    grew = True
    while grew:
        grew = False
        for i in range(len(args)):
            candidate = list(args)
            candidate[i] += 1
            if candidate[i] <= full[i] and fits(candidate):
                args, grew = candidate, True
    names = ("batches", "orows", "ocols", "ochs", "krows", "kcols", "kchs")
    return dict(zip(names, args))


def _conv_tiles(layer: Layer, tile: dict[str, int]) -> Iterator[tuple[dict[str, int], int]]:
    """Distinct tile shapes of `tiled_conv`'s seven loops, with how many of each."""
    channels = 1 if layer.depthwise else None
    totals = {
        "batches": layer.n,
        "orows": layer.out_rows,
        "ocols": layer.out_cols,
        "ochs": channels or layer.out_channels,
        "krows": layer.kernel_rows,
        "kcols": layer.kernel_cols,
        "kchs": channels or layer.in_channels,
    }
    pieces = {name: _split(totals[name], tile[name]) for name in totals}

    def walk(names: list[str], chosen: dict[str, int], count: int) -> Iterator[tuple[dict[str, int], int]]:
        if not names:
            yield dict(chosen), count
            return
        for size, many in pieces[names[0]]:
            chosen[names[0]] = size
            yield from walk(names[1:], chosen, count * many)

    yield from walk(list(totals), {}, 1)


def conv_work(layer: Layer, cfg: GemminiConfig) -> LayerWork:
    """The tiles of `tiled_conv` with LoopConv's commands (one request per pixel row of a mvin
    or mvout; the library's first-layer packing of kernel columns is off, as in the RTL builds
    that leave out `HAS_FIRST_LAYER_OPTIMIZATIONS`)."""
    dim, maxb = cfg.dim, cfg.max_block_len
    e, a = cfg.input_bytes, cfg.acc_bytes
    tile = conv_tile(layer, cfg)
    downsample = _downsample(layer) and not layer.depthwise
    in_rows, in_cols = layer.input_size()
    groups = layer.out_channels if layer.depthwise else 1
    weights = layer.out_channels * (1 if layer.depthwise else layer.in_channels) * layer.kernel_rows * layer.kernel_cols
    reads = (layer.n * layer.in_channels * in_rows * in_cols + weights) * e
    outputs = layer.n * layer.out_channels * layer.out_rows * layer.out_cols * e
    work = LayerWork(layer, tile, footprint_bytes=reads + outputs, unique_read_bytes=reads)
    n_kch = _cdiv(1 if layer.depthwise else layer.in_channels, tile["kchs"])
    n_krow, n_kcol = _cdiv(layer.kernel_rows, tile["krows"]), _cdiv(layer.kernel_cols, tile["kcols"])
    first = last = 1 / (n_kch * n_krow * n_kcol)  # tiles that load the bias / store the output
    n_och = _cdiv(1 if layer.depthwise else layer.out_channels, tile["ochs"])
    n_out = _cdiv(layer.n, tile["batches"]) * _cdiv(layer.out_rows, tile["orows"])
    n_out *= _cdiv(layer.out_cols, tile["ocols"])
    # the library keeps a tile's input (weights) in the scratchpad when at most two tiles need it
    in_share = 1 / n_och if n_kch * n_krow * n_kcol * n_out <= 2 else 1.0
    w_share = 1 / n_out if n_kch * n_och * n_krow * n_kcol <= 2 else 1.0
    for t_args, count in _conv_tiles(layer, tile):
        b, orows, ocols, ochs = t_args["batches"], t_args["orows"], t_args["ocols"], t_args["ochs"]
        krows, kcols, kchs = t_args["krows"], t_args["kcols"], t_args["kchs"]
        kr = krows + (layer.dilation - 1) * (krows - 1)
        kc = kcols + (layer.dilation - 1) * (kcols - 1)
        irows = min(orows * layer.stride + kr - 1, in_rows)
        icols = min(ocols * layer.stride + kc - 1, in_cols)
        if downsample:
            irows, icols = _cdiv(irows, 2), _cdiv(icols, 2)
        t = TileWork(count=count * groups)
        pixels = b * irows * icols
        t.ld_requests += in_share * pixels * _cdiv(kchs, maxb * dim)
        t.ld_bytes += in_share * pixels * kchs * e
        t.mvin_cmds += in_share * b * irows * _cdiv(icols, dim) * _cdiv(kchs, maxb * dim)
        t.ld_requests += w_share * krows * kcols * kchs * _cdiv(ochs, maxb * dim)
        t.ld_bytes += w_share * krows * kcols * kchs * ochs * e
        t.mvin_cmds += w_share * krows * kcols * _cdiv(kchs, dim) * _cdiv(ochs, maxb * dim)
        outs = b * orows * ocols
        if layer.bias:
            t.ld_requests += first * outs * _cdiv(ochs, dim)
            t.ld_bytes += first * outs * ochs * a
            t.mvin_cmds += first * b * orows * _cdiv(ocols, dim) * _cdiv(ochs, dim)
        t.st_requests += last * outs * _cdiv(ochs, dim)
        t.st_bytes += last * outs * ochs * e
        t.mvout_cmds += last * b * orows * _cdiv(ocols, dim) * _cdiv(ochs, dim)
        blocks = _cdiv(ochs, dim) * krows * kcols * _cdiv(kchs, dim)
        t.compute_cmds += blocks * b * orows * _cdiv(ocols, dim)
        t.compute_rows += blocks * b * orows * ocols
        t.weight_blocks += blocks
        work.tiles.append(t)
    return work


def layer_work(layer: Layer, cfg: GemminiConfig) -> LayerWork:
    """The library's tiles of `layer` and what each moves and computes."""
    return matmul_work(layer, cfg) if layer.kind == "matmul" else conv_work(layer, cfg)
