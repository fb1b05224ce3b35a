"""Models as users bring them (tests/gallery.py) on every target, and the manifest's [outputs]
table: which output accuracy and Top-5 read, per-output tolerances, outputs left out of the
golden check, and the errors that name the outputs when the manifest leaves them ambiguous.

Each target runs the whole gallery in one inner session (goldens made first, from ONNX
Runtime); every model a target supports passes its golden, accuracy and Top-5 checks, and
where a target does not support a model the case fails with the target's clear refusal.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from gallery import GALLERY, write
from helpers import Project

from pytest_tinyaccel.config import ConfigError
from pytest_tinyaccel.costmodel.zigzag_runner import zigzag_unavailable
from pytest_tinyaccel.metrics import quality
from pytest_tinyaccel.models import load_model

HAVE_HLS4ML = all(importlib.util.find_spec(m) is not None for m in ("hls4ml", "qonnx")) and shutil.which("g++")
CHECKS = ("golden", "accuracy", "top5")
MODES = {"cpu": ("hw",), "aie": ("sw_emu", "hw_emu"), "gemmini": ("sw_emu", "hw_emu"), "hls4ml": ("sw_emu",)}
REFUSED = {
    ("hls4ml", "lstm_cls"): (
        "hls4ml cannot convert lstm_cls (*): LSTM x1: hls4ml's ONNX front end has no LSTM layer; "
        "Squeeze x1: hls4ml's ONNX front end has no Squeeze layer; to record it, set [[]targets.hls4ml[]] skip*"
    ),
}
"""(target, model) -> the one-line reason every check of the case skips with."""
REFUSED_INT8 = ("hls4ml",)
"""Targets that skip every gallery model in int8: hls4ml takes the int8 model's own quantization through its
QONNX front end, which cannot convert these (nonzero input zero points, residual connections, a pool scale
ONNX Runtime's QDQ format lacks, 1-D convolutions; docs/hls4ml.md, "dtype int8")."""
OUTCOME = re.compile(r"^(PASSED|FAILED|ERROR) test_suite\.py::test_(\w+)\[(\S+)\]")


def write_gallery(project: Project, names: tuple[str, ...] = tuple(GALLERY)) -> Path:
    for name in names:
        write(project.path / "models", GALLERY[name])
    return project.path / "models"


def outcomes(result: pytest.RunResult) -> dict[tuple[str, str], str]:
    """(check, case id) -> PASSED / FAILED / ERROR, from the -rA summary."""
    found = {}
    for line in result.outlines:
        match = OUTCOME.match(line)
        if match:
            found[(match[2], match[3])] = match[1]
    return found


@pytest.mark.parametrize("selection", ["cpu", "aie", "gemmini", "hls4ml-fp32", "hls4ml-int8"])
def test_gallery_on_every_target(project: Project, selection: str) -> None:
    target, _, dtype = selection.partition("-")
    if target == "hls4ml" and not HAVE_HLS4ML:
        pytest.skip("needs the hls4ml extra (pip install -e '.[hls4ml]') and g++")
    if target == "gemmini" and zigzag_unavailable():
        pytest.skip(str(zigzag_unavailable()))
    write_gallery(project)
    report = project.path / "profile.json"
    args = ["-m", target, "--tinyaccel-update-golden", "-rA", f"--tinyaccel-report={report}"]
    if target == "hls4ml":
        args += ["--target", "hls4ml:sw_emu", "-k", dtype]
    result = project.run(*args)
    found = outcomes(result)
    dtypes = (dtype,) if dtype else ("fp32", "int8")
    expected = {}
    for name, entry in GALLERY.items():
        checks = CHECKS if entry.task == "classification" else CHECKS[:2]
        for mode in MODES[target]:
            for dt in dtypes:
                refused = (target, name) in REFUSED or (dt == "int8" and target in REFUSED_INT8)
                for check in checks:
                    if not refused:  # refused: skipped, with the reason (below)
                        expected[(check, f"{name}-{target}-{mode}-{dt}")] = "PASSED"
    assert found == expected, result.stdout.str()[-4000:]
    for refused_target, name in REFUSED:
        if refused_target == target:
            result.stdout.fnmatch_lines([f"SKIPPED*{REFUSED[(target, name)]}"])
    if target in REFUSED_INT8 and "int8" in dtypes:
        for name in GALLERY:
            result.stdout.fnmatch_lines([f"SKIPPED*hls4ml cannot convert {name} (int8): *; to record it, set*"])
    rows = {(r["model"], r["mode"], r["dtype"]): r for r in json.loads(report.read_text())["rows"]}
    # Accuracy reads the declared output ('class.prob', the second): 100 % of the labels are its argmax.
    if ("two_heads", MODES[target][0], dtypes[0]) in rows:
        assert rows[("two_heads", MODES[target][0], dtypes[0])]["accuracy"] >= 0.95
    for (model, mode, _), row in rows.items():
        if mode == "hw_emu":  # every layer costed, Conv1D and LSTM as matrix layers
            layers = {layer["name"]: layer for layer in row["perf"]["layers"]}
            assert row["perf"]["cycles"] > 0
            if model == "kws_conv1d":
                assert all(layers[n]["macs"] > 0 for n in ("a_node", "gate_pre_node", "skip_node") if n in layers)
                assert sum(layer["macs"] for layer in layers.values()) >= 2 * 12 * 10 * 3 * 24
            if model == "lstm_cls":
                assert sum(layer["macs"] for layer in layers.values()) >= 8 * (4 + 8) * 4 * 8  # T x (I + H) x 4H


# ----- the [outputs] table --------------------------------------------------------------------------


def test_ambiguous_scored_output_is_a_collection_error_naming_the_outputs(project: Project) -> None:
    models = write_gallery(project, ("two_heads",))
    manifest = models / "two_heads" / "model.toml"
    manifest.write_text(manifest.read_text().split("[outputs.")[0])
    result = project.run("-m", "cpu")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*malformed model manifest: *two_heads/model.toml: key 'outputs': the model has outputs 'reg.value', "
            "'class.prob': say which one accuracy and Top-5 read, e.g. [[]outputs.\"class.prob\"[]] "
            'role = "probabilities" (roles: probabilities, logits)*'
        ]
    )


@pytest.mark.parametrize(
    ("table", "key", "problem"),
    [
        ('[outputs."class.probs"]\nrole = "probabilities"', 'outputs."class.probs"', "has no output 'class.probs'"),
        ('[outputs."class.prob"]\nrole = "reconstruction"', 'outputs."class.prob".role', "is for anomaly_detection"),
        ('[outputs."class.prob"]\nrole = "probability"', 'outputs."class.prob".role', "is not one of"),
        ('[outputs."class.prob"]\nrole = "logits"\natol = -1', 'outputs."class.prob".atol', "at least 0"),
        ('[outputs."class.prob"]\nrole = "logits"\nscale = 2', 'outputs."class.prob".scale', "unknown key"),
        (
            '[outputs."class.prob"]\nrole = "logits"\n[outputs."reg.value"]\nrole = "probabilities"',
            "outputs",
            "outputs 'reg.value', 'class.prob' all declare a scored role",
        ),
    ],
)
def test_outputs_table_errors_name_the_key(project: Project, table: str, key: str, problem: str) -> None:
    models = write_gallery(project, ("two_heads",))
    manifest = models / "two_heads" / "model.toml"
    manifest.write_text(manifest.read_text().split("[outputs.")[0] + table + "\n")
    with pytest.raises(ConfigError) as info:
        load_model(manifest)
    assert info.value.key == key and problem in info.value.problem, str(info.value)


def test_single_output_models_keep_their_default(project: Project) -> None:
    models = write_gallery(project, ("nhwc_cnn", "upsample_ae"))
    cnn, ae = load_model(models / "nhwc_cnn" / "model.toml"), load_model(models / "upsample_ae" / "model.toml")
    assert (cnn.scored_output, cnn.scored_role) == ("probs", "probabilities")
    assert (ae.scored_output, ae.scored_role) == ("recon", "reconstruction")


def test_logits_are_scored_as_probabilities_and_score_outputs_as_they_are(project: Project) -> None:
    models = write_gallery(project, ("two_heads",))
    manifest = models / "two_heads" / "model.toml"
    manifest.write_text(manifest.read_text().replace('role = "probabilities"', 'role = "logits"'))
    model = load_model(manifest)
    logits = np.array([[0.0, 1.0, 2.0, 0.5, -1.0]], np.float32)
    probs = model.scored({"class.prob": logits, "reg.value": np.zeros((1, 1), np.float32)})
    assert probs.sum() == pytest.approx(1.0) and probs.argmax() == 2 and model.role("reg.value") == "auxiliary"
    labels = np.array([0, 1, 0, 1])
    assert quality("auc", np.array([[0.1], [0.9], [0.2], [0.7]]), labels, role="score") == 1.0
    with pytest.raises(ValueError, match="one value per sample"):
        quality("auc", np.zeros((4, 2)), labels, role="score")


PERTURB_REG = '''
import numpy as np
from pytest_tinyaccel import Perf, RunResult, Target
from pytest_tinyaccel.runtime import create_session, run_session

class RegDrift(Target):
    """ONNX Runtime, with the regression head 1 % off and the probabilities 0.004 off."""
    name = "fake"
    modes = ("sw_emu",)

    def run(self, build, inputs):
        out = run_session(create_session(build.onnx_path), inputs)
        out["reg.value"] = out["reg.value"] * np.float32(1.01) + np.float32(0.05)
        out["class.prob"] = out["class.prob"] + np.float32(0.004)
        return RunResult(out, Perf(simulator="drift"))

def pytest_tinyaccel_targets(config):
    return [RegDrift]
'''


@pytest.mark.parametrize(
    ("outputs", "failing"),
    [
        ("", ["reg.value", "class.prob"]),
        ('[outputs."class.prob"]\nrole = "probabilities"\natol = 0.005\n', ["reg.value"]),
        ('[outputs."class.prob"]\nrole = "probabilities"\n[outputs."class.prob".fake]\natol = 0.005\n', ["reg.value"]),
        ('[outputs."class.prob"]\nrole = "probabilities"\natol = 0.005\n[outputs."reg.value"]\nrole = "ignore"\n', []),
    ],
)
def test_per_output_tolerance_and_ignored_outputs(project: Project, outputs: str, failing: list[str]) -> None:
    models = write_gallery(project, ("two_heads",))
    manifest = models / "two_heads" / "model.toml"
    text = manifest.read_text().split("[outputs.")[0]
    manifest.write_text(text + (outputs or '[outputs."class.prob"]\nrole = "probabilities"\n'))
    project.pytester.makeconftest(PERTURB_REG)
    result = project.run("-m", "fake", "-k", "golden and fp32", "--tinyaccel-update-golden")
    if not failing:
        result.assert_outcomes(passed=1)
        return
    result.assert_outcomes(failed=1)
    for name in ("reg.value", "class.prob"):
        line = f"*output '{name}' differs from the ONNX Runtime golden*"
        if name in failing:
            result.stdout.fnmatch_lines([line])
        else:
            result.stdout.no_fnmatch_line(line)


def test_a_layer_the_cost_model_cannot_cost_is_a_clear_hw_emu_failure(project: Project) -> None:
    """A transposed convolution: sw_emu runs it, hw_emu names the layer the cost model cannot cost."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder = project.path / "models" / "deconv"
    folder.mkdir(parents=True)
    weights = numpy_helper.from_array(np.random.default_rng(0).normal(size=(2, 2, 2, 2)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", kernel_shape=[2, 2], strides=[2, 2])],
        "deconv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 8, 8])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / "model.onnx"))
    np.save(folder / "X_test.npy", np.random.default_rng(1).normal(size=(4, 2, 4, 4)).astype(np.float32))
    (folder / "model.toml").write_text(
        'use_case = "Deconv"\ntask = "anomaly_detection"\nmetric = "auc"\nquality_target = 0.5\n'
        'dtypes = ["fp32"]\nndata = 4\n'
    )
    targets = "aie" if zigzag_unavailable() else "aie or gemmini"
    result = project.run("-m", targets, "-k", "golden", "--tinyaccel-update-golden", "-rA")
    found = outcomes(result)
    for target in targets.split(" or "):
        assert found[("golden", f"deconv-{target}-sw_emu-fp32")] == "PASSED"
        assert found[("golden", f"deconv-{target}-hw_emu-fp32")] == "FAILED"
        result.stdout.fnmatch_lines(
            [
                f"*deconv-{target}-hw_emu-fp32: {target} cost model: cannot cost node 'up' (ConvTranspose): "
                "a transposed convolution has no mapping onto the cost models' convolution or matrix layers*"
            ]
        )
