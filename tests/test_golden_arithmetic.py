"""Goldens record how their ONNX Runtime summed int8 products, and the emulator
reproduces it: bit-exact against a golden made by ONNX Runtime 1.31.1 on a CPU
with exact int32 sums (VNNI) and one made by 1.32.0 on an AVX2 CPU without VNNI,
whose uint8 x int8 kernel adds pairs of products in saturating int16.

The two kept goldens (tests/data/goldens) are of the bundled `ic` model quantized
with full 8-bit weights (before the bundled manifests set reduce_range): the case
where the two arithmetics disagree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import REPO, Project, require_qemu

from pytest_tinyaccel.emulator import Graph
from pytest_tinyaccel.goldens import store
from pytest_tinyaccel.goldens.arithmetic import QEMU, QEMU_CPU
from pytest_tinyaccel.goldens.keeper import ort_version
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


def test_cpu_target_names_the_cause_when_a_single_arithmetic_golden_came_from_the_other_arithmetic(
    project: Project,
) -> None:
    """The kept goldens hold one arithmetic each (made before goldens kept both): the cpu target passes the
    one of this CPU's arithmetic and fails the other, saying why and what to run."""
    here = int8_accumulation()
    (matching,) = [k for k, (_, acc) in GOLDENS.items() if acc == here]
    (other,) = [k for k in GOLDENS if k != matching]
    full_range_ic(project, other)
    result = project.run("-m", "cpu", "-k", "golden and int8", "--tinyaccel-golden=kept")
    result.assert_outcomes(failed=1)
    version = "" if GOLDENS[other][0] == ort_version() else f"golden made by ONNX Runtime {GOLDENS[other][0]}*"
    result.stdout.fnmatch_lines(
        [
            "*output 'probs' differs from the ONNX Runtime golden*",
            f"cause: int8 arithmetic. This target sums int8 products as {here}; the golden holds outputs of "
            f"{GOLDENS[other][1]} only. Regenerate it*",
            f"note: {version}int8 sums: golden *, this machine *keeps the outputs of both arithmetics*",
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


def test_golden_keeps_both_arithmetics_where_they_differ_and_one_where_they_agree(project: Project) -> None:
    full_range_ic(project, "ort-1.31.1-exact")  # 8-bit weights: pairs saturate
    project.add_model("ad", golden=False)  # reduce_range: no pair can saturate
    project.run("-m", "cpu", "--tinyaccel-update-golden", "-k", "golden").assert_outcomes(passed=4)
    ic = store.load(project.path / "golden" / "ic")
    assert ic.meta["int8_accumulation"] == "exact"
    assert set(ic.arithmetics("int8")) == {"exact", "avx2_int16_pairs"}
    made_by = ic.meta["dtypes"]["int8"]["variants"]["avx2_int16_pairs"]["made_by"]
    assert made_by.startswith("ONNX Runtime") and "emulator" not in made_by  # ONNX Runtime made both
    pairs, _ = ic.expected("int8", "avx2_int16_pairs")
    assert not np.array_equal(pairs["probs"], ic.outputs["int8"]["probs"])
    # the kept goldens made on the two kinds of CPU are what this one golden holds
    for kept, (_, arithmetic) in GOLDENS.items():
        old = store.load(KEPT / kept / "ic")
        np.testing.assert_array_equal(ic.expected("int8", arithmetic)[0]["probs"], old.outputs["int8"]["probs"])
    ad = store.load(project.path / "golden" / "ad")
    assert set(ad.arithmetics("int8")) == {"exact", "avx2_int16_pairs"} and not ad.variants
    assert "saturating pair" in ad.meta["dtypes"]["int8"]["arithmetics"]["avx2_int16_pairs"]
    assert "arithmetics" not in ad.meta["dtypes"]["fp32"]


def _run_under_avx2(project: Project, *args: str) -> subprocess.CompletedProcess:
    """pytest in the project, in a process whose CPU is an emulated AVX2 one without VNNI."""
    argv = [QEMU, "-cpu", QEMU_CPU, sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    return subprocess.run(argv, cwd=project.path, capture_output=True, text=True, timeout=900)


def test_a_golden_made_on_one_kind_of_cpu_passes_the_cpu_target_on_the_other(project: Project) -> None:
    """Both ways: made here, checked on an AVX2 CPU without VNNI; made there, checked here."""
    require_qemu()
    full_range_ic(project, "ort-1.31.1-exact")
    project.run("-m", "cpu", "--tinyaccel-update-golden", "-k", "golden and int8").assert_outcomes(passed=1)
    made_here = store.load(project.path / "golden" / "ic")
    assert made_here.variants  # the arithmetics differ on this model
    there = _run_under_avx2(project, "-m", "cpu", "-k", "golden and int8", "-q")
    assert there.returncode == 0, there.stdout[-3000:]
    assert "1 passed" in there.stdout

    shutil.rmtree(project.path / "golden")
    there = _run_under_avx2(project, "-m", "cpu", "-k", "golden and int8", "-q", "--tinyaccel-update-golden")
    assert there.returncode == 0, there.stdout[-3000:]
    made_there = store.load(project.path / "golden" / "ic")
    for arithmetic in ("exact", "avx2_int16_pairs"):
        np.testing.assert_array_equal(
            made_there.expected("int8", arithmetic)[0]["probs"], made_here.expected("int8", arithmetic)[0]["probs"]
        )
    project.run("-m", "cpu", "-k", "golden and int8").assert_outcomes(passed=1)


def test_cpu_target_in_exact_kernels_checks_the_exact_outputs(project: Project) -> None:
    """`int8_arithmetic = "exact"`: ONNX Runtime's exact kernels on every CPU, checked against the exact outputs
    (on a CPU without VNNI the other way round from its native kernels)."""
    full_range_ic(project, "ort-1.31.1-exact")
    project.run("-m", "cpu", "--tinyaccel-update-golden", "-k", "golden and int8").assert_outcomes(passed=1)
    with open(project.path / "pyproject.toml", "a") as handle:
        handle.write('int8_arithmetic = "exact"\n')  # appended to [tool.tinyaccel.targets.cpu]
    result = project.run("-m", "cpu", "-k", "int8", "--tinyaccel-report=profile.md")
    result.assert_outcomes(passed=3)
    assert "exact int8 kernels" in (project.path / "profile.md").read_text()
