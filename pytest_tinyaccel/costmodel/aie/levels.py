"""A kernel's own cycles: its loop nest (templates.py) with constants fitted on isolated runs.

    own = a + s_g x sum over loop levels (trips x counted cycles per trip)

`a` is the counted fixed cost of a call; `g` the kernel's group (its class and dtype,
`Work.family`), whose one scale `s_g` on the counted per-level costs is fitted on the
isolated runs of `kernels/onnx2versal_isolated.toml` only (each kernel alone in its
unit-test graph; never an in-graph log), minimising the relative error of

    isolated = max(own, interface floor of the unit test)

(stream ports at the unit test's 64-bit PLIO rate; a window is filled before the
kernel's timer starts). One scale, not a constant per level: the isolated runs are
one to four small shapes per group, too few to separate the levels (an affine fit
put a 1,400-cycle call cost on int8 convolutions). Levels no run constrains (the channel
loops of int8 convolutions, `COUNTED_LEVELS`) keep their counted cost. A group with no run
takes its signed-weight group's constants (unsigned weights), else the other dtype's, else
the counted costs (s = 1).
`fit_groups(exclude=...)` refits without some runs: the leave-one-shape-out check of
benchmarks/aie_validation.py.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path

from . import templates
from .templates import STREAM, Work

ISOLATED = Path(__file__).resolve().parent / "kernels" / "onnx2versal_isolated.toml"


@dataclass(frozen=True)
class Isolated:
    """One isolated run of one kernel, as the kernel header records it."""

    template: str
    args: tuple[str, ...]
    cycles: float
    file: str
    recorded: str
    code_changed: bool

    @property
    def shape(self) -> str:
        return f"{self.template}<{','.join(self.args)}>"


@dataclass(frozen=True)
class Constants:
    s: float
    """Scale of the counted per-level costs (the call's fixed cost is as counted)."""
    runs: int
    source: str
    """'fitted' | 'from <group>' | 'counted'"""


@functools.lru_cache(maxsize=4)
def load_isolated(path: Path = ISOLATED) -> tuple[tuple[Isolated, ...], float]:
    """The isolated runs and the unit tests' PLIO rate in 32-bit words per AIE cycle at 1.25 GHz."""
    data = tomllib.loads(path.read_text())
    runs = tuple(
        Isolated(
            k["template"],
            tuple(x.strip() for x in k["args"].split(",")),
            float(k["cycles"]),
            k["file"],
            k["recorded"],
            bool(k["code_changed"]),
        )
        for k in data["kernel"]
    )
    return runs, plio_words_per_cycle(data["plio_bits"], data["pl_clock_hz"])


def plio_words_per_cycle(bits: float, pl_clock_hz: float, aie_clock_hz: float = 1.25e9) -> float:
    return bits / 32 * pl_clock_hz / aie_clock_hz


VECTOR_LEVELS = frozenset({"mac"})
"""Levels of one vector MAC instruction per trip: never under a cycle a trip, the issue
rate of the tile's one vector unit (AM009, "AI Engine Tile Architecture": a VLIW
bundle carries one vector instruction), whatever the fitted scale."""


COUNTED_LEVELS = frozenset({"chan", "cgroup", "spill", "wstream", "copy", "copy_row"})
"""Levels whose cost per trip is counted from the loop body and never scaled: the channel
loops of the int8 convolutions (qlinearconv.cc), whose isolated runs all have one input
channel, so no run constrains them (the scale is fitted on the other levels)."""


def counted(w: Work) -> tuple[float, float]:
    """(call cost, the other levels' cycles) at the counted costs."""
    call = w.levels.get("call", (0.0, 0.0))
    return call[0] * call[1], templates.base_cycles(w) - call[0] * call[1]


def scaled(w: Work, s: float) -> float:
    """The levels other than the call at scale `s`, vector levels at least a cycle a trip."""
    return sum(
        trips * (cost if level in COUNTED_LEVELS else max(s * cost, 1.0) if level in VECTOR_LEVELS else s * cost)
        for level, (trips, cost) in w.levels.items()
        if level != "call"
    )


def isolated_floor(w: Work, plio: float) -> float:
    """The unit test's interface floor: stream ports at the PLIO rate (windows are filled before the timer)."""
    ports = [p.words for p in w.inputs if p.kind != "window"]
    if not w.out_window:
        ports.append(w.out_words)
    return max(ports, default=0.0) / plio


def _fit(points: list[tuple[Work, float]], plio: float) -> float:
    """The scale of the counted costs that best matches the runs (relative error)."""
    from scipy.optimize import least_squares

    rows = [(w, counted(w)[0], isolated_floor(w, plio), y) for w, y in points]

    def residual(x):
        return [max(a + scaled(w, x[0]), f) / y - 1.0 for w, a, f, y in rows]

    start = sorted(max(y - a, 1.0) / max(counted(w)[1], 1.0) for w, a, _, y in rows)[len(rows) // 2]
    return float(least_squares(residual, [start], bounds=([1e-3], [1e3])).x[0])


@functools.lru_cache(maxsize=64)
def fit_groups(exclude: frozenset[str] = frozenset(), path: Path = ISOLATED) -> dict[str, Constants]:
    """Constants per group fitted on the isolated runs, leaving out the shapes in `exclude`."""
    runs, plio = load_isolated(path)
    groups: dict[str, list[tuple[Work, float]]] = {}
    for run in runs:
        if run.shape in exclude:
            continue
        w = templates.work(run.template, run.args)
        if w is None:
            raise ValueError(f"{path.name}: {run.shape} is not a known template")
        groups.setdefault(w.family, []).append((w, run.cycles))
    out = {}
    for group, points in groups.items():
        out[group] = Constants(_fit(points, plio), len(points), "fitted")
    return out


SAME_LOOP_NEST = {"dwconv": "conv"}
"""A depthwise convolution runs the convolution templates (a group per channel): with no
isolated run of its own dtype, it takes the convolution's constants of that dtype."""


def constants_for(family: str, fitted: dict[str, Constants]) -> Constants:
    """The group's constants, else for unsigned weights (`.uint8w`) its signed group's, else
    the same class in the other dtype (a scalar body only from a scalar body), else the
    counted costs."""
    kind, dtype, *variant = family.split(".")
    other = "fp32" if dtype == "int8" else "int8"
    base = [v for v in variant if v != "uint8w"]
    candidates = [family, ".".join([kind, dtype, *base])]
    if kind in SAME_LOOP_NEST:  # the same templates as the other class: its loop body, same dtype
        candidates.append(".".join([SAME_LOOP_NEST[kind], dtype, *base]))
    candidates.append(".".join([kind, other, *base]))
    for i, name in enumerate(dict.fromkeys(candidates)):
        if name in fitted:
            c = fitted[name]
            return c if i == 0 else Constants(c.s, 0, f"from {name}")
    return Constants(1.0, 0, "counted")


def own_cycles(w: Work, fitted: dict[str, Constants] | None = None) -> float:
    """The kernel's own cycles for one inference (no waiting on its neighbours)."""
    c = constants_for(w.family, fit_groups() if fitted is None else fitted)
    return counted(w)[0] + scaled(w, c.s)


def isolated_prediction(w: Work, fitted: dict[str, Constants] | None = None) -> float:
    """What the unit test would measure: own cycles, or the PLIO floor when that is slower."""
    _, plio = load_isolated()
    return max(own_cycles(w, fitted), isolated_floor(w, plio))


def stream_ports(w: Work) -> list[float]:
    """Words of every stream port (inputs not read as windows, and a streamed output)."""
    ports = [p.words for p in w.inputs if p.kind == STREAM]
    return ports + ([] if w.out_window else [w.out_words])
