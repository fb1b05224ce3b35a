"""Models as the exporters write them (tests/data/exporters, made by training/exporters/make_gallery.py):
the emulator follows the graph ONNX Runtime runs, in both of its int8 arithmetics, and the plugin's
golden checks hold on them end to end.
"""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from helpers import REPO, Project, require_qemu

from pytest_tinyaccel.emulator import Graph
from pytest_tinyaccel.goldens.arithmetic import EMULATOR, outputs_in
from pytest_tinyaccel.intermediates import ort_intermediates
from pytest_tinyaccel.runtime import create_session, run_session, to_model_inputs

GALLERY = REPO / "tests" / "data" / "exporters"
QUANTIZED = ["ort_qdq_tensor", "ort_qdq_channel", "brevitas_qcdq", "brevitas_qcdq_b1"]
FLOAT_LAST_LAYER = {"brevitas_qcdq", "brevitas_qcdq_b1"}
"""Brevitas leaves the last Gemm's output unquantized: ONNX Runtime runs it as a float Gemm (MLAS), whose
summation order no NumPy product reproduces bit for bit; its float32 result agrees to a few units in the
last place. Every integer layer before it is bit-exact (asserted on the intermediate tensors)."""


def _feed(name: str, n: int = 40) -> tuple[object, dict[str, np.ndarray]]:
    path = GALLERY / name / "model.onnx"
    return path, to_model_inputs(path, np.load(GALLERY / name / "X_test.npy", allow_pickle=False)[:n])


@pytest.mark.parametrize("arithmetic", ["exact", "avx2_int16_pairs"])
@pytest.mark.parametrize("name", QUANTIZED)
def test_emulator_is_bit_exact_with_onnx_runtime_in_each_arithmetic(name: str, arithmetic: str) -> None:
    """ONNX Runtime itself makes the reference in each arithmetic: natively, with its exact kernels, or on an
    emulated AVX2 CPU without VNNI (qemu); never the emulator, which is what is checked."""
    path, feed = _feed(name)
    reference = outputs_in(path, feed, arithmetic)
    if reference.made_by == EMULATOR:
        require_qemu()
    graph = Graph.load(path, qdq="ort", accumulation=arithmetic)
    assert graph.fused, "ONNX Runtime runs QDQ groups of this model as integer kernels"
    got = graph.run(feed)
    assert set(got) == set(reference.outputs)
    for key, want in reference.outputs.items():
        assert got[key].dtype == want.dtype
        if name in FLOAT_LAST_LAYER:
            np.testing.assert_allclose(got[key], want, rtol=1e-6, atol=4e-6)
        else:
            np.testing.assert_array_equal(got[key], want)


@pytest.mark.parametrize("name", ["brevitas_qcdq", "ort_qdq_channel"])
def test_every_integer_tensor_is_bit_exact_with_onnx_runtimes_graph(name: str) -> None:
    path, feed = _feed(name, 8)
    graph = Graph.load(path, qdq="ort")
    _, ours = graph.run(feed, intermediates=True)
    theirs = ort_intermediates(path, feed)
    integer = [t for t, v in theirs.items() if v.dtype.kind in "iu"]
    assert len(integer) >= 2 and set(integer) <= set(ours)  # every integer activation, none skipped
    for tensor in integer:
        np.testing.assert_array_equal(ours[tensor], theirs[tensor], err_msg=tensor)


def test_intermediates_leave_onnx_runtimes_graph_of_the_model_as_it_was() -> None:
    """ONNX Runtime's graph is cached by content; reading intermediates (which adds graph outputs) must not
    change the graph the emulator loads next in the same process."""
    path, feed = _feed("ort_qdq_channel", 4)
    ort_intermediates(path, feed)
    assert Graph.load(path, qdq="ort").outputs == tuple(o.name for o in onnx.load(str(path)).graph.output)


def test_brevitas_graph_is_what_onnx_runtime_makes_of_it() -> None:
    """The float bias of Brevitas's first Gemm is quantized by ONNX Runtime (level 1) and the group fused into
    QGemm (level 2); run as written, the graph differs from ONNX Runtime's result by a visible margin."""
    path, feed = _feed("brevitas_qcdq")
    graph = Graph.load(path, qdq="ort")
    assert graph.fused == ("/fc1/Gemm",)
    assert {n.op_type for n in graph.nodes} >= {"QGemm", "Gemm"}
    ort = run_session(create_session(path), feed)["logits"]
    as_written = Graph.load(path).run(feed)["logits"]
    assert np.abs(as_written - ort).max() > 1e-3


def _with_batch(src, dst, batch: int) -> None:
    model = onnx.load(str(src))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    onnx.save(model, str(dst))


@pytest.mark.parametrize("batch", [None, 1, 4])
def test_intermediates_of_a_fixed_batch_model_run_in_its_batches(tmp_path, batch: int | None) -> None:
    """Dynamic, fixed 1 and fixed 4 (10 samples: the last batch padded, the padding dropped)."""
    src, feed = _feed("brevitas_qcdq", 10)
    path = tmp_path / "model.onnx"
    if batch is None:
        shutil.copy(src, path)
    else:
        _with_batch(src, path, batch)
    every = ort_intermediates(path, feed)
    assert every and all(len(v) == 10 for v in every.values())
    one_by_one = [ort_intermediates(path, {k: v[i : i + 1] for k, v in feed.items()}) for i in range(10)]
    for tensor, value in every.items():
        alone = np.concatenate([o[tensor] for o in one_by_one])
        if value.dtype.kind == "f":  # ONNX Runtime's float GEMM kernel depends on the batch size
            np.testing.assert_allclose(value, alone, rtol=1e-6, atol=1e-6, err_msg=tensor)
        else:
            np.testing.assert_array_equal(value, alone, err_msg=tensor)


def _project(project: Project, *names: str) -> None:
    for name in names:
        shutil.copytree(GALLERY / name, project.path / "models" / name)


def test_exported_models_pass_every_golden_check_on_cpu_aie_and_gemmini(project: Project) -> None:
    _project(project, *QUANTIZED)
    result = project.run(
        "-m", "cpu or aie or gemmini", "--target", "sw_emu,cpu", "-k", "golden", "--tinyaccel-update-golden"
    )
    result.assert_outcomes(passed=3 * len(QUANTIZED))


@pytest.mark.parametrize("batch", [1, 4])
def test_a_fixed_batch_model_gets_a_diagnosis_not_a_traceback(project: Project, batch: int) -> None:
    """Run as written (`qdq = "float"`), the emulator misses the golden of ONNX Runtime's optimized graph; the
    first-diverging-layer search runs ONNX Runtime in the model's own batches and names the cause."""
    _project(project, "brevitas_qcdq")
    model = project.path / "models" / "brevitas_qcdq" / "model.onnx"
    _with_batch(model, model, batch)
    project.run("-m", "cpu", "-k", "golden", "--tinyaccel-update-golden").assert_outcomes(passed=1)
    with open(project.path / "pyproject.toml", "a") as handle:
        handle.write('\n[tool.tinyaccel.targets.aie]\nqdq = "float"\n')
    result = project.run("-m", "aie", "--target", "sw_emu", "-k", "golden")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "Traceback" not in text and "Got invalid dimensions" not in text
    result.stdout.fnmatch_lines(
        [
            "*output 'logits' differs from the ONNX Runtime golden*",
            "cause: graph optimization level. The outputs match ONNX Runtime with its graph optimizations off; the "
            "golden ran with them on (level all; it runs 1 QDQ group(s) as integer kernels)*",
        ]
    )
