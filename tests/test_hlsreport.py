"""The HLS report readers (pytest_tinyaccel.readers.hlsreport) on Vivado and Vitis HLS reports:
csynth XML and text, co-simulation reports, the Perf fields they make, malformed reports."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pytest_tinyaccel.readers.hlsreport import (
    ReportError,
    parse_cosim_rpt,
    parse_csynth_rpt,
    parse_csynth_xml,
    perf_fields,
    read_synthesis,
)

DATA = Path(__file__).parent / "data" / "hls"


def test_csynth_xml_vivado_and_vitis() -> None:
    vivado = parse_csynth_xml(DATA / "vivado_csynth.xml")
    assert (vivado.top, vivado.part, vivado.tool_version) == ("myproject", "xcvu9p-flga2104-2L-e", "2019.2")
    assert (vivado.target_clock_ns, vivado.estimated_clock_ns) == (5.0, 4.371)
    assert (vivado.latency_best, vivado.latency_avg, vivado.latency_worst) == (1187, 1187, 1187)
    assert (vivado.interval_min, vivado.interval_max) == (1025, 1025)
    assert vivado.resources == {"BRAM": 14, "DSP": 73, "FF": 21592, "LUT": 38710, "URAM": 0}  # DSP48E -> DSP
    assert vivado.available["DSP"] == 6840
    vitis = parse_csynth_xml(DATA / "vitis_csynth.xml")
    assert (vitis.latency_best, vitis.latency_worst, vitis.interval_min, vitis.interval_max) == (9, 12, 1, 2)
    assert vitis.resources == {"BRAM": 0, "DSP": 52, "FF": 5424, "LUT": 13216, "URAM": 0}


def test_csynth_text_reports_match_the_xml() -> None:
    for tool in ("vivado", "vitis"):
        xml, rpt = parse_csynth_xml(DATA / f"{tool}_csynth.xml"), parse_csynth_rpt(DATA / f"{tool}_csynth.rpt")
        for key in (
            "top",
            "part",
            "tool_version",
            "target_clock_ns",
            "estimated_clock_ns",
            "latency_best",
            "latency_worst",
            "interval_min",
            "interval_max",
            "resources",
            "available",
        ):
            assert getattr(rpt, key) == getattr(xml, key), (tool, key)


def test_read_synthesis_prefers_xml_and_falls_back_to_text(tmp_path: Path) -> None:
    shutil.copy(DATA / "vivado_csynth.rpt", tmp_path / "top_csynth.rpt")
    assert read_synthesis(tmp_path, "top").latency_worst == 1187
    shutil.copy(DATA / "vitis_csynth.xml", tmp_path / "top_csynth.xml")
    assert read_synthesis(tmp_path, "top").latency_worst == 12
    with pytest.raises(ReportError, match="no synthesis report other_csynth.xml"):
        read_synthesis(tmp_path, "other")


def test_cosim_report_and_perf_fields() -> None:
    cosim = parse_cosim_rpt(DATA / "cosim.rpt")
    assert (cosim.rtl, cosim.status, cosim.passed) == ("Verilog", "Pass", True)  # the VHDL NA row is skipped
    assert (cosim.latency_min, cosim.latency_avg, cosim.latency_max) == (1190, 1190.5, 1191)
    assert (cosim.interval_min, cosim.interval_max, cosim.total_cycles) == (1026, 1026, 5296)
    failed = parse_cosim_rpt(DATA / "cosim_fail.rpt")
    assert not failed.passed and failed.latency_max is None

    synth = parse_csynth_xml(DATA / "vivado_csynth.xml")
    fields = perf_fields(synth, cosim)
    assert fields["cycles"] == 1191 and fields["clock_hz"] == pytest.approx(2e8)
    assert fields["latency_ns"] == pytest.approx(1191 * 5.0)
    assert fields["throughput"] == pytest.approx(2e8 / 1026)
    assert fields["resources"] == {"LUT": 38710, "FF": 21592, "DSP": 73, "BRAM": 14, "URAM": 0}
    assert fields["extra"]["latency_source"] == "cosim" and fields["extra"]["timing_met"] is True
    # Without co-simulation (or when it failed) the synthesis worst case and interval are used.
    for other in (None, failed):
        fields = perf_fields(synth, other)
        assert fields["cycles"] == 1187 and fields["throughput"] == pytest.approx(2e8 / 1025)
        assert fields["extra"]["latency_source"] == "csynth"


def test_malformed_reports_are_report_errors() -> None:
    with pytest.raises(ReportError, match="not a csynth XML report"):
        parse_csynth_xml("<profile>")
    with pytest.raises(ReportError, match="no SummaryOfOverallLatency"):
        parse_csynth_xml("<profile><AreaEstimates/></profile>")
    with pytest.raises(ReportError, match="no latency summary"):
        parse_csynth_rpt("== Vivado HLS Report for 'x'\n")
    with pytest.raises(ReportError, match="no Verilog/VHDL result row"):
        parse_cosim_rpt("|      VHDL|        NA|  NA|\n")
