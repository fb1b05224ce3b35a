"""Goldens record how their ONNX Runtime summed int8 products, and the emulator
reproduces it: bit-exact against a golden made by ONNX Runtime 1.31.1 on a CPU
with exact int32 sums (VNNI) and one made by 1.32.0 on an AVX2 CPU without VNNI,
whose uint8 x int8 kernel adds pairs of products in saturating int16.

The two kept goldens (tests/data/goldens) are of the bundled `ic` model quantized
with full 8-bit weights (before the bundled manifests set reduce_range): the case
where the two arithmetics disagree.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import REPO, Project

from pytest_tinyaccel.emulator import Graph
from pytest_tinyaccel.goldens import store
from pytest_tinyaccel.runtime import int8_accumulation

KEPT = REPO / "tests" / "data" / "goldens"
GOLDENS = {"ort-1.31.1-exact": ("1.31.1", "exact"), "ort-1.32.0-avx2": ("1.32.0", "avx2_int16_pairs")}


def full_range_ic(project: Project, kept: str) -> None:
    """The ic model as the kept goldens were made: default quantization (8-bit weights)."""
    folder = project.add_model("ic", golden=False)
    text = (folder / "model.toml").read_text()
    (folder / "model.toml").write_text(text[: text.index("[quantization]")])
    shutil.copytree(KEPT / kept, project.path / "kept")


def test_kept_goldens_record_their_runtime_and_arithmetic() -> None:
    for name, (version, accumulation) in GOLDENS.items():
        meta = store.load_meta(KEPT / name / "ic")
        assert (meta["onnxruntime"], meta.get("int8_accumulation", "exact")) == (version, accumulation)
    # same int8 model bytes, different outputs: only the runtime's arithmetic differs
    a, b = (store.load(KEPT / name / "ic") for name in GOLDENS)
    assert a.meta["dtypes"]["int8"]["model_sha256"] == b.meta["dtypes"]["int8"]["model_sha256"]
    assert not np.array_equal(a.outputs["int8"]["probs"], b.outputs["int8"]["probs"])


@pytest.mark.parametrize("kept", sorted(GOLDENS))
def test_emulator_is_bit_exact_with_either_golden(project: Project, kept: str) -> None:
    full_range_ic(project, kept)
    result = project.run(
        "-m", "aie or gemmini", "--target", "sw_emu", "-k", "golden and int8", "--tinyaccel-golden=kept", "-rA"
    )
    result.assert_outcomes(passed=2)
    if GOLDENS[kept][1] != "exact":  # the report says which arithmetic the emulator reproduced
        result.stdout.fnmatch_lines(["*int8 sums as the golden's ONNX Runtime on AVX2 without VNNI*"])


@pytest.mark.parametrize("kept", sorted(GOLDENS))
def test_the_other_arithmetic_fails_and_names_the_layer(project: Project, kept: str) -> None:
    """Held to the wrong arithmetic, the emulator misses the golden: the check bites."""
    full_range_ic(project, kept)
    other = "exact" if GOLDENS[kept][1] != "exact" else "avx2_int16_pairs"
    with open(project.path / "pyproject.toml", "a") as handle:
        handle.write(f'\n[tool.tinyaccel.targets.aie]\nint8_accumulation = "{other}"\n')
    result = project.run("-m", "aie", "--target", "sw_emu", "-k", "golden and int8", "--tinyaccel-golden=kept")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*output 'probs' differs from the ONNX Runtime golden*",
            "*first diverging layer: node '/stem/stem.0/stem.0.0/Conv_quant' (QLinearConv)*",
        ]
    )


def test_cpu_target_names_the_drift_when_the_golden_came_from_the_other_arithmetic(project: Project) -> None:
    here = int8_accumulation()
    (matching,) = [k for k, (_, acc) in GOLDENS.items() if acc == here]
    (other,) = [k for k in GOLDENS if k != matching]
    full_range_ic(project, other)
    result = project.run("-m", "cpu", "-k", "golden and int8", "--tinyaccel-golden=kept")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*output 'probs' differs from the ONNX Runtime golden*",
            f"note: golden made by ONNX Runtime {GOLDENS[other][0]} (onnx *), installed * (onnx *)*int8 sums: "
            f"golden *, "
            "this machine *reduce_range = true*",
            "*The upgrade review (pytest -k upgrade_review) compares both runtimes*regenerate: "
            "pytest*--tinyaccel-update-golden",
        ]
    )
    shutil.rmtree(project.path / "kept")
    shutil.copytree(KEPT / matching, project.path / "kept")
    project.run("-m", "cpu", "-k", "golden and int8", "--tinyaccel-golden=kept").assert_outcomes(passed=1)


@pytest.mark.parametrize("accumulation", ["exact", "avx2_int16_pairs"])
def test_saturation_model_on_a_single_layer(tmp_path, accumulation: str) -> None:
    """255*127 + 255*127 = 64770 exact; 32767 when the pair saturates in int16."""
    from onnx import TensorProto, helper, numpy_helper, save

    inits = [
        numpy_helper.from_array(np.array([[127], [127], [-128], [127]], np.int8), "w"),
        numpy_helper.from_array(np.float32(1.0), "s"),
        numpy_helper.from_array(np.uint8(0), "z"),
        numpy_helper.from_array(np.int8(0), "wz"),
        numpy_helper.from_array(np.float32(1.0), "ws"),
    ]
    node = helper.make_node("QGemm", ["a", "s", "z", "w", "ws", "wz"], ["y"], domain="com.microsoft")
    graph = helper.make_graph(
        [node],
        "pair",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        inits,
    )
    path = tmp_path / "pair.onnx"
    save(
        helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)], ir_version=8
        ),
        path,
    )
    a = np.array([[255, 255, 255, 255], [255, 255, 0, 0], [0, 0, 255, 255], [1, 2, 3, 4]], np.uint8)
    got = Graph.load(path, accumulation=accumulation).run({"a": a})["y"][:, 0]
    exact = a.astype(np.int64) @ np.array([127, 127, -128, 127])
    if accumulation == "exact":
        np.testing.assert_array_equal(got, exact)
    else:  # pairs (k0, k1) and (k2, k3): 64770 -> 32767, 255*(-128+127) = -255 stays
        np.testing.assert_array_equal(got, [32767 - 255, 32767, -255, exact[3]])


def test_golden_records_this_machines_arithmetic(project: Project) -> None:
    project.add_model("ad", golden=False)
    project.run("-m", "cpu", "--tinyaccel-update-golden", "-k", "golden").assert_outcomes(passed=2)
    meta = json.loads((project.path / "golden" / "ad" / "golden.json").read_text())
    assert meta["int8_accumulation"] == int8_accumulation()
