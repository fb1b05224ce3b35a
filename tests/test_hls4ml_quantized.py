"""int8 on hls4ml through its QONNX front end (targets/hls4ml/route.py, quantized.py): which model a build
reads (QONNX as it is, QDQ converted by qonnx, the plugin's QOperator model as its QDQ twin with the same
scales), the QDQ -> QONNX conversion keeping the graph's function, and what hls4ml 1.3.0's QONNX front
end cannot convert refused in one line. End to end: test_hls4ml_target.py."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import REPO
from onnx import numpy_helper

from pytest_tinyaccel.models import load_model
from pytest_tinyaccel.quantize import quantize_model
from pytest_tinyaccel.targets.base import Build, TargetUnsupported
from pytest_tinyaccel.targets.hls4ml.normalise import normalise
from pytest_tinyaccel.targets.hls4ml.route import QDQ_TWIN, int8_route, missing_parameters, quantization_parameters

EXPORTERS = REPO / "tests" / "data" / "exporters"
needs_qonnx = pytest.mark.skipif(importlib.util.find_spec("qonnx") is None, reason="needs qonnx (the hls4ml extra)")


def _build(folder: Path, onnx_path: Path, tmp_path: Path) -> Build:
    model = load_model(folder / "model.toml")
    out = tmp_path / "build"
    out.mkdir(exist_ok=True)
    return Build(model=model, dtype="int8", mode="sw_emu", onnx_path=onnx_path, dir=out)


def _qoperator(tmp_path: Path, name: str = "torch_legacy") -> tuple[Path, Path]:
    """A copy of a float gallery model and ONNX Runtime's QOperator int8 model of it (the plugin's default)."""
    folder = tmp_path / name
    shutil.copytree(EXPORTERS / name, folder)
    model = load_model(folder / "model.toml")
    qop = tmp_path / "int8" / "model.onnx"
    qop.parent.mkdir()
    quantize_model(model.onnx_path, qop, model.load_calibration(), model.quantization)
    return folder, qop


# ----- which model an int8 build reads ----------------------------------------------------------


def test_qonnx_and_qdq_models_are_read_as_they_are(tmp_path: Path) -> None:
    qonnx = EXPORTERS / "brevitas_qonnx"
    route = int8_route(_build(qonnx, qonnx / "model.onnx", tmp_path))
    assert (route.kind, route.onnx) == ("qonnx", qonnx / "model.onnx")
    assert route.label == "QONNX w4a8, hls4ml's QONNX front end"
    qdq = EXPORTERS / "brevitas_qcdq"
    route = int8_route(_build(qdq, qdq / "model.onnx", tmp_path))
    assert (route.kind, route.onnx) == ("qdq", qdq / "model.onnx")
    assert route.label.startswith("QDQ w4a8 as QONNX (qonnx QCDQToQuant)")


def test_the_plugins_qoperator_model_is_read_as_its_qdq_twin_with_the_same_scales(tmp_path: Path) -> None:
    folder, qop = _qoperator(tmp_path)
    build = _build(folder, qop, tmp_path)
    route = int8_route(build)
    assert (route.kind, route.onnx) == ("qdq", build.dir / QDQ_TWIN)
    assert {n.op_type for n in onnx.load(str(route.onnx)).graph.node} >= {"QuantizeLinear", "DequantizeLinear"}
    theirs = quantization_parameters(onnx.load(str(qop)), skip_fixed=True)
    assert len(theirs) >= 8 and theirs <= quantization_parameters(onnx.load(str(route.onnx)))
    # A twin with one scale off is caught: it would not implement the golden's quantization.
    twin = onnx.load(str(route.onnx))
    scale = next(
        t for t in twin.graph.initializer if t.name.endswith("_scale") and t.data_type == onnx.TensorProto.FLOAT
    )
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * np.float32(1.01), scale.name))
    onnx.save(twin, str(tmp_path / "off.onnx"))
    assert missing_parameters(qop, tmp_path / "off.onnx")


def test_an_authors_qoperator_model_is_refused_in_one_line(tmp_path: Path) -> None:
    folder, qop = _qoperator(tmp_path)
    shutil.copy(qop, folder / "model_int8.onnx")
    manifest = folder / "model.toml"
    manifest.write_text('model_int8 = "model_int8.onnx"\n' + manifest.read_text())
    with pytest.raises(TargetUnsupported) as refused:
        int8_route(_build(folder, folder / "model_int8.onnx", tmp_path))
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(
        "hls4ml cannot convert torch_legacy (int8): hls4ml reads quantized models as QONNX, and qonnx cannot "
        "convert ONNX Runtime's QOperator format of model_int8.onnx ("
    )
    assert "QLinearConv x2" in message
    assert message.endswith(
        "give the int8 model in QDQ format (quantize_static(..., quant_format=QuantFormat.QDQ)) or QONNX"
    )


# ----- QDQ -> QONNX --------------------------------------------------------------------------------


def _qonnx_run(model, x: np.ndarray) -> np.ndarray:
    import qonnx.core.onnx_exec as oxe

    name = model.graph.input[0].name
    shape = model.get_tensor_shape(name)
    return np.concatenate([next(iter(oxe.execute_onnx(model, {name: s.reshape(shape)}).values())) for s in x])


def _as_written(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """ONNX Runtime with its graph optimisations off: the QDQ graph computed as written, node by node."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: s[None]})[0] for s in x])


@pytest.fixture
def onnx_ir_for_qonnx(monkeypatch: pytest.MonkeyPatch) -> None:
    """qonnx's executor runs single nodes in models stamped with onnx's IR version (the worker caps it)."""
    from pytest_tinyaccel.targets.hls4ml.prepare import cap_onnx_ir_version

    monkeypatch.setattr(onnx, "IR_VERSION", onnx.IR_VERSION)
    cap_onnx_ir_version()


@needs_qonnx
@pytest.mark.parametrize("source", ["brevitas_qcdq", "ic_qdq_twin"])
def test_qdq_becomes_qonnx_with_the_same_function(tmp_path: Path, source: str, onnx_ir_for_qonnx: None) -> None:
    """Brevitas's QCDQ (Clip-narrowed 4-bit weights, biases listed as inputs) and ONNX Runtime's QDQ of the
    bundled ResNet (one QuantizeLinear read by two DequantizeLinear, shared zero points, int32 biases):
    qonnx's executor on the QONNX model gives what ONNX Runtime gives on the QDQ graph as written."""
    from collections import Counter

    from pytest_tinyaccel.targets.hls4ml.quantized import to_qonnx

    if source == "ic_qdq_twin":
        ic = load_model(REPO / "models" / "ic" / "model.toml")
        path = tmp_path / "qdq.onnx"
        quantize_model(ic.onnx_path, path, ic.load_calibration(), {**ic.quantization, "format": "QDQ"})
        x = ic.load_x(6)
    else:
        path = EXPORTERS / source / "model.onnx"
        x = np.load(EXPORTERS / source / "X_test.npy", allow_pickle=False)[:6]
    normalised = normalise(path)
    qonnx = to_qonnx(normalised)
    ops = Counter(n.op_type for n in qonnx.graph.node)
    assert ops["Quant"] >= 4 and not {"QuantizeLinear", "DequantizeLinear"} & set(ops)
    np.testing.assert_allclose(_qonnx_run(qonnx, x), _as_written(normalised, x), rtol=0, atol=1e-6)


def _cleaned(path: Path):
    from pytest_tinyaccel.targets.hls4ml.prepare import qonnx_clean
    from pytest_tinyaccel.targets.hls4ml.quantized import to_qonnx

    return qonnx_clean(to_qonnx(normalise(path)).model)


@needs_qonnx
def test_what_hls4mls_qonnx_front_end_cannot_convert_is_refused(tmp_path: Path, onnx_ir_for_qonnx: None) -> None:
    from pytest_tinyaccel.targets.hls4ml.quantized import per_axis_refusals, refusals

    assert per_axis_refusals(normalise(EXPORTERS / "ort_qdq_channel" / "model.onnx")) == [
        "per-channel scale x6: qonnx's QCDQToQuant and hls4ml's QONNX front end take per-tensor scales"
    ]
    # ONNX Runtime's int8 activations with zero point -128 before each Conv and the Gemm.
    assert refusals(_cleaned(EXPORTERS / "ort_qdq_tensor" / "model.onnx")) == [
        "Conv/MatMul input with a nonzero zero point x3: hls4ml's QONNX front end cannot move the zero point "
        "below the layer"
    ]
    ic = load_model(REPO / "models" / "ic" / "model.toml")
    twin = tmp_path / "qdq.onnx"
    quantize_model(ic.onnx_path, twin, ic.load_calibration(), {**ic.quantization, "format": "QDQ"})
    assert refusals(_cleaned(twin)) == [
        "quantized tensor read by several layers x3: hls4ml's QONNX front end turns a residual connection of "
        "quantized tensors into a wrong design"
    ]
    assert refusals(_cleaned(EXPORTERS / "brevitas_qcdq" / "model.onnx")) == []
    assert refusals(_cleaned(EXPORTERS / "brevitas_qonnx" / "model.onnx")) == []


def test_a_qdq_twin_without_the_goldens_scales_and_a_quantized_1d_network_are_refused(tmp_path: Path) -> None:
    """ONNX Runtime's QOperator model gives the pool its own output scale, its QDQ model does not (the
    gallery's dw_separable); a quantized Conv1D network is not lifted to 2-D (kws_conv1d)."""
    from gallery import GALLERY, write

    from pytest_tinyaccel.targets.hls4ml.quantized import per_axis_refusals

    folder = write(tmp_path / "models", GALLERY["dw_separable"])
    model = load_model(folder / "model.toml")
    qop = tmp_path / "qop.onnx"
    quantize_model(model.onnx_path, qop, model.load_calibration(), model.quantization)
    with pytest.raises(TargetUnsupported) as refused:
        int8_route(_build(folder, qop, tmp_path))
    assert str(refused.value).startswith(
        "hls4ml cannot convert dw_separable (int8): ONNX Runtime's QDQ quantization of dw_separable lacks 1 scale(s) "
        "of its QOperator int8 model, the golden (e.g. scale ["
    )
    assert str(refused.value).endswith('[quantization] format = "QDQ" makes the QDQ model the golden')
    folder = write(tmp_path / "models", GALLERY["kws_conv1d"])
    model = load_model(folder / "model.toml")
    qdq = tmp_path / "kws_qdq.onnx"
    quantize_model(model.onnx_path, qdq, model.load_calibration(), {**model.quantization, "format": "QDQ"})
    assert per_axis_refusals(normalise(qdq))[0].startswith("1-D convolution or pool x")
