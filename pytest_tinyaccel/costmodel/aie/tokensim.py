"""Token-level simulation of a mapped AIE graph: every kernel at its own rate, coupled
by its neighbours through their data; the in-graph timeline of one or more inferences.

A kernel is a sequence of *steps*: an optional fill phase (a packet-stream kernel
copying its whole input into local memory), then compute steps that emit its output
rows (tokens) in order; its own cycles (levels.py) are spread over the steps, the
call's fixed cost on the first. A step

* waits for the input rows it reads: a stream in proportion (step j of S reads up to
  row ceil((j+1)/S x rows) of its producer), a window all of them before the first
  step (the kernel starts when its window is full), a fill step its share of rows; a row
  on a stream arrives `STREAM_LATENCY` cycles after its producer wrote it, and a step
  ends no sooner than the cost of its last `Port.grain` words after its last row arrives;
* waits for streamed weights (GMIO: at most `gmio_words_per_cycle` since cycle 0, and
  no faster than that during the step, a stream FIFO being far smaller than the weights)
  and for graph input at
  the PLIO rate, both sources that start at cycle 0;
* takes at least its port floor: each stream port moves one 32-bit word a cycle;
* cannot finish while its consumer is more than two windows behind (ping-pong buffers),
  or, given a finite `fifo_words`, a stream FIFO behind. Streams are unbounded by default:
  in onnx2versal's VCK190 logs no producer is held back by a slower stream consumer (the
  depthwise int8 parts of KWS end 3.1-3.6k cycles after their input while the concat
  tree that reads them, bound to its port at a word a cycle, ends 6.4k after it; the
  concat before a pad ends 14-30k cycles before the pad); the buffer that holds those
  rows (compiler-inserted FIFOs on the reconvergent split-parts-concat paths, DMA) is
  not identified, so the model takes the logs' behaviour, not a FIFO size.

The recurrence ``end_j = max(end_{j-1}, ready_j) + cost_j`` is solved for all
kernels in topological order; backpressure refers to consumers, so passes repeat
until no end time moves (a monotone fixed point). With `inferences` > 1 the same
steps repeat for successive inferences; the steady-state interval between the
graph's last ends is the initiation interval (throughput = clock / interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .templates import FILL, WINDOW, Port

MAX_STEPS = 48
"""Compute steps per kernel and inference (rows are grouped above this)."""
MAX_FILL_STEPS = 16
STREAM_LATENCY = 8.0
"""Cycles a word takes from one kernel's stream port to the next kernel's: two stream switches
(the producer's tile and the consumer's), each 4 cycles (2 per master and slave port; AM009,
"Stream Switch Buffering and Latency"). Longer routes add hops; the neighbours' is the least."""


@dataclass
class Node:
    """One kernel of the graph to simulate."""

    name: str
    own: float
    """Own cycles per inference (levels.own_cycles), fill phase included."""
    fill: float
    """Cycles of the fill phase (part of `own`)."""
    call: float
    """Fixed cost of a call (part of `own`, on the first step)."""
    tokens: int
    inputs: list[Port]
    preds: list[str | None]
    """Producer of each input port; None: the graph input (PLIO)."""
    out_words: float
    out_window: bool = False
    weight_words: float = 0.0
    launch: float = 0.0
    """When the kernel is first scheduled (graph start)."""
    drain: float = 0.0
    """Cycles its last step still takes after its last input word arrives (templates.Work.drain)."""


@dataclass
class Timeline:
    """Per kernel, per inference: start, end, busy (own steps) and stall cycles."""

    start: dict[str, list[float]] = field(default_factory=dict)
    end: dict[str, list[float]] = field(default_factory=dict)
    busy: dict[str, float] = field(default_factory=dict)
    passes: int = 0
    interval: float = 0.0
    """Steady-state cycles between successive inferences' last ends (0 for one inference)."""

    def stall(self, name: str) -> float:
        return self.end[name][0] - self.start[name][0] - self.busy[name]


@dataclass
class _Plan:
    """The steps of one kernel over all inferences."""

    cost: np.ndarray
    need: list[np.ndarray]
    """Per input port, the producer token each step needs (-1: none)."""
    pos: list[np.ndarray]
    """Per input port, where in the producer's tokens each step's last word is (a fraction of
    tokens over all inferences; 0: none)."""
    gmio_ready: np.ndarray
    emit: np.ndarray
    """Tokens emitted once each step ends (cumulative, over all inferences)."""
    first: np.ndarray
    """Index of each inference's first step."""
    window_start: list[bool]


def _spread(total: float, n: int) -> np.ndarray:
    return np.full(n, total / n) if n else np.zeros(0)


def _plan(node: Node, ptok: list[int], inferences: int, gmio: float, plio: float) -> _Plan:
    has_fill = any(p.kind == FILL for p in node.inputs)
    fills = min(MAX_FILL_STEPS, max(1, max(ptok, default=1))) if has_fill else 0
    steps = min(MAX_STEPS, max(node.tokens, 1))
    compute = max(node.own - node.fill - node.call, 0.0)
    cost1 = np.concatenate([_spread(node.fill, fills), _spread(compute, steps)])
    cost1[0] += node.call
    floor = np.zeros_like(cost1)
    for port in node.inputs:  # stream words at one word a cycle
        if port.kind == FILL:
            floor[:fills] = np.maximum(floor[:fills], port.words / fills)
        elif port.kind != WINDOW:
            floor[fills:] = np.maximum(floor[fills:], port.words / steps)
    if not node.out_window:
        floor[fills:] = np.maximum(floor[fills:], node.out_words / steps)
    if node.weight_words:  # the weight stream holds a FIFO, not the weights: read as computed
        floor[fills:] = np.maximum(floor[fills:], node.weight_words / steps / gmio)
    cost1 = np.maximum(cost1, floor)
    n1 = len(cost1)
    needs, positions = [], []
    for port, t in zip(node.inputs, ptok, strict=True):
        at = np.zeros(n1)
        if port.kind == WINDOW:
            at[0] = t
        elif port.kind == FILL:
            at[:fills] = np.arange(1, fills + 1) / fills * t
        else:
            at[fills:] = np.arange(1, steps + 1) / steps * t
        one = np.ceil(at - 1e-9).astype(np.int64) - 1
        needs.append(np.concatenate([np.where(one >= 0, one + i * t, -1) for i in range(inferences)]))
        positions.append(np.concatenate([np.where(at > 0, at + i * t, 0.0) for i in range(inferences)]))
    emit1 = np.zeros(n1, dtype=np.int64)
    emit1[fills:] = np.ceil(np.arange(1, steps + 1) / steps * node.tokens).astype(np.int64)
    if node.out_window:
        emit1[:-1] = 0
        emit1[-1] = node.tokens
    emit = np.concatenate([emit1 + i * node.tokens for i in range(inferences)])
    emit = np.maximum.accumulate(emit)
    gmio_ready = np.zeros(n1 * inferences)
    if node.weight_words:
        share = np.zeros(n1)  # weights delivered before the step starts; its own come during it
        share[fills:] = np.arange(0, steps) / steps * node.weight_words
        gmio_ready = np.concatenate([(share + i * node.weight_words) / gmio for i in range(inferences)])
        gmio_ready[np.concatenate([np.arange(n1) < fills] * inferences)] = 0.0
    return _Plan(
        np.tile(cost1, inferences),
        needs,
        positions,
        gmio_ready,
        emit,
        np.arange(inferences) * n1,
        [p.kind == WINDOW for p in node.inputs],
    )


def _token_times(plan: _Plan, end: np.ndarray, total: int) -> np.ndarray:
    """When each output token (over all inferences) is available."""
    idx = np.searchsorted(plan.emit, np.arange(1, total + 1), side="left")
    return end[np.minimum(idx, len(end) - 1)]


def _word_times(plan: _Plan, end: np.ndarray, total: int):
    """A stream's words, as they are written: the tokens a step emits are written while it runs,
    in order, each over an equal share of the step. Returns `at(x)`: when the words up to position
    x (in tokens, fractions within a token included) have been written."""
    idx = np.minimum(np.searchsorted(plan.emit, np.arange(1, total + 1), side="left"), len(end) - 1)
    before = np.concatenate([[0], plan.emit[:-1]])
    count = np.maximum(plan.emit[idx] - before[idx], 1)
    dur = plan.cost[idx] / count
    last = end[idx] - (plan.emit[idx] - 1 - np.arange(total)) * dur  # the token's last word

    def at(x: np.ndarray) -> np.ndarray:
        k = np.clip(np.ceil(x - 1e-9).astype(np.int64) - 1, 0, total - 1)
        return last[k] - np.clip(k + 1 - x, 0.0, 1.0) * dur[k]

    return at


def simulate(
    nodes: list[Node],
    *,
    inferences: int = 1,
    plio_words_per_cycle: float = 0.8,
    gmio_words_per_cycle: float = 1.0,
    fifo_words: float = math.inf,
    stream_latency: float = STREAM_LATENCY,
    max_passes: int = 200,
) -> Timeline:
    """The timeline of `nodes` (in topological order) over `inferences` inferences."""
    by_name = {n.name: n for n in nodes}
    tokens = {n.name: max(n.tokens, 1) for n in nodes}
    plio_tokens: dict[str, int] = {}
    plans: dict[str, _Plan] = {}
    for n in nodes:
        ptok = []
        for p in n.preds:
            if p is None or p not in by_name:  # graph input: PLIO rows of the consumer's size
                plio_tokens[n.name] = max(plio_tokens.get(n.name, 1), min(n.tokens, MAX_STEPS))
                ptok.append(plio_tokens[n.name])
            else:
                ptok.append(tokens[p])
        plans[n.name] = _plan(n, ptok, inferences, gmio_words_per_cycle, plio_words_per_cycle)
    consumers: dict[str, list[tuple[str, int]]] = {}
    for n in nodes:
        for i, p in enumerate(n.preds):
            if p in by_name:
                consumers.setdefault(p, []).append((n.name, i))
    end = {n.name: np.zeros(len(plans[n.name].cost)) for n in nodes}
    passes = 0
    while passes < max_passes:
        passes += 1
        moved = 0.0
        for n in nodes:
            new = _solve(
                n, plans, end, by_name, consumers, tokens, inferences, plio_words_per_cycle, fifo_words, stream_latency
            )
            moved = max(moved, float(np.max(np.abs(new - end[n.name]))) if len(new) else 0.0)
            end[n.name] = new
        if moved < 0.5:
            break
    return _timeline(nodes, plans, end, tokens, inferences, passes)


def _solve(n, plans, end, by_name, consumers, tokens, inferences, plio, fifo_words, latency) -> np.ndarray:
    plan = plans[n.name]
    ready = np.maximum(plan.gmio_ready, n.launch)
    for i, (port, p) in enumerate(zip(n.inputs, n.preds, strict=True)):
        need = plan.need[i]
        has = need >= 0
        if p is None or p not in by_name:  # PLIO: rows of `port.words / t` words at the PLIO rate
            t = int(need.max()) + 1 if has.any() else 1
            per = port.words * inferences / max(t, 1) / plio
            avail = (np.arange(t) + 1) * per
        else:
            avail = _token_times(plans[p], end[p], tokens[p] * inferences)
            if port.kind != WINDOW:  # through the stream switches
                avail = avail + latency
        released = p is not None and p in by_name and by_name[p].out_window
        if port.kind == WINDOW or released:  # a window, or a stream of a window: nothing before its release
            ready[has] = np.maximum(ready[has], avail[need[has]])
            continue
        # a stream is read as it arrives: a step starts once the words before its own are
        # there, and ends no sooner than its last `grain` words' work after its last word arrives
        pos = plan.pos[i]
        prev_pos = np.concatenate([[0.0], pos[:-1]])
        prev_pos[plan.first] = 0.0
        ok = has & (prev_pos > 0)
        if p is None or p not in by_name:  # PLIO rows: each row's words arrive by its end
            arrive, arrive_prev = avail[need[has]], avail[np.ceil(prev_pos[ok] - 1e-9).astype(np.int64) - 1]
        else:
            at = _word_times(plans[p], end[p], tokens[p] * inferences)
            arrive, arrive_prev = at(pos[has]) + latency, at(prev_pos[ok]) + latency
        ready[ok] = np.maximum(ready[ok], arrive_prev)
        per_step = port.words / max(int(has.sum()) // inferences, 1)
        tail = np.minimum(plan.cost[has] / max(per_step, 1.0) * port.grain, plan.cost[has])
        ready[has] = np.maximum(ready[has], arrive + tail - plan.cost[has])
        if n.drain:  # the last step ends its dependent chain after the last word
            last = np.append(plan.first[1:], len(plan.cost)) - 1
            final = np.array([need[plan.first[i] : last[i] + 1].max() for i in range(inferences)])
            ready[last] = np.maximum(ready[last], avail[final] + n.drain - plan.cost[last])
    for c, i in consumers.get(n.name, []):  # backpressure: the consumer's FIFO
        need = plans[c].need[i]
        has = np.nonzero(need >= 0)[0]
        if not len(has):
            continue
        cons = by_name[c]
        if cons.inputs[i].buffered or (cons.inputs[i].kind != WINDOW and math.isinf(fifo_words)):
            continue
        per_step = math.ceil(tokens[n.name] / max(len(has) // inferences, 1))
        fifo = 2 * tokens[n.name] if cons.inputs[i].kind == WINDOW else _fifo_tokens(n, fifo_words)
        cap = max(fifo, per_step + 1)  # a step reads its rows while it runs
        began = end[c][has] - plans[c].cost[has]
        blocked = plan.emit - 1 - cap  # this step may end once that token is being read
        k = np.searchsorted(need[has], blocked, side="left")
        ok = (blocked >= 0) & (k < len(has))
        ready[ok] = np.maximum(ready[ok], began[k[ok]] - plan.cost[ok])
    csum = np.cumsum(plan.cost)
    return csum + np.maximum.accumulate(ready - (csum - plan.cost))


def _fifo_tokens(n: Node, fifo_words: float) -> int:
    per_token = n.out_words / max(n.tokens, 1)
    return max(1, math.floor(fifo_words / max(per_token, 1e-9)))


def _timeline(nodes, plans, end, tokens, inferences, passes) -> Timeline:
    tl = Timeline(passes=passes)
    for n in nodes:
        plan = plans[n.name]
        e = end[n.name]
        steps = len(plan.cost) // inferences
        starts, ends = [], []
        for i in range(inferences):
            first = int(plan.first[i])
            s = e[first] - plan.cost[first]
            if not any(plan.window_start) and i == 0:
                s = min(s, n.launch)
            starts.append(float(s))
            ends.append(float(e[first + steps - 1]))
        tl.start[n.name], tl.end[n.name] = starts, ends
        tl.busy[n.name] = float(plan.cost[:steps].sum())
    if inferences > 1 and nodes:
        last = [max(tl.end[n.name][i] for n in nodes) for i in range(inferences)]
        tl.interval = last[-1] - last[-2]
    return tl
