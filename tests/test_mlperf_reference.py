"""The real MLPerf Tiny reference models (../shared/mlperf_tiny), unmodified: NHWC,
dynamic batch, hybrid int8-weight float graphs and QDQ graphs with int8 inputs
and outputs. The plugin must make goldens for them and pass its checks on the
cpu target. Upstream ships no test sets, so accuracy is skipped, with that reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import SHARED, Project

from pytest_tinyaccel.runtime import input_specs

REFERENCE = SHARED / "mlperf_tiny"
pytestmark = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"MLPerf Tiny reference models not found at {REFERENCE}")

# name: (float file, int8 file, use case, task, metric, MLPerf closed-division target)
MODELS = {
    "kws_ref": (
        "kws_ref_model_float32.onnx",
        "kws_ref_model_int8.onnx",
        "Keyword Spotting",
        "classification",
        "top1",
        0.90,
    ),
    "vww_ref": ("vww_96_float.onnx", "vww_96_int8.onnx", "Visual Wake Words", "classification", "top1", 0.80),
    "ic_ref": (
        "pretrainedResnet_float.onnx",
        "pretrainedResnet_quant.onnx",
        "Image Classification",
        "classification",
        "top1",
        0.85,
    ),
    "ad_ref": ("ad01_fp32.onnx", "ad01_int8.onnx", "Anomaly Detection", "anomaly_detection", "auc", 0.85),
}


def reference_inputs(name: str, int8_model: Path, count: int = 12) -> np.ndarray:
    """Float inputs that lie exactly on the int8 model's input grid, so both dtypes
    see the same values: the shipped samples first, then random codes over the
    whole quantized range."""
    spec = input_specs(int8_model)[0]
    if name == "ad_ref":
        samples = np.load(REFERENCE / "ad_sample_float.npy", allow_pickle=False)
        return samples.reshape(len(samples), -1).astype(np.float32)  # shipped as [40, 1, 640]
    rng = np.random.default_rng(0)
    codes = rng.integers(-128, 128, size=(count, *spec.shape[1:]), dtype=np.int64)
    if name == "kws_ref":
        codes[0] = np.load(REFERENCE / "kws_sample_int8.npy", allow_pickle=False).reshape(spec.shape[1:])
    return ((codes - spec.zero_point) * spec.scale).astype(np.float32)


def make_model_folder(root: Path, name: str) -> None:
    float_file, int8_file, use_case, task, metric, target = MODELS[name]
    folder = root / "models" / name
    folder.mkdir(parents=True)
    shutil.copy(REFERENCE / float_file, folder / "model.onnx")
    shutil.copy(REFERENCE / int8_file, folder / "model_int8.onnx")
    np.save(folder / "X_test.npy", reference_inputs(name, folder / "model_int8.onnx"))
    (folder / "model.toml").write_text(
        f'use_case = "{use_case}"\ntask = "{task}"\nmetric = "{metric}"\nquality_target = {target}\n'
        f'model_int8 = "model_int8.onnx"\narchitecture = "MLPerf Tiny reference"\n'
        f'link = "https://github.com/mlcommons/tiny/tree/master/benchmark/training"\n'
    )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_reference_model_runs_unmodified_on_cpu(project: Project, name: str) -> None:
    make_model_folder(project.path, name)
    created = project.run("-m", "cpu", "--tinyaccel-update-golden", "-rs")
    checks = 3 if MODELS[name][3] == "classification" else 2
    counts = created.parseoutcomes()
    assert (counts["passed"], counts["skipped"], counts.get("failed", 0)) == (2 * (checks - 1), 2, 0), (
        created.stdout.str()
    )
    created.stdout.fnmatch_lines(
        [f"golden {name}: created *", f"*SKIPPED*{name} has no labelled test set (y_test): accuracy is not measured*"]
    )
    checked = project.run("-m", "cpu")
    counts = checked.parseoutcomes()
    assert (counts["passed"], counts["skipped"], counts.get("failed", 0)) == (2 * (checks - 1), 2, 0)
    checked.stdout.fnmatch_lines([f"{name}*fp32*ns*-*", f"{name}*int8*ns*-*"])
    import json

    meta = json.loads((project.path / "golden" / name / "golden.json").read_text())
    assert "quantization" not in meta["dtypes"]["int8"]  # the author's int8 model, not ours


def test_int8_reference_outputs_are_compared_exactly(project: Project) -> None:
    """int8 outputs of QDQ graphs are integers: a 1-LSB change must fail the golden."""
    make_model_folder(project.path, "kws_ref")
    project.run("-m", "cpu", "--tinyaccel-update-golden")
    golden = project.path / "golden" / "kws_ref"
    import json

    meta = json.loads((golden / "golden.json").read_text())
    out = np.load(golden / "int8.0.npy")
    assert out.dtype == np.int8
    out[0, 0] += 1
    # rewrite consistently (as a hand edit with updated hashes would) to see the numeric check bite
    from pytest_tinyaccel.goldens import store

    store.write(
        golden,
        meta,
        np.load(golden / "inputs.npy"),
        {"fp32": {"Identity": np.load(golden / "fp32.0.npy")}, "int8": {"Identity": out}},
    )
    result = project.run("-m", "cpu", "-k", "golden and int8")
    result.stdout.fnmatch_lines(
        ["*output 'Identity' differs from the ONNX Runtime golden*", "*mismatched elements: 1 / 120 (0.83%)*"]
    )
