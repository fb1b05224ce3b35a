"""The hls4ml target's ONNX normalisation (targets/hls4ml/normalise.py): what it makes explicit, folds,
lifts and rewrites (torch's ReduceMean pooling, initializers listed as inputs) keeps the model's function
(ONNX Runtime gives the same outputs before and after); refusals name each op type once, with a count;
the worker matches the design's outputs to the ONNX outputs by name and its process group dies with the
pytest process that started it."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from gallery import GALLERY, IR_VERSION, OPSET
from helpers import alive
from onnx import TensorProto, helper, numpy_helper

from pytest_tinyaccel.targets.hls4ml.normalise import attribute, normalise, refusals

HLS4ML_OPS = {"Conv", "Relu", "MatMul", "Add", "Softmax", "Concat", "Flatten", "MaxPool", "Resize", "Transpose"}
EXPORTERS = Path(__file__).parent / "data" / "exporters"
"""A stand-in for hls4ml's handler table (the worker passes hls4ml's own)."""


def _model(nodes, inits, x_shape, y_shape, opset: int = OPSET) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "m",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *y_shape])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    return model


def _same_function(original: onnx.ModelProto, normalised: onnx.ModelProto, x: np.ndarray) -> None:
    """ONNX Runtime gives the same outputs for both (the normalised model has batch 1 and may
    declare its input with unit axes added)."""
    ref = ort.InferenceSession(original.SerializeToString(), providers=["CPUExecutionProvider"])
    new = ort.InferenceSession(normalised.SerializeToString(), providers=["CPUExecutionProvider"])
    shape = new.get_inputs()[0].shape
    for sample in x:
        want = ref.run(None, {ref.get_inputs()[0].name: sample[None]})
        got = new.run(None, {new.get_inputs()[0].name: sample.reshape(shape)})
        for a, b in zip(want, got, strict=True):
            np.testing.assert_allclose(b.reshape(a.shape), a, rtol=1e-5, atol=1e-5)


def _normalise(model: onnx.ModelProto, tmp_path: Path) -> onnx.ModelProto:
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    return normalise(path)


def test_conv_and_pool_attributes_are_written_out_and_auto_pad_resolved(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="bare"),  # every optional attribute omitted
        helper.make_node("Conv", ["c1", "w2"], ["c2"], name="same", auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("MaxPool", ["c2"], ["y"], name="pool", kernel_shape=[2, 2], auto_pad="SAME_LOWER"),
    ]
    inits = {
        "w1": rng.normal(size=(4, 2, 3, 3)).astype(np.float32),
        "w2": rng.normal(size=(4, 4, 2, 2)).astype(np.float32),
    }
    model = _model(nodes, inits, [2, 9, 9], [4, 4, 4])
    normalised = _normalise(model, tmp_path)
    attrs = {n.name: {a.name: helper.get_attribute_value(a) for a in n.attribute} for n in normalised.graph.node}
    assert attrs["bare"] == {
        "kernel_shape": [3, 3],
        "strides": [1, 1],
        "pads": [0, 0, 0, 0],
        "dilations": [1, 1],
        "group": 1,
    }
    assert attrs["same"]["pads"] == [0, 0, 1, 1] and "auto_pad" not in attrs["same"]
    assert attrs["pool"]["pads"] == [1, 1, 0, 0] and "auto_pad" not in attrs["pool"]
    assert all(d.dim_value for v in normalised.graph.value_info for d in v.type.tensor_type.shape.dim)
    _same_function(model, normalised, rng.normal(size=(3, 2, 9, 9)).astype(np.float32))


def test_constants_fold_and_batchnorm_fuses_with_onnxruntimes_optimizer(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["bn"]),
        helper.make_node("Shape", ["bn"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Concat", ["batch", "minus1"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["bn", "flat_shape"], ["y"]),
    ]
    inits = {
        "w": rng.normal(size=(3, 1, 3, 3)).astype(np.float32),
        "s": rng.uniform(0.5, 1.5, 3).astype(np.float32),
        "b": rng.normal(size=3).astype(np.float32),
        "m": rng.normal(size=3).astype(np.float32),
        "v": rng.uniform(0.5, 1.5, 3).astype(np.float32),
        "zero": np.array([0], np.int64),
        "minus1": np.array([-1], np.int64),
    }
    model = _model(nodes, inits, [1, 4, 4], [48])
    normalised = _normalise(model, tmp_path)
    assert [n.op_type for n in normalised.graph.node] == ["Conv", "Reshape"]
    _same_function(model, normalised, rng.normal(size=(2, 1, 4, 4)).astype(np.float32))


def test_a_1d_network_is_lifted_to_2d_with_the_same_function(tmp_path: Path) -> None:
    """The gallery's keyword spotter (Conv1D, BatchNorm, LeakyRelu, Sigmoid gate, Concat), on
    which qonnx's channels-last conversion loops forever as a 1-D network."""
    model = GALLERY["kws_conv1d"].build(np.random.default_rng(0))
    normalised = _normalise(model, tmp_path)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in normalised.graph.value_info}
    convs = [n for n in normalised.graph.node if n.op_type == "Conv"]
    assert len(convs) == 3 and all(len(attribute(n, "kernel_shape")) == 2 for n in convs)
    assert all(len(shapes[n.output[0]]) == 4 for n in convs)
    concat = next(n for n in normalised.graph.node if n.op_type == "Concat")
    assert attribute(concat, "axis") == 1
    assert [d.dim_value for d in normalised.graph.input[0].type.tensor_type.shape.dim] == [1, 10, 1, 24]
    assert normalised.graph.input[0].name == "mfcc" and normalised.graph.output[0].name == "probs"
    _same_function(model, normalised, np.random.default_rng(1).normal(size=(3, 10, 24)).astype(np.float32))


def test_resize_sizes_become_scales_and_an_omitted_roi_a_constant(tmp_path: Path) -> None:
    nodes = [helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="up", mode="nearest")]
    model = _model(nodes, {"sizes": np.array([1, 2, 8, 6], np.int64)}, [2, 4, 3], [2, 8, 6])
    normalised = _normalise(model, tmp_path)
    (resize,) = normalised.graph.node
    inits = {t.name: numpy_helper.to_array(t) for t in normalised.graph.initializer}
    assert len(resize.input) == 3 and inits[resize.input[2]].tolist() == [1, 1, 2, 2]
    _same_function(model, normalised, np.random.default_rng(2).normal(size=(2, 2, 4, 3)).astype(np.float32))


def test_an_old_opset_is_converted(tmp_path: Path) -> None:
    model = _model([helper.make_node("Softmax", ["x"], ["y"], axis=1)], {}, [5], [5], opset=11)
    normalised = _normalise(model, tmp_path)
    assert next(o.version for o in normalised.opset_import if o.domain in ("", "ai.onnx")) >= 13


def test_refusals_group_the_ops_by_type_with_a_count(tmp_path: Path) -> None:
    lstm = _normalise(GALLERY["lstm_cls"].build(np.random.default_rng(0)), tmp_path)
    assert refusals(lstm, HLS4ML_OPS) == [
        "LSTM x1: hls4ml's ONNX front end has no LSTM layer",
        "Squeeze x1: hls4ml's ONNX front end has no Squeeze layer",
    ]
    # 38 unsupported nodes (the torch CNN that motivated the grouping had one clause per node): 2 lines.
    chain = [helper.make_node("Sin" if i % 2 else "Cos", [f"t{i}"], [f"t{i + 1}"]) for i in range(38)]
    chain[0].input[0], chain[-1].output[0] = "x", "y"
    lines = refusals(_normalise(_model(chain, {}, [4], [4]), tmp_path), HLS4ML_OPS)
    assert lines == [
        "Cos x19: hls4ml's ONNX front end has no Cos layer",
        "Sin x19: hls4ml's ONNX front end has no Sin layer",
    ]
    three = _model([helper.make_node("Concat", ["x", "x", "x"], ["y"], name="cat", axis=1)], {}, [2, 3], [6, 3])
    assert refusals(_normalise(three, tmp_path), HLS4ML_OPS) == ["Concat x1: hls4ml merges two tensors at a time"]
    volume = _model(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="c3d", kernel_shape=[1, 1, 1])],
        {"w": np.ones((2, 1, 1, 1, 1), np.float32)},
        [1, 2, 2, 2],
        [2, 2, 2, 2],
    )
    assert refusals(_normalise(volume, tmp_path), HLS4ML_OPS) == [
        "Conv x1: hls4ml converts 1-D and 2-D convolutions and pools only"
    ]
    assert refusals(_normalise(GALLERY["upsample_ae"].build(np.random.default_rng(0)), tmp_path), HLS4ML_OPS) == []


def _torch_gap(keepdims: int, opset: int) -> onnx.ModelProto:
    """Conv -> Relu -> ReduceMean over H, W (torch's `x.mean((2, 3))`) -> Gemm, as torch writes it; opset 18
    passes the axes as an input."""
    rng = np.random.default_rng(keepdims)
    axes_attr = {} if opset >= 18 else {"axes": [2, 3]}
    mean_inputs = ["r", "axes"] if opset >= 18 else ["r"]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("ReduceMean", mean_inputs, ["m"], name="/ReduceMean", keepdims=keepdims, **axes_attr),
    ]
    if keepdims:
        nodes.append(helper.make_node("Flatten", ["m"], ["f"], axis=1))
    nodes.append(helper.make_node("Gemm", ["f" if keepdims else "m", "fw", "fb"], ["y"], transB=1))
    inits = {
        "w": rng.normal(size=(4, 1, 3, 3)).astype(np.float32),
        "b": rng.normal(size=4).astype(np.float32),
        "fw": rng.normal(size=(3, 4)).astype(np.float32),
        "fb": rng.normal(size=3).astype(np.float32),
    }
    if opset >= 18:
        inits["axes"] = np.array([-2, -1], np.int64)
    return _model(nodes, inits, [1, 6, 6], [3], opset=opset)


@pytest.mark.parametrize(("keepdims", "opset"), [(0, 17), (1, 17), (0, 18), (1, 18)])
def test_reduce_mean_over_height_and_width_becomes_global_average_pooling(
    tmp_path: Path, keepdims: int, opset: int
) -> None:
    model = _torch_gap(keepdims, opset)
    normalised = _normalise(model, tmp_path)
    ops = [n.op_type for n in normalised.graph.node]
    assert "ReduceMean" not in ops and "GlobalAveragePool" in ops
    assert refusals(normalised, HLS4ML_OPS | {"GlobalAveragePool", "Gemm"}) == []
    _same_function(model, normalised, np.random.default_rng(3).normal(size=(4, 1, 6, 6)).astype(np.float32))


def test_reduce_mean_over_other_axes_is_left_alone_and_refused(tmp_path: Path) -> None:
    over_channels = _model(
        [helper.make_node("ReduceMean", ["x"], ["y"], axes=[1], keepdims=0)], {}, [4, 3, 3], [3, 3], opset=17
    )
    normalised = _normalise(over_channels, tmp_path)
    assert [n.op_type for n in normalised.graph.node] == ["ReduceMean"]
    assert refusals(normalised, HLS4ML_OPS) == ["ReduceMean x1: hls4ml's ONNX front end has no ReduceMean layer"]


@pytest.mark.parametrize("name", ["torch_legacy", "torch_dynamo"])
def test_the_torch_exporters_cnns_normalise_to_ops_hls4ml_converts(tmp_path: Path, name: str) -> None:
    """torch's legacy exporter and its default (dynamo) one, weights in model.onnx.data."""
    path = EXPORTERS / name / "model.onnx"
    normalised = normalise(path)
    assert refusals(normalised, HLS4ML_OPS | {"GlobalAveragePool", "Gemm"}) == []
    _same_function(onnx.load(str(path)), normalised, np.load(EXPORTERS / name / "X_test.npy")[:5])


def test_initializers_listed_as_graph_inputs_are_constants(tmp_path: Path) -> None:
    """Brevitas lists the biases as graph inputs too: the batch rewrite used to give them a batch axis
    ("Shape of initializer ... does not match. {1,32} != {5,32}")."""
    path = EXPORTERS / "brevitas_qcdq" / "model.onnx"
    listed = [v.name for v in onnx.load(str(path)).graph.input]
    assert "fc1.bias" in listed
    normalised = normalise(path)
    assert [v.name for v in normalised.graph.input] == ["x"]
    _same_function(onnx.load(str(path)), normalised, np.load(EXPORTERS / "brevitas_qcdq" / "X_test.npy")[:5])


@pytest.mark.skipif(importlib.util.find_spec("qonnx") is None, reason="needs qonnx (the hls4ml extra)")
def test_design_outputs_are_matched_to_onnx_outputs_by_name() -> None:
    """hls4ml lists its outputs in node order and renames one whose bias Add it fused into the
    Dense: 'dense_out' holds 'reg.value' although the design lists it second."""
    from qonnx.core.modelwrapper import ModelWrapper

    from pytest_tinyaccel.targets.hls4ml.build import StageError, match_outputs

    nodes = [
        helper.make_node("Softmax", ["x"], ["class.prob"], name="soft", axis=1),
        helper.make_node("MatMul", ["x", "w"], ["dense_out"], name="dense"),
        helper.make_node("Add", ["dense_out", "b"], ["reg.value"], name="bias"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, k]) for n, k in (("reg.value", 1), ("class.prob", 4))],
        [
            numpy_helper.from_array(np.ones((4, 1), np.float32), "w"),
            numpy_helper.from_array(np.ones(1, np.float32), "b"),
        ],
    )
    model = ModelWrapper(helper.make_model(graph))
    assert match_outputs(model, SimpleNamespace(outputs=["class.prob", "dense_out"])) == [1, 0]
    assert match_outputs(model, SimpleNamespace(outputs=["reg.value", "class.prob"])) == [0, 1]
    with pytest.raises(StageError, match="cannot tell which ONNX output the HLS design's output 'other' holds"):
        match_outputs(model, SimpleNamespace(outputs=["class.prob", "other"]))


PARENT = r"""
import sys
from pathlib import Path
from pytest_tinyaccel.process import run_process
child = Path(sys.argv[1])
child.write_text('''
import subprocess, sys, time
from pytest_tinyaccel.targets.hls4ml.worker import die_with_parent
die_with_parent()
compiler = subprocess.Popen(["sleep", "600"])  # what the worker starts: g++, the HLS tool
open(sys.argv[1], "w").write(f"{compiler.pid}")
time.sleep(600)
''')
run_process([sys.executable, str(child), sys.argv[2]], child.parent, None, 600, child.with_suffix(".log"))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_session_leaves_no_worker_or_compiler_behind(tmp_path: Path) -> None:
    """pytest dies by SIGKILL (no clean-up runs): the worker and the compiler it started die too."""
    pids = tmp_path / "pids"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path / "worker.py"), str(pids)])
    deadline = time.monotonic() + 60
    while not (pids.exists() and pids.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    compiler = int(pids.read_text())
    worker = int(Path(f"/proc/{compiler}/stat").read_text().rsplit(")", 1)[1].split()[1])  # its parent
    assert alive(worker) and alive(compiler)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while (alive(worker) or alive(compiler)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(worker) and not alive(compiler)
