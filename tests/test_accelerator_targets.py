"""The shipped `aie` and `gemmini` targets end to end: emulator outputs against the
goldens (int8 bit-exact), cost-model timing and resources, traces, and the
failure paths (unsupported op at build time, a fault named by its layer)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from helpers import GOLDEN, MODELS, Project, power_of_two_requant
from onnx import TensorProto, helper

from pytest_tinyaccel.costmodel import zigzag_unavailable
from pytest_tinyaccel.emulator import Graph
from pytest_tinyaccel.goldens import store

needs_zigzag = pytest.mark.skipif(zigzag_unavailable() is not None, reason=str(zigzag_unavailable()))


def outcomes(result: pytest.RunResult) -> dict[str, int]:
    counts = result.parseoutcomes()
    counts.pop("deselected", None)
    return counts


@pytest.mark.parametrize("name", sorted(p.name for p in MODELS.iterdir() if (p / "model.toml").exists()))
def test_emulator_int8_is_bit_exact_with_every_stored_per_kernel_golden(name: str) -> None:
    """Every integer intermediate tensor of the bundled int8 models equals ONNX Runtime's (0 LSB)."""
    from pytest_tinyaccel.models import load_model
    from pytest_tinyaccel.quantize import quantize_model

    model = load_model(MODELS / name / "model.toml")
    golden = store.load(GOLDEN / name)
    reference = golden.layers("int8")
    assert reference, f"golden/{name} has no per-kernel goldens"
    quantized = GOLDEN.parent / ".pytest_cache" / f"bitexact-{name}.onnx"
    quantized.parent.mkdir(exist_ok=True)
    quantize_model(model.onnx_path, quantized, model.load_calibration(), model.quantization)
    from pytest_tinyaccel.cache import file_sha256
    from pytest_tinyaccel.runtime import to_model_inputs

    # the same bytes as the golden's int8 model, so the per-kernel goldens are this model's
    assert file_sha256(quantized) == golden.meta["dtypes"]["int8"]["model_sha256"]
    graph = Graph.load(quantized, accumulation=golden.meta.get("int8_accumulation", "exact"))
    x = golden.inputs[: golden.meta["layer_samples"]]
    _, ours = graph.run(to_model_inputs(quantized, x), intermediates=True)
    integer = [t for t, v in reference.items() if v.dtype.kind in "iu"]
    assert len(integer) >= 5
    missing = [t for t in integer if t not in ours]
    assert not missing, f"{name}: the emulator gives no {missing} (stored per-kernel goldens)"
    for tensor in integer:
        np.testing.assert_array_equal(ours[tensor], reference[tensor], err_msg=f"{name}: {tensor}")


def test_sw_emu_passes_every_check(project: Project) -> None:
    project.add_model("ic")
    result = project.run("-m", "aie or gemmini", "--target", "sw_emu")
    assert outcomes(result) == {"passed": 12}
    result.stdout.fnmatch_lines(
        [
            "aie sw_emu: tinyaccel emulator (AI Engine int8 semantics)*",
            "gemmini sw_emu: tinyaccel emulator (Gemmini int8 semantics)*",
        ]
    )


@needs_zigzag
def test_hw_emu_reports_cycles_resources_efficiency_and_traces(project: Project) -> None:
    project.add_model("ic")
    result = project.run(
        "-m", "aie", "--target", "hw_emu", "--tinyaccel-trace", "traces", "--tinyaccel-report", "profile.json"
    )
    assert outcomes(result) == {"passed": 6}
    result.stdout.fnmatch_lines(
        [
            "aie hw_emu: tinyaccel emulator + AIE dataflow model on VCK190 (XCVC1902*",
            "ic*int8*cycles*/*/*/*/*%*99.4% (Top 1, n=540)*",
        ]
    )
    rows = {r["dtype"]: r["perf"] for r in json.loads((project.path / "profile.json").read_text())["rows"]}
    for row in rows.values():
        assert row["cycles"] > 0 and row["clock_hz"] > 0 and row["throughput"] > 0
        assert 0 < row["efficiency"] <= 1
        assert row["latency_ns"] == pytest.approx(row["cycles"] / row["clock_hz"] * 1e9)
        assert set(row["resources"]) == {"Kernels", "Buffers", "Stream", "PLIO", "GMIO"}
        assert row["resources"]["Kernels"] >= 10  # at least one kernel per conv/dense layer
    assert rows["fp32"]["cycles"] > rows["int8"]["cycles"]  # fp32 is emulated on the bf16 array
    trace = json.loads((project.path / "traces" / "ic-aie-hw_emu-int8.json").read_text())
    events = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(events) == rows["int8"]["resources"]["Kernels"]
    assert all(e["dur"] > 0 for e in events)
    # simulated microseconds on the viewer's axis; the kernels end by the row's latency
    assert 0 < max(e["ts"] + e["dur"] for e in events) <= rows["int8"]["latency_ns"] / 1e3 * (1 + 1e-9)
    assert all(e["dur"] == pytest.approx(e["args"]["cycles"] / rows["int8"]["clock_hz"] * 1e6) for e in events)


def _unsupported_model(folder) -> None:
    """A classifier with an LpNormalization node: valid ONNX that ONNX Runtime runs, the emulator does not."""
    folder.mkdir(parents=True)
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.random.default_rng(0).standard_normal(12).tolist())
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "w"], ["h"], name="dense"),
            helper.make_node("LpNormalization", ["h"], ["e"], name="lp_norm", axis=-1),
            helper.make_node("Softmax", ["e"], ["probs"], name="softmax", axis=-1),
        ],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "model.onnx")
    rng = np.random.default_rng(1)
    np.save(folder / "X_test.npy", rng.standard_normal((20, 4)).astype(np.float32))
    np.save(folder / "y_test.npy", rng.integers(0, 3, 20))
    (folder / "model.toml").write_text(
        'use_case = "Toy"\ntask = "classification"\nmetric = "top1"\nquality_target = 0.0\ndtypes = ["fp32"]\n'
    )


def test_unsupported_op_skips_naming_op_and_count_and_fails_when_strict(project: Project) -> None:
    project.add_model("ic")
    _unsupported_model(project.path / "models" / "lpnorm")
    select = ("-m", "aie", "--target", "sw_emu", "-k", "golden or accuracy")
    result = project.run(*select, "--tinyaccel-update-golden", "-rs")
    assert outcomes(result) == {"passed": 4, "skipped": 2}
    result.stdout.fnmatch_lines(
        ["SKIPPED*aie cannot run lpnorm (fp32): the emulator has no kernel for LpNormalization x1; to record it*"]
    )
    result = project.run(*select, "--tinyaccel-strict-support")
    assert outcomes(result) == {"passed": 4, "failed": 2}
    result.stdout.fnmatch_lines(["*lpnorm-aie-sw_emu-fp32: aie cannot run lpnorm (fp32): *LpNormalization x1*"])
    assert "Traceback" not in result.stdout.str()


FAULTY_LAYER = "/stack1/conv1/conv1.0/Conv_quant"


def test_injected_rounding_fault_fails_golden_and_names_the_layer(project: Project) -> None:
    """A requantization that rounds half away from zero in one layer (instead of half to
    even, as ONNX Runtime and the configured hardware do) must fail the int8 golden check,
    and the failure must name that layer. Power-of-two requantization scales, as
    hardware-friendly quantizers choose, make exact ties common enough to matter."""
    from pytest_tinyaccel.models import load_model
    from pytest_tinyaccel.quantize import quantize_model

    folder = project.add_model("ic", golden=False)
    model = load_model(folder / "model.toml")
    # 8-bit weights, as the layer name and its ties were chosen with (the bundled manifest uses 7-bit ones)
    quantize_model(
        model.onnx_path,
        folder / "plain_int8.onnx",
        model.load_calibration(),
        dict(model.quantization, reduce_range=False),
    )
    power_of_two_requant(folder / "plain_int8.onnx", folder / "model_int8.onnx", FAULTY_LAYER)
    (folder / "plain_int8.onnx").unlink()
    # 30 golden samples: the first ones the fault changes are #1 (exact int32 sums) and #12 (AVX2 int16 pairs)
    project.edit_manifest("ic", "ndata = 10", 'ndata = 30\nmodel_int8 = "model_int8.onnx"')
    made = project.run("-m", "cpu", "--tinyaccel-update-golden", "-k", "golden")
    assert outcomes(made) == {"passed": 2}

    clean = project.run("-m", "aie", "--target", "sw_emu", "-k", "golden and int8")
    assert outcomes(clean) == {"passed": 1}

    (project.path / "pyproject.toml").write_text(
        f'[tool.tinyaccel.targets.aie]\nrounding = {{"{FAULTY_LAYER}" = "half_away"}}\n'
    )
    faulty = project.run("-m", "aie", "--target", "sw_emu", "-k", "golden and int8")
    assert outcomes(faulty) == {"failed": 1}
    faulty.stdout.fnmatch_lines(
        [
            "*ic-aie-sw_emu-int8: outputs on the 30 golden samples do not match ONNX Runtime",
            "*output 'probs' differs from the ONNX Runtime golden*",
            f"*first diverging layer: node '{FAULTY_LAYER}' (QLinearConv), tensor *: * elements differ, max abs "
            f"error 1",
        ]
    )


def test_mlperf_reference_models_run_through_aie_sw_emu(project: Project) -> None:
    """The unmodified MLPerf Tiny models (NHWC, hybrid float, QDQ int8) through the emulator,
    against ONNX Runtime goldens at the default tolerance: every int8 output equal. (ONNX
    Runtime keeps a few of ResNet-8's QDQ convs in float, whose summation order NumPy cannot
    reproduce; on other inputs that can cost a few LSB, see tests/test_emulator.py.)"""
    from test_mlperf_reference import REFERENCE, make_model_folder

    if not REFERENCE.is_dir():
        pytest.skip(f"MLPerf Tiny reference models not found at {REFERENCE}")
    for name in ("kws_ref", "vww_ref", "ic_ref", "ad_ref"):
        make_model_folder(project.path, name)
    result = project.run("--target", "cpu,aie:sw_emu", "--tinyaccel-update-golden", "-k", "golden or top5")
    counts = outcomes(result)
    assert counts == {"passed": 28}, result.stdout.str()[-3000:]
