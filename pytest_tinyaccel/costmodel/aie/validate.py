"""Per-kernel validation of the AIE model against per-kernel aiesimulator logs.

For every logged kernel of every graph, the *exposed* cycles (its end minus the latest
end of the kernels it reads, connections rebuilt from the log by loggraph.py) measured,
and as predicted by three models:

* `model`: the loop-nest model in the token-level simulation (levels.py, tokensim.py).
  Its constants come from isolated kernel runs only, so every prediction of a logged
  kernel is held out, whichever network is left out;
* `floor`: the same simulation with every kernel's own cycles at zero: only its ports
  (a 32-bit word a cycle), PLIO and GMIO — the interface floor alone;
* `per_class`: the per-class calibration (calibration.py) fitted on the logs without
  the kernel's network (both dtypes), as the model predicted before.

Leave-one-shape-out: `model_loso` refits the loop-level constants without any isolated
run of the kernel's own template and arguments; `per_class_loso` refits the per-class
calibration without every logged kernel of that template and arguments.
Nothing here crashes on a log it has not seen: unknown templates are counted and
skipped, missing producers are graph inputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import calibration as cal_mod
from . import levels, loggraph
from .fit import fit
from .logs import LogKernel, Sample, classify
from .tokensim import simulate

PEAK = {"int8": 128.0, "fp32": 8.0}


@dataclass
class KernelResult:
    graph: str
    kernel: str
    args: tuple[str, ...]
    key: str
    """class.dtype"""
    measured: float
    predicted: dict[str, float] = field(default_factory=dict)


@dataclass
class GraphResult:
    graph: str
    measured: float
    predicted: dict[str, float]
    unknown: list[str]


def network(graph: str) -> str:
    """The network a logged graph belongs to (its dtypes are one network)."""
    return graph.removesuffix("_int8")


def by_graph(kernels: Iterable[LogKernel]) -> dict[str, list[LogKernel]]:
    out: dict[str, list[LogKernel]] = {}
    for k in kernels:
        out.setdefault(k.graph, []).append(k)
    return out


def _timeline(g: loggraph.LogGraph, floor_only: bool = False) -> dict[int, float]:
    nodes = g.nodes
    if floor_only:
        nodes = [
            type(n)(n.name, 0.0, 0.0, 0.0, n.tokens, n.inputs, n.preds, n.out_words, n.out_window, n.weight_words)
            for n in nodes
        ]
    tl = simulate(nodes)
    return {i: tl.end[f"k{i}"][0] for i in range(len(g.kernels))}


def _samples(kernels: list[LogKernel], preds: dict[int, list[int]], measured: dict[int, float]) -> list[Sample]:
    out = []
    for i, k in enumerate(kernels):
        known = classify(k.kernel, k.args)
        if known:
            out.append(Sample(k.graph, k.kernel, k.args, *known, measured[i]))
    return out


def compare(kernels: list[LogKernel], shape_out: bool = True) -> tuple[list[KernelResult], list[GraphResult]]:
    """Every logged kernel's measured and predicted exposed cycles, and every graph's latency."""
    graphs = by_graph(kernels)
    rebuilt = {name: loggraph.rebuild(ks) for name, ks in graphs.items()}
    measured = {}
    for name, ks in graphs.items():
        t0 = min(k.start for k in ks)
        ends = {i: float(k.end - t0) for i, k in enumerate(ks)}
        measured[name] = (ends, loggraph.exposed(rebuilt[name].preds, {}, ends, 0.0))
    samples = [s for name, ks in graphs.items() for s in _samples(ks, rebuilt[name].preds, measured[name][1])]
    nets = sorted({network(g) for g in graphs})
    held = {n: _fit_without(samples, lambda s, n=n: network(s.graph) != n) for n in nets}
    results, graph_rows = [], []
    for name, ks in graphs.items():
        g = rebuilt[name]
        pred_end = _timeline(g)
        floor_end = _timeline(g, floor_only=True)
        pred = loggraph.exposed(g.preds, {}, pred_end, 0.0)
        floor = loggraph.exposed(g.preds, {}, floor_end, 0.0)
        cal = held[network(name)]
        ends = measured[name][0]
        unknown = []
        for i, k in enumerate(ks):
            known = classify(k.kernel, k.args)
            if known is None or g.works[i] is None:
                unknown.append(f"{k.kernel}<{','.join(k.args)}>")
                continue
            r = KernelResult(name, k.kernel, k.args, f"{known[0]}.{known[1]}", measured[name][1][i])
            r.predicted = {"model": pred[i], "floor": floor[i], "per_class": cal.cycles(*known)}
            results.append(r)
        per_class_latency = _replay(g.preds, {i: r for i, r in _per_class(ks, cal).items()}, len(ks))
        graph_rows.append(
            GraphResult(
                name,
                max(ends.values()),
                {"model": max(pred_end.values()), "floor": max(floor_end.values()), "per_class": per_class_latency},
                unknown,
            )
        )
    if shape_out:
        _leave_one_shape_out(results, samples, graphs, rebuilt)
    return results, graph_rows


def _per_class(ks: list[LogKernel], cal: cal_mod.Calibration) -> dict[int, float]:
    out = {}
    for i, k in enumerate(ks):
        known = classify(k.kernel, k.args)
        if known:
            out[i] = cal.cycles(*known)
    return out


def _replay(preds: dict[int, list[int]], cycles: dict[int, float], n: int) -> float:
    """Latency with each kernel ending `cycles` after the last of its (rebuilt) producers;
    a kernel without a prediction adds nothing; a producer outside the log is ready at 0."""
    end: dict[int, float] = {}

    def finish(i: int, seen: frozenset[int] = frozenset()) -> float:
        if i not in end:
            before = [finish(p, seen | {i}) for p in preds.get(i, []) if p not in seen and 0 <= p < n]
            end[i] = max(before, default=0.0) + cycles.get(i, 0.0)
        return end[i]

    return max((finish(i) for i in range(n)), default=0.0)


def _fit_without(samples: list[Sample], keep) -> cal_mod.Calibration:
    """The per-class calibration fitted on the samples `keep` accepts, classes without samples
    along its fallbacks (not from a file fitted on the left-out kernels); the shipped
    parameters only where nothing is left to fall back on (a log set of one network)."""
    rest = [s for s in samples if keep(s)]
    if not rest:
        return cal_mod.load()
    try:
        return fit(rest, name="held out", device="vck190", peak_macs_per_cycle=PEAK)
    except ValueError:  # a class with no sample along its fallbacks: the shipped parameters
        return fit(rest, name="held out", device="vck190", peak_macs_per_cycle=PEAK, base=cal_mod.load())


def _leave_one_shape_out(results: list[KernelResult], samples: list[Sample], graphs, rebuilt) -> None:
    isolated = {run.shape for run in levels.load_isolated()[0]}
    for kernel, args in sorted({(r.kernel, r.args) for r in results}):
        shape = f"{kernel}<{','.join(args)}>"
        cal = _fit_without(samples, lambda s, k=kernel, a=args: (s.kernel, s.args) != (k, a))
        known = classify(kernel, args)
        mine = [r for r in results if (r.kernel, r.args) == (kernel, args)]
        for r in mine:
            r.predicted["per_class_loso"] = cal.cycles(*known) if known else float("nan")
            r.predicted["model_loso"] = r.predicted["model"]
        if shape not in isolated:  # no isolated run of this shape: the constants do not change
            continue
        fitted = levels.fit_groups(frozenset({shape}))
        for name in {r.graph for r in mine}:
            g = loggraph.rebuild(graphs[name], fitted)
            pred = loggraph.exposed(g.preds, {}, _timeline(g), 0.0)
            at = {i: pred[i] for i, k in enumerate(graphs[name]) if (k.kernel, k.args) == (kernel, args)}
            for r, i in zip([r for r in mine if r.graph == name], sorted(at), strict=False):
                r.predicted["model_loso"] = at[i]


def log_error(predicted: float, measured: float) -> float:
    return abs(math.log(max(predicted, 1e-9) / max(measured, 1e-9)))


def summary(results: list[KernelResult], model: str) -> dict[str, dict[str, float]]:
    """Per class (and 'all'): kernels, median and p90 |error| as a factor, share within 2x."""
    groups: dict[str, list[float]] = {}
    for r in results:
        p = r.predicted.get(model)
        if p is None or math.isnan(p):
            continue
        e = log_error(p, r.measured)
        groups.setdefault(r.key, []).append(e)
        groups.setdefault("all", []).append(e)
    return {k: stats(v) for k, v in groups.items()}


def stats(errors: list[float]) -> dict[str, float]:
    e = sorted(errors)
    p90 = e[min(len(e) - 1, math.ceil(0.9 * len(e)) - 1)]
    return {
        "kernels": len(e),
        "median": round(math.exp(e[len(e) // 2] if len(e) % 2 else (e[len(e) // 2 - 1] + e[len(e) // 2]) / 2), 3),
        "p90": round(math.exp(p90), 3),
        "within_2x": round(sum(x <= math.log(2) for x in e) / len(e), 3),
    }
