"""The AIE model kernel by kernel: onnx2versal templates read as loop nests, the constants
fitted on isolated runs, the token-level coupling of kernels, and the per-kernel validation
on logs it has never seen (missing producers, unknown templates)."""

from __future__ import annotations

import importlib.util
import math
import tomllib
from pathlib import Path

import pytest

from pytest_tinyaccel.costmodel.aie import levels, loggraph, templates, validate
from pytest_tinyaccel.costmodel.aie.logs import read_csv
from pytest_tinyaccel.costmodel.aie.templates import FILL, STREAM, WINDOW, Port
from pytest_tinyaccel.costmodel.aie.tokensim import STREAM_LATENCY, Node, simulate

ROOT = Path(__file__).resolve().parents[1]


def test_trip_counts_follow_the_template_arguments_exactly():
    # KWS int8 depthwise part: 7x16 input rows, 5 out rows of 16 bytes, 64 channels, 3x3, group 64
    w = templates.work("QLinearConvHx4PktStream", tuple("h,a,7,16,5,16,1,1,1,64,64,3,3,64".split(",")))
    assert w.kind == "dwconv" and w.dtype == "int8" and w.tokens == 64 * 5
    assert w.levels["vec"][0] == 64 * 5 * 1  # 16 output bytes a vector
    # one channel per group: a weight unpack and three (kernel rows) 32-byte loads and mac16s
    assert w.levels["chan"] == (64 * 5 * 1, 4.0) and w.levels["cgroup"][0] == 0  # no channel loop left
    # unsigned weights (TTPARAM uint8_t) add a msc16 to every kernel row: another loop body
    u = templates.work("QLinearConvHx4PktStream", tuple("h,h,7,16,5,16,1,1,1,64,64,3,3,64".split(",")))
    assert u.levels["chan"] == (64 * 5 * 1, 7.0) and u.family == "dwconv.int8.uint8w" and w.family == "dwconv.int8"
    # 64 input channels: the channel loop pays its first loads' latency once per output vector
    big = templates.work("QLinearConv1x1Stream", tuple("h,a,16,16,8,16,2,2,1,32,64,1,1,1".split(",")))
    vec = 64 * 8 * 2  # stride 2: 8 output bytes a vector
    assert big.levels["chan"] == (vec * 16, 2.0) and big.levels["cgroup"] == (vec * 2, templates.LOAD_TO_USE + 1)
    assert big.levels["spill"] == (vec, templates.STORE_TO_LOAD) and big.family == "conv1x1.int8"
    assert w.inputs[0].kind == FILL and w.inputs[0].words == 64 * 7 * 16 / 4  # read whole before computing
    assert w.weight_words == 64 * 16 / 4 and w.out_words == 64 * 5 * 16 / 4
    # stride 2 halves the output vectors' width: 4 floats a vector, 3 vectors for 12 columns
    s2 = templates.work("ConvHx4ReluStream", tuple("24,24,11,12,2,2,1,2,4,3,3,1,1".split(",")))
    assert s2.levels["vec"][0] == 4 * 11 * 3 and s2.inputs[0].kind == WINDOW
    # an fp32 pad moves, per input row, the longer of its input (padded) and output row, then
    # the top and bottom rows: 64 x 25 rows of max(8, 1 + 5 + 2) words, 64 x 2 rows of 8
    pad = templates.work("Pad2DStreamFloat", ("f", "64", "25", "5", "8", "1", "1", "1", "2"))
    assert pad.levels["copy"][0] == 64 * 25 * 8 + 64 * 2 * 8 and pad.tokens == 64 * 27
    int8 = templates.work("Pad2DStreamInt8", tuple("h,64,25,5,16,1,1,1,10".split(",")))
    assert int8.levels["beat"][0] == 64 * 25 * 1  # one 16-byte beat a row, realigned
    concat = templates.work("ConcatInt8Stream", ("h", "64", "80", "80", "160"))
    # ... a stream of 128-bit beats: a token per beat (its rows are 40 words, longer than a hop)
    assert [p.words for p in concat.inputs] == [64 * 80 / 4] * 2 and concat.tokens == 64 * 160 / 16
    assert templates.work("MyKernel", ("1", "2")) is None
    assert templates.work("QgemmStream", ("h", "a", "x")) is None  # malformed arguments


def test_every_isolated_run_is_cited_known_and_no_in_graph_log():
    data = tomllib.loads(levels.ISOLATED.read_text())
    assert data["revision"].startswith("392b325") and data["repository"].endswith("onnx2versal")
    for k in data["kernel"]:
        assert k["file"].startswith("design/aie_src/") and k["file"].endswith(".h") and "graph_" not in k["file"]
        assert len(k["recorded"]) >= 7 and isinstance(k["code_changed"], bool)
        assert templates.work(k["template"], tuple(k["args"].split(","))) is not None, k


def test_constants_fit_the_isolated_runs_and_refit_without_one():
    fitted = levels.fit_groups()
    conv = fitted["conv.fp32"]
    assert conv.runs == 3 and conv.source == "fitted"
    runs, plio = levels.load_isolated()
    assert plio == pytest.approx(64 / 32 * 500e6 / 1.25e9)  # 64-bit PLIO at 500 MHz, 1.25 GHz array
    for run in runs:  # a group's runs are reproduced by its own fit (within 2x: one scale per group)
        w = templates.work(run.template, run.args)
        if fitted[w.family].runs >= 2:
            assert abs(math.log(levels.isolated_prediction(w) / run.cycles)) < math.log(2), run.shape
    without = levels.fit_groups(frozenset({runs[0].shape}))
    assert without["conv.fp32"].runs == 2 and without["conv.fp32"].s != conv.s
    # a vector MAC never issues faster than a cycle, whatever the scale
    w = templates.work("QgemmStream", ("h", "a", "1", "64", "16"))
    assert levels.own_cycles(w, {"gemm.int8": levels.Constants(1e-3, 1, "fitted")}) >= w.levels["mac"][0]
    # the channel loops of int8 convolutions are counted from their body, never scaled: every
    # isolated run has one input channel, so no run constrains them
    w = templates.work("QLinearConvHx4Stream", tuple("h,a,10,16,8,16,1,1,1,64,64,3,3,1".split(",")))
    tiny = {"conv.int8": levels.Constants(1e-3, 1, "fitted")}
    counted = sum(w.levels[k][0] * w.levels[k][1] for k in levels.COUNTED_LEVELS if k in w.levels)
    assert counted <= levels.own_cycles(w, tiny) < counted + 100
    # unsigned-weight runs fit their own scale; a group without runs takes its signed group's
    assert fitted["conv1x1.int8.uint8w"].runs == 2
    assert levels.constants_for("conv.int8.uint8w", fitted).source == "from conv.int8"
    # a depthwise convolution runs the convolution templates: with no run of its own dtype it
    # takes the convolution's scale of that dtype, not the other dtype's depthwise scale
    assert "dwconv.int8" not in fitted and "dwconv.fp32" in fitted
    assert levels.constants_for("dwconv.int8", fitted).source == "from conv.int8"
    assert levels.constants_for("dwconv.fp32", fitted).source == "fitted"
    # a concat is a pipelined copy at the stream ports' rate, a 32-bit word a cycle, counted:
    # never scaled by a fitted scale (the in-graph concats keep pace with their producers)
    # (an fp32 pad is such a copy too: its isolated run sits at the unit test's PLIO rate)
    copies = [("ConcatFloatStream", "f,64,40,40,80", 5120), ("ConcatInt8Stream", "h,64,80,80,160", 2560)]
    for t, args, words in [*copies, ("Pad2DStreamFloat", "f,64,25,5,8,0,0,0,3", 12800)]:
        w = templates.work(t, tuple(args.split(",")))
        huge = {w.family: levels.Constants(1e3, 1, "fitted")}
        assert words <= levels.own_cycles(w) == levels.own_cycles(w, huge) < 1.2 * words


def _node(name, own, preds, kind=STREAM, tokens=16, words=1600.0, out_window=False, buffered=False):
    """A kernel of `tokens` rows of 100 words: more than a stream FIFO holds."""
    inputs = [Port(words, kind, buffered) for _ in preds]
    return Node(name, own, 0.0, 0.0, tokens, inputs, preds, words, out_window)


def test_streams_couple_kernels_and_windows_decouple_them():
    # through a stream FIFO of 32 words a fast producer is held back by a slow consumer
    stream = simulate([_node("a", 100.0, [None]), _node("b", 10_000.0, ["a"])], plio_words_per_cycle=100, fifo_words=32)
    assert stream.end["a"][0] > 7_000 and stream.end["b"][0] - stream.end["a"][0] < 2_000
    assert stream.busy["a"] == pytest.approx(1600.0)  # its own 100 cycles, floored: 1600 words a word a cycle
    assert stream.stall("a") > 6_000
    # into a window (ping-pong buffers) it runs at its own pace; the consumer starts when it is full
    window = simulate([_node("a", 100.0, [None]), _node("b", 10_000.0, ["a"], WINDOW)], plio_words_per_cycle=100)
    assert window.end["a"][0] == pytest.approx(1600) and window.start["b"][0] == pytest.approx(window.end["a"][0])
    # a stream consumer faster than its producer ends one word after the producer's last row
    tail = simulate([_node("a", 10_000.0, [None]), _node("b", 100.0, ["a"])], plio_words_per_cycle=100)
    assert STREAM_LATENCY < tail.end["b"][0] - tail.end["a"][0] < STREAM_LATENCY + 20
    # ... through two stream switches: without their latency it would be a word after it
    bare = simulate(
        [_node("a", 10_000.0, [None]), _node("b", 100.0, ["a"])], plio_words_per_cycle=100, stream_latency=0
    )
    assert bare.end["b"][0] - bare.end["a"][0] == pytest.approx(tail.end["b"][0] - tail.end["a"][0] - STREAM_LATENCY)
    # a concat reads its two inputs row by row in turn: the faster part runs at the slower one's pace
    nodes = [_node("p0", 1_000.0, [None]), _node("p1", 8_000.0, [None]), _node("c", 200.0, ["p0", "p1"])]
    lock = simulate(nodes, plio_words_per_cycle=100, fifo_words=32)
    assert lock.end["p0"][0] > 6_000  # from 1,600 on its own
    # unless the flow buffers the path (the inputs of a residual Add)
    # by default streams are unbounded, as the logs behave: the fast part runs at its own pace
    assert simulate(nodes, plio_words_per_cycle=100).end["p0"][0] < 2_000
    nodes[2] = _node("c", 200.0, ["p0", "p1"], buffered=True)
    assert simulate(nodes, plio_words_per_cycle=100, fifo_words=32).end["p0"][0] < 2_000
    # a pad's input is buffered: the kernels that feed it run at their own pace (the VCK190 logs)
    pad = templates.work("Pad2DStreamInt8", tuple("h,64,25,5,16,0,0,0,11".split(",")))
    assert all(p.kind == STREAM and p.buffered for p in pad.inputs)
    slow_pad = Node("pad", 40_000.0, 0.0, 0.0, pad.tokens, list(pad.inputs), ["a"], pad.out_words)
    fed = simulate(
        [_node("a", 1_000.0, [None], words=pad.inputs[0].words), slow_pad], plio_words_per_cycle=100, fifo_words=32
    )
    assert fed.end["a"][0] < 8_000 and fed.end["pad"][0] >= 40_000
    # its rows are realigned by a chain of shuffles: behind a slow producer it ends a row's
    # chain (its grain) after the last row arrives, not a word after it
    assert pad.inputs[0].grain == 16 / 4
    # ... and after its last input word it writes its right and bottom padding (IC: 3 + 36 floats)
    fp32 = templates.work("Pad2DStreamFloat", tuple("f,16,32,32,32,1,1,1,3".split(",")))
    assert fp32.inputs[0].grain == 3 + 1 * 36
    bottom = templates.work("Pad2DStreamInt8", tuple("h,16,32,32,32,1,1,1,15".split(",")))
    assert bottom.inputs[0].grain == (15 + 1 * 48) / 4
    row = 20_000.0 / pad.inputs[0].words * pad.inputs[0].grain  # one row's cycles of a 20,000-cycle pad
    producer = _node("a", 400_000.0, [None], tokens=1_600, words=pad.inputs[0].words)
    quick = Node("pad", 20_000.0, 0.0, 0.0, pad.tokens, list(pad.inputs), ["a"], pad.out_words)
    slow = simulate([producer, quick], plio_words_per_cycle=100)
    assert slow.end["pad"][0] - slow.end["a"][0] == pytest.approx(STREAM_LATENCY + row)
    word = Node("pad", 20_000.0, 0.0, 0.0, pad.tokens, [Port(pad.inputs[0].words)], ["a"], pad.out_words)
    by_word = simulate([producer, word], plio_words_per_cycle=100)
    assert by_word.end["pad"][0] - by_word.end["a"][0] == pytest.approx(STREAM_LATENCY + row / 4)
    held = Node("pad", 40_000.0, 0.0, 0.0, pad.tokens, [Port(pad.inputs[0].words)], ["a"], pad.out_words)
    assert (
        simulate(
            [_node("a", 1_000.0, [None], words=pad.inputs[0].words), held], plio_words_per_cycle=100, fifo_words=32
        ).end["a"][0]
        > 30_000
    )  # the same pad through a stream FIFO holds its producer back


def test_a_quantized_gemm_reads_its_row_first_and_a_window_is_streamed_after_its_release():
    # QgemmStream computes its first 16 columns while it reads the row, the others from the stored row
    w = templates.work("QgemmStream", ("a", "a", "1", "128", "96"))
    steps = 128 // 16 * 2  # per 16 bytes of the row, two mac16
    assert w.inputs[0].kind == FILL and w.levels["fill"] == (steps, 9.0) and w.levels["mac"] == (5 * steps, 9.0)
    one = templates.work("QgemmStream", ("a", "a", "1", "96", "16"))
    assert one.levels["mac"][0] == 0 and one.tokens == 1  # one block: all of it while the row arrives
    # ... but after the row's last 16 bytes: stored and loaded back, the MACs, the bias add,
    # two shifts and the requantizing MAC (each waits for the last), 16 bytes out: its drain
    assert one.drain == templates.STORE_TO_LOAD + 1 + 5 * templates.VECTOR_LATENCY + 4
    unsigned = templates.work("QgemmStream", ("h", "h", "1", "96", "16"))
    assert unsigned.drain == one.drain + 2  # two msc16 more on the accumulator
    solo = Node("g", levels.own_cycles(one), levels.own_cycles(one) - 60, 60.0, 1, list(one.inputs), ["a"], 4.0)
    quick = simulate([_node("a", 3_000.0, [None], words=24.0), solo], plio_words_per_cycle=100)
    solo.drain = one.drain
    drained = simulate([_node("a", 3_000.0, [None], words=24.0), solo], plio_words_per_cycle=100)
    assert drained.end["g"][0] - drained.end["a"][0] == pytest.approx(STREAM_LATENCY + one.drain)
    assert quick.end["g"][0] - quick.end["a"][0] < STREAM_LATENCY + one.drain
    # so after the row's last word the other five blocks remain
    c = levels.constants_for(w.family, levels.fit_groups())
    fill = c.s * steps * 9.0
    node = Node("g", levels.own_cycles(w), fill, 60.0, w.tokens, list(w.inputs), ["a"], w.out_words)
    tl = simulate([_node("a", 3_000.0, [None], words=32.0), node], plio_words_per_cycle=100)
    assert tl.end["g"][0] - tl.end["a"][0] >= c.s * 5 * (steps * 9.0 + 12.0)
    # a stream read from a window (a DMA streams it out once the producer releases it): nothing
    # before the release, though the consumer's step would have overlapped a stream's rows
    win = _node("a", 3_000.0, [None], out_window=True)
    late = simulate([win, _node("b", 2_000.0, ["a"])], plio_words_per_cycle=100)
    assert late.end["b"][0] - late.end["a"][0] >= 2_000
    rows = simulate([_node("a", 3_000.0, [None]), _node("b", 2_000.0, ["a"])], plio_words_per_cycle=100)
    assert rows.end["b"][0] - rows.end["a"][0] < 200


def test_a_streams_words_arrive_while_its_producer_writes_them_not_a_token_at_a_time():
    # a producer of 4 rows of 400 words each, a consumer in 48 steps: its last two steps read
    # the same (last) row; they overlap the row's writing, so it ends its tail after the row,
    # not a whole step of its own after its previous step waited for that row
    producer = _node("a", 8_000.0, [None], tokens=4)
    consumer = Node("b", 4_800.0, 0.0, 0.0, 48, [Port(1600.0, STREAM, False, 16.0)], ["a"], 1600.0)
    tl = simulate([producer, consumer], plio_words_per_cycle=100)
    step = 4_800.0 / 48
    tail = step / (1600.0 / 48) * 16.0
    assert tl.end["b"][0] - tl.end["a"][0] == pytest.approx(STREAM_LATENCY + tail)
    assert tail < step


def test_steady_state_interval_is_the_slowest_stage_not_the_latency():
    chain = [_node("a", 3_000.0, [None]), _node("b", 5_000.0, ["a"], WINDOW), _node("c", 2_000.0, ["b"], WINDOW)]
    tl = simulate(chain, inferences=3, plio_words_per_cycle=100)
    assert tl.end["c"][0] == pytest.approx(10_000, rel=0.02)  # one inference: the stages in turn
    assert tl.interval == pytest.approx(5_000, rel=0.02)  # then one every slowest stage


LOG = """graph,kernel,template_args,start,end
g,QuantizeLinearFmulStream,"h,1,16,16",0,80
g,MyCustomKernel,"1,2,3",90,400
g,QgemmStream,"h,a,1,16,64",0,560
g,ConcatInt8Stream,"h,1,32,32,64",0,600
g,QLinearSoftmaxSingleaxis,"h,1,64,64",610,800
g,DequantizeLinear,"h,1,64,64",810,870
"""
"""A concat whose second input was never logged, and a template the model does not know."""


PARTS = """graph,kernel,template_args,start,end
g,Pad2DStreamInt8,"h,64,25,5,16,1,1,1,10",30,50000
g,QLinearConvHx4PktStream,"h,a,7,16,5,16,1,1,1,64,64,3,3,64",90,53200
g,QLinearConvHx4PktStream,"h,a,7,16,5,16,1,1,1,64,64,3,3,64",91,53400
g,ConcatInt8Stream,"h,64,80,80,160",30,53410
"""
"""A layer in two packet-stream parts joined by a concat (as onnx2versal's KWS int8 log)."""


def test_every_part_of_a_layer_reads_the_layers_input_and_feeds_the_concat():
    g = loggraph.rebuild(read_csv(PARTS))
    assert g.preds[1] == g.preds[2] == [0]  # both parts read the pad (through the split that does not log)
    assert sorted(g.preds[3]) == [1, 2]  # the concat reads both parts, not one part and the pad
    assert len(g.virtual) == 1 and g.virtual[0].startswith("split@")


RESIDUAL = """graph,kernel,template_args,start,end
g,QLinearAddInt8,"h,16384,0",7016,190274
g,Pad2DStreamInt8,"h,16,32,32,32,0,1,0,16",6947,190356
g,QLinearConv1x1Stream,"h,h,32,32,16,16,2,2,1,16,32,1,1,1",190300,248756
g,QLinearConvHx4PktStream,"h,h,17,48,16,16,2,2,1,16,32,3,3,1",6991,265536
g,ConcatInt8Stream,"h,32,128,128,256",6932,266532
g,QLinearConvHx4PktStream,"h,h,17,48,16,16,2,2,1,16,32,3,3,1",6992,266533
"""
"""The start of a downsampling residual block (as onnx2versal's IC int8 log): the block input
feeds a pad and a 1x1 shortcut; the strided 3x3 parts read the pad; the concat prints its end
a cycle before the second part."""


def test_a_rebuilt_residual_block_follows_the_sizes_not_only_the_order():
    g = loggraph.rebuild(read_csv(RESIDUAL))
    assert g.preds[1] == [0] and g.preds[2] == [0]  # the block input is read twice: pad and shortcut
    assert g.preds[3] == g.preds[5] == [1]  # the strided parts read the pad, not the shortcut that ended before them
    assert sorted(g.preds[4]) == [3, 5]  # the concat reads both parts, though it printed its end first
    ends = {i: float(k.end) for i, k in enumerate(read_csv(RESIDUAL))}
    assert loggraph.exposed(g.preds, {}, ends, 0.0)[3] == 265536 - 190356  # after the pad, not after the shortcut


POOL_PARTS = """graph,kernel,template_args,start,end
g,ConcatFloatStream,"f,64,160,40,200",10,1000
g,AvgpoolScalarBCHW,"25,8,1,1,1,16,25,5",90000,94000
g,AvgpoolScalarBCHW,"25,8,1,1,1,16,25,5",90004,94004
g,ConcatFloatStream,"f,1,16,16,32",10,94100
"""
"""A pooling layer in two channel chunks (as onnx2versal's KWS fp32 log, there in four)."""


def test_the_channel_chunks_of_a_pool_read_the_split_that_does_not_log():
    g = loggraph.rebuild(read_csv(POOL_PARTS))
    assert g.preds[1] == g.preds[2] == [0] and sorted(g.preds[3]) == [1, 2]
    assert g.virtual == ["split@k1"]
    split = next(n for n in g.nodes if n.name == "split@k1")
    w = templates.work("SplitScalar", ("f", "1", str(2 * 16 * 25 * 8), str(16 * 25 * 8), "0"))
    assert split.own == pytest.approx(levels.own_cycles(w)) and split.out_window
    # a scalar copy into windows, fitted on the two SplitScalar runs of split.h: the parts
    # start when it has cut all 6,400 floats, far later than the concat feeding it ends
    assert levels.fit_groups()["split.fp32.scalar"].runs == 2
    tl = simulate(g.nodes)
    assert tl.start["k1"][0] > tl.end["k0"][0] + 6_400


def test_validation_runs_on_a_log_with_missing_producers_and_an_unknown_kernel(tmp_path, capsys):
    kernels = read_csv(LOG)
    results, graphs = validate.compare(kernels, shape_out=True)
    assert graphs[0].unknown == ["MyCustomKernel<1,2,3>"] and len(results) == 5
    assert all(math.isfinite(v) and v > 0 for r in results for v in r.predicted.values())
    assert all(math.isfinite(v) for v in graphs[0].predicted.values()) and graphs[0].measured == 870
    g = loggraph.rebuild(kernels)
    assert g.preds[3] and len(g.preds[3]) <= 2  # the concat reads what was left unread, else the graph input
    summary = validate.summary(results, "model")
    assert summary["all"]["kernels"] == 5 and summary["all"]["median"] >= 1.0
    # the benchmark script runs on it end to end, without the MLPerf models
    log = tmp_path / "mine.csv"
    log.write_text(LOG)
    spec = importlib.util.spec_from_file_location("aie_validation", ROOT / "benchmarks" / "aie_validation.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--csv", str(log), "--models", str(tmp_path / "none"), "--loso"]) == 0
    out = capsys.readouterr().out
    assert "MyCustomKernel<1,2,3>" in out and "dequantize.int8" in out and "4. MLPerf" not in out
    # the kernels the model misses, listed on request: every known kernel when the bar is x1
    assert script.main(["--csv", str(log), "--models", str(tmp_path / "none"), "--kernels", "1"]) == 0
    listed = capsys.readouterr().out.split("5. logged kernels")[1]
    assert sum(line.startswith("| g ") for line in listed.splitlines()) == len(results)
