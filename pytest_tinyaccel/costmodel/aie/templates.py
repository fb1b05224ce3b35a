"""onnx2versal kernel templates as loop nests: what each kernel does, read from its source.

`work(template, args)` turns a kernel template and its template arguments (as the
kernels print them, e.g. ``QLinearConvHx4PktStream<h,a,7,16,5,16,1,1,1,64,64,3,3,64>``)
into a `Work`: the trip count of every loop level of the kernel's `filter()`
(exactly as the source of onnx2versal's `design/aie_src/*.cc` at revision 392b325
loops: vector width per dtype, unrolled and pipelined inner loops, scalar paths),
with each level's cost per trip counted from its body (vector MACs, loads through
one pointer, 32-bit stream words); how many rows (tokens) it emits; and its
ports: words per inference, and whether a port is a window (the kernel starts
when it is full), a stream, or a packet stream read whole before computing.

`levels.py` turns trips x counted cost into cycles with constants fitted on
isolated runs of these kernels; `tokensim.py` couples the kernels of a graph.
A template this module does not know gives None (the caller reports it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from .logs import conv_class

WINDOW, STREAM, FILL = "window", "stream", "fill"
"""Input port kinds: a window (acquired full), a stream (consumed row by row), a packet
stream the kernel copies whole into local memory before computing (PktStream kernels)."""

_TYPES = {"f": "fp32", "float": "fp32", "float_t": "fp32", "a": "int8", "h": "int8"}
_UNSIGNED = frozenset({"h", "uint8_t", "unsigned char"})
_TYPES |= {"int8_t": "int8", "uint8_t": "int8", "signed char": "int8", "unsigned char": "int8"}


@dataclass(frozen=True)
class Port:
    words: float
    """32-bit words per inference (int8: 4 elements a word)."""
    kind: str = STREAM
    buffered: bool = False
    """A FIFO deep enough never to hold its producer back: the flow sizes the FIFOs of
    reconvergent paths (the two inputs of a residual Add) so that the graph cannot deadlock."""
    grain: float = 1.0
    """Words the kernel processes as one dependent chain (an int8 pad's row): after the last
    of them arrives, that chain's cost remains before the kernel can end."""


@dataclass
class Work:
    """One kernel's loop nest and interfaces for one inference."""

    template: str
    kind: str
    """Kernel class (calibration.CLASSES), for reports and the baseline."""
    dtype: str
    levels: dict[str, tuple[float, float]]
    """Loop level -> (trips, cycles per trip counted from the source)."""
    tokens: int
    """Rows the kernel emits, in order (1: an output window, released at the end)."""
    inputs: list[Port]
    out_words: float
    out_window: bool = False
    weight_words: float = 0.0
    """Weights streamed in every inference (GMIO in onnx2versal's conv graphs)."""
    macs: float = 0.0
    notes: list[str] = field(default_factory=list)
    variant: str = ""
    """Another loop body of the same template: 'uint8w' when unsigned weights add a msc16."""
    drain: float = 0.0
    """Cycles of the dependent chain from its last input word to its last output word, counted
    from the source (latencies, not throughput): what remains however early the rest was done."""

    @property
    def family(self) -> str:
        """Which fitted constants apply: the loop body's class and dtype (logs.classify's key,
        but a 1x1 template is a 1x1 loop nest whatever its stride), then `.scalar` for the
        scalar implementations and the variant (other loop bodies)."""
        kind = "conv1x1" if "Conv1x1" in self.template else self.kind
        scalar = ".scalar" if "Scalar" in self.template else ""
        return f"{kind}.{self.dtype}{scalar}" + (f".{self.variant}" if self.variant else "")


def ints(args: tuple[str, ...] | list[str]) -> list[int]:
    """Integer template arguments; `a*b*c` products (older prints) are multiplied out."""
    return [math.prod(int(x) for x in a.split("*")) for a in args]


def dtype_of(token: str) -> str:
    return _TYPES.get(token.strip(), "fp32")


def signedness(token: str) -> str:
    """'uint8' for an unsigned 8-bit template type (typeid name `h`), else 'int8'."""
    return "uint8" if token.strip() in _UNSIGNED else "int8"


def words(elems: float, dtype: str) -> float:
    return elems / 4 if dtype == "int8" else float(elems)


def up(x: float, a: int) -> int:
    return int(math.ceil(x / a) * a)


# ----- convolutions -----------------------------------------------------------------------------


def _conv_fp32(t: str, a: list[int]) -> Work:
    inp_h, inp_w, _, out_w_pad, sh, sw, b, c, m, kh, kw, group = a[:12]
    out_h = (inp_h - kh) // sh + 1
    cpm = c // group
    rows = b * m * out_h
    lv: dict[str, tuple[float, float]] = {"call": (1, 60.0), "m": (b * m, 12.0), "row": (rows, 4.0)}
    if t == "ConvHx8ReluStream":  # two output rows at once, two interleaved accumulators
        ckk = cpm * kh * 8
        vec = b * m * math.ceil(out_h / 2) * (out_w_pad // 8)
        lv |= {"vec": (vec, 16.0), "mac": (vec * cpm * 2 * kh * kw, 1.0)}
        lv |= {"rowwrite": (b * m * math.ceil(out_h / 2) * out_w_pad / 4, 4.0)}
    elif t.startswith("Conv1x1"):
        ckk = up(cpm, 4)
        vec = rows * math.ceil(out_w_pad / (8 // sw))
        lv |= {"vec": (vec, 10.0), "mac": (vec * cpm, 2.0)}  # one accumulator: dependent MACs
    else:  # ConvHx4Relu(Pkt)Stream: KW <= 4 taps per fpmac lane shift, one accumulator
        ckk = cpm * up(kh * kw, 4)
        vec = rows * math.ceil(out_w_pad / (8 // sw))
        lv |= {"vec": (vec, 10.0), "mac": (vec * cpm * kh * kw, 2.0)}
    lv["wload"] = (b * m * ckk / 4, 1.0)
    inp = b * c * inp_h * inp_w
    port = Port(inp, WINDOW)
    if "Pkt" in t:
        lv["fill"] = (inp + 2 * b * c, 1.0)  # getf_ss: one word a cycle, a header per channel
        port = Port(inp, FILL)
    macs = b * m * out_h * out_w_pad * cpm * kh * kw
    kind = conv_class(c, group, kh, kw, sh)
    return Work(t, kind, "fp32", lv, rows, [port], rows * out_w_pad, False, b * m * ckk, macs)


LOAD_TO_USE = 7.0
"""Cycles from issuing a vector load to using its data: the AGU has the address in E2 and
the loaded data reaches the core in E7 (UG1702, "Enabling AI Engine Pipeline")."""
STORE_TO_LOAD = 6.0 + LOAD_TO_USE
"""A vector stored to data memory and read back: the store unit sends the data in E5 or E6
(UG1702, same section), then a load's latency."""
VECTOR_LATENCY = 6.0
"""Cycles from issuing a vector instruction to using its result in another one: the vector unit
spans the ID to E6 stages (UG1702, same section). MACs chained on one accumulator issue a cycle
apart (the accumulator is forwarded)."""


def _conv_int8(t: str, a: list[int], wtype: str) -> Work:
    """The QLinearConv*Stream loop nests (qlinearconv.cc at 392b325): per output channel m
    the CKK weights are read from the weight stream, then per output row and 16-column vector
    the channel loop accumulates, then one requantizing MAC and a 16-byte stream write."""
    inp_h, inp_w, _, out_w_pad, sh, sw, b, c, m, kh, kw, group = a[:12]
    out_h = (inp_h - kh) // sh + 1
    cpm = c // group
    rows = b * m * out_h
    vec = rows * math.ceil(out_w_pad / (16 // sw))
    # MAC_ROW is one mac16, and a second vector op (msc16 with the weight zero point) when
    # the weights are unsigned (TTPARAM uint8_t); qlinearconv.cc's Hx6x8bit path has no msc16
    ops = 2 if wtype == "uint8" and "Hx6x8bit" not in t else 1
    lv: dict[str, tuple[float, float]] = {"call": (1, 60.0), "m": (b * m, 12.0), "row": (rows, 4.0)}
    # with a channel loop inside it, the w loop is not software-pipelined: the latencies of
    # the channel loop's first loads and of stride 2's trip through memory are exposed per
    # vector; without one (a single channel, or fewer than 16 for 1x1) they are hidden
    looped = cpm >= 16 if "1x1" in t else cpm > 1
    lv["vec"] = (vec, 10.0 if sw == 1 or looped else 14.0)  # requantize, 16 bytes out
    if sw == 2 and looped:  # the 16 results go through memory ((int *) &tmp) to two put_ms
        lv["spill"] = (vec, STORE_TO_LOAD)
    if "1x1" in t:  # per channel pair: two 16-byte loads through in_ptr, MAC_ROW; per 16: a weight unpack
        ckk = up(cpm, 16)
        lv["chan"] = (vec * (cpm // 2), max(2.0, ops))
        lv["cgroup"] = (vec * math.ceil(cpm / 16) if looped else 0, LOAD_TO_USE + 1.0)  # + the unpack
        lv["mac"] = (vec * (cpm % 2), max(1.0, ops))  # the odd channel: one load, MAC_ROW
    elif "Hx6x8bit" in t:  # per kernel row: a weight load (ckk_row_ptr), a data load (in_ptr), a mac16
        ckk = cpm * kh * 16
        lv["chan"] = (vec * cpm, float(kh))
        lv["cgroup"] = (vec if looped else 0, LOAD_TO_USE)  # the pipelined channel loop's fill
    else:  # Hx4: per 4 kernel rows a weight load and unpack; per kernel row a 32-byte load and MAC_ROW
        ckk = cpm * up(kh * kw, 16)
        lv["chan"] = (vec * cpm, float(max(kh * ops + kh // 4 + 1, kh)))
        lv["cgroup"] = (vec if looped else 0, LOAD_TO_USE)  # the pipelined channel loop's fill
    # per m, readincr_v16 copies the CKK weights from the weight stream before computing:
    # 16 bytes are four 32-bit stream words, a word a cycle (not overlapped with the MACs)
    lv["wstream"] = (b * m * ckk / 16, 4.0)
    inp = b * c * inp_h * inp_w
    port = Port(inp / 4, WINDOW)
    if "Pkt" in t:
        lv["fill"] = (inp / 16 + 2 * b * c, 4.0)  # 128-bit stream reads, 4 words each
        port = Port(inp / 4, FILL)
    macs = b * m * out_h * out_w_pad * cpm * kh * kw
    kind = conv_class(c, group, kh, kw, sh)
    out = Work(t, kind, "int8", lv, rows, [port], rows * out_w_pad / 4, False, b * m * ckk / 4, macs)
    out.variant = "uint8w" if ops == 2 else ""
    return out


# ----- matrix products --------------------------------------------------------------------------


def _gemm_fp32(t: str, a: list[int]) -> Work:
    m, k, n = a[:3]
    lv: dict[str, tuple[float, float]] = {"call": (1, 60.0)}
    if "Scalar" in t:  # one multiply-add per element, a window read and a weight load each
        lv |= {"vec": (m * n, 8.0), "mac": (m * n * k, 4.0)}
    else:  # 16 outputs per iteration, two interleaved accumulators, two weight loads per pair
        blocks = m * math.ceil(n / 16)
        lv |= {"vec": (blocks, 16.0), "mac": (blocks * 2 * k, 1.0)}
    return Work(t, "gemm", "fp32", lv, 1, [Port(m * k, WINDOW)], m * n, True, 0.0, m * k * n)


def _qgemm(t: str, a: list[int], unsigned: bool = False) -> Work:
    """QgemmStream (qgemm.cc at 392b325): per input row, the first 16 output columns are computed
    while the row is read from the stream (16 bytes a step, stored for the other columns); the
    other columns only once the whole row is in. So the row is read like a fill phase whose cost
    is the first block's, and the other blocks follow it."""
    m, k, n = a[:3]
    blocks = m * math.ceil(n / 16)
    steps = math.ceil(k / 16) * 2  # per 16 bytes of the row: two mac16, eight 16-byte weight loads each
    lv = {"call": (1.0, 60.0), "vec": (float(blocks), 12.0)}
    lv["fill"] = (float(m * steps), 9.0)
    lv["mac"] = ((blocks - m) * steps, 9.0)
    port = Port(m * k / 4, FILL)
    out = Work(t, "gemm", "int8", lv, max(blocks - m, 1), [port], m * n / 4, False, 0.0, m * k * n)
    out.drain = qgemm_drain(unsigned)
    return out


def qgemm_drain(unsigned: bool) -> float:
    """QgemmStream after the row's last 16 bytes arrive: stored and loaded back, two mac16 (and
    two msc16 with unsigned weights) on one accumulator, the bias add, a shift to int32, the
    requantizing MAC, a shift to 8 bits (each a vector result used by the next), and 16 bytes
    written to the stream, a word a cycle."""
    macs = 4 if unsigned else 2
    return STORE_TO_LOAD + (macs - 1) + VECTOR_LATENCY + 4 * VECTOR_LATENCY + 4


# ----- data movement ----------------------------------------------------------------------------


def _pad(t: str, a: list[int], dtype: str) -> Work:
    b, h, w, w_pad, h0, h1, w0, w1 = a[:8]
    out_h, out_w = h + h0 + h1, w + w0 + w1
    rows = b * h
    if dtype == "fp32":  # a copy at the stream ports' rate: per row the longer of its input and output words
        lv = {"call": (1.0, 40.0)}  # pipelined: the loop's overhead hides behind the port
        lv["copy"] = (float(rows * max(w_pad, out_w) + b * (h0 + h1) * out_w), 1.0)
    else:  # 16 bytes per beat, shuffles to realign every row that is not a multiple of 16
        lv = {"call": (1.0, 40.0), "row": (float(rows), 14.0), "beat": (rows * math.ceil(w / 16), 4.0)}
        lv["padbeat"] = (b * (h0 + h1) * out_w / 16 + rows * (w0 + w1) / 16, 4.0)
    # the input never holds its producer back (buffered): in the VCK190 logs the concat that
    # feeds a pad ends 14-30k cycles before the pad does, its parts 3k after the pad before them
    # after its last input word a pad still writes its right and bottom padding (an int8 row
    # at least, realigned through a chain of shuffles): that is its grain
    trailing = max(words(w1 + h1 * out_w, dtype), words(w_pad, dtype) if dtype == "int8" else 1.0)
    inp = Port(words(rows * w_pad, dtype), STREAM, True, trailing)
    return Work(t, "pad", dtype, lv, b * out_h, [inp], words(b * out_h * out_w, dtype))


def _concat(t: str, a: list[int], dtype: str) -> Work:
    h, w1, w2, out_w = a[:4]
    # a pipelined copy loop per input and row: one 32-bit word a cycle through the stream ports
    # (fp32: readincr/writeincr, a word; int8: readincr_v16/writeincr_v16, 16 bytes in 4 cycles)
    lanes, per = (1, 1.0) if dtype == "fp32" else (16, 4.0)
    lv = {"call": (1.0, 30.0), "copy_row": (2.0 * h, 2.0), "copy": (h * out_w / lanes, per)}
    ins = [Port(words(h * w1, dtype)), Port(words(h * w2, dtype))]
    out = words(h * out_w, dtype)  # a stream of words: a token per 128-bit beat, not per row
    return Work(t, "concat", dtype, lv, max(h, int(out // 4)), ins, out)


def _split(t: str, a: list[int], dtype: str) -> Work:
    """The split kernels that feed a layer's parts (they do not print their cycles)."""
    h, inp_w, out_w, overlap = a[:4]
    lcnt = max(1, (inp_w - out_w) // max(out_w - overlap, 1) + 1)
    sent = h * (out_w * lcnt)
    per = 1.0 if dtype == "fp32" else 4.0
    lv = {"call": (1.0, 30.0), "row": (float(h * lcnt), 6.0), "elem": (sent / (1 if dtype == "fp32" else 16), per)}
    return Work(t, "split", dtype, lv, h, [Port(words(h * inp_w, dtype))], words(sent, dtype))


def _split_windows(t: str, a: list[int], dtype: str) -> Work:
    """SplitScalar/SplitInt8 (split.cc at 392b325): a stream cut into LCNT output windows (the
    channel chunks of a pooling layer): per element (fp32) or 16 bytes (int8) a stream read
    and a window write, `OVERLAP` elements written to two windows; the windows are released
    when the kernel ends."""
    h, inp_w, out_w, overlap = a[:4]
    lcnt = max(1, (inp_w - out_w) // max(out_w - overlap, 1) + 1)
    moved = h * max(inp_w, out_w * lcnt)
    lanes = 1 if dtype == "fp32" else 16
    lv = {"call": (1.0, 30.0), "row": (float(h * lcnt), 6.0), "elem": (moved / lanes, 2.0 if lanes == 1 else 4.0)}
    out = words(h * out_w * lcnt, dtype)
    # steps: one per output chunk of a row, each reading its share of the stream
    return Work(t, "split", dtype, lv, h * lcnt, [Port(words(h * inp_w, dtype))], out, True)


def _pool(t: str, a: list[int]) -> Work:
    inp_h, inp_w, out_h, out_w, b, c, kh, kw = a[:8]
    dtype = "int8" if "Int8" in t or t.startswith("QLinear") else "fp32"
    if "2x2" in t:  # vectors of 8 (fp32) / 32 (int8) inputs, max over shuffles
        lanes = 8 if dtype == "fp32" else 16
        lv = {"call": (1.0, 40.0), "vec": (b * c * (inp_h / 2) * math.ceil(inp_w / lanes), 6.0)}
    else:  # scalar: one window read and compare (or add) per input element
        add = 3.0 if "Avg" in t else 2.0  # a float add chains on its result; a compare does not
        lv = {"call": (1.0, 40.0), "elem": (float(b * c * out_h * out_w * kh * kw), add)}
        lv["out"] = (float(b * c * out_h * out_w), 30.0 if t.startswith("QLinear") else 4.0)  # round, clamp
    out_stream = t.startswith("QLinear")
    out = words(b * c * out_h * out_w, dtype)
    ins = [Port(words(b * c * inp_h * inp_w, dtype), WINDOW)]
    return Work(t, "pool", dtype, lv, b * c if out_stream else 1, ins, out, not out_stream)


def _transpose(t: str, a: list[int], dtype: str) -> Work:
    b, h, w, c = a[:4]
    lv = {"call": (1.0, 30.0), "row": (float(b * c), 8.0), "elem": (float(b * c * h * w), 4.0)}
    ins = [Port(words(b * h * w * c, dtype), WINDOW)]
    return Work(t, "transpose", dtype, lv, b * c, ins, words(b * h * w * c, dtype))


def _quantize(t: str, a: list[int]) -> Work:
    inp_h, inp_w, out_w = a[:3]
    lv = {"call": (1.0, 30.0), "row": (float(inp_h), 10.0), "vec": (inp_h * math.ceil(inp_w / 16), 8.0)}
    return Work(t, "quantize", "int8", lv, inp_h, [Port(float(inp_h * inp_w))], inp_h * out_w / 4)


def _dequantize(t: str, a: list[int]) -> Work:
    b, inp_w, out_w = a[:3]
    lv = {"call": (1.0, 30.0), "vec": (b * math.ceil(out_w / 16), 6.0)}
    return Work(t, "dequantize", "int8", lv, 1, [Port(b * inp_w / 4, WINDOW)], float(b * out_w), True)


def _softmax(t: str, a: list[int], dtype: str) -> Work:
    h, w, w_pad = a[:3]
    if "Scalar" in t:  # expf per element
        lv = {"call": (1.0, 40.0), "row": (float(h), 60.0), "elem": (float(h * w), 2500.0)}
    else:  # fastexp: 8 squarings per vector
        lanes = 8 if dtype == "fp32" else 16
        lv = {"call": (1.0, 40.0), "row": (float(h), 60.0), "vec": (h * math.ceil(w_pad / lanes), 20.0)}
    out_stream = dtype == "int8"
    return Work(t, "softmax", dtype, lv, h if out_stream else 1, [Port(words(h * w_pad, dtype), WINDOW)],
                words(h * w_pad, dtype), not out_stream)  # fmt: skip


def _add(t: str, a: list[int], dtype: str) -> Work:
    w = a[0]
    per = 4 if dtype == "fp32" else 16
    lv = {"call": (1.0, 30.0), "vec": (w / per, 2.0 if dtype == "fp32" else 4.0)}
    ins = [Port(words(w, dtype), STREAM, True), Port(words(w, dtype), STREAM, True)]
    return Work(t, "add", dtype, lv, max(1, w // 256), ins, words(w, dtype))


# ----- dispatch ---------------------------------------------------------------------------------


def _typed(fn: Callable[[str, list[int], str], Work]) -> Callable[[str, tuple[str, ...]], Work]:
    """A template whose first argument is its element type."""
    return lambda t, args: fn(t, ints(args[1:]), dtype_of(args[0]))


def _plain(fn: Callable[[str, list[int]], Work], skip: int = 0) -> Callable[[str, tuple[str, ...]], Work]:
    return lambda t, args: fn(t, ints(args[skip:]))


TEMPLATES: dict[str, Callable[[str, tuple[str, ...]], Work]] = {
    **{n: _plain(_conv_fp32) for n in ("ConvHx4ReluStream", "ConvHx4ReluPktStream", "ConvHx8ReluStream")},
    **{n: _plain(_conv_fp32) for n in ("Conv1x1ReluStream", "Conv1x1ReluPktStream")},
    **{
        n: lambda t, args: _conv_int8(t, ints(args[2:]), signedness(args[1]))
        for n in (
            "QLinearConvHx4Stream",
            "QLinearConvHx4PktStream",
            "QLinearConv1x1Stream",
            "QLinearConv1x1PktStream",
            "QLinearConvHx6x8bitStream",
        )
    },
    "GemmReluMKKN": _plain(_gemm_fp32),
    "GemmReluScalarMKKN": _plain(_gemm_fp32),
    "QgemmStream": lambda t, args: _qgemm(t, ints(args[2:]), signedness(args[1]) == "uint8"),
    "Pad2DStreamFloat": _typed(_pad),
    "Pad2DStreamInt8": _typed(_pad),
    "ConcatFloatStream": _typed(_concat),
    "ConcatInt8Stream": _typed(_concat),
    "SplitFilterFloatPktStream": _typed(_split),
    "SplitFilterInt8PktStream": _typed(_split),
    "SplitScalar": _typed(_split_windows),
    "SplitInt8": _typed(_split_windows),
    **{n: _plain(_pool) for n in ("Maxpool2x2FloatBCHW", "Maxpool2x2Int8BCHW", "MaxpoolScalarBCHW")},
    **{n: _plain(_pool) for n in ("AvgpoolScalarBCHW", "QLinearAvgpoolScalarBCHW")},
    "TransposeScalarBHWC2BCHW": _typed(_transpose),
    "QuantizeLinearFmulStream": _plain(_quantize, 1),
    "DequantizeLinear": _plain(_dequantize, 1),
    "SoftmaxScalar": lambda t, args: _softmax(t, ints(args), "fp32"),
    "SoftmaxSingleaxis": lambda t, args: _softmax(t, ints(args), "fp32"),
    "QLinearSoftmaxSingleaxis": lambda t, args: _softmax(t, ints(args[1:]), "int8"),
    "AddFloat": _typed(_add),
    "QLinearAddInt8": lambda t, args: _add(t, ints(args[1:]), "int8"),
}
"""Every onnx2versal template the model knows (those of the VCK190 logs and of its mapping)."""


def work(template: str, args: tuple[str, ...] | list[str]) -> Work | None:
    """The loop nest of `template<args>`, or None when the template is unknown or its
    arguments do not parse."""
    make = TEMPLATES.get(template)
    if make is None:
        return None
    try:
        return make(template, tuple(str(x) for x in args))
    except (ValueError, IndexError, ZeroDivisionError):
        return None


def base_cycles(w: Work) -> float:
    """Cycles of the loop nest at its counted costs (before the fitted scale)."""
    return sum(trips * cost for trips, cost in w.levels.values())
