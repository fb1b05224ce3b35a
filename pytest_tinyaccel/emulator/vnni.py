"""8-bit matrix products with the CPU's VNNI instruction (`vpdpbusd`), on the CPUs that have it.

The portable path multiplies 8-bit integers as float32 BLAS GEMMs (exact below
2^24): 16 products per 512-bit FMA. `vpdpbusd` multiplies 64 unsigned by 64
signed bytes and adds each group of four products into one of 16 int32 lanes,
exactly; ONNX Runtime's own 8-bit kernels use it on such CPUs. LLVM emits it from
no portable loop (an 8-bit dot product in numba becomes `vpdpwssd` or
`vpmaddwd`), so the kernel here names the LLVM intrinsic itself: a numba type for
a vector of int32 lanes and a few intrinsics (load, broadcast, `vpdpbusd`, store)
from which the compiled loops are written.

`lanes()` says which form the emulator uses: 16 lanes (AVX512-VNNI, zmm), 8
(AVX-VNNI, or AVX512-VNNI with AVX512VL, ymm), or 0, and then nothing here is
compiled and the callers keep the float path. A form must be both the CPU's and
one numba compiles for (NUMBA_CPU_FEATURES can target another CPU).

The product: `matmul(a, packed, out)` writes out = bytes(a) @ w (int32, or
float32 where every sum is below 2^24), where
bytes(a) are a's unsigned bytes (a itself for uint8, a + 128 for int8: the sign
bit flipped as the bytes are broadcast) and w the signed 8-bit weights `pack`
laid out once per layer: per block of 4 vectors of output columns and per 4
consecutive k, each column's 4 weights side by side, as `vpdpbusd` reads them.
The caller removes the zero point: bytes(a) = a - zp + zp', so
(a - zp) @ w = out - zp' * column_sums(w), a constant per column that goes into
the bias. The tile: 6 rows x 4 vectors (24 accumulators in registers), the 4
bytes of a row broadcast to every lane, k in steps of 4 (a k beyond K meets zero
weights, so reading a row's next bytes changes no sum).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np

ROWS = 6
"""Rows of a tile (the compiled loops only ever see whole tiles; `matmul` pads the last one)."""
VECTORS = 4
"""Vectors of output columns per block of the tile."""
_INT32_SUMS = 2**31
"""int32 accumulators hold every sum below this (vpdpbusd wraps around beyond it)."""
_F32_EXACT = 2**24
"""float32 holds every integer below this."""


def lanes() -> int:
    """int32 lanes of the VNNI form the emulator uses here: 16, 8, or 0 (none: the float path)."""
    return max(forms(), default=0)


@functools.cache
def forms() -> tuple[int, ...]:
    """The VNNI forms (int32 lanes) this CPU runs and numba compiles for, widest first."""
    try:
        import llvmlite.binding as ll
        from numba.core import config

        host = _plus(ll.get_host_cpu_features().flatten())
    except (ImportError, RuntimeError):  # llvmlite knows no features on this platform
        return ()
    chosen = getattr(config, "CPU_FEATURES", None)  # NUMBA_CPU_FEATURES
    target = host if chosen is None else _plus(chosen)
    return forms_for(host & target)


def forms_for(features: set[str]) -> tuple[int, ...]:
    """The VNNI forms of a CPU with these LLVM features: 16 lanes (zmm) with AVX512-VNNI (and AVX512BW),
    8 (ymm) with AVX-VNNI or with AVX512-VNNI and AVX512VL."""
    wide = {"avx512f", "avx512bw", "avx512vnni"} <= features
    narrow = "avxvnni" in features or {"avx512vnni", "avx512vl"} <= features
    return (16,) * wide + (8,) * narrow


def _plus(features: str) -> set[str]:
    """The features an LLVM feature string turns on ("+avx2,-avx512f" -> {"avx2"})."""
    return {f.strip()[1:] for f in features.split(",") if f.strip().startswith("+")}


class Packed(NamedTuple):
    """8-bit weights (K, M) laid out for `matmul`."""

    data: np.ndarray
    """int8, flat: the blocks of 4 vectors of columns, then the vectors left one by one (see the module)."""
    k: int
    m: int
    lanes: int
    column_sums: np.ndarray
    """(M,) int64: the sum of each column's weights (the zero-point correction)."""
    bound: float
    """The largest magnitude a sum of `matmul` can reach (255 times a column's absolute weights)."""


def pack(w: np.ndarray, width: int | None = None) -> Packed | None:
    """`w` (K, M), integers, packed for `matmul` in `width` lanes (default: this CPU's form); None when
    there is no form, a weight leaves int8 or a sum of K unsigned bytes times the weights could leave int32."""
    width = lanes() if width is None else width
    if not width or w.ndim != 2 or not w.size:
        return None
    bound = 255 * float(np.abs(w).sum(axis=0, dtype=np.float64).max())
    if w.min() < -128 or w.max() > 127 or bound >= _INT32_SUMS:
        return None
    k, m = w.shape
    k4, nvec = -(-k // 4), -(-m // width)
    full = np.zeros((4 * k4, nvec * width), np.int8)
    full[:k, :m] = w
    parts = []
    blocked = nvec // VECTORS * VECTORS
    for v in range(0, blocked, VECTORS):  # (k4, 4, vectors, lanes) -> (k4, vectors, lanes, 4)
        block = full[:, v * width : (v + VECTORS) * width].reshape(k4, 4, VECTORS, width)
        parts.append(block.transpose(0, 2, 3, 1).reshape(-1))
    for v in range(blocked, nvec):
        parts.append(full[:, v * width : (v + 1) * width].reshape(k4, 4, width).transpose(0, 2, 1).reshape(-1))
    sums = w.sum(axis=0, dtype=np.float64).astype(np.int64)
    return Packed(np.ascontiguousarray(np.concatenate(parts)), k, m, width, sums, bound)


def matmul(a: np.ndarray, packed: Packed, out: np.ndarray) -> None:
    """out (R, M) = bytes(a) @ w for a (R, K) uint8 or int8, both C-contiguous (see the module): int32, or
    float32 (exact too) for weights whose sums stay below 2^24 (`accumulator`).

    Whole tiles of `ROWS` rows are read where they lie; the last rows (and, when K is not a multiple of 4,
    the last tile, whose last row the 4-byte groups would read past) go through a zero-padded copy."""
    from .compiled_vnni import tiles8, tiles16  # numba and the intrinsics, on first use

    rows, k = a.shape
    if k != packed.k or out.shape != (rows, packed.m):
        raise ValueError(f"matmul of {a.shape} by ({packed.k}, {packed.m}) into {out.shape}")
    if a.dtype not in (np.uint8, np.int8):
        raise ValueError(f"matmul multiplies uint8 or int8 operands, not {a.dtype}")
    if not (a.flags.c_contiguous and out.flags.c_contiguous):
        raise ValueError("matmul reads and writes C-contiguous arrays only")
    if out.dtype != accumulator(packed) and out.dtype != np.int32:
        raise ValueError(f"matmul into {out.dtype}: these weights' sums need {accumulator(packed)}")
    flat, target = a.reshape(-1).view(np.uint8), out.reshape(-1)
    flip = np.uint32(0x80808080 if a.dtype == np.int8 else 0)
    tiles = tiles16 if packed.lanes == 16 else tiles8
    whole = rows // ROWS * ROWS
    if k % 4 and whole == rows > 0:
        whole -= ROWS
    if whole > 0:
        tiles(flat, k, flip, whole, packed.data, packed.m, target)
    if whole < rows:
        tail = np.zeros(ROWS * k + 4, np.uint8)
        tail[: (rows - whole) * k] = flat[whole * k :]
        part = np.empty(ROWS * packed.m, out.dtype)
        tiles(tail, k, flip, ROWS, packed.data, packed.m, part)
        out[whole:] = part.reshape(ROWS, packed.m)[: rows - whole]


def accumulator(packed: Packed) -> np.dtype:
    """The output type of `matmul` for these weights: float32 (the epilogues' fast type) where every sum is
    an integer it holds exactly (below 2^24), else int32."""
    return np.dtype(np.float32 if packed.bound < _F32_EXACT else np.int32)


def correction(packed: Packed, zero_point: Any, dtype: np.dtype) -> np.ndarray:
    """What (a - zero_point) @ w differs from `matmul`'s bytes(a) @ w by, per column (int64): the zero point
    as the unsigned byte it is to `vpdpbusd` (+128 for int8 a), times the column's sum of weights."""
    byte = int(zero_point) + (128 if np.dtype(dtype) == np.int8 else 0)
    return -byte * packed.column_sums
