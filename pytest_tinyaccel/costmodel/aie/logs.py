"""Per-kernel aiesimulator cycle logs: reading them and turning them into samples to fit.

Two formats carry the same facts (graph, kernel template, template arguments,
start and end cycle of one inference):

* CSV with the columns `graph,kernel,template_args,start,end[,total]`, as in
  `onnx2versal_vck190_kernels.csv` (the shipped calibration's source);
* the simulator log itself: kernels that time themselves with
  `aie::tile::current().cycles()` print `Running <Kernel><args>` and then
  `start = A,end = B,total = C` (read by `readers.simlogs.aie_kernel_cycles`,
  as for the command target). One log
  is one graph (named after the file); it should hold one inference, as
  `make aiesim_profile` runs it. Prints without start/end cannot be placed in
  time and are skipped with a note.

**Exposed cycles.** Kernels of a dataflow graph overlap: a stream kernel starts
at graph start and blocks on its input, so its `total` includes waiting. What a
kernel adds to the latency is the time between its input being complete and
its own end: ``exposed = end - ready``, where ``ready`` is the end of the latest
kernel that finished before it (the graph's first start for the first kernels).
A window kernel that starts well after `ready` was waiting for its window to be
filled (or for a kernel that does not log itself, such as a split): that wait
is part of what it adds, so it is counted. Parallel parts of one layer (the
same template and arguments, ending within 5 % of the graph's span of each
other) do not feed each other: they share the `ready` of the earliest of them.
Parallel parts: compute kernels only; data-movement kernels with equal arguments
(the concats of a tree) wait for different inputs. Summed along the chain, the
exposed cycles add up to the graph's latency, which is how the model composes
them again (`schedule.py`).

**Kernel classes.** `classify` maps an onnx2versal kernel template and its
arguments to one of the model's kernel classes (`calibration.CLASSES`), its
dtype and its work features (MACs, elements moved); templates it does not know
are returned as None and reported by the caller.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ...readers.simlogs import aie_kernel_cycles

SIBLING_WINDOW = 0.05
"""Parts of one layer end within this share of the graph's span of each other."""


@dataclass(frozen=True)
class LogKernel:
    """One kernel instance of one graph, as logged."""

    graph: str
    kernel: str
    args: tuple[str, ...]
    start: int
    end: int

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return self.kernel, self.args


@dataclass(frozen=True)
class Sample:
    """A logged kernel with what the model needs to fit it."""

    graph: str
    kernel: str
    args: tuple[str, ...]
    kind: str
    """Kernel class (calibration.CLASSES)."""
    dtype: str
    features: dict[str, float]
    exposed: float
    """Cycles the kernel added after its input was complete (see the module docstring)."""


@dataclass
class LogSet:
    """Everything read from a set of logs."""

    samples: list[Sample] = field(default_factory=list)
    latency: dict[str, int] = field(default_factory=dict)
    """Per graph: last end - first start, as the flow reports latency."""
    skipped: list[str] = field(default_factory=list)
    """Kernels (or prints) that could not be used, with the reason."""

    def graphs(self) -> list[str]:
        return sorted(self.latency)


def split_template(name: str) -> tuple[str, tuple[str, ...]]:
    """`Kernel<a, b, c>` -> ("Kernel", ("a", "b", "c")); a name without `<` has no arguments."""
    name = name.strip()
    if "<" not in name:
        return name, ()
    base, _, rest = name.partition("<")
    inner = rest.rsplit(">", 1)[0]
    return base.strip(), tuple(a.strip() for a in inner.split(",") if a.strip())


def read_csv(text: str, source: str = "csv") -> list[LogKernel]:
    """Rows of a `graph,kernel,template_args,start,end[,total]` table."""
    reader = csv.DictReader(io.StringIO(text))
    need = {"graph", "kernel", "template_args", "start", "end"}
    missing = need - set(reader.fieldnames or [])
    if missing:
        raise ValueError(f"{source}: missing column(s) {sorted(missing)}; expected {sorted(need)}")
    rows = []
    for line, row in enumerate(reader, start=2):
        try:
            start, end = int(row["start"]), int(row["end"])
        except ValueError:
            raise ValueError(
                f"{source}:{line}: start/end must be integers, got {row['start']!r}, {row['end']!r}"
            ) from None
        args = tuple(a.strip() for a in row["template_args"].split(",") if a.strip())
        rows.append(LogKernel(row["graph"].strip(), row["kernel"].strip(), args, start, end))
    return rows


def read_simlog(text: str, graph: str) -> tuple[list[LogKernel], list[str]]:
    """Kernel prints of one simulator log (one graph, `readers.simlogs.aie_kernel_cycles`);
    also the prints it had to skip: those without start/end cycles cannot be placed in time."""
    kernels, skipped = [], []
    for printed in aie_kernel_cycles(text, unnamed=False):
        if printed.start is None or printed.end is None:
            skipped.append(f"{graph}: {printed.name}: no start/end cycles (only a total)")
            continue
        kernel, args = split_template(printed.name)
        kernels.append(LogKernel(graph, kernel, args, printed.start, printed.end))
    return kernels, skipped


def read_logs(paths: Iterable[str | Path]) -> LogSet:
    """Read CSV tables (`.csv`) and simulator logs (anything else) into samples."""
    rows: list[LogKernel] = []
    out = LogSet()
    for path in map(Path, paths):
        text = path.read_text(errors="replace")
        if path.suffix.lower() == ".csv":
            rows.extend(read_csv(text, str(path)))
        else:
            printed, skipped = read_simlog(text, path.stem)
            rows.extend(printed)
            out.skipped.extend(skipped)
    by_graph: dict[str, list[LogKernel]] = {}
    for row in rows:
        by_graph.setdefault(row.graph, []).append(row)
    for graph, kernels in sorted(by_graph.items()):
        out.latency[graph] = max(k.end for k in kernels) - min(k.start for k in kernels)
        for kernel, exposed in exposed_cycles(kernels):
            known = classify(kernel.kernel, kernel.args)
            if known is None:
                out.skipped.append(f"{graph}: {kernel.kernel}<{','.join(kernel.args)}>: unknown kernel template")
                continue
            kind, dtype, features = known
            out.samples.append(Sample(graph, kernel.kernel, kernel.args, kind, dtype, features, exposed))
    return out


def exposed_cycles(kernels: list[LogKernel]) -> list[tuple[LogKernel, float]]:
    """Per kernel of one graph, the cycles it added after its input was complete."""
    if not kernels:
        return []
    first = min(k.start for k in kernels)
    ready = ready_of(kernels)
    return [(k, float(max(k.end - (first if r is None else kernels[r].end), 1))) for k, r in zip(kernels, ready)]


def ready_of(kernels: list[LogKernel]) -> list[int | None]:
    """Per kernel, the index of the kernel whose end made its input complete (None: graph start)."""
    span = max(k.end for k in kernels) - min(k.start for k in kernels)
    window = SIBLING_WINDOW * span
    parallel = [_is_part(k) for k in kernels]
    ordered = sorted(range(len(kernels)), key=lambda i: (kernels[i].end, kernels[i].start))
    cluster = list(range(len(kernels)))  # index of the earliest-ending sibling
    last_of_key: dict[tuple[str, tuple[str, ...]], int] = {}
    for i in ordered:
        prev = last_of_key.get(kernels[i].key)
        if parallel[i] and prev is not None and kernels[i].end - kernels[prev].end <= window:
            cluster[i] = cluster[prev]
        last_of_key[kernels[i].key] = i
    out: list[int | None] = []
    for i in range(len(kernels)):
        anchor = kernels[cluster[i]]
        before = [j for j in ordered if kernels[j].end <= anchor.end and cluster[j] != cluster[i]]
        out.append(max(before, key=lambda j: (kernels[j].end, j)) if before else None)
    return out


def _is_part(kernel: LogKernel) -> bool:
    """Compute kernels (and pools) are split into parallel parts that share their input."""
    found = classify(kernel.kernel, kernel.args)
    return found is not None and found[0] in PARALLEL


# ----- onnx2versal kernel templates -> kernel classes --------------------------------------------

PARALLEL = frozenset({"conv", "conv1x1", "dwconv", "gemm", "pool"})

_TYPES = {"f": "fp32", "float": "fp32", "a": "int8", "h": "int8", "int8_t": "int8", "uint8_t": "int8"}
_CONV = re.compile(r"^(QLinear)?Conv")


def _ints(args: Iterable[str]) -> list[int]:
    return [int(a) for a in args]


def _dtype(token: str) -> str:
    t = token.replace("signed char", "int8_t").replace("unsigned char", "uint8_t").strip()
    return _TYPES.get(t, "fp32")


def classify(kernel: str, args: tuple[str, ...]) -> tuple[str, str, dict[str, float]] | None:
    """(class, dtype, features) of an onnx2versal kernel, or None when unknown or malformed."""
    try:
        return _classify(kernel, args)
    except (ValueError, IndexError, ZeroDivisionError):
        return None


def _classify(kernel: str, args: tuple[str, ...]) -> tuple[str, str, dict[str, float]] | None:
    if _CONV.match(kernel):
        quant = kernel.startswith("QLinear")
        shape = _ints(args[2:] if quant else args)
        inp_h, _, _, out_w_pad, step_h, _, b, c, m, kh, kw, group = shape[:12]
        out_h = (inp_h - kh) // step_h + 1
        macs = b * out_h * out_w_pad * m * (c // group) * kh * kw
        return conv_class(c, group, kh, kw, step_h), "int8" if quant else "fp32", {"macs": float(macs)}
    if kernel.startswith(("Qgemm", "Gemm")):
        quant = kernel.startswith("Q")
        rows, k, n = _ints(args[2:5] if quant else args[:3])
        return "gemm", "int8" if quant else "fp32", {"macs": float(rows * k * n)}
    if kernel.startswith("Pad2D"):
        c, h, w, _, top, bottom, left, right = _ints(args[1:9])
        return "pad", _dtype(args[0]), pad_features(c, h, w, top + bottom, left + right, _dtype(args[0]))
    if kernel.startswith("Concat"):
        rows, _, _, out = _ints(args[1:5])
        return "concat", _dtype(args[0]), {"elems": float(rows * out)}
    if kernel.startswith("Transpose"):
        return "transpose", _dtype(args[0]), {"elems": float(math.prod(_ints(args[1:5])))}
    if kernel.startswith("QuantizeLinear"):
        rows, _, width = _ints(args[1:4])
        return "quantize", "int8", {"elems": float(rows * width)}
    if kernel.startswith("DequantizeLinear"):
        rows, width = _ints(args[1:3])
        return "dequantize", "int8", {"elems": float(rows * width)}
    if "Add" in kernel:
        return "add", "int8" if kernel.startswith("QLinear") else _dtype(args[0]), {"elems": float(int(args[1]))}
    if "pool" in kernel.lower():
        inp_h, inp_w, _, _, b, c = _ints(args[:6])
        return (
            "pool",
            "int8" if "Int8" in kernel or kernel.startswith("QLinear") else "fp32",
            {"elems": float(b * c * inp_h * inp_w)},
        )
    if "Softmax" in kernel:
        quant = kernel.startswith("QLinear")
        dims = _ints(args[1:] if quant else args)
        return "softmax", "int8" if quant else "fp32", {"elems": float(dims[0] * dims[-1])}
    return None


def conv_class(c: int, group: int, kh: int, kw: int, stride: int) -> str:
    """dwconv (group == C > 1); conv1x1 (1x1, stride 1: a plain matrix product over
    contiguous rows); conv (everything else, strided 1x1 included: it reads a
    strided window like a KxK convolution)."""
    if group > 1 and group == c:
        return "dwconv"
    if kh == kw == 1 and stride == 1:
        return "conv1x1"
    return "conv"


SCALAR_ALIGN = {"fp32": 4, "int8": 16}
"""Row width (elements) a Pad kernel moves with vector instructions; other widths go element by element."""


def pad_features(c: int, h: int, w: int, pad_h: int, pad_w: int, dtype: str) -> dict[str, float]:
    """Work of a Pad kernel: output elements, and input elements moved one at a time
    when the row width is not a multiple of the vector width (the logs show such pads
    2-4 cycles per element, aligned ones hidden behind their producer)."""
    out = c * (h + pad_h) * (w + pad_w)
    scalar = c * h * w if w % SCALAR_ALIGN[dtype] else 0
    return {"elems": float(out), "scalar_elems": float(scalar)}
