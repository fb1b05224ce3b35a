"""The mapped graph, kernel by kernel, through the token-level simulation.

Each mapped kernel becomes a `tokensim.Node`: its onnx2versal template (o2v.py) gives
its loop nest and ports (templates.py), its own cycles come from the loop levels and
the constants fitted on isolated runs (levels.py). A kernel with no onnx2versal
template (the broadcast feeding matrix-product parts: a window shared by the parts, no
kernel of its own; an element-wise op the flow has no kernel for) is costed by the
per-class calibration instead, as a window-in, window-out kernel, and says so.
Weights that do not fit a tile stream in every inference over GMIO, a word a cycle; graph
inputs arrive over a 64-bit PLIO at the PL clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import levels, o2v, templates
from .calibration import Calibration
from .device import Device
from .graph import ModelGraph
from .mapping import Mapping
from .templates import WINDOW, Port
from .tokensim import Node, Timeline, simulate

PLIO_BITS = 64
PL_CLOCK_HZ = 500e6
"""onnx2versal's PLIO: adf::plio_64_bits at aiecompiler --pl-freq=500 (its Makefile)."""
GMIO_WORDS_PER_CYCLE = 1.0
"""A weight GMIO port delivers a 32-bit stream word a cycle (the shim DMA's MM2S channel into
the tile's 32-bit stream port). onnx2versal requests 500 MB/s (input_gmio::create(name, 64,
500), python/generator_cpp.py), but that is a NoC QoS request: "the NoC does not rate-limit
traffic based on the QoS specification" (PG313, Quality of Service). The published AD fp32
figure (28,453 cycles for two layers of 8 x 10,240 streamed weight words) needs >= 0.7 a cycle."""
INFERENCES = 3
"""Inferences simulated back to back: the first is the latency, the last two the steady state."""


@dataclass
class KernelTiming:
    own: float
    start: float
    end: float
    stall: float
    template: str | None
    rule: str


def run(
    mapping: Mapping, graph: ModelGraph, device: Device, cal: Calibration
) -> tuple[dict[str, KernelTiming], Timeline]:
    """Per kernel, its own cycles and in-graph start/end/stall of the first inference; the timeline."""
    names = o2v.assign(mapping, graph)
    fitted = levels.fit_groups()
    peak = device.peak_macs_per_cycle[mapping.dtype]
    nodes, rule = [], {}
    for k in mapping.kernels:
        found = names.get(k.name)
        w = templates.work(found[0], found[1]) if found else None
        preds: list[str | None] = list(k.preds) or [None]
        if w is None:
            cycles = cal.cycles(k.kind, mapping.dtype, k.features, peak=peak)
            ports = [Port(0.0, WINDOW)] * len(preds)
            nodes.append(Node(k.name, max(cycles, 1.0), 0.0, 0.0, 1, ports, preds, 0.0, True))
            rule[k.name] = "per-class calibration (no onnx2versal template)"
            continue
        while len(preds) < len(w.inputs):
            preds.append(None)
        c = levels.constants_for(w.family, fitted)
        fill = w.levels.get("fill", (0.0, 0.0))
        call = w.levels.get("call", (0.0, 0.0))
        weights = k.streamed_weight_bytes / 4 if k.streamed_weight_bytes else w.weight_words
        nodes.append(
            Node(
                k.name,
                levels.own_cycles(w, fitted),
                c.s * fill[0] * fill[1],
                call[0] * call[1],
                w.tokens,
                list(w.inputs),
                preds[: len(w.inputs)],
                w.out_words,
                w.out_window,
                weights,
                drain=w.drain,
            )
        )
        rule[k.name] = f"loop nest ({c.source} on isolated runs)"
    plio = levels.plio_words_per_cycle(PLIO_BITS, PL_CLOCK_HZ, device.clock_hz)
    gmio = GMIO_WORDS_PER_CYCLE * 1.25e9 / device.clock_hz
    tl = simulate(nodes, inferences=INFERENCES, plio_words_per_cycle=plio, gmio_words_per_cycle=gmio)
    out = {}
    for n in nodes:
        found = names.get(n.name)
        out[n.name] = KernelTiming(
            n.own, tl.start[n.name][0], tl.end[n.name][0], tl.stall(n.name), found[0] if found else None, rule[n.name]
        )
    return out, tl
