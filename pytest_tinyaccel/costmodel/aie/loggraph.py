"""A logged graph rebuilt for simulation: which kernel feeds which, from the log's structure.

A per-kernel log lists kernels, their templates and when each ended; it does not list
the connections. They are rebuilt from the order of events and the shapes the template
arguments carry (never from cycle counts): in the order kernels end, each input port of a
kernel's template reads, among the outputs nobody has read yet, the most recent one of
the port's size (32-bit words per inference), else the most recent one; the parts of one
layer (same template and arguments, compute kernels, ending close together) share the
input of the first of them, and a kernel that reads one part reads the parts that end
after it too (a concat can print its end a cycle before the part whose last word it
read); a port with nothing left to read is the graph input. The sizes tell the two
branches of a residual block apart (a shortcut 1x1 convolution reads the block input,
the strided 3x3 convolution beside it the pad of that input).
Packet-stream parts (onnx2versal's H-chunked convolutions) and the channel chunks of a
pooling layer are fed by a split kernel that does not print its cycles: it is added, with
its template arguments derived from the parts'. A kernel whose template is unknown keeps its logged window-in,
window-out duration after its inputs (and is reported; it is not predicted).

`predict(kernels)` simulates the rebuilt graph with every known kernel's own cycles
(levels.py) and returns each logged kernel's predicted start and end; `exposed`
gives, on any timeline, a kernel's end minus the latest end of its producers, the
same rule on measured and predicted timelines.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import levels, templates
from .logs import LogKernel, _is_part, ready_of
from .templates import FILL, Port, Work
from .tokensim import Node, Timeline, simulate


@dataclass
class LogGraph:
    kernels: list[LogKernel]
    nodes: list[Node]
    preds: dict[int, list[int]]
    """Per logged kernel index, the logged kernels it reads (rebuilt)."""
    works: dict[int, Work | None]
    virtual: list[str]
    """Names of kernels added because they do not log (splits)."""


def _name(i: int) -> str:
    return f"k{i}"


def rebuild(kernels: list[LogKernel], fitted: dict[str, levels.Constants] | None = None) -> LogGraph:
    """The simulation graph of one logged graph (see the module docstring)."""
    works = {i: templates.work(k.kernel, k.args) for i, k in enumerate(kernels)}
    ready = ready_of(kernels) if kernels else []
    anchor = {i: i for i in range(len(kernels))}
    for i, r in enumerate(ready):  # parts of one layer: same ready kernel, same template and args
        if _is_part(kernels[i]):
            for first in range(i):
                if ready[first] == r and kernels[first].key == kernels[i].key and anchor[first] == first:
                    anchor[i] = first
                    break
    order = sorted(range(len(kernels)), key=lambda i: (kernels[i].end, i))
    out_words = {i: _out_sizes(k, works[i]) for i, k in enumerate(kernels)}
    unread: list[int] = []
    read_early: set[int] = set()
    preds: dict[int, list[int]] = {}
    for pos, i in enumerate(order):
        if anchor[i] != i:  # a later part of a layer: its first part's input; its output is read too
            preds[i] = preds.get(anchor[i], [])
            if i not in read_early:
                unread.append(i)
            continue
        got: list[int] = []
        w = works[i]
        ew = w is not None and w.kind == "add"
        for words in _port_words(kernels, works, anchor, i):
            j: int | None = _take(unread, out_words, words, ew)
            if j is None:  # a part of a layer already read whose sibling ends later
                j = next((s for s in order[pos + 1 :] if s not in read_early and _sibling(anchor, s, got)), None)
                read_early |= {j} if j is not None else set()
            if j is None:  # an output read twice (a residual block's input: its pad and its shortcut)
                done = [k for k in order[:pos] if k not in unread and k not in got]
                j = next((k for k in reversed(done) if _fits(out_words[k], words, ew)), None)
            if j is None and unread:
                j = unread.pop()
            got += [j] if j is not None else []
        preds[i] = got
        for j in range(len(kernels)):
            if anchor[j] == i:
                preds[j] = got
        unread.append(i)
    nodes, virtual = _nodes(kernels, works, preds, anchor, order, fitted)
    return LogGraph(kernels, nodes, preds, works, virtual)


def _out_sizes(k: LogKernel, w: Work | None) -> tuple[float, ...]:
    """The 32-bit words a kernel writes per inference; for a convolution also without the
    padding of its rows (OUT_W of OUT_W_PAD), as an element-wise consumer may count them."""
    if w is None:
        return ()
    if w.kind not in ("conv", "conv1x1", "dwconv"):
        return (w.out_words,)
    out_w, out_w_pad = templates.ints(k.args[2:] if k.kernel.startswith("QLinear") else k.args)[2:4]
    return (w.out_words, w.out_words * out_w / max(out_w_pad, 1))


def _port_words(kernels: list[LogKernel], works, anchor: dict[int, int], i: int) -> list[float | None]:
    """Per input port of kernel i, the 32-bit words it reads per inference (None: unknown).
    The parts of a layer are fed by a split that does not log: they read the whole layer input."""
    w = works[i]
    if w is None:
        return [None]
    siblings = [j for j in anchor if anchor[j] == anchor[i]]
    pool_parts = w.kind == "pool" and len(siblings) > 1
    conv_parts = w.kind in ("conv", "conv1x1", "dwconv") and len(siblings) > 1  # window parts: a split too
    if pool_parts or conv_parts or _split_fed(w):
        split = (_pool_split_for if pool_parts else _split_for)(kernels, w, siblings)
        sw = templates.work(split[0], split[1])
        return [sw.inputs[0].words if sw is not None else None]
    return [p.words for p in w.inputs]


def _split_fed(w: Work) -> bool:
    """Packet-stream parts of a layer (onnx2versal's H-chunked convolutions) read a split kernel's packets."""
    return "PktStream" in w.template and any(p.kind == FILL for p in w.inputs)


def _fits(have: tuple[float, ...], words: float | None, elementwise: bool = False) -> bool:
    """Whether an output of sizes `have` fills a port of `words` words (an element-wise
    consumer also reads a convolution's rows without their padding)."""
    return words is not None and any(abs(h - words) <= 0.5 for h in (have if elementwise else have[:1]))


def _take(unread: list[int], out_words: dict[int, tuple[float, ...]], words: float | None, ew: bool) -> int | None:
    """The most recent unread output of `words` words (None: none of that size)."""
    for k in range(len(unread) - 1, -1, -1):
        if _fits(out_words[unread[k]], words, ew):
            return unread.pop(k)
    return None


def _sibling(anchor: dict[int, int], j: int, got: list[int]) -> bool:
    """Whether kernel j is a part of the same layer as a part in `got`."""
    return any(anchor[j] == anchor[g] and anchor[j] != j or anchor[j] == g for g in got)


def _nodes(kernels, works, preds, anchor, order, fitted):
    nodes: list[Node] = []
    virtual: list[str] = []
    splits: dict[int, str] = {}
    for i in order:
        w = works[i]
        src: list[str | None] = [_name(p) for p in preds[i]]
        siblings = [j for j in anchor if anchor[j] == anchor[i]]
        pool_parts = w is not None and w.kind == "pool" and len(siblings) > 1
        if w is not None and (pool_parts or _split_fed(w)):
            a = anchor[i]
            if a not in splits:
                split = (_pool_split_for if pool_parts else _split_for)(kernels, w, siblings)
                splits[a] = f"split@{_name(a)}"
                virtual.append(splits[a])
                sw = templates.work(split[0], split[1])
                nodes.append(_node(splits[a], sw, src[:1] + [None] * (1 - len(src[:1])), fitted, 0.0))
            src = [splits[a]]
        if w is None:  # what it added after its inputs, as logged
            before = [kernels[p].end for p in preds[i]]
            dur = float(kernels[i].end - max(before, default=min(k.start for k in kernels)))
            n = Node(_name(i), dur, 0.0, 0.0, 1, [Port(0.0, "window")] * max(len(src), 1), src or [None], 0.0, True)
            nodes.append(n)
            continue
        while len(src) < len(w.inputs):
            src.append(None)
        nodes.append(_node(_name(i), w, src[: len(w.inputs)], fitted, 0.0))
    return nodes, virtual


def _node(name: str, w: Work, preds: list[str | None], fitted, launch: float) -> Node:
    own = levels.own_cycles(w, fitted)
    c = levels.constants_for(w.family, levels.fit_groups() if fitted is None else fitted)
    trips, cost = w.levels.get("fill", (0.0, 0.0))
    call = w.levels.get("call", (0.0, 0.0))
    return Node(
        name,
        own,
        c.s * trips * cost,  # fill levels are not vector levels
        call[0] * call[1],
        w.tokens,
        list(w.inputs),
        preds,
        w.out_words,
        w.out_window,
        w.weight_words,
        launch,
        w.drain,
    )


def _split_for(kernels: list[LogKernel], part: Work, siblings: list[int]) -> tuple[str, tuple[str, ...]]:
    """Template and arguments of the split kernel that feeds packet-stream parts."""
    k = kernels[siblings[0]]
    quant = k.kernel.startswith("QLinear")
    vals = templates.ints(k.args[2:] if quant else k.args)
    inp_h, inp_w, _, _, sh, _, b, c, _, kh = vals[:10]
    parts = len(siblings)
    overlap = max(kh - sh, 0)
    full_h = parts * (inp_h - overlap) + overlap
    t = "SplitFilterInt8PktStream" if quant else "SplitFilterFloatPktStream"
    tt = "a" if quant else "f"
    return t, (tt, str(b * c), str(full_h * inp_w), str(inp_h * inp_w), str(overlap * inp_w))


def _pool_split_for(kernels: list[LogKernel], part: Work, siblings: list[int]) -> tuple[str, tuple[str, ...]]:
    """Template and arguments of the split that cuts a pooling layer's channels into its parts'
    windows (onnx2versal's PoolChunkCGraph: SplitScalar for fp32, SplitInt8 for int8)."""
    inp_h, inp_w, _, _, b, c = templates.ints(kernels[siblings[0]].args)[:6]
    chunk = c * inp_h * inp_w
    name, tt = ("SplitInt8", "a") if part.dtype == "int8" else ("SplitScalar", "f")
    return name, (tt, str(b), str(chunk * len(siblings)), str(chunk), "0")


def predict(kernels: list[LogKernel], fitted=None, **sim) -> tuple[LogGraph, Timeline]:
    """Rebuild and simulate one logged graph (one inference, graph start at cycle 0)."""
    g = rebuild(kernels, fitted)
    return g, simulate(g.nodes, **sim)


def exposed(preds: dict[int, list[int]], start: dict[int, float], end: dict[int, float], t0: float) -> dict[int, float]:
    """Per kernel: its end minus the latest end of the kernels it reads (graph start if none)."""
    out = {}
    for i, e in end.items():
        before = [end[p] for p in preds.get(i, []) if p in end]
        out[i] = max(e - max(before, default=t0), 1.0)
    return out
