"""Models exactly as the exporters leave them: weights in external data files (torch's default exporter),
models that arrive already quantized (ONNX Runtime's quantizer, Brevitas), and graphs ONNX Runtime's own
quantization pre-processing cannot handle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import REPO, Project

from pytest_tinyaccel.config import ConfigError
from pytest_tinyaccel.errors import DataError
from pytest_tinyaccel.modelfiles import copy_model, external_files, model_sha256
from pytest_tinyaccel.models import load_model
from pytest_tinyaccel.quantinfo import quantization

GALLERY = REPO / "tests" / "data" / "exporters"


def _top_level(manifest: Path, keys: str) -> None:
    """Add top-level keys to a manifest (before its first table)."""
    text = manifest.read_text()
    cut = text.index("\n[") if "\n[" in text else len(text)
    manifest.write_text(text[:cut].rstrip("\n") + "\n" + keys + text[cut:])


def _copy(project: Project, name: str, manifest_edit: tuple[str, str] | None = None) -> Path:
    folder = project.path / "models" / name
    shutil.copytree(GALLERY / name, folder)
    if manifest_edit:
        text = (folder / "model.toml").read_text()
        assert manifest_edit[0] in text
        (folder / "model.toml").write_text(text.replace(*manifest_edit))
    return folder


# ----------------------------------------------------------------------------- external data


def test_external_data_is_hashed_copied_and_checked(tmp_path: Path) -> None:
    model = GALLERY / "torch_dynamo" / "model.onnx"
    (data,) = external_files(model)
    assert data.name == "model.onnx.data"
    copy_model(model, tmp_path / "model.onnx")
    assert (tmp_path / "model.onnx.data").read_bytes() == data.read_bytes()
    before = model_sha256(tmp_path / "model.onnx")
    assert before == model_sha256(model) != model_sha256(GALLERY / "torch_legacy" / "model.onnx")
    weights = bytearray((tmp_path / "model.onnx.data").read_bytes())
    weights[100] ^= 1  # one weight bit: the model's hash changes although model.onnx did not
    (tmp_path / "model.onnx.data").write_bytes(bytes(weights))
    assert model_sha256(tmp_path / "model.onnx") != before
    (tmp_path / "model.onnx.data").unlink()
    with pytest.raises(DataError, match=r"external data file 'model.onnx.data' of tensor .* is missing"):
        external_files(tmp_path / "model.onnx")


def test_external_data_outside_the_model_folder_is_refused(tmp_path: Path) -> None:
    model = onnx.load(str(GALLERY / "torch_dynamo" / "model.onnx"), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../elsewhere.data"
    (tmp_path / "m").mkdir()
    onnx.save(model, str(tmp_path / "m" / "model.onnx"))
    with pytest.raises(DataError, match="lies outside the model's folder"):
        external_files(tmp_path / "m" / "model.onnx")


def test_a_model_with_external_data_runs_everywhere(project: Project) -> None:
    """fp32 and int8 (quantized with its data) on cpu and the emulators; the golden hashes the data too."""
    _copy(project, "torch_dynamo")
    result = project.run(
        "-m", "cpu or aie or gemmini", "--target", "sw_emu,cpu", "--tinyaccel-update-golden", "-k", "golden"
    )
    result.assert_outcomes(passed=6)
    meta = json.loads((project.path / "golden" / "torch_dynamo" / "golden.json").read_text())
    assert meta["model_sha256"] == model_sha256(project.path / "models" / "torch_dynamo" / "model.onnx")


def test_a_command_target_build_gets_the_external_data(project: Project) -> None:
    """The user's flow finds the model's data file beside the model the plugin hands it."""
    _copy(project, "torch_dynamo")
    (project.path / "flow.py").write_text(
        "import sys, numpy, onnxruntime\n"
        "model, inputs, outputs = sys.argv[1:]\n"
        "session = onnxruntime.InferenceSession(model)\n"
        "(y,) = session.run(None, {'x': numpy.load(inputs)})\n"
        "numpy.save(outputs + '/logits.npy', y)\n"
    )
    with open(project.path / "pyproject.toml", "a") as handle:
        handle.write(
            '\n[tool.tinyaccel.targets.flow]\nkind = "command"\n'
            "[tool.tinyaccel.targets.flow.sw_emu]\n"
            'run = ["{python}", "{root}/flow.py", "{model}", "{inputs}", "{outputs}"]\n'
        )
    result = project.run("-m", "flow", "-k", "golden and fp32", "--tinyaccel-update-golden")
    result.assert_outcomes(passed=1)


# ----------------------------------------------------------------------------- already quantized


@pytest.mark.parametrize(
    ("name", "bits"), [("brevitas_qcdq", "w4a8"), ("ort_qdq_channel", "w8a8"), ("brevitas_qonnx", "w4a8")]
)
def test_an_already_quantized_model_is_the_int8_case_as_it_is(tmp_path: Path, name: str, bits: str) -> None:
    folder = tmp_path / name
    shutil.copytree(GALLERY / name, folder)
    manifest = folder / "model.toml"
    manifest.write_text(manifest.read_text().replace('dtypes = ["int8"]\nmodel_int8 = "model.onnx"\n', ""))
    model = load_model(manifest)
    assert model.dtypes == ("int8",) and model.int8_onnx_path == model.onnx_path and model.int8_bits == bits


def test_the_report_gives_a_quantized_models_own_bit_widths(project: Project) -> None:
    """A 4-bit Brevitas model is 'int8 (w4a8)' in every table, and the AIE header says it was costed at 8 bits;
    an 8-bit model from ONNX Runtime's quantizer is plain int8."""
    _copy(project, "brevitas_qcdq")
    _copy(project, "ort_qdq_channel")
    report = project.path / "p.md"
    result = project.run("-m", "aie", "--target", "hw_emu", "--tinyaccel-update-golden", f"--tinyaccel-report={report}")
    result.assert_outcomes(passed=result.parseoutcomes()["passed"])
    text = report.read_text()
    (header,) = [line for line in text.splitlines() if line.startswith("## aie hw_emu")]
    assert header.endswith("; brevitas_qcdq is w4a8: costed at 8 bits (the device model has no narrower datapath)")
    assert "ort_qdq_channel is" not in header
    rows = [line for line in text.splitlines() if line.startswith("| Digits (")]
    assert len(rows) == 2 and all(" int8 (w4a8) " in r for r in rows if "Brevitas" in r), rows
    assert all("(w" not in r.split("|")[2] for r in rows if "ONNX Runtime QDQ" in r), rows
    result.stdout.fnmatch_lines(["brevitas_qcdq*int8 (w4a8)*passed*", "ort_qdq_channel*int8 *passed*"])


def test_declaring_fp32_for_a_quantized_model_is_a_collection_error(tmp_path: Path) -> None:
    folder = tmp_path / "brevitas_qcdq"
    shutil.copytree(GALLERY / "brevitas_qcdq", folder)
    manifest = folder / "model.toml"
    manifest.write_text(manifest.read_text().replace('dtypes = ["int8"]', 'dtypes = ["fp32", "int8"]'))
    with pytest.raises(ConfigError, match=r"key 'dtypes': model.onnx is already quantized \(2 QuantizeLinear"):
        load_model(manifest)


def test_a_float_model_int8_is_a_collection_error(tmp_path: Path) -> None:
    folder = tmp_path / "torch_legacy"
    shutil.copytree(GALLERY / "torch_legacy", folder)
    shutil.copy(folder / "model.onnx", folder / "fake_int8.onnx")
    manifest = folder / "model.toml"
    _top_level(manifest, 'model_int8 = "fake_int8.onnx"\n')
    with pytest.raises(ConfigError, match="key 'model_int8': fake_int8.onnx has no quantization nodes"):
        load_model(manifest)


def test_a_quantized_model_is_never_quantized_again(project: Project) -> None:
    """The user's own QDQ model as `model`, with a calibration set that would quantize it: one int8 case, the
    model's own outputs (no fp32 case, nothing made by the quantizer)."""
    folder = _copy(project, "ort_qdq_tensor", ('dtypes = ["int8"]\nmodel_int8 = "model.onnx"\n', ""))
    np.save(folder / "X_calib.npy", np.load(folder / "X_test.npy")[:20])
    _top_level(folder / "model.toml", 'calibration = "X_calib.npy"\n')
    result = project.run("-m", "cpu", "--tinyaccel-update-golden", "--collect-only", "-q")
    ids = [line for line in result.outlines if "::" in line and "ort_qdq_tensor" in line]
    assert ids and all(line.endswith("-int8]") for line in ids)
    result = project.run("-m", "cpu", "--tinyaccel-update-golden", "-k", "golden")
    result.assert_outcomes(passed=1)
    assert not (project.path / ".tinyaccel-cache").exists() or not list(
        (project.path / ".tinyaccel-cache").rglob("quantized/*/model.onnx")
    )


def test_bit_widths_of_a_qcdq_graph() -> None:
    found = quantization(onnx.load(str(GALLERY / "brevitas_qcdq" / "model.onnx")))
    assert found.weight_bits == (4,) and found.activation_bits == (8,) and found.label == "w4a8"
    assert not quantization(onnx.load(str(GALLERY / "torch_legacy" / "model.onnx")))
    kws_float = REPO.parent / "shared" / "mlperf_tiny" / "kws_ref_model_float32.onnx"
    if kws_float.is_file():  # int8 weights behind DequantizeLinear, float arithmetic: not a quantized model
        assert not quantization(onnx.load(str(kws_float)))


# ----------------------------------------------------------------------------- the quantizer's pre-processing


def test_quantizer_pre_processing_failure_falls_back_and_says_so(project: Project) -> None:
    """skl2onnx's graph, after ONNX Runtime's quant_pre_process, makes quantize_static fail; quantize_static
    alone succeeds: the int8 case runs, and the report says the model was quantized without the pre-processing."""
    _copy(project, "skl_tensor")
    result = project.run("-m", "cpu", "-k", "golden and int8", "--tinyaccel-update-golden", "--tinyaccel-report=p.md")
    result.assert_outcomes(passed=1)
    assert (
        "quantized without ONNX Runtime's pre-processing (with it, quantization failed: RuntimeError: Only an"
        in (project.path / "p.md").read_text()
    )


# ----------------------------------------------------------------------------- what a target cannot run


def test_ops_a_target_lacks_skip_its_cases_with_one_line_naming_them(project: Project) -> None:
    """skl2onnx's ai.onnx.ml ops run on cpu; the emulators skip the model with the ops and the manifest key."""
    _copy(project, "skl_tensor")
    result = project.run(
        "-m", "cpu or aie", "--target", "cpu,sw_emu", "-k", "golden", "--tinyaccel-update-golden", "-rs"
    )
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED*aie cannot run skl_tensor (fp32): the emulator has no kernel for *Scaler (ai.onnx.ml) x1*; to "
            'record it, set [[]targets.aie[]] skip = "<why>" in skl_tensor/model.toml; to fail on it, '
            "tinyaccel_strict_support = true"
        ]
    )
    # a refusal (fp32 and int8) is not a failed build: the summary agrees with pytest's skips
    (builds,) = [line for line in result.outlines if line.startswith("builds: ")]
    assert builds.endswith(", 2 refused by their target (unsupported model)") and "failed" not in builds, builds


def test_strict_support_fails_what_a_target_cannot_run(project: Project) -> None:
    _copy(project, "skl_tensor")
    with open(project.path / "pyproject.toml", "a") as handle:
        handle.write("\n[tool.pytest.ini_options]\ntinyaccel_strict_support = true\n")
    result = project.run("-m", "aie", "--target", "sw_emu", "-k", "golden and fp32", "--tinyaccel-update-golden")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*aie cannot run skl_tensor (fp32): the emulator has no kernel for*"])


# ----------------------------------------------------------------------------- manifests for real data


def test_without_a_quality_target_accuracy_is_reported_not_gated(project: Project) -> None:
    folder = _copy(project, "torch_legacy", ("quality_target = 0.8\n", ""))
    result = project.run("-m", "cpu", "-k", "accuracy and fp32", "-rs", "--tinyaccel-report=p.md")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            f"SKIPPED*{folder / 'model.toml'} gives no quality_target: *% (Top 1) on the first 200 test samples is "
            "reported, not gated; set quality_target to gate it"
        ]
    )
    assert "% (Top 1, n=200)" in (project.path / "p.md").read_text()


def test_logits_without_a_role_get_a_warning(project: Project) -> None:
    _copy(project, "torch_legacy", ('\n[outputs.logits]\nrole = "logits"\n', ""))
    result = project.run("-m", "cpu", "-k", "golden and fp32", "--tinyaccel-update-golden")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*ManifestWarning: *torch_legacy/model.toml: output 'logits' comes from a Gemm, not a softmax, and "
            "declares no role, so it is scored as probabilities; if it holds logits, declare *"
        ]
    )


def test_zipmap_probabilities_are_unwrapped_into_a_tensor(project: Project) -> None:
    """skl2onnx's default ZipMap output (a sequence of {class: probability} maps) is read as the probability
    tensor it wraps: golden, accuracy and Top-5 run on cpu in both dtypes."""
    _copy(project, "skl_zipmap")
    result = project.run("-m", "cpu", "--tinyaccel-update-golden")
    result.assert_outcomes(passed=6)
    golden = json.loads((project.path / "golden" / "skl_zipmap" / "golden.json").read_text())
    assert set(golden["dtypes"]["fp32"]["outputs"]) == {"output_label", "output_probability"}
    probabilities = np.load(project.path / "golden" / "skl_zipmap" / "fp32.1.npy")
    assert probabilities.shape == (10, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


# ----------------------------------------------------------------------------- QONNX


def _qonnx_at(project: Project, activation_bits: float | None = None) -> Path:
    """brevitas_qonnx, its activation quantizers at `activation_bits` where given (more than 8 bits: beyond
    what ONNX's quantization ops hold, so qonnx's executor makes the golden)."""
    folder = _copy(project, "brevitas_qonnx")
    if activation_bits is not None:
        model = onnx.load(str(folder / "model.onnx"))
        for tensor in model.graph.initializer:
            if tensor.name == "/inp/act_quant/export_handler/Constant_2_output_0":
                tensor.CopyFrom(onnx.numpy_helper.from_array(np.array(activation_bits, np.float32), tensor.name))
        onnx.save(model, str(folder / "model.onnx"))
    return folder


def test_a_qonnx_model_runs_in_its_qcdq_form_on_every_target(project: Project) -> None:
    """w4a8: qonnx's QuantToQCDQ expresses it, ONNX Runtime makes the golden, the emulators follow it."""
    _qonnx_at(project)
    result = project.run(
        "-m", "cpu or aie or gemmini", "--target", "sw_emu,cpu", "--tinyaccel-update-golden", "--tinyaccel-report=p.md"
    )
    result.assert_outcomes(passed=9)
    assert "QONNX model (w4a8) run in its QCDQ form (qonnx's QuantToQCDQ)" in (project.path / "p.md").read_text()


def test_a_qonnx_model_beyond_8_bits_gets_its_golden_from_qonnxs_executor(project: Project) -> None:
    """12-bit activations: the golden is qonnx's executor, the emulators run the Quant nodes bit-exact, and the
    cpu target (ONNX Runtime has no Quant kernel) skips with the reason."""
    _qonnx_at(project, 12)
    result = project.run(
        "-m", "cpu or aie or gemmini", "--target", "sw_emu,cpu", "-k", "golden", "--tinyaccel-update-golden", "-rs"
    )
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED*cpu cannot run brevitas_qonnx (int8): ONNX Runtime has no kernel for QONNX's Quant (its golden "
            "comes from qonnx's executor)*"
        ]
    )
    meta = json.loads((project.path / "golden" / "brevitas_qonnx" / "golden.json").read_text())
    assert meta["dtypes"]["int8"]["arithmetics"]["exact"].startswith("qonnx's executor")
