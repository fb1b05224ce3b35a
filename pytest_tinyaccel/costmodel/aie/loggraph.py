"""A logged graph rebuilt for simulation: which kernel feeds which, from the log's structure.

A per-kernel log lists kernels, their templates and when each ended; it does not list
the connections. They are rebuilt from the order of events only (never from cycle
counts): in the order kernels end, each kernel reads the outputs nobody has read yet,
most recent first, one per input port of its template; the parts of one layer (same
template and arguments, compute kernels, ending close together) share the input of
the first of them; a port with nothing left to read is the graph input.
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
            for j in range(i):
                if ready[j] == r and kernels[j].key == kernels[i].key and anchor[j] == j:
                    anchor[i] = j
                    break
    order = sorted(range(len(kernels)), key=lambda i: (kernels[i].end, i))
    unread: list[int] = []
    preds: dict[int, list[int]] = {}
    for i in order:
        if anchor[i] != i:  # a later part of a layer: its first part's input; its output is read too
            preds[i] = preds.get(anchor[i], [])
            unread.append(i)
            continue
        w = works[i]
        n_in = len(w.inputs) if w is not None else 1
        got = []
        for _ in range(n_in):
            if unread:
                got.append(unread.pop())
        preds[i] = got
        for j in range(len(kernels)):
            if anchor[j] == i:
                preds[j] = got
        unread.append(i)
    nodes, virtual = _nodes(kernels, works, preds, anchor, order, fitted)
    return LogGraph(kernels, nodes, preds, works, virtual)


def _nodes(kernels, works, preds, anchor, order, fitted):
    nodes: list[Node] = []
    virtual: list[str] = []
    splits: dict[int, str] = {}
    for i in order:
        w = works[i]
        src: list[str | None] = [_name(p) for p in preds[i]]
        siblings = [j for j in anchor if anchor[j] == anchor[i]]
        pool_parts = w is not None and w.kind == "pool" and len(siblings) > 1
        if w is not None and (pool_parts or any(p.kind == FILL for p in w.inputs)):
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
