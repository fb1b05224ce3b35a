"""The plugin end to end, through pytester: ids, markers, selection, goldens,
checks, reports, the build cache and its failure paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import Project


def outcomes(result: pytest.RunResult) -> dict[str, int]:
    """Outcome counts; 'deselected' left out (-m/-k also deselect the gating/upgrade placeholders)."""
    counts = result.parseoutcomes()
    counts.pop("deselected", None)
    return counts


def test_ids_markers_and_selection(project: Project) -> None:
    project.add_model("ic")
    project.fake_target()
    result = project.run("--collect-only", "-q")
    ids = {line.split("::")[1] for line in result.outlines if "::" in line}
    assert {"test_baseline[off]", "test_upgrade_review[none]"} <= ids  # placeholders that say why they are off
    cases = {i for i in ids if "-cpu-" in i or "-fake-" in i}
    assert {
        "test_golden[ic-cpu-hw-fp32]",
        "test_golden[ic-cpu-hw-int8]",
        "test_accuracy[ic-fake-sw_emu-int8]",
        "test_top5[ic-fake-hw_emu-fp32]",
    } <= cases
    assert len(cases) == 3 * 2 * 3  # 3 checks x 2 dtypes x (cpu:hw, fake:sw_emu, fake:hw_emu)

    result = project.run("--collect-only", "-q", "-m", "cpu")
    selected = [line for line in result.outlines if "::" in line]
    assert selected and all("-cpu-hw-" in line for line in selected)

    result = project.run("--collect-only", "-q", "--target", "sw_emu")
    selected = [line for line in result.outlines if "::" in line and not line.endswith(("[off]", "[none]"))]
    assert len(selected) == 24 and all("-sw_emu-" in line for line in selected)  # fake, aie, gemmini, hls4ml
    assert sum("-fake-sw_emu-" in line for line in selected) == 6

    result = project.run("--collect-only", "-q", "--target", "fake:hw_emu", "--tinyaccel-dtype", "int8")
    selected = [line for line in result.outlines if "::" in line and not line.endswith(("[off]", "[none]"))]
    assert len(selected) == 3 and all(line.endswith("-fake-hw_emu-int8]") for line in selected)


def test_unknown_target_selection_is_a_usage_error(project: Project) -> None:
    project.add_model("ic")
    result = project.run("--target", "hw_emux")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--target 'hw_emux': not a mode, target or target:mode; choose from*hw*cpu*"])


def test_unavailable_mode_is_skipped_with_reason(project: Project) -> None:
    project.add_model("ic")
    project.fake_target()
    result = project.run("-m", "fake", "-rs")
    assert outcomes(result) == {"passed": 6, "skipped": 6}
    result.stdout.fnmatch_lines(["*SKIPPED*fakesim is not installed (pip install fakesim)*"])


def test_all_checks_pass_and_table_is_printed(project: Project) -> None:
    project.add_model("ic")
    result = project.run("-m", "cpu")
    assert outcomes(result) == {"passed": 6}
    result.stdout.fnmatch_lines(
        [
            "*= tinyaccel profile =*",
            "cpu hw: ONNX Runtime * CPU, 1 thread(s), measured",
            "Model*Dtype*Latency*Throughput*Accuracy*Quality Target*Argmax = golden",
            "ic*fp32*ns*99.4% (Top 1, n=540)*97.0% (Top 1)*100%",
            "ic*int8*ns*(Top 1, n=540)*97.0% (Top 1)*100%",
        ]
    )


def test_perturbed_target_fails_golden_with_diagnosis(project: Project) -> None:
    project.add_model("ic")
    project.fake_target(perturb="scale")
    result = project.run("-k", "test_golden and fake and sw_emu and fp32")
    assert outcomes(result) == {"failed": 1}
    result.stdout.fnmatch_lines(
        [
            "*ic-fake-sw_emu-fp32: outputs on the 10 golden samples do not match ONNX Runtime",
            "*output 'probs' differs from the ONNX Runtime golden (atol=1e-05, rtol=0.001)",
            "*mismatched elements: * / 100 (*%)",
            "*max abs error: *max rel error: 0.01*",
            "*worst elements:",
            "*index*obtained*expected*abs err*rel err",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_missing_golden_names_the_command(project: Project) -> None:
    project.add_model("ic", golden=False)
    result = project.run("-m", "cpu", "-k", "golden and fp32")
    assert outcomes(result)["failed"] == 1
    result.stdout.fnmatch_lines(
        [
            "*no golden at*golden/ic*",
            "*to create it: pytest 'test_suite.py::test_golden[[]ic-cpu-hw-fp32[]]' --tinyaccel-update-golden",
        ]
    )


def test_update_golden_creates_files_then_checks_pass(project: Project) -> None:
    project.add_model("ic", golden=False)
    result = project.run("-m", "cpu", "--tinyaccel-update-golden")
    assert outcomes(result) == {"passed": 6}
    result.stdout.fnmatch_lines(["golden ic: created *golden/ic"])
    folder = project.path / "golden" / "ic"
    assert sorted(p.name for p in folder.iterdir()) == [
        "fp32.0.npy",
        "golden.json",
        "inputs.npy",
        "int8.0.npy",
        "layers.fp32.npz",
        "layers.int8.npz",
    ]
    meta = json.loads((folder / "golden.json").read_text())
    assert meta["ndata"] == 10 and meta["onnxruntime"] and meta["onnx"]
    assert set(meta["dtypes"]) == {"fp32", "int8"}
    assert len(meta["dtypes"]["int8"]["top5"]) == 10 and len(meta["dtypes"]["int8"]["top5"][0]) == 5
    # the committed golden was made by the same code, maybe on another CPU: the same golden
    from helpers import GOLDEN, assert_same_golden

    assert_same_golden(folder, GOLDEN / "ic")
    # a second update changes nothing and says nothing
    result = project.run("-m", "cpu", "--tinyaccel-update-golden")
    assert outcomes(result) == {"passed": 6}
    assert "golden ic:" not in result.stdout.str()


def test_stale_golden_after_model_change(project: Project) -> None:
    import onnx

    folder = project.add_model("ic")
    model = onnx.load(folder / "model.onnx")
    model.doc_string = "retrained"
    onnx.save(model, folder / "model.onnx")
    result = project.run("-m", "cpu", "-k", "golden and fp32")
    assert outcomes(result)["failed"] == 1
    result.stdout.fnmatch_lines(
        [
            "*ic-cpu-hw-fp32: golden *golden/ic is stale: model.onnx changed since the golden was written "
            "(golden sha256 *, now *)*",
            "*review, then run: pytest 'test_suite.py::test_golden[[]ic-cpu-hw-fp32[]]' --tinyaccel-update-golden",
        ]
    )


def test_stale_golden_after_test_data_change(project: Project) -> None:
    folder = project.add_model("ic")
    x = np.load(folder / "X_test.npy")
    np.save(folder / "X_test.npy", x[::-1].copy())
    result = project.run("-m", "cpu", "-k", "golden and int8")
    assert outcomes(result)["failed"] == 1
    result.stdout.fnmatch_lines(
        ["*is stale: the first ndata=10 samples of X_test.npy differ from the golden's inputs*"]
    )


def test_accuracy_below_target_names_metric_and_numbers(project: Project) -> None:
    project.add_model("ic")
    project.edit_manifest("ic", "quality_target = 0.97", "quality_target = 0.999")
    result = project.run("-m", "cpu", "-k", "accuracy")
    assert outcomes(result) == {"failed": 2}
    result.stdout.fnmatch_lines(
        ["*ic-cpu-hw-fp32: 99.4% (Top 1) on the first 540 test samples is below the quality target 99.9% (Top 1)"]
    )


def test_accuracy_sample_count_option(project: Project) -> None:
    project.add_model("ic")
    result = project.run("-m", "cpu", "-k", "accuracy and fp32", "--tinyaccel-samples", "100")
    assert outcomes(result) == {"passed": 1}
    result.stdout.fnmatch_lines(["ic*fp32*(Top 1, n=100)*"])
    # a slow simulator gets fewer samples per model, from the manifest
    project.append_manifest("ic", "[targets.cpu]\nsamples = 50")
    result = project.run("-m", "cpu", "-k", "accuracy and fp32")
    result.stdout.fnmatch_lines(["ic*fp32*(Top 1, n=50)*"])


def test_top5_mismatch_shows_side_by_side(project: Project) -> None:
    project.add_model("ic")
    project.fake_target(perturb="swap")
    result = project.run("-k", "top5 and fake and sw_emu and fp32")
    assert outcomes(result)["failed"] == 1
    result.stdout.fnmatch_lines(
        [
            "*ic-fake-sw_emu-fp32: Top-5 differs from the golden reference in * place(s) (same classes in "
            "order, probabilities within 0.01 required)",
            "*sample*rank*reference Top 5*obtained Top 5*",
            "*0*1*0.998299 1*differs",
        ]
    )
    result.stdout.fnmatch_lines(["ic*fp32*(Top 1, n=540)*97.0% (Top 1)*0%"])  # argmax agreement with the golden


def test_report_files(project: Project) -> None:
    project.add_model("ic")
    project.fake_target()
    result = project.run(
        "-m",
        "cpu or fake",
        "--tinyaccel-report",
        "out/profile.md",
        "--tinyaccel-report",
        "out/profile.json",
        "--tinyaccel-report",
        "out/profile.csv",
    )
    assert outcomes(result) == {"passed": 12, "skipped": 6}
    md = (project.path / "out" / "profile.md").read_text()
    cpu_header, fake_header = (
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in md.splitlines()
        if line.startswith("| Use Case")
    )
    assert fake_header == [
        "Use Case",
        "Dtype",
        "Status",
        "Latency (cycles or ns)",
        "Throughput (instances/s)",
        "Resource Utilization (Kernels/Buffers/Stream/PLIO/GMIO)",
        "Accuracy (first 1k)",
        "Quality Target",
        "Model",
    ]
    assert cpu_header[5] == "Resource Utilization"  # each target declares its own columns; cpu has none
    assert "## cpu hw: ONNX Runtime" in md and "## fake sw_emu: fakesim" in md
    assert "fp32 <br/> int8" in md and "1000 cycles <br/> 1000 cycles" in md and "3/4/5/1/2 <br/> 3/4/5/1/2" in md
    assert "passed <br/> passed" in md and "**Tests:** 12 passed, 6 skipped" in md
    assert "[ResNet (digits)](https://github.com/mlcommons/tiny/" in md
    data = json.loads((project.path / "out" / "profile.json").read_text())
    assert data["format"] == "tinyaccel-profile/3"
    assert data["summary"] == {"passed": 12, "failed": 0, "skipped": 6, "errors": 0, "xfailed": 0, "xpassed": 0}
    assert {"onnxruntime", "onnx", "numpy", "python", "machine", "cpu"} <= set(data["environment"])
    rows = {(r["target"], r["mode"], r["dtype"]): r for r in data["rows"]}
    assert set(rows) == {
        ("cpu", "hw", "fp32"),
        ("cpu", "hw", "int8"),
        ("fake", "sw_emu", "fp32"),
        ("fake", "sw_emu", "int8"),
    }
    cpu = rows[("cpu", "hw", "fp32")]
    assert cpu["perf"]["latency_ns"] > 0 and cpu["perf"]["throughput"] > 0 and cpu["perf"]["cycles"] is None
    assert cpu["accuracy"] == pytest.approx(537 / 540) and cpu["samples"] == 540 and cpu["metric"] == "top1"
    assert cpu["agreement"] == 1.0
    assert rows[("fake", "sw_emu", "int8")]["perf"]["resources"] == {
        "Kernels": 3,
        "Buffers": 4,
        "Stream": 5,
        "PLIO": 1,
        "GMIO": 2,
    }
    csv_lines = (project.path / "out" / "profile.csv").read_text().splitlines()
    assert csv_lines[0].startswith("case,status,detail,passed,failed,skipped,errors,xfailed,xpassed,model,target,")
    assert "resources.Kernels" in csv_lines[0] and "probs.sqnr_db" in csv_lines[0]
    assert len(csv_lines) == 1 + 6  # the four cases that ran and the two fake hw_emu ones, skipped


def test_bad_report_suffix_is_reported(project: Project) -> None:
    project.add_model("ic")
    result = project.run("-m", "cpu", "-k", "golden and fp32", "--tinyaccel-report", "out/profile.xlsx")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*argument --tinyaccel-report: out/profile.xlsx: the suffix must be one of .csv, .json, .md, .html"]
    )


def test_second_run_reuses_every_build_and_cache_clear_empties_it(project: Project) -> None:
    project.add_model("ic")
    first = project.run("-m", "cpu")
    first.stdout.fnmatch_lines(["builds: 3 built, 0 reused from the cache"])
    second = project.run("-m", "cpu")
    second.stdout.fnmatch_lines(["builds: 0 built, 3 reused from the cache"])
    cleared = project.run("-m", "cpu", "--cache-clear")
    cleared.stdout.fnmatch_lines(["builds: 3 built, 0 reused from the cache"])


@pytest.mark.parametrize(
    "old, new, key, problem",
    [
        ("task = ", 'colour = "red"\ntask = ', "colour", "unknown key"),
        ("quality_target = 0.97", 'quality_target = "high"', "quality_target", "expected float, got str 'high'"),
        ("ndata = 10", "ndata = 0", "ndata", "must be at least 1"),
        ('x_test = "X_test.npy"', 'x_test = "X_missing.npy"', "x_test", "file 'X_missing.npy' does not exist"),
        ('x_test = "X_test.npy"', 'x_test = "../../escape.npy"', "x_test", "leaves the model folder"),
        ('metric = "top1"', 'metric = "auc"', "metric", "not valid for task 'classification'"),
        ('dtypes = ["fp32", "int8"]', 'dtypes = ["fp16"]', "dtypes", "expected a non-empty list"),
        ("reduce_range = true", 'reduce_range = true\nformat = "QFoo"', "quantization.format", "not one of"),
        ("", "[tolerance.int8]\natol = -1", "tolerance.int8.atol", "must be at least 0"),
        ("", "[tolerance.int8]\natol = nan", "tolerance.int8.atol", "expected a finite number"),
        ("", "[targets.cpu]\nskip = 3", "targets.cpu.skip", "expected string, got int 3"),
    ],
)
def test_malformed_manifest_is_a_collection_error(project: Project, old: str, new: str, key: str, problem: str) -> None:
    project.add_model("ic")
    (project.path / "escape.npy").write_bytes(b"")
    if old:
        project.edit_manifest("ic", old, new)
    else:
        project.append_manifest("ic", new)
    result = project.run("-m", "cpu")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert set(outcomes(result)) == {"errors"}  # the model's cases error: the manifest is what is wrong
    result.stdout.fnmatch_lines([f"*malformed model manifest: *models/ic/model.toml: key '{key}': *{problem}*"])
    assert "Traceback" not in result.stdout.str()


def test_invalid_toml_is_a_collection_error(project: Project) -> None:
    project.add_model("ic")
    project.manifest("ic").write_text("use_case = \n")
    result = project.run()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*models/ic/model.toml: key '(syntax)': not valid TOML*"])


def test_every_broken_manifest_is_reported_in_one_run_and_the_other_models_run(project: Project) -> None:
    """Two broken manifests, one valid model: each broken one errors its own cases (ids as its cases would
    have had, so -m and -k select them), the valid model passes, and the run fails."""
    project.add_model("ic")
    project.add_model("ad")
    project.add_model("kws")
    project.edit_manifest("ad", "ndata = 10", "ndata = 0")
    project.manifest("kws").write_text("use_case = \n")
    result = project.run("-m", "cpu", "-k", "golden")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert outcomes(result) == {"passed": 2, "errors": 4}
    text = result.stdout.str()
    assert "ERROR test_suite.py::test_golden[ad-cpu-hw-fp32]" in text and "test_golden[kws-cpu-hw-int8]" in text
    result.stdout.fnmatch_lines(
        ["*models/ad/model.toml: key 'ndata': must be at least 1*", "*models/kws/model.toml: key '(syntax)'*"],
        consecutive=False,
    )


def test_pickled_npy_is_refused(project: Project) -> None:
    folder = project.add_model("ic")
    np.save(folder / "X_test.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    result = project.run("-m", "cpu", "-k", "accuracy and fp32")
    assert outcomes(result)["failed"] == 1
    result.stdout.fnmatch_lines(["*X_test.npy: refused, the file holds pickled Python objects*"])


def test_wrong_input_shape_is_explained(project: Project) -> None:
    folder = project.add_model("ic")
    np.save(folder / "X_test.npy", np.load(folder / "X_test.npy").reshape(-1, 64))
    result = project.run("-m", "cpu", "-k", "accuracy and fp32")
    result.stdout.fnmatch_lines(
        ["*input data has shape [[]540, 64[]] but model input 'input' expects [[]N, 1, 8, 8[]]*"]
    )


def test_nan_in_input_is_explained(project: Project) -> None:
    folder = project.add_model("ic")
    x = np.load(folder / "X_test.npy")
    x[3, 0, 2, 2] = np.nan
    np.save(folder / "X_test.npy", x)
    result = project.run("-m", "cpu", "-k", "accuracy and fp32")
    result.stdout.fnmatch_lines(["*input data holds 1 NaN/Inf values; fix the data file*"])


def test_corrupt_onnx_fails_that_model_only(project: Project) -> None:
    project.add_model("ic")
    second = project.path / "models" / "ic2"
    import shutil

    shutil.copytree(project.path / "models" / "ic", second)
    (second / "model.onnx").write_bytes(b"\x08\x07garbage")
    result = project.run("-m", "cpu", "-k", "accuracy")
    counts = outcomes(result)
    assert counts["passed"] == 2 and counts["failed"] == 2
    result.stdout.fnmatch_lines(
        ["*ic2-cpu-hw-fp32: *model.onnx is not a readable ONNX model (*); re-export or restore it"]
    )
    assert "Traceback" not in result.stdout.str()


def test_no_models_is_a_visible_skip(project: Project) -> None:
    result = project.run("-rs")
    result.stdout.fnmatch_lines(["*SKIPPED*no model folders with a model.toml under*models*"])


def test_target_settings_from_pyproject_are_validated(project: Project) -> None:
    project.add_model("ic")
    (project.path / "pyproject.toml").write_text("[tool.tinyaccel.targets.cpu]\nlatency_runs = 0\n")
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*[[]tool.tinyaccel.targets.cpu[]]: key 'latency_runs': must be at least 1, got 0"])
    (project.path / "pyproject.toml").write_text("[tool.tinyaccel.targets.gpu]\nx = 1\n")
    result = project.run()
    result.stderr.fnmatch_lines(["*configures unknown target(s) [[]'gpu'[]]*"])


def test_conftest_target_can_replace_a_shipped_one(project: Project) -> None:
    project.add_model("ic")
    project.pytester.makeconftest("""
        from pytest_tinyaccel.targets.cpu import CpuTarget

        class SlowCpu(CpuTarget):
            def simulator(self, mode):
                return "replaced cpu"

        def pytest_tinyaccel_targets(config):
            return [SlowCpu(latency_runs=2)]
    """)
    result = project.run("-m", "cpu", "-k", "accuracy and fp32")
    assert outcomes(result) == {"passed": 1}
    result.stdout.fnmatch_lines(["cpu hw: replaced cpu"])


def test_tolerance_override_per_target(project: Project) -> None:
    project.add_model("ic")
    project.fake_target(perturb="scale")
    project.append_manifest("ic", "[tolerance.fake]\nrtol = 0.02")
    result = project.run("-k", "golden and fake and sw_emu")
    assert outcomes(result) == {"passed": 2}
    project.edit_manifest("ic", "[tolerance.fake]\nrtol = 0.02", "[tolerance.fake.int8]\nrtol = 0.02")
    result = project.run("-k", "golden and fake and sw_emu")
    assert outcomes(result) == {"passed": 1, "failed": 1}
    result.stdout.fnmatch_lines(["FAILED test_suite.py::test_golden[[]ic-fake-sw_emu-fp32[]]*"])


def test_third_party_target_from_entry_point(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """A package that declares the `pytest_tinyaccel.targets` entry point is picked up."""
    project.add_model("ic")
    site = project.path / "site"
    dist = site / "acme_npu-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-npu\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pytest_tinyaccel.targets]\nnpu = acme_npu:NpuTarget\n")
    (site / "acme_npu.py").write_text(
        "from pytest_tinyaccel import Target\n"
        "class NpuTarget(Target):\n"
        "    name = 'npu'\n"
        "    modes = ('hw',)\n"
        "    def availability(self, mode):\n"
        "        return 'no ACME NPU attached to this machine'\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(site))
    result = project.pytester.runpytest_subprocess("-m", "npu", "-rs")
    result.stdout.fnmatch_lines(["*SKIPPED*no ACME NPU attached to this machine*"])
    assert outcomes(result) == {"skipped": 6}


def test_manifest_skip_for_a_target(project: Project) -> None:
    project.add_model("ic")
    project.append_manifest("ic", '[targets.cpu]\nskip = "the cpu golden is covered elsewhere"')
    result = project.run("-rs", "-m", "cpu")
    assert outcomes(result) == {"skipped": 6}
    result.stdout.fnmatch_lines(["*SKIPPED*the cpu golden is covered elsewhere*"])


def test_runs_without_pytest_cache_provider(project: Project) -> None:
    project.add_model("ic")
    result = project.run("-m", "cpu", "-p", "no:cacheprovider")
    assert outcomes(result) == {"passed": 6}
    assert (project.path / ".tinyaccel-cache" / "builds").is_dir()
