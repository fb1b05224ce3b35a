"""The tool-output readers (pytest_tinyaccel.readers) on small samples in the formats the tools write."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pytest_tinyaccel.readers import simlogs
from pytest_tinyaccel.readers.mlperf import loadgen_detail

# aiesimulator PLIO output: a timestamp before every beat, TLAST closing a frame,
# values np.savetxt-style with a trailing space (as the simulator writes them).
AIESIM = """\
T 3296 ns
1 2 3 4 
T 3298 ns
5 6 7 8 
T 3300 ns
TLAST
9 10 0 0 
T 4296 ns
11 12 13 14 
T 4298 ns
15 16 17 18 
T 4300 ns
TLAST
19 20 0 0 
T 5296 ns
21 22 23 24 
T 5298000 ps
25 26 27 28 
T 5.3 us
TLAST
29 30 0 0 
"""


def test_read_stream_values_times_and_tlast() -> None:
    stream = simlogs.read_stream(AIESIM)
    assert stream.values.size == 36 and stream.values[:5].tolist() == [1, 2, 3, 4, 5]
    assert [b.time_ns for b in stream.beats][:3] == [3296, 3298, 3300]
    assert stream.beats[7].time_ns == pytest.approx(5298) and stream.beats[8].time_ns == pytest.approx(5300)
    assert [i for i, b in enumerate(stream.beats) if b.tlast] == [2, 5, 8]


def test_stream_timing_rule() -> None:
    stream = simlogs.read_stream(AIESIM)
    by_count = simlogs.stream_timing(stream, values_per_instance=12)
    by_tlast = simlogs.stream_timing(stream)
    for timing in (by_count, by_tlast):
        assert timing.instances == 3
        assert timing.completions_ns == pytest.approx([3300, 4300, 5300])
        assert timing.latency_ns == pytest.approx(3300)  # completion of the first instance - simulation start
        assert timing.throughput == pytest.approx(1e6)  # 2 instances in 2000 ns
        assert timing.period_ns == pytest.approx(1000)
    assert simlogs.stream_timing(stream, 12, start_ns=300).latency_ns == pytest.approx(3000)
    one = simlogs.stream_timing(simlogs.read_stream("T 10 ns\n1 2\nT 12 ns\n3 4\n"))
    assert one.instances == 1 and one.latency_ns == 12 and one.throughput is None
    with pytest.raises(ValueError, match="not a whole number of instances of 7"):
        simlogs.stream_timing(stream, 7)
    with pytest.raises(ValueError, match="no `T <time> <unit>`"):
        simlogs.stream_timing(simlogs.read_stream("1 2 3\n4 5 6\n"))


@pytest.mark.parametrize(
    "text, problem",
    [
        ("1 2 3\n4 five 6\n", "line 2: 'five' is not a number"),
        ("T 12 fortnights\n1 2\n", "line 1: cannot read timestamp"),
        ("Tx\n1 2\n", "line 1: cannot read timestamp"),
    ],
)
def test_read_stream_rejects_garbage(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        simlogs.read_stream(text)


def test_text_round_trip_with_last_dimension_padding() -> None:
    x = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5) / 7
    text = simlogs.array_to_text(x, values_per_line=4, pad=4)
    lines = text.splitlines()
    assert len(lines) == 2 * 3 * 8 // 4 and lines[1].split()[1:] == ["0", "0", "0"]  # 5 padded to 8
    back = simlogs.text_to_array(simlogs.read_stream(text).values, 2, (3, 5), pad=4)
    assert back.dtype == np.float64 and np.array_equal(back.astype(np.float32), x)  # %.9g is exact for float32
    ints = simlogs.array_to_text(np.array([[1, -2, 3]], np.int8), values_per_line=2)
    assert ints == "1 -2\n3\n"
    timed = simlogs.array_to_text(np.ones((1, 4)), values_per_line=2, timestamps_ns=[5, 7])
    assert timed.splitlines() == ["T 5 ns", "1 1", "T 7 ns", "1 1"]
    with pytest.raises(
        ValueError,
        match=r"found 39 values, expected 48 = 2 samples x 24 values of shape \[3, 5\] "
        r"\(last dimension 5 padded to 8\)",
    ):
        simlogs.text_to_array(np.zeros(39), 2, (3, 5), pad=4)


def test_aie_kernel_cycles_prints_and_iterations() -> None:
    log = """\
INFO: [aiesimulator] Simulation started
Running GemmReluMKKN<1,16,64>
start = 1634,end = 2041,total = 407
Running SoftmaxSingleaxis<1,5,8>
start = 4485,end = 4617,total = 132
Running GemmReluMKKN<1,16,64>
start = 5634,end = 6043,total = 409
Running SoftmaxSingleaxis<1,5,8>
start = 8485,end = 8619,total = 134
  Running ConvReluScalarBCHW<28, 24, 1, 2, 2, 5> total = 148375
"""
    prints = simlogs.aie_kernel_cycles(log)
    assert [(p.name, p.total) for p in prints][:2] == [
        ("GemmReluMKKN<1,16,64>", 407),
        ("SoftmaxSingleaxis<1,5,8>", 132),
    ]
    assert prints[0].start == 1634 and prints[0].end == 2041
    assert prints[-1].name == "ConvReluScalarBCHW<28, 24, 1, 2, 2, 5>" and prints[-1].start is None
    total, kernels, iterations = simlogs.summarize_kernel_cycles(prints)
    assert iterations == 2 and [k.total for k in kernels] == [408, 133, 148375]
    assert total == pytest.approx(408 + 133 + 148375)
    # a print with no `Running` line before it: named by its place, or left out when names are needed
    bare = "start = 10,end = 30,total = 20\n" + log
    assert simlogs.aie_kernel_cycles(bare)[0].name == "kernel0"
    assert simlogs.aie_kernel_cycles(bare, unnamed=False) == prints


def _trace() -> list[dict]:
    def node(name: str, op: str, dur: int, provider: str = "CPUExecutionProvider") -> dict:
        return {
            "cat": "Node",
            "ph": "X",
            "name": f"{name}_kernel_time",
            "dur": dur,
            "ts": 1,
            "args": {"op_name": op, "provider": provider},
        }

    return [
        {"cat": "Session", "ph": "X", "name": "model_loading_uri", "dur": 9000, "ts": 0, "args": {}},
        {"cat": "Node", "ph": "X", "name": "conv1_fence_before", "dur": 0, "ts": 1, "args": {"op_name": "Conv"}},
        node("conv1", "QLinearConv", 120, "SystolicExecutionProvider"),
        node("fc", "QGemm", 30, "SystolicExecutionProvider"),
        node("softmax", "Softmax", 5),
        {"cat": "Session", "ph": "X", "name": "model_run", "dur": 170, "ts": 2, "args": {}},
        node("conv1", "QLinearConv", 100, "SystolicExecutionProvider"),
        node("fc", "QGemm", 34, "SystolicExecutionProvider"),
        node("softmax", "Softmax", 7),
        {"cat": "Session", "ph": "X", "name": "model_run", "dur": 150, "ts": 3, "args": {}},
    ]


def test_ort_profile_trace() -> None:
    profile = simlogs.ort_profile(json.dumps(_trace()))
    assert profile.runs_us == [170, 150] and profile.latency_us == 160
    assert [(n.name, n.op, n.calls, n.total_us) for n in profile.nodes] == [
        ("conv1", "QLinearConv", 2, 220),
        ("fc", "QGemm", 2, 64),
        ("softmax", "Softmax", 2, 12),
    ]
    assert profile.nodes[0].provider == "SystolicExecutionProvider" and profile.nodes[0].mean_us == 110
    assert profile.by_op == {"QLinearConv": 220, "QGemm": 64, "Softmax": 12}
    no_runs = simlogs.ort_profile(json.dumps({"traceEvents": [e for e in _trace() if e["name"] != "model_run"]}))
    assert no_runs.latency_us == pytest.approx(110 + 32 + 6)  # one inference's worth of kernel time
    with pytest.raises(ValueError, match="not JSON"):
        simlogs.ort_profile(json.dumps(_trace())[:-40])
    with pytest.raises(ValueError, match="no `model_run` or `cat: Node` events"):
        simlogs.ort_profile("[]")


def test_ort_profile_from_onnxruntime_itself(tmp_path) -> None:
    """The parser reads what ONNX Runtime writes, not only our idea of it."""
    import onnxruntime as ort
    from helpers import MODELS

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "profile")
    session = ort.InferenceSession(str(MODELS / "ic" / "model.onnx"), options, providers=["CPUExecutionProvider"])
    x = np.load(MODELS / "ic" / "X_test.npy")[:1].astype(np.float32)
    for _ in range(3):
        session.run(None, {session.get_inputs()[0].name: x})
    profile = simlogs.ort_profile(open(session.end_profiling()).read())
    assert len(profile.runs_us) == 3 and profile.latency_us > 0
    assert {"Conv", "Gemm"} <= set(profile.by_op) and all(n.calls == 3 for n in profile.nodes)


@pytest.mark.parametrize(
    "log, expected",
    [
        ("sim done\ncycles: 12345\n", 12345),
        ("Total cycles = 1,234,567\n", 1234567),
        ("Cycle count: 99\n", 99),
        (" Total: 1876698 cycles are required for a single process_frame\n", 1876698),
        ("Done! Inference took 4242 cycles!\n", 4242),
        ("cycles: 10\n...\ncycles: 20\n", 20),
        ("no numbers here\n", None),
        ("12 kcycles\n", None),
    ],
)
def test_cycles_line(log: str, expected: float | None) -> None:
    assert simlogs.cycles_line(log) == expected


def test_regex_value_groups_and_reducers() -> None:
    log = (
        "[app][host] Performance of frame 1: 1.9212 ms - 520.507 fps\n"
        "[app][host] Performance of frame 2: 1.8131 ms - 551.529 fps\n"
        "[app][host] Performance of frame 3: 1.8154 ms - 550.859 fps\n"
    )
    pattern = r"Performance of frame \d+: ([\d.]+) ms"
    assert simlogs.regex_value(log, pattern) == pytest.approx(1.8154)
    assert simlogs.regex_value(log, pattern, "median") == pytest.approx(1.8154)
    assert simlogs.regex_value(log, pattern, "first") == pytest.approx(1.9212)
    assert simlogs.regex_value(log, pattern, "count") == 3
    assert simlogs.regex_value(log, r"- (?P<value>[\d.]+) fps", "max") == pytest.approx(551.529)
    assert simlogs.regex_value(log, r"latency: (\d+)") is None
    with pytest.raises(ValueError, match="is not a number"):
        simlogs.regex_value(log, r"Performance (\w+)")
    with pytest.raises(ValueError, match="reduce must be one of"):
        simlogs.regex_value(log, pattern, "average")


def test_loadgen_detail_log() -> None:
    log = "\n".join(
        [
            ':::MLLOG {"key": "result_validity", "value": "VALID", "metadata": {"is_error": false}}',
            ':::MLLOG {"key": "result_90.00_percentile_latency_ns", "value": 2043, "metadata": {"is_error": false}}',
            "garbage line",
            ':::MLLOG {"key": "error_runtime", "value": "Ending early", "metadata": {"is_error": true}}',
            ":::MLLOG {truncated",
        ]
    )
    entries = loadgen_detail(log)
    assert entries["result_validity"] == "VALID" and entries["result_90.00_percentile_latency_ns"] == 2043
    assert entries["errors"] == ["error_runtime: Ending early"]
