"""The VNNI product (`emulator.vnni`) against exact integer arithmetic and against the float path it
replaces on CPUs that have the instruction, and the choice between the two.

The kernel tests run in each VNNI form the CPU has (16 lanes: AVX512-VNNI; 8 lanes: AVX-VNNI or
AVX512-VNNI with AVX512VL) and are skipped, saying so, for a form it has not; the dispatch tests run
everywhere.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pytest_tinyaccel.emulator import Graph, vnni
from pytest_tinyaccel.emulator.compiled import REQUANTIZE
from pytest_tinyaccel.emulator.conv import Finish, conv2d

WIDTHS = [16, 8]


def _form(width: int) -> int:
    """`width` when this CPU runs that VNNI form, else skip the test (the emulator then uses its float path)."""
    if width not in vnni.forms():
        pytest.skip(
            f"this CPU has no {width}-lane VNNI form (it has: {list(vnni.forms()) or 'none'}); "
            "the emulator multiplies 8-bit integers with its float path here"
        )
    return width


def _bytes(a: np.ndarray) -> np.ndarray:
    """a as the unsigned bytes `vnni.matmul` multiplies (int8 + 128), in int64."""
    return a.astype(np.int64) + (128 if a.dtype == np.int8 else 0)


def _operands(rng, rows: int, k: int, m: int, dtype, extremes: bool):
    info = np.iinfo(dtype)
    if extremes:  # every product at the edge of its range: 255 or -128 by -128 or 127
        a = rng.choice(np.array([info.min, info.max], dtype), (rows, k))
        w = rng.choice(np.array([-128, 127]), (k, m))
    else:
        a = rng.integers(info.min, info.max + 1, (rows, k)).astype(dtype)
        w = rng.integers(-128, 128, (k, m))
    return a, w


SHAPES = [  # rows, k, m: k not a multiple of 4 or 64, m not of 16 or 64, rows below and around a tile
    (1, 1, 1),
    (5, 3, 7),
    (6, 4, 16),
    (12, 64, 64),
    (13, 7, 5),
    (7, 40, 64),
    (36, 129, 70),
    (25, 256, 200),
    (6, 65, 130),
    (19, 640, 128),
]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("extremes", [False, True])
@pytest.mark.parametrize("rows, k, m", SHAPES)
def test_matmul_is_the_exact_integer_product(width, dtype, extremes, rows, k, m):
    """bytes(a) @ w in int32, equal to NumPy's int64 product and to the float64 BLAS product the float path
    computes, on random and on extreme operands (255 / -128 / 127) of odd shapes."""
    rng = np.random.default_rng(rows * 1000 + k * 10 + m)
    a, w = _operands(rng, rows, k, m, dtype, extremes)
    packed = vnni.pack(w, _form(width))
    assert packed is not None
    want = _bytes(a) @ w
    for dtype in {np.dtype(np.int32), vnni.accumulator(packed)}:
        out = np.full((rows, m), 12345, dtype)
        vnni.matmul(a, packed, out)
        np.testing.assert_array_equal(out, want)
        np.testing.assert_array_equal(out, _bytes(a).astype(np.float64) @ w.astype(np.float64))
    assert np.abs(want).max() <= packed.bound


@pytest.mark.parametrize("width", WIDTHS)
def test_matmul_holds_sums_up_to_the_int32_limit(width):
    """K = 65,000 products of 255 by -128: sums of -2.12e9, inside int32; one more K that could leave it and
    `pack` refuses the weights (the float path then runs the layer), as it refuses weights beyond int8."""
    k = 65_000
    a = np.full((7, k), 255, np.uint8)
    w = np.full((k, 3), -128)
    w[:, 1] = 127
    packed = vnni.pack(w, _form(width))
    assert packed is not None and vnni.accumulator(packed) == np.int32
    out = np.empty((7, 3), np.int32)
    vnni.matmul(a, packed, out)
    np.testing.assert_array_equal(out, np.tile([255 * -128 * k, 255 * 127 * k, 255 * -128 * k], (7, 1)))
    with pytest.raises(ValueError, match="need int32"):  # float32 would round these sums
        vnni.matmul(a, packed, np.empty((7, 3), np.float32))
    assert vnni.pack(np.full((66_000, 2), -128), width) is None
    assert vnni.pack(np.array([[-129, 0]]), width) is None
    assert vnni.pack(np.array([[128, 0]]), width) is None


def test_matmul_refuses_operands_of_other_shapes_or_layouts():
    packed = vnni.pack(np.ones((8, 4), np.int64), 16)
    assert packed is not None
    with pytest.raises(ValueError, match=r"matmul of \(3, 9\) by \(8, 4\)"):
        vnni.matmul(np.zeros((3, 9), np.uint8), packed, np.empty((3, 4), np.int32))
    with pytest.raises(ValueError, match="C-contiguous"):  # a copy would take the results
        vnni.matmul(np.zeros((3, 8), np.uint8), packed, np.empty((4, 3), np.int32).T)
    with pytest.raises(ValueError, match="uint8 or int8 operands, not uint16"):
        vnni.matmul(np.zeros((3, 8), np.uint16), packed, np.empty((3, 4), np.int32))


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("k", [5, 8])
def test_matmul_of_no_rows_writes_nothing(width, k):
    """An empty batch: nothing to multiply, no tail copy (K not a multiple of 4 included)."""
    packed = vnni.pack(np.ones((k, 3), np.int64), _form(width))
    assert packed is not None
    out = np.empty((0, 3), np.float32)
    vnni.matmul(np.zeros((0, k), np.int8), packed, out)
    assert out.shape == (0, 3)


_GUARDED = """
import ctypes, mmap, sys
import numpy as np
from pytest_tinyaccel.emulator import vnni

page = mmap.PAGESIZE
memory = mmap.mmap(-1, 2 * page)
start = ctypes.addressof(ctypes.c_char.from_buffer(memory))
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
assert libc.mprotect(start + page, page, 0) == 0  # the page after the operand: no access
rows, k, width = 12, 5, int(sys.argv[1])
a = np.frombuffer(memory, np.uint8, rows * k, page - rows * k).reshape(rows, k)
w = np.arange(k * 3).reshape(k, 3) % 7 - 3
packed = vnni.pack(w, width)
out = np.empty((rows, 3), np.int32)
vnni.matmul(a, packed, out)
assert (out == a.astype(np.int64) @ w).all()
print("read inside")
"""


@pytest.mark.parametrize("width", WIDTHS)
def test_matmul_reads_nothing_past_its_operand(width):
    """K = 5 is read in groups of 4 bytes: the last row's second group would reach 3 bytes past the row.
    An operand that ends where an inaccessible page begins: the product must not fault (in a process of
    its own, which a fault would end)."""
    import subprocess
    import sys

    _form(width)
    if not sys.platform.startswith("linux"):
        pytest.skip("the guard page is made with Linux's mprotect")
    done = subprocess.run([sys.executable, "-c", _GUARDED, str(width)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "read inside" in done.stdout, done.stderr[-2000:]


def test_dispatch_follows_the_cpu_features(monkeypatch):
    """Which form is used: from the CPU's features and the ones numba compiles for; none (the float path)
    on an AVX2 CPU or when numba targets a CPU without VNNI, and then `pack` returns None."""
    assert vnni.forms_for({"avx", "avx2", "fma"}) == ()
    assert vnni.forms_for({"avx2", "avx512f", "avx512bw", "avx512vl", "avx512vnni"}) == (16, 8)
    assert vnni.forms_for({"avx2", "avx512f", "avx512bw", "avx512vnni"}) == (16,)
    assert vnni.forms_for({"avx2", "avxvnni"}) == (8,)
    from numba.core import config

    vnni.forms.cache_clear()
    monkeypatch.setattr(config, "CPU_FEATURES", "+avx2,+fma,-avx512vnni,-avxvnni")
    try:
        assert vnni.forms() == () and vnni.lanes() == 0
        assert vnni.pack(np.ones((4, 4), np.int64)) is None
    finally:
        vnni.forms.cache_clear()


GEOMETRIES = [  # c, h, w, m, kernel, strides, pads
    (1, 11, 6, 64, (5, 2), (2, 2), (2, 0, 3, 1)),  # one input channel (the first layer of kws)
    (16, 5, 5, 32, (1, 1), (1, 1), (0, 0, 0, 0)),  # pointwise: the input pixels themselves
    (7, 6, 5, 19, (3, 3), (1, 2), (1, 1, 1, 1)),  # K = 63, M not a multiple of 16
    (3, 4, 4, 8, (1, 1), (1, 1), (1, 0, 0, 1)),  # 1x1 with padding: through im2col
    (64, 3, 4, 16, (3, 3), (1, 1), (1, 1, 1, 1)),  # K = 576: sums beyond float32's integers, int32
]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("dtype, zero_point", [(np.uint8, 131), (np.uint8, 0), (np.int8, -7), (np.int8, 127)])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_convolution_is_the_float_paths(monkeypatch, width, dtype, zero_point, geometry):
    """conv2d with packed weights (raw bytes, the padding holding the zero point, the correction in the bias)
    writes the same requantized bytes as the float path (zero point subtracted, float32 GEMM)."""
    _form(width)
    c, h, wd, m, (kh, kw), strides, pads = geometry
    rng = np.random.default_rng(c * h + m)
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max + 1, (3, c, h, wd)).astype(dtype)
    w = rng.choice(np.array([-128.0, 127.0]), (m, c, kh, kw))
    bias = rng.integers(-5000, 5000, m)
    scale = ((rng.random(m) + 0.5) * 100 / (128 * 128 * np.sqrt(c * kh * kw))).astype(np.float32)  # not saturated
    bounds = (3.0, 0.0 - 3, 255.0 - 3)
    geometry_args = (strides, pads, (1, 1), 1)
    float_path = Finish(REQUANTIZE, bias.astype(np.float64), scale, bounds)
    offset = np.asarray(zero_point, np.float64)
    want = conv2d(x, w, *geometry_args, np.float64, offset=offset, epilogue=float_path, out_dtype=np.uint8)
    monkeypatch.setattr(vnni, "lanes", lambda: width)
    packed = vnni.pack(w.transpose(2, 3, 1, 0).reshape(-1, m))
    assert packed is not None and packed.lanes == width
    corrected = (bias + vnni.correction(packed, zero_point, np.dtype(dtype))).astype(np.float64)
    vnni_path = Finish(REQUANTIZE, corrected, scale, bounds)
    acc = vnni.accumulator(packed).type
    got = conv2d(x, w, *geometry_args, acc, offset=offset, epilogue=vnni_path, out_dtype=np.uint8, packed=packed)
    assert got.tobytes() == want.tobytes()
    assert (acc == np.int32) == (c == 64)
    assert len(np.unique(want)) > 40


def _qlinear_conv_and_qgemm(dtype) -> onnx.ModelProto:
    """QLinearConv (3x3, padded, 10 -> 21 channels) -> Flatten -> QGemm (com.microsoft, 21*16 -> 13), 8-bit."""
    rng = np.random.default_rng(7)
    elem = TensorProto.UINT8 if dtype == np.uint8 else TensorProto.INT8
    zp = 119 if dtype == np.uint8 else -9
    inits = [
        numpy_helper.from_array(np.asarray(np.float32(0.05)), "xs"),
        numpy_helper.from_array(np.asarray(zp, dtype), "xz"),
        numpy_helper.from_array(rng.integers(-128, 128, (21, 10, 3, 3)).astype(np.int8), "w"),
        numpy_helper.from_array((rng.random(21) * 0.01 + 0.001).astype(np.float32), "ws"),
        numpy_helper.from_array(np.zeros(21, np.int8), "wz"),
        numpy_helper.from_array(np.asarray(np.float32(0.4)), "ys"),
        numpy_helper.from_array(np.asarray(zp, dtype), "yz"),
        numpy_helper.from_array(rng.integers(-3000, 3000, 21).astype(np.int32), "b"),
        numpy_helper.from_array(rng.integers(-128, 128, (21 * 16, 13)).astype(np.int8), "g"),
        numpy_helper.from_array(np.asarray(np.float32(0.003)), "gs"),
        numpy_helper.from_array(np.asarray(0, np.int8), "gz"),
        numpy_helper.from_array(rng.integers(-9000, 9000, 13).astype(np.int32), "gb"),
        numpy_helper.from_array(np.asarray(np.float32(0.5)), "os"),
        numpy_helper.from_array(np.asarray(zp, dtype), "oz"),
    ]
    nodes = [
        helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["y"], ["f"]),
        helper.make_node(
            "QGemm", ["f", "ys", "yz", "g", "gs", "gz", "gb", "os", "oz"], ["out"], domain="com.microsoft"
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_gemm",
        [helper.make_tensor_value_info("x", elem, ["n", 10, 4, 4])],
        [helper.make_tensor_value_info("out", elem, ["n", 13])],
        inits,
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)]
    )


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_graph_takes_the_cpus_path_and_both_agree(monkeypatch, dtype):
    """A QLinearConv -> QGemm model: the graph packs its weights for the CPU's VNNI form when it has one and
    keeps the float path when it has none (forced here on any CPU); both write the same bytes."""
    model = _qlinear_conv_and_qgemm(dtype)
    info = np.iinfo(dtype)
    x = np.random.default_rng(8).integers(info.min, info.max + 1, (23, 10, 4, 4)).astype(dtype)
    x[0] = info.min
    x[1] = info.max
    packs: list[bool] = []
    real_pack = vnni.pack

    def spy(w, width=None):
        packed = real_pack(w, width)
        packs.append(packed is not None)
        return packed

    monkeypatch.setattr(vnni, "pack", spy)
    here = Graph.load(model).run({"x": x})["out"]
    assert packs == [vnni.lanes() > 0] * 2, "QLinearConv and QGemm pack their weights exactly where VNNI runs"
    packs.clear()
    monkeypatch.setattr(vnni, "lanes", lambda: 0)
    portable = Graph.load(model).run({"x": x})["out"]
    assert packs == [False, False]
    assert here.dtype == portable.dtype and here.tobytes() == portable.tobytes()
    assert len(np.unique(here)) > 100  # requantized values, not a saturated block
