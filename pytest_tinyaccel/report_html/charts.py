"""Per-layer charts of one case, drawn by matplotlib as inline SVG.

`layer_chart` shows cycles (or measured microseconds) per layer or kernel, with the
target's bound (`LayerPerf.extra["ideal_cycles"]`) and the baseline's figure beside
each bar when known; `timeline_chart` is the Gantt chart of a dataflow schedule
(kernels that overlap in time), one track per tile, in simulated microseconds.

matplotlib is an optional extra (`unavailable()` says how to get it). Figures are
made with the object API (no pyplot, no global backend), and the SVG is made
byte-stable (no date, ids salted by the chart's name) so a parallel run's page
equals a serial one's.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

from ..perf import LayerPerf, Perf
from ..record import ProfileRow

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install 'pytest-tinyaccel[report]'"
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
"""One colour per operator type (Tableau 10 without grey), in the order the layers first use them."""


def unavailable() -> str | None:
    """None when charts can be drawn; else what to install."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return f"Charts need matplotlib, an optional extra: {INSTALL_HINT}"
    return None


def layer_values(perf: Perf) -> tuple[list[LayerPerf], list[float], str]:
    """The layers with a figure, their figures and the unit: simulated cycles, or the
    microseconds a measured profile gives (`extra["us"]`)."""
    timed = [layer for layer in perf.layers if layer.cycles is not None]
    if timed:
        return timed, [float(layer.cycles or 0.0) for layer in timed], "cycles"
    measured = [layer for layer in perf.layers if isinstance(layer.extra.get("us"), int | float)]
    return measured, [float(layer.extra["us"]) for layer in measured], "us"


def is_dataflow(perf: Perf) -> bool:
    """Whether layers run concurrently (a dataflow pipeline), which a timeline shows and a bar chart does not."""
    finish = -math.inf
    for _, start, cycles in sorted(_spans(perf), key=lambda s: s[1]):
        if start < finish - 1e-9:
            return True
        finish = max(finish, start + cycles)
    return False


def layer_chart(row: ProfileRow, baseline: ProfileRow | None = None) -> str | None:
    """Horizontal bars, one per layer/kernel in schedule order; None when the row has no per-layer figures."""
    layers, values, unit = layer_values(row.perf)
    if not layers:
        return None
    colours = _colours(layers)
    fig = _figure(9.0, 1.2 + 0.2 * len(layers))
    ax = fig.add_subplot()
    y = list(range(len(layers)))
    ax.barh(y, values, height=0.7, color=[colours[layer.op] for layer in layers], zorder=2)
    before = {layer.name: value for layer, value in zip(*layer_values(baseline.perf)[:2])} if baseline else {}
    base_y = [i for i, layer in enumerate(layers) if layer.name in before]
    if base_y:
        points = [before[layers[i].name] for i in base_y]
        ax.scatter(points, base_y, marker="D", s=14, facecolors="none", edgecolors="#333", zorder=3, label="baseline")
    bound = [(i, float(layer.extra["ideal_cycles"])) for i, layer in enumerate(layers) if _bound(layer)]
    if bound and unit == "cycles":
        ax.scatter(
            [b for _, b in bound], [i for i, _ in bound], marker="|", s=80, color="#000000", zorder=4, label="bound"
        )
    ax.set_yticks(y, [_short(layer.name) for layer in layers], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("simulated cycles" if unit == "cycles" else "measured time (µs)")
    ax.grid(axis="x", color="#dddddd", zorder=0)
    _legend(ax, colours)
    ax.set_title(f"{row.case_id}: {'cycles' if unit == 'cycles' else 'time'} per layer / kernel", fontsize=9)
    return _svg(fig, f"{row.case_id}/layers")


def timeline_chart(row: ProfileRow) -> str | None:
    """Gantt chart of a dataflow schedule; None for sequential or untimed layers."""
    perf = row.perf
    if not is_dataflow(perf):
        return None
    spans = _spans(perf)
    scale, unit = (1e6 / perf.clock_hz, "simulated time (µs)") if perf.clock_hz else (1.0, "simulated cycles")
    tracks = sorted({_track(layer, i) for i, (layer, _, _) in enumerate(spans)})
    colours = _colours([layer for layer, _, _ in spans])
    fig = _figure(9.0, 1.2 + 0.14 * len(tracks))
    ax = fig.add_subplot()
    for i, (layer, start, cycles) in enumerate(spans):
        row_y = tracks.index(_track(layer, i)) - 0.4
        ax.broken_barh([(start * scale, cycles * scale)], (row_y, 0.8), facecolors=colours[layer.op], linewidth=0)
    ax.set_yticks(range(len(tracks)), [str(t) for t in tracks], fontsize=6)
    ax.set_ylabel("tile" if any("tile" in layer.extra for layer, _, _ in spans) else "kernel")
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.grid(axis="x", color="#dddddd")
    ax.set_axisbelow(True)
    _legend(ax, colours)
    ax.set_title(f"{row.case_id}: schedule of the kernels", fontsize=9)
    return _svg(fig, f"{row.case_id}/timeline")


def _spans(perf: Perf) -> list[tuple[LayerPerf, float, float]]:
    """(layer, start, cycles) of every layer with both, in the target's order."""
    return [
        (layer, layer.start, layer.cycles)
        for layer in perf.layers
        if layer.start is not None and layer.cycles is not None
    ]


def _bound(layer: LayerPerf) -> bool:
    value = layer.extra.get("ideal_cycles")
    return isinstance(value, int | float) and value > 0


def _track(layer: LayerPerf, index: int) -> int:
    """The kernel's tile when the target names it; else its own track."""
    tile = layer.extra.get("tile")
    return int(tile) if isinstance(tile, int) else index


def _short(name: str, limit: int = 40) -> str:
    """A layer name for an axis label: long ONNX paths keep their most specific end."""
    return name if len(name) <= limit else "…" + name[-(limit - 1) :]


def _colours(layers: list[LayerPerf]) -> dict[str, str]:
    ops = list(dict.fromkeys(layer.op for layer in layers))
    return {op: PALETTE[i % len(PALETTE)] for i, op in enumerate(ops)}


def _legend(ax: Axes, colours: dict[str, str]) -> None:
    from matplotlib.patches import Patch

    handles: list[Any] = [Patch(facecolor=c, label=op) for op, c in colours.items()]
    extra, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + extra, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, min(height, 16.0)), layout="constrained")


def _svg(fig: Figure, name: str) -> str:
    """The figure as an `<svg>` element for inline use: no XML prolog, no date, ids unique to `name`."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": name, "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :].strip()
