"""How the AIE model composes its simulated timeline into the Perf record (costmodel/aie/schedule.py),
on a hand-made mapping and timeline whose every figure is worked out here: per-kernel start, duration,
exposed cycles, ideal cycles and weights; latency, throughput, the ideal bound and efficiency; the
resources; the record's provenance. The simulation itself is replaced by that timeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_tinyaccel.costmodel.aie import pipeline, schedule
from pytest_tinyaccel.costmodel.aie.calibration import Calibration
from pytest_tinyaccel.costmodel.aie.device import load_device
from pytest_tinyaccel.costmodel.aie.mapping import Kernel, Mapping
from pytest_tinyaccel.costmodel.aie.pipeline import KernelTiming
from pytest_tinyaccel.costmodel.aie.tokensim import Timeline

LOOP = "loop nest (fitted on isolated runs)"


def diamond() -> Mapping:
    """pad -> two conv parts (one with tile weights, one streaming them over GMIO) -> concat -> fc."""
    kernels = [
        Kernel("pad", "conv1", "pad", {"elems": 1.0}, [], 0, 1),
        Kernel("p0", "conv1", "conv", {"macs": 1.0}, ["pad"], 12800, 2, weight_bytes=1000, part=0, parts=2),
        Kernel("p1", "conv1", "conv", {"macs": 2.0}, ["pad"], 6400, 2, streamed_weight_bytes=4096, part=1, parts=2),
        Kernel("cat", "conv1", "concat", {}, ["p0", "p1"], 0, 1),
        Kernel("fc", "fc", "gemm", {}, ["cat"], 1280, 1, weight_bytes=500),
    ]
    return Mapping(kernels, "int8", plio=2, notes=["conv1 split in 2 parts"])


TIMING = {
    "pad": KernelTiming(100.0, 10.0, 110.0, 0.0, "Pad2DStreamInt8", LOOP),
    "p0": KernelTiming(300.0, 50.0, 400.0, 50.0, "QLinearConvHx4PktStream", LOOP),
    "p1": KernelTiming(200.0, 60.0, 450.0, 190.0, "QLinearConvHx4PktStream", LOOP),
    "cat": KernelTiming(30.0, 100.0, 470.0, 340.0, "ConcatInt8Stream", LOOP),
    "fc": KernelTiming(80.0, 470.0, 560.0, 10.0, None, "per-class calibration (no onnx2versal template)"),
}


@pytest.fixture
def composed(monkeypatch):
    """The Perf record of `diamond` with the simulated timeline replaced by TIMING (interval 275)."""
    seen = []

    def run(mapping, graph, device, cal):
        seen.append((mapping, graph, device, cal))
        return dict(TIMING), Timeline(interval=275.0)

    monkeypatch.setattr(pipeline, "run", run)
    device = load_device()
    cal = Calibration("flat", "vck190", {"int8": 128.0, "fp32": 8.0}, {}, path=Path("cal.toml"))
    mapping = diamond()
    perf = schedule.perf(mapping, device, cal, "graph", {"dtype": "int8"})
    assert seen == [(mapping, "graph", device, cal)]
    return perf, device, cal


def test_schedule_ends_each_kernel_its_cycles_after_its_last_input():
    ends = schedule.schedule(diamond(), {"pad": 5.0, "p0": 10.0, "p1": 30.0, "cat": 1.0, "fc": 2.0})
    assert ends == {"pad": 5.0, "p0": 15.0, "p1": 35.0, "cat": 36.0, "fc": 38.0}
    assert schedule.schedule(Mapping([], "int8", 0), {}) == {}


def test_resources_count_kernels_buffers_streams_plio_and_gmio():
    assert schedule.resources(diamond()) == {"Kernels": 5, "Buffers": 7, "Stream": 5 + 2 + 1, "PLIO": 2, "GMIO": 1}
    assert schedule.resources(Mapping([], "int8", 1)) == {"Kernels": 0, "Buffers": 0, "Stream": 1, "PLIO": 1, "GMIO": 0}


def test_each_kernel_is_placed_on_the_timeline_relative_to_the_first_start(composed):
    perf, _, _ = composed
    assert [layer.name for layer in perf.layers] == ["pad", "p0", "p1", "cat", "fc"]
    assert [layer.op for layer in perf.layers] == ["pad", "conv", "conv", "concat", "gemm"]
    assert [layer.start for layer in perf.layers] == [0.0, 40.0, 50.0, 90.0, 460.0]
    assert [layer.cycles for layer in perf.layers] == [100.0, 350.0, 390.0, 370.0, 90.0]
    assert [layer.macs for layer in perf.layers] == [0, 12800, 6400, 0, 1280]
    extra = [layer.extra for layer in perf.layers]
    assert [e["end"] for e in extra] == [100.0, 390.0, 440.0, 460.0, 550.0]
    # exposed: the end minus the latest end of its producers (the first start without any)
    assert [e["exposed_cycles"] for e in extra] == [100.0, 290.0, 340.0, 20.0, 90.0]
    assert [e["ideal_cycles"] for e in extra] == [0.0, 100.0, 50.0, 0.0, 10.0]
    assert [e["weights"] for e in extra] == ["none", "tile", "gmio", "none", "tile"]
    assert [e["own_cycles"] for e in extra] == [100.0, 300.0, 200.0, 30.0, 80.0]
    assert [e["stall_cycles"] for e in extra] == [0.0, 50.0, 190.0, 340.0, 10.0]
    assert [e["tile"] for e in extra] == [0, 1, 2, 3, 4]
    assert [(e["layer"], e["kernel"], e["kernels_in_layer"]) for e in extra] == [
        ("conv1", 0, 1), ("conv1", 0, 2), ("conv1", 1, 2), ("conv1", 0, 1), ("fc", 0, 1),
    ]  # fmt: skip
    assert extra[1]["features"] == {"macs": 1.0} and extra[2]["template"] == "QLinearConvHx4PktStream"
    assert extra[4]["template"] is None and extra[4]["rule"].startswith("per-class calibration")
    errors = schedule.heldout_errors()
    assert [e["heldout_error"] for e in extra] == [
        errors.get(f"{k}.int8") for k in ("pad", "conv", "conv", "concat", "gemm")
    ]
    assert extra[0]["heldout_error"]["median"] > 1.0


def test_an_exposed_time_is_never_negative(monkeypatch):
    timing = dict(TIMING)
    timing["cat"] = KernelTiming(30.0, 100.0, 300.0, 0.0, None, LOOP)  # ends before p1 (a stream kernel can)
    monkeypatch.setattr(pipeline, "run", lambda *a: (timing, Timeline(interval=1.0)))
    device = load_device()
    perf = schedule.perf(diamond(), device, Calibration("c", "vck190", {}, {}), "graph")
    assert perf.layers[3].extra["exposed_cycles"] == 0.0


def test_latency_throughput_ideal_bound_and_resources_of_the_record(composed):
    perf, device, _ = composed
    assert perf.cycles == 550.0  # last end - first start
    assert perf.clock_hz == device.clock_hz == 1.25e9
    assert perf.latency_ns == pytest.approx(550.0 / 1.25e9 * 1e9) and perf.latency_ns == 440.0
    assert perf.throughput == pytest.approx(1.25e9 / 275.0)
    assert perf.efficiency == pytest.approx(110.0 / 550.0)  # ideal: pad 0, conv parts 100 and 50, fc 10
    assert perf.resources == {"Kernels": 5, "Buffers": 7, "Stream": 8, "PLIO": 2, "GMIO": 1}
    assert perf.simulator == schedule.simulator_name(device, schedule.heldout_errors()["all"])


def test_the_record_says_what_its_figures_are_and_where_they_come_from(composed):
    perf, device, cal = composed
    assert perf.extra == {
        "unit": "cycles",
        "figure": "predicted",
        "model": "AIE dataflow model",
        "ideal_cycles": 110.0,
        "ideal_rule": "every compute kernel at the device's peak MAC rate, data movement free, same graph",
        "initiation_interval_cycles": 275.0,
        "throughput_rule": f"steady state of {pipeline.INFERENCES} simulated back-to-back inferences",
        "busiest_kernel": "p0",
        "total_macs": 20480,
        "peak_macs_per_cycle": 128.0,
        "device": "vck190",
        "device_sha256": device.sha256,
        "kernel_constants": "onnx2versal_isolated (kernel headers at 392b325)",
        "fallback_calibration": "flat",
        "calibration_file": "cal.toml",
        "heldout_error": schedule.heldout_errors()["all"],
        "tiles_available": device.tiles,
        "mapping_notes": ["conv1 split in 2 parts"],
        "dtype": "int8",
    }


def test_an_empty_timeline_has_no_latency_throughput_or_efficiency(monkeypatch):
    monkeypatch.setattr(pipeline, "run", lambda *a: ({}, Timeline(interval=0.0)))
    cal = Calibration("c", "vck190", {}, {})
    perf = schedule.perf(Mapping([], "fp32", 1), load_device(), cal, "graph")
    assert (perf.cycles, perf.latency_ns, perf.throughput, perf.efficiency) == (0.0, None, None, None)
    assert perf.layers == [] and perf.extra["busiest_kernel"] is None and perf.extra["calibration_file"] is None
    assert perf.extra["ideal_cycles"] == 0.0 and perf.extra["peak_macs_per_cycle"] == 8.0


def test_a_kernel_without_macs_gives_no_efficiency(monkeypatch):
    mapping = Mapping([Kernel("pad", "l", "pad", {}, [], 0, 1)], "int8", 1)
    timing = {"pad": KernelTiming(5.0, 0.0, 5.0, 0.0, None, LOOP)}
    monkeypatch.setattr(pipeline, "run", lambda *a: (timing, Timeline(interval=5.0)))
    perf = schedule.perf(mapping, load_device(), Calibration("c", "vck190", {}, {}), "graph")
    assert perf.cycles == 5.0 and perf.efficiency is None and perf.throughput == 1.25e9 / 5.0
    assert perf.latency_ns == 4.0
