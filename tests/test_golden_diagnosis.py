"""A golden failure names its cause: int8 arithmetic, graph optimization level (tests/test_exporter_models.py),
ONNX Runtime version, or a real difference. Each cause is made on purpose here, so each line is seen."""

from __future__ import annotations

import numpy as np
from helpers import Project

from pytest_tinyaccel.goldens import store


def _rewrite_golden(project: Project, model: str, version: str, scale: float) -> None:
    """The golden as another ONNX Runtime might have left it: its version, and outputs scaled by `scale`."""
    folder = project.path / "golden" / model
    golden = store.load(folder)
    meta = {k: v for k, v in golden.meta.items() if k not in ("files", "format")}
    meta["onnxruntime"] = version
    outputs = {d: {n: (a * np.float32(scale)).astype(a.dtype) for n, a in o.items()} for d, o in golden.outputs.items()}
    store.write(folder, meta, golden.inputs, outputs, {d: golden.layers(d) for d in golden.outputs})


def test_outputs_of_the_installed_runtime_name_the_version(project: Project) -> None:
    project.add_model("ic")
    _rewrite_golden(project, "ic", "1.20.0", 1.01)
    result = project.run("-m", "cpu", "-k", "golden and fp32")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*output 'probs' differs from the ONNX Runtime golden*",
            "cause: ONNX Runtime version. The outputs match ONNX Runtime *; the golden was made by 1.20.0. "
            "Review the change (pytest -k upgrade_review), then regenerate the golden",
        ]
    )


def test_a_target_that_computes_wrong_numbers_is_a_real_difference(project: Project) -> None:
    project.add_model("ic")
    project.fake_target(perturb="scale")
    result = project.run("-m", "fake", "--target", "sw_emu", "-k", "golden and fp32")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["cause: a real difference. The outputs match none of: ONNX Runtime without graph optimizations"]
    )
    assert "cause: ONNX Runtime version" not in result.stdout.str()
