"""Readers for what simulators and runtimes write: data files, logs and traces.

Pure functions over text (no files, no processes), so each is unit-tested on
small samples written in the format the tools emit. The `command` target wires
them to files; anything else may use them too.

Formats covered
---------------
- AIE simulator data files (aiesimulator / x86simulator PLIO output): one line
  per stream beat holding several values (np.savetxt-style, whitespace
  separated), optionally preceded by a `T <time> <unit>` line (the simulated
  time the beat left the array; unit ps/ns/us/ms/s) and a `TLAST` line (the
  beat closes a frame). `read_stream` reads them, `stream_timing` derives
  latency and throughput, `text_to_array`/`array_to_text` map them to and from
  arrays whose last dimension is padded to the line width.
- Kernel cycle prints from the AI Engine logging API
  (`aie::tile::current().cycles()`), as flows print them into the simulator
  log: `Running <kernel>` followed by `start = A,end = B,total = C`
  (`aie_kernel_cycles`).
- ONNX Runtime profiling JSON (Chrome trace events: `ph: X`, `cat: Node`,
  `dur` in microseconds), as ONNX Runtime's `enable_profiling` and Gemmini's
  runner with `-t` write it (`ort_profile`).
- A `cycles: N` style line (`cycles_line`), or any regex (`regex_value`).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

TIME_UNITS_NS = {"ps": 1e-3, "ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
_TIME_LINE = re.compile(r"^T\s+([-+0-9.eE]+)\s*([a-z]+)\s*$")


# ----- AIE simulator data streams ----------------------------------------------------------


@dataclass
class Beat:
    """One data line of a stream file: where its values start, how many, when, TLAST."""

    line: int
    start: int
    count: int
    time_ns: float | None
    tlast: bool


@dataclass
class Stream:
    values: np.ndarray
    """Every value of the file in order (float64), timestamps and TLAST removed."""
    beats: list[Beat]

    @property
    def timed(self) -> bool:
        return any(b.time_ns is not None for b in self.beats)


def read_stream(text: str) -> Stream:
    """Parse an aiesimulator/x86simulator-style data file (or a plain np.savetxt file).

    Raises ValueError naming the line for anything that is not a timestamp,
    `TLAST`, a blank line or whitespace-separated numbers.
    """
    values: list[float] = []
    beats: list[Beat] = []
    pending_time: float | None = None
    pending_tlast = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("T"):
            if line == "TLAST":
                pending_tlast = True
                continue
            match = _TIME_LINE.match(line)
            if not match or match.group(2) not in TIME_UNITS_NS:
                raise ValueError(
                    f"line {number}: cannot read timestamp {_clip(line)!r} (expected `T <time> <ps|ns|us|ms|s>`)"
                )
            pending_time = float(match.group(1)) * TIME_UNITS_NS[match.group(2)]
            continue
        tokens = line.replace(",", " ").split()
        try:
            row = [float(t) for t in tokens]
        except ValueError:
            bad = next(t for t in tokens if not _is_float(t))
            raise ValueError(f"line {number}: {bad!r} is not a number (line: {_clip(line)!r})") from None
        beats.append(Beat(number, len(values), len(row), pending_time, pending_tlast))
        values.extend(row)
        pending_time, pending_tlast = None, False
    return Stream(np.asarray(values, dtype=np.float64), beats)


@dataclass
class StreamTiming:
    """Timing of the instances (inferences) in a timestamped output stream.

    Rule (documented in docs/command-target.md):
    - an instance is `values_per_instance` consecutive values, or, without
      that, the beats up to and including each TLAST, or else the whole file;
    - an instance completes at the timestamp of the beat holding its last value;
    - latency = completion of the first instance - `start_ns` (the time the
      first input entered; 0 = simulation start, as aiesimulator counts);
    - throughput = (instances - 1) / (completion of the last - completion of
      the first) in instances/s: the steady-state rate over several
      iterations, excluding the first instance's pipeline fill, as AMD's
      throughput.py measures frames between TLASTs. None for one instance.
    """

    instances: int
    first_ns: float
    completions_ns: list[float]
    latency_ns: float
    throughput: float | None
    period_ns: float | None
    """Median interval between consecutive completions."""


def stream_timing(stream: Stream, values_per_instance: int | None = None, start_ns: float = 0.0) -> StreamTiming:
    beats = stream.beats
    if not beats:
        raise ValueError("the stream holds no data")
    if not stream.timed:
        raise ValueError("the stream has no `T <time> <unit>` timestamp lines (was it written by aiesimulator?)")
    times = _fill_times(beats)
    total = len(stream.values)
    if values_per_instance:
        if total % values_per_instance:
            raise ValueError(f"{total} values are not a whole number of instances of {values_per_instance} values")
        ends = [(k + 1) * values_per_instance - 1 for k in range(total // values_per_instance)]
        beat_of = np.searchsorted([b.start + b.count - 1 for b in beats], ends)
        completions = [times[i] for i in beat_of]
    elif any(b.tlast for b in beats):
        completions = [times[i] for i, b in enumerate(beats) if b.tlast]
    else:
        completions = [times[-1]]
    n = len(completions)
    intervals = [b - a for a, b in itertools.pairwise(completions)]
    span = completions[-1] - completions[0]
    throughput = (n - 1) * 1e9 / span if n > 1 and span > 0 else None
    return StreamTiming(
        instances=n,
        first_ns=times[0],
        completions_ns=completions,
        latency_ns=completions[0] - start_ns,
        throughput=throughput,
        period_ns=float(statistics.median(intervals)) if intervals else None,
    )


def _fill_times(beats: list[Beat]) -> list[float]:
    """A beat without its own timestamp inherits the previous one (first: the next one)."""
    times: list[float | None] = [b.time_ns for b in beats]
    last = next(t for t in times if t is not None)
    out = []
    for t in times:
        last = t if t is not None else last
        out.append(last)
    return out


def padded_size(size: int, pad: int | None) -> int:
    """`size` rounded up to a multiple of `pad` (None or 1: unchanged)."""
    if not pad or pad <= 1:
        return size
    return -(-size // pad) * pad


def text_to_array(values: np.ndarray, count: int, sample_shape: tuple[int, ...], pad: int | None = None) -> np.ndarray:
    """Reshape the flat values of `count` samples, whose last dimension was padded
    to a multiple of `pad` when written, to [count, *sample_shape] (padding cut).

    Raises ValueError with the expected and found value counts.
    """
    shape = tuple(sample_shape) or (1,)
    last = padded_size(shape[-1], pad)
    per_sample = int(np.prod(shape[:-1], dtype=np.int64)) * last
    if values.size != count * per_sample:
        detail = f" (last dimension {shape[-1]} padded to {last})" if last != shape[-1] else ""
        raise ValueError(
            f"found {values.size} values, expected {count * per_sample} = {count} samples x "
            f"{per_sample} values of shape {list(sample_shape)}{detail}"
        )
    array = values.reshape((count, *shape[:-1], last))[..., : shape[-1]]
    return array.reshape((count, *sample_shape))


def array_to_text(
    x: np.ndarray,
    values_per_line: int,
    pad: int | None = None,
    pad_value: float = 0,
    fmt: str | None = None,
    timestamps_ns: Iterable[float] | None = None,
) -> str:
    """Write [N, ...] as the AIE flows do: last dimension padded to a multiple of
    `pad`, then all values in order, `values_per_line` per line (the last line of
    the file may be shorter). Integers print as integers, floats with `%.9g`
    (exact for float32) unless `fmt` is given. With `timestamps_ns`, a
    `T <t> ns` line precedes each line (for stand-in simulators and tests)."""
    if values_per_line < 1:
        raise ValueError("values_per_line must be >= 1")
    x = np.asarray(x)
    if x.ndim == 0:
        x = x.reshape(1)
    extra = padded_size(x.shape[-1], pad) - x.shape[-1]
    if extra:
        widths = [(0, 0)] * (x.ndim - 1) + [(0, extra)]
        x = np.pad(x, widths, constant_values=pad_value)
    flat = x.reshape(-1)
    fmt = fmt or ("%d" if flat.dtype.kind in "iub" else "%.9g")
    times = iter(timestamps_ns) if timestamps_ns is not None else None
    lines = []
    for i in range(0, flat.size, values_per_line):
        if times is not None:
            lines.append(f"T {next(times):g} ns")
        lines.append(" ".join(fmt % v for v in flat[i : i + values_per_line]))
    return "\n".join(lines) + "\n"


# ----- AI Engine kernel cycle prints ---------------------------------------------------------

_RUNNING = re.compile(r"Running\s+(.+?)(?:\s+total\s*=.*)?$")
_TOTAL = re.compile(r"(?:start\s*=\s*(\d+)\s*,\s*end\s*=\s*(\d+)\s*,\s*)?total\s*=\s*(\d+)")


@dataclass
class KernelCycles:
    name: str
    total: int
    start: int | None = None
    end: int | None = None


def aie_kernel_cycles(text: str, unnamed: bool = True) -> list[KernelCycles]:
    """Kernel timings printed with the AI Engine cycle counter: a `Running <kernel>`
    line followed by (or ending with) `start = A,end = B,total = C` / `total = C`.
    One entry per print, in order (a kernel that runs N iterations prints N times).
    A print with no `Running` line before it is `kernel<i>`, or left out without `unnamed`."""
    found: list[KernelCycles] = []
    name: str | None = None
    for line in text.splitlines():
        running = _RUNNING.search(line)
        if running:
            name = running.group(1).strip()
        total = _TOTAL.search(line)
        if total and (name or unnamed):
            start, end, cycles = total.groups()
            found.append(
                KernelCycles(
                    name or f"kernel{len(found)}", int(cycles), int(start) if start else None, int(end) if end else None
                )
            )
            name = None
    return found


def summarize_kernel_cycles(prints: list[KernelCycles]) -> tuple[float, list[KernelCycles], int]:
    """Per-kernel mean over iterations (first-seen order), their sum (the reported
    latency in cycles, as the reference AIE flow adds its kernel totals), and the
    number of iterations seen (the most prints of any one kernel)."""
    by_name: dict[str, list[KernelCycles]] = {}
    for p in prints:
        by_name.setdefault(p.name, []).append(p)
    kernels = [
        KernelCycles(name, round(statistics.fmean(p.total for p in ps)), ps[0].start, ps[0].end)
        for name, ps in by_name.items()
    ]
    return (
        float(sum(statistics.fmean(p.total for p in ps) for ps in by_name.values())),
        kernels,
        max((len(ps) for ps in by_name.values()), default=0),
    )


# ----- ONNX Runtime profiling JSON -----------------------------------------------------------


@dataclass
class OrtNode:
    name: str
    op: str
    provider: str
    calls: int
    total_us: float

    @property
    def mean_us(self) -> float:
        return self.total_us / self.calls


@dataclass
class OrtProfile:
    runs_us: list[float]
    """Duration of every `model_run` session event (one per inference call)."""
    nodes: list[OrtNode]
    """Per node, in order of first execution; durations summed over all calls."""
    by_op: dict[str, float] = field(default_factory=dict)
    """Total microseconds per operator type (all nodes, all calls)."""

    @property
    def latency_us(self) -> float:
        """Median `model_run` duration; without those events, the sum of the
        nodes' mean durations (one inference's worth of kernel time)."""
        if self.runs_us:
            return float(statistics.median(self.runs_us))
        return float(sum(n.mean_us for n in self.nodes))


def ort_profile(text: str) -> OrtProfile:
    """Parse an ONNX Runtime profile (a JSON array of Chrome trace events, or an
    object with `traceEvents`). Node events are `cat: Node`, `ph: X`, named
    `<node>_kernel_time` (ORT's `_fence_before`/`_fence_after` events are
    skipped); `args.op_name` and `args.provider` name the operator and the
    execution provider. Raises ValueError for anything else."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc}); was the trace cut short?") from None
    events = data.get("traceEvents") if isinstance(data, dict) else data
    if not isinstance(events, list):
        raise ValueError("not a Chrome trace: expected a JSON array of events or an object with traceEvents")
    runs: list[float] = []
    nodes: dict[str, OrtNode] = {}
    by_op: dict[str, float] = {}
    for event in events:
        if not isinstance(event, dict) or event.get("ph") != "X" or "dur" not in event:
            continue
        name = str(event.get("name", ""))
        if event.get("cat") == "Session" and name == "model_run":
            runs.append(float(event["dur"]))
            continue
        if event.get("cat") != "Node" or name.endswith(("_fence_before", "_fence_after")):
            continue
        args = event.get("args") or {}
        op = str(args.get("op_name", ""))
        if not op and not name.endswith("_kernel_time"):
            continue
        node_name = name.removesuffix("_kernel_time")
        dur = float(event["dur"])
        node = nodes.get(node_name)
        if node is None:
            node = nodes[node_name] = OrtNode(node_name, op, str(args.get("provider", "")), 0, 0.0)
        node.calls += 1
        node.total_us += dur
        by_op[op or "?"] = by_op.get(op or "?", 0.0) + dur
    if not runs and not nodes:
        raise ValueError("no `model_run` or `cat: Node` events: not an ONNX Runtime profile, or profiling was off")
    return OrtProfile(runs, list(nodes.values()), by_op)


# ----- numbers in logs -----------------------------------------------------------------------

_NUMBER = r"[-+]?(?:\d[\d,_]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_CYCLES = re.compile(rf"\bcycles?\b\s*(?:count)?\s*[:=]\s*(?P<a>{_NUMBER})|(?P<b>{_NUMBER})\s*cycles?\b", re.IGNORECASE)
REDUCERS = ("last", "first", "sum", "mean", "median", "min", "max", "count")


def to_number(text: str) -> float:
    """A number as logs print it: thousands separators (`,` `_`) allowed."""
    return float(text.replace(",", "").replace("_", ""))


def cycles_line(text: str, reduce: str = "last") -> float | None:
    """The cycle count of a `cycles: N` / `cycles = N` / `N cycles` line
    (e.g. KaNN's `Total: 1876698 cycles are required ...`); with several, the
    last one by default (the final summary). None when no line matches."""
    values = [to_number(m.group("a") or m.group("b")) for m in _CYCLES.finditer(text)]
    return reduce_values(values, reduce)


def regex_value(text: str, pattern: str, reduce: str = "last") -> float | None:
    """Numbers captured by `pattern` (its group `value`, else group 1, else the
    whole match) in every match, reduced to one; None when nothing matches."""
    compiled = re.compile(pattern, re.MULTILINE)
    values = []
    for match in compiled.finditer(text):
        if "value" in compiled.groupindex:
            raw = match.group("value")
        elif compiled.groups:
            raw = match.group(1)
        else:
            raw = match.group(0)
        if raw is None:
            continue
        try:
            values.append(to_number(raw.strip()))
        except ValueError:
            raise ValueError(f"regex {pattern!r} captured {raw!r}, which is not a number") from None
    return reduce_values(values, reduce)


def reduce_values(values: list[float], reduce: str) -> float | None:
    if reduce not in REDUCERS:
        raise ValueError(f"reduce must be one of {', '.join(REDUCERS)}, got {reduce!r}")
    if reduce == "count":
        return float(len(values))
    if not values:
        return None
    reducers: dict[str, Callable[[list[float]], float]] = {
        "last": lambda v: v[-1],
        "first": lambda v: v[0],
        "sum": math.fsum,
        "mean": statistics.fmean,
        "median": statistics.median,
        "min": min,
        "max": max,
    }
    return float(reducers[reduce](values))


# ----- helpers -----------------------------------------------------------------------------------


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
