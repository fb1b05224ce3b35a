"""The compiled VNNI loops of `vnni.matmul`: a numba type for a vector of int32 lanes, intrinsics that
emit LLVM's `vpdpbusd` and the loads it reads, and the tile loop written with them.

Imported only where `vnni.lanes()` found the instruction: LLVM cannot compile the intrinsic for a CPU
without it. One compiled loop per form (`tiles16`, `tiles8`), cached on disk like the other loops (`compiled.py`).
"""

from __future__ import annotations

from typing import Any

import llvmlite.ir as lir
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

from .compiled import _compiled
from .vnni import ROWS, VECTORS

_I32 = lir.IntType(32)


def _intrinsic(typer: Any) -> Any:
    """numba's `intrinsic` (typed as what it makes: a function numba code calls without `typingctx`)."""
    return intrinsic(typer)


class Lanes(types.Type):
    """A vector of int32 lanes held in one register (<16 x i32> or <8 x i32>)."""

    def __init__(self, count: int) -> None:
        self.count = count
        super().__init__(name=f"int32x{count}")


@register_model(Lanes)
class _LanesModel(models.PrimitiveModel):
    def __init__(self, dmm: Any, fe_type: Lanes) -> None:
        super().__init__(dmm, fe_type, lir.VectorType(_I32, fe_type.count))


def _address(context: Any, builder: Any, array_type: Any, array: Any, index: Any) -> Any:
    """A pointer to element `index` of a 1-D array."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [index])


@_intrinsic
def _zero(typingctx: Any, count: Any) -> Any:
    """A vector of `count` (a compile-time constant) zero lanes."""
    if not isinstance(count, types.IntegerLiteral):
        return None
    vector = Lanes(count.literal_value)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return lir.Constant(lir.VectorType(_I32, vector.count), None)

    return vector(count), codegen


@_intrinsic
def _load(typingctx: Any, array: Any, index: Any, like: Any) -> Any:
    """The vector (of `like`'s type) of the bytes of `array` from element `index` on (any alignment)."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        at = _address(context, builder, sig.args[0], args[0], args[1])
        vector = lir.VectorType(_I32, like.count)
        return builder.load(builder.bitcast(at, vector.as_pointer()), align=1)

    return like(array, index, like), codegen


@_intrinsic
def _broadcast(typingctx: Any, array: Any, index: Any, flip: Any, like: Any) -> Any:
    """The 4 bytes of `array` at `index`, xor `flip` (0x80808080 makes int8 bytes the unsigned x + 128),
    in every lane."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        at = _address(context, builder, sig.args[0], args[0], args[1])
        word = builder.xor(builder.load(builder.bitcast(at, _I32.as_pointer()), align=1), args[2])
        vector = lir.VectorType(_I32, like.count)
        one = builder.insert_element(lir.Constant(vector, None), word, lir.Constant(_I32, 0))
        return builder.shuffle_vector(one, one, lir.Constant(vector, None))

    return like(array, index, flip, like), codegen


@_intrinsic
def _dot(typingctx: Any, acc: Any, unsigned: Any, signed: Any) -> Any:
    """acc + in each lane the sum of the 4 products of its unsigned bytes by its signed bytes: `vpdpbusd`."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        vector = lir.VectorType(_I32, acc.count)
        name = f"llvm.x86.avx512.vpdpbusd.{32 * acc.count}"  # the 256-bit one is AVX-VNNI's too
        function = cgutils.get_or_insert_function(builder.module, lir.FunctionType(vector, [vector] * 3), name)
        return builder.call(function, args)

    return acc(acc, unsigned, signed), codegen


@_intrinsic
def _put(typingctx: Any, array: Any, index: Any, count: Any, value: Any) -> Any:
    """array[index : index + count] = the first `count` lanes of `value` (a vector, or a tuple of them end to
    end) in the int32 or float32 `array` (converted, to nearest): whole vectors as one store each, the one
    `count` cuts lane by lane."""
    vectors = value.count if isinstance(value, types.UniTuple) else 1
    width = (value.dtype if vectors > 1 else value).count
    floats = array.dtype == types.float32

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        start = _address(context, builder, sig.args[0], args[0], args[1])
        count = builder.sext(args[2], lir.IntType(64)) if args[2].type.width < 64 else args[2]
        for v in range(vectors):
            vector = builder.extract_value(args[3], v) if vectors > 1 else args[3]
            if floats:
                vector = builder.sitofp(vector, lir.VectorType(lir.FloatType(), width))
            at = builder.gep(start, [lir.Constant(lir.IntType(64), v * width)])
            left = builder.sub(count, lir.Constant(lir.IntType(64), v * width))
            whole = builder.icmp_signed(">=", left, lir.Constant(lir.IntType(64), width))
            with builder.if_else(whole, likely=True) as (then, otherwise):
                with then:
                    builder.store(vector, builder.bitcast(at, vector.type.as_pointer()), align=4)
                with otherwise:
                    for lane in range(width):
                        inside = builder.icmp_signed(">", left, lir.Constant(lir.IntType(64), lane))
                        with builder.if_then(inside):
                            element = builder.extract_element(vector, lir.Constant(_I32, lane))
                            builder.store(element, builder.gep(at, [lir.Constant(lir.IntType(64), lane)]), align=4)
        return context.get_dummy_value()

    return types.none(array, index, count, value), codegen


@njit(inline="always")
def _row(acc: Any, x: Any, b0: Any, b1: Any, b2: Any, b3: Any) -> Any:  # pragma: no cover - compiled
    """One row of a tile: x (4 bytes in every lane) against one 4-deep step of each of the 4 vectors."""
    return (_dot(acc[0], x, b0), _dot(acc[1], x, b1), _dot(acc[2], x, b2), _dot(acc[3], x, b3))


@njit(inline="always")
def _put_tile(
    out: Any, at: Any, m: Any, left: Any, r0: Any, r1: Any, r2: Any, r3: Any, r4: Any, r5: Any
) -> None:  # pragma: no cover - compiled
    """The `ROWS` rows of a tile (vectors, or tuples of them) into `out`, row i from out[at + i * m] (`_put`)."""
    _put(out, at, left, r0)
    _put(out, at + m, left, r1)
    _put(out, at + 2 * m, left, r2)
    _put(out, at + 3 * m, left, r3)
    _put(out, at + 4 * m, left, r4)
    _put(out, at + 5 * m, left, r5)


@_compiled
def tiles16(
    a: np.ndarray, k: int, flip: Any, rows: int, b: np.ndarray, m: int, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """`_tiles` in 16 lanes (zmm)."""
    _tiles(a, k, flip, rows, b, m, out, _zero(16), 16)


@_compiled
def tiles8(
    a: np.ndarray, k: int, flip: Any, rows: int, b: np.ndarray, m: int, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """`_tiles` in 8 lanes (ymm)."""
    _tiles(a, k, flip, rows, b, m, out, _zero(8), 8)


@njit(inline="always")
def _tiles(
    a: Any, k: Any, flip: Any, rows: Any, b: Any, m: Any, out: Any, z: Any, width: Any
) -> None:  # pragma: no cover - compiled
    """out[r * m + c] = sum over j of (a[r * k + j] ^ flip byte) * w[j, c] for r < rows (a multiple of `ROWS`),
    `b` the packed weights (`vnni.pack`) of `width` lanes, `z` a zero vector of them. a's bytes are read in
    groups of 4 from each row's start: up to 3 bytes past a row's end (meeting zero weights)."""
    k4, nvec = (k + 3) // 4, (m + width - 1) // width
    step = 4 * width  # bytes of one vector of weights for one 4-deep step
    blocked = nvec // VECTORS * VECTORS
    for r in range(0, rows, ROWS):
        first = r * k
        for v in range(0, blocked, VECTORS):
            base = v * k4 * step
            t0 = t1 = t2 = t3 = t4 = t5 = (z, z, z, z)
            for q in range(k4):
                at = base + q * VECTORS * step
                b0, b1 = _load(b, at, z), _load(b, at + step, z)
                b2, b3 = _load(b, at + 2 * step, z), _load(b, at + 3 * step, z)
                x = first + 4 * q
                t0 = _row(t0, _broadcast(a, x, flip, z), b0, b1, b2, b3)
                t1 = _row(t1, _broadcast(a, x + k, flip, z), b0, b1, b2, b3)
                t2 = _row(t2, _broadcast(a, x + 2 * k, flip, z), b0, b1, b2, b3)
                t3 = _row(t3, _broadcast(a, x + 3 * k, flip, z), b0, b1, b2, b3)
                t4 = _row(t4, _broadcast(a, x + 4 * k, flip, z), b0, b1, b2, b3)
                t5 = _row(t5, _broadcast(a, x + 5 * k, flip, z), b0, b1, b2, b3)
            at, left = r * m + v * width, m - v * width
            _put_tile(out, at, m, left, t0, t1, t2, t3, t4, t5)
        for v in range(blocked, nvec):  # the vectors left, one at a time
            base = v * k4 * step
            s0 = s1 = s2 = s3 = s4 = s5 = z
            for q in range(k4):
                bq, x = _load(b, base + q * step, z), first + 4 * q
                s0 = _dot(s0, _broadcast(a, x, flip, z), bq)
                s1 = _dot(s1, _broadcast(a, x + k, flip, z), bq)
                s2 = _dot(s2, _broadcast(a, x + 2 * k, flip, z), bq)
                s3 = _dot(s3, _broadcast(a, x + 3 * k, flip, z), bq)
                s4 = _dot(s4, _broadcast(a, x + 4 * k, flip, z), bq)
                s5 = _dot(s5, _broadcast(a, x + 5 * k, flip, z), bq)
            at, left = r * m + v * width, m - v * width
            _put_tile(out, at, m, left, s0, s1, s2, s3, s4, s5)
