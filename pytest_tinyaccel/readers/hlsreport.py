"""Readers for the reports Vivado HLS / Vitis HLS write after synthesis and C/RTL co-simulation.

Pure functions over text (no tool, no hls4ml needed), so they are testable on
small report files:

- `<project>_prj/solution1/syn/report/<top>_csynth.xml` — synthesis estimates:
  target and estimated clock period, best/average/worst-case latency in cycles,
  initiation interval (min/max), resources (LUT, FF, DSP or DSP48E, BRAM_18K,
  URAM) and what the part offers;
- `<top>_csynth.rpt` — the same in the text layout (fallback when the XML is
  missing), both the Vivado HLS table (`| min | max | min | max | Type |`) and
  the Vitis HLS one with absolute latencies;
- `<project>_prj/solution1/sim/report/<top>_cosim.rpt` — co-simulation status
  and the latency / interval the RTL simulation measured (min/avg/max, `NA`
  where the tool did not measure).

`perf_fields` turns them into the figures the profiling table shows: latency
from co-simulation when it passed and measured it, else the synthesis
worst case; clock from the target period; throughput = clock / II.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESOURCE_NAMES = {"LUT": "LUT", "FF": "FF", "DSP": "DSP", "DSP48E": "DSP", "BRAM_18K": "BRAM", "URAM": "URAM"}
"""Report resource tags -> the profile's resource keys (BRAM counts 18K blocks)."""


class ReportError(ValueError):
    """A report that is missing a figure it must have, or is not in a known layout."""


@dataclass
class SynthesisReport:
    top: str | None = None
    part: str | None = None
    tool_version: str | None = None
    target_clock_ns: float | None = None
    estimated_clock_ns: float | None = None
    latency_best: int | None = None
    latency_avg: int | None = None
    latency_worst: int | None = None
    interval_min: int | None = None
    interval_max: int | None = None
    resources: dict[str, int] = field(default_factory=dict)
    available: dict[str, int] = field(default_factory=dict)


@dataclass
class CosimReport:
    rtl: str
    status: str
    latency_min: int | None = None
    latency_avg: float | None = None
    latency_max: int | None = None
    interval_min: int | None = None
    interval_avg: float | None = None
    interval_max: int | None = None
    total_cycles: int | None = None

    @property
    def passed(self) -> bool:
        return self.status.lower() == "pass"


def _text(path_or_text: str | Path) -> str:
    if isinstance(path_or_text, Path):
        return path_or_text.read_text(encoding="utf-8", errors="replace")
    return path_or_text


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    text = text.strip()
    if not text or text.upper() in ("NA", "N/A", "-", "UNDEF", "?"):
        return None
    match = re.match(r"^[~<>]?\s*(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)", text)
    return float(match.group(1)) if match else None


def _int(text: str | None) -> int | None:
    value = _number(text)
    return None if value is None else round(value)


# ----- csynth.xml ---------------------------------------------------------------------


def parse_csynth_xml(source: str | Path) -> SynthesisReport:
    """Read a `<top>_csynth.xml` (Vivado HLS 2017-2020, Vitis HLS 2020-2024)."""
    text = _text(source)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ReportError(f"not a csynth XML report: {exc}") from exc

    def find(path: str) -> str | None:
        node = root.find(path)
        return node.text if node is not None and node.text is not None else None

    overall = "./PerformanceEstimates/SummaryOfOverallLatency/"
    report = SynthesisReport(
        top=find("./UserAssignments/TopModelName"),
        part=find("./UserAssignments/Part"),
        tool_version=find("./ReportVersion/Version"),
        target_clock_ns=_number(find("./UserAssignments/TargetClockPeriod")),
        estimated_clock_ns=_number(find("./PerformanceEstimates/SummaryOfTimingAnalysis/EstimatedClockPeriod")),
        latency_best=_int(find(overall + "Best-caseLatency")),
        latency_avg=_int(find(overall + "Average-caseLatency")),
        latency_worst=_int(find(overall + "Worst-caseLatency")),
        interval_min=_int(find(overall + "Interval-min")),
        interval_max=_int(find(overall + "Interval-max")),
    )
    for section, target in (
        ("./AreaEstimates/Resources", report.resources),
        ("./AreaEstimates/AvailableResources", report.available),
    ):
        node = root.find(section)
        for child in node if node is not None else []:
            key = RESOURCE_NAMES.get(child.tag)
            value = _int(child.text)
            if key and value is not None:
                target[key] = value
    if report.latency_worst is None and report.latency_best is None:
        raise ReportError("csynth XML report has no SummaryOfOverallLatency (Best-/Worst-caseLatency)")
    return report


# ----- csynth.rpt ---------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _section(lines: list[str], title: str) -> list[str]:
    """Lines after the line containing `title`, up to the next `+ ` or `==` heading."""
    for i, line in enumerate(lines):
        if title in line:
            out = []
            for follow in lines[i + 1 :]:
                if follow.startswith(("+ ", "== ")):
                    break
                out.append(follow)
            return out
    return []


def parse_csynth_rpt(source: str | Path) -> SynthesisReport:
    """Read the text `<top>_csynth.rpt` (Vivado HLS and Vitis HLS table layouts)."""
    lines = _text(source).splitlines()
    report = SynthesisReport()
    for line in lines:
        if m := re.match(r"\s*\*\s*Version:\s*(\S+)", line):
            report.tool_version = report.tool_version or m.group(1)
        elif m := re.match(r"\s*\*\s*Target device:\s*(\S+)", line):
            report.part = m.group(1)
        elif m := re.match(r"==\s*(?:Vivado|Vitis) HLS Report for '([^']+)'", line):
            report.top = m.group(1)
    for line in _section(lines, "+ Timing"):
        cells = _cells(line)
        if len(cells) >= 3 and cells[0] and not cells[0].lower().startswith("clock") and _number(cells[1]) is not None:
            report.target_clock_ns = _number(cells[1])
            report.estimated_clock_ns = _number(cells[2])
            break
    for line in _section(lines, "+ Latency"):
        if not line.strip().startswith("|"):
            continue
        cells = _cells(line)
        if len(cells) == 5 and _number(cells[0]) is not None:  # Vivado HLS: min max | min max | type
            nums = cells[:4]
        elif len(cells) == 7 and _number(cells[0]) is not None:  # Vitis HLS: cycles, absolute, interval, type
            nums = [cells[0], cells[1], cells[4], cells[5]]
        else:
            continue
        report.latency_best, report.latency_worst, report.interval_min, report.interval_max = (_int(c) for c in nums)
        break
    header: list[str] | None = None
    for line in _section(lines, "== Utilization Estimates") or lines:
        if not line.strip().startswith("|"):
            continue
        cells = _cells(line)
        if cells and cells[0] == "Name":
            header = cells
        elif header and cells and cells[0] in ("Total", "Available"):
            target = report.resources if cells[0] == "Total" else report.available
            for name, value in zip(header[1:], cells[1:], strict=False):
                key = RESOURCE_NAMES.get(name)
                number = _int(value)
                if key and number is not None:
                    target[key] = number
            if cells[0] == "Available":
                break
    if report.latency_worst is None:
        raise ReportError("csynth text report has no latency summary table")
    return report


# ----- cosim.rpt ----------------------------------------------------------------------


def parse_cosim_rpt(source: str | Path) -> CosimReport:
    """Read `<top>_cosim.rpt`: the first RTL row (Verilog or VHDL) whose status is not NA."""
    found: CosimReport | None = None
    for line in _text(source).splitlines():
        cells = _cells(line)
        if len(cells) < 2 or cells[0] not in ("Verilog", "VHDL", "SystemC"):
            continue
        if cells[1].upper() == "NA":
            continue
        values = cells[2:] + [""] * 7
        found = CosimReport(
            rtl=cells[0],
            status=cells[1],
            latency_min=_int(values[0]),
            latency_avg=_number(values[1]),
            latency_max=_int(values[2]),
            interval_min=_int(values[3]),
            interval_avg=_number(values[4]),
            interval_max=_int(values[5]),
            total_cycles=_int(values[6]),
        )
        break
    if found is None:
        raise ReportError("co-simulation report has no Verilog/VHDL result row with a status")
    return found


# ----- to the profile -------------------------------------------------------------------


def read_synthesis(report_dir: Path, top: str) -> SynthesisReport:
    """The synthesis report of `top` in `report_dir` (XML preferred, text as fallback)."""
    xml, rpt = report_dir / f"{top}_csynth.xml", report_dir / f"{top}_csynth.rpt"
    if xml.is_file():
        return parse_csynth_xml(xml)
    if rpt.is_file():
        return parse_csynth_rpt(rpt)
    raise ReportError(f"no synthesis report {xml.name} or {rpt.name} in {report_dir}")


def perf_fields(synth: SynthesisReport, cosim: CosimReport | None = None) -> dict[str, Any]:
    """Keyword arguments for `Perf` (minus `simulator`): cycles, clock_hz, latency_ns,
    throughput, resources, extra. Co-simulation figures win when it passed and measured them."""
    extra: dict[str, Any] = {
        "latency_source": "csynth",
        "csynth_latency_min": synth.latency_best,
        "csynth_latency_max": synth.latency_worst,
        "csynth_interval_min": synth.interval_min,
        "csynth_interval_max": synth.interval_max,
        "target_clock_ns": synth.target_clock_ns,
        "estimated_clock_ns": synth.estimated_clock_ns,
        "part": synth.part,
        "hls_version": synth.tool_version,
        "available": dict(synth.available),
    }
    if synth.target_clock_ns is not None and synth.estimated_clock_ns is not None:
        extra["timing_met"] = synth.estimated_clock_ns <= synth.target_clock_ns
    cycles = synth.latency_worst if synth.latency_worst is not None else synth.latency_best
    interval = synth.interval_max if synth.interval_max is not None else synth.interval_min
    if cosim is not None:
        extra.update(
            {
                "cosim_rtl": cosim.rtl,
                "cosim_status": cosim.status,
                "cosim_latency_min": cosim.latency_min,
                "cosim_latency_avg": cosim.latency_avg,
                "cosim_latency_max": cosim.latency_max,
                "cosim_interval_min": cosim.interval_min,
                "cosim_interval_avg": cosim.interval_avg,
                "cosim_interval_max": cosim.interval_max,
                "cosim_total_cycles": cosim.total_cycles,
            }
        )
        if cosim.passed and cosim.latency_max is not None:
            cycles = cosim.latency_max
            extra["latency_source"] = "cosim"
        if cosim.passed and cosim.interval_max is not None:
            interval = cosim.interval_max
    period = synth.target_clock_ns
    clock_hz = 1e9 / period if period else None
    latency_ns = cycles * period if cycles is not None and period else None
    throughput = clock_hz / interval if clock_hz and interval else None
    extra["initiation_interval"] = interval
    return {
        "cycles": float(cycles) if cycles is not None else None,
        "clock_hz": clock_hz,
        "latency_ns": latency_ns,
        "throughput": throughput,
        "resources": {k: synth.resources[k] for k in ("LUT", "FF", "DSP", "BRAM", "URAM") if k in synth.resources},
        "extra": extra,
    }
