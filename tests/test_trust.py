"""The gate can be trusted: expected failures are strict, a damaged cache is rebuilt rather
than blamed on a target, an update limited to one dtype keeps the others, duplicate model
names stop the run at any verbosity, and a missing golden says how to make it with the
user's own options."""

from __future__ import annotations

import json
import shutil

import numpy as np
from helpers import Project


def outcomes(result) -> dict[str, int]:
    return {k: v for k, v in result.parseoutcomes().items() if k not in ("warnings", "deselected")}


def test_manifest_xfail_is_strict(project: Project) -> None:
    project.add_model("ic")
    project.fake_target(perturb="scale")  # the fake target's outputs are 1 % off: its golden check fails
    project.append_manifest("ic", '[targets.fake]\nxfail = { golden = "outputs scaled by 1.01 (known bug #12)" }')
    result = project.run("-m", "fake", "--target", "sw_emu", "-k", "golden or accuracy", "-rxX")
    assert outcomes(result) == {"xfailed": 2, "passed": 2}
    result.stdout.fnmatch_lines(["*XFAIL*test_golden*model.toml: outputs scaled by 1.01 (known bug #12)*"])
    # once the target is fixed, the stale entry fails the run until it is removed
    project.fake_target(perturb=None)
    fixed = project.run("-m", "fake", "--target", "sw_emu", "-k", "golden", "-rxX")
    assert outcomes(fixed) == {"failed": 2}
    fixed.stdout.fnmatch_lines(["*XPASS(strict)*"])


def test_xfail_per_dtype(project: Project) -> None:
    project.add_model("ic")
    project.fake_target(perturb="scale")
    project.append_manifest("ic", '[targets.fake.xfail]\nint8 = "int8 path scaled"')
    result = project.run("-m", "fake", "--target", "sw_emu", "-k", "golden")
    assert outcomes(result) == {"failed": 1, "xfailed": 1}


def test_damaged_cached_build_is_rebuilt_not_blamed(project: Project) -> None:
    project.add_model("ic")
    assert outcomes(project.run("-m", "cpu", "-k", "int8 and golden")) == {"passed": 1}
    cache = project.path / ".pytest_cache" / "d" / "tinyaccel"
    quantized = next((cache / "quantized").glob("ic-*/model.onnx"))
    quantized.write_bytes(quantized.read_bytes()[:-100])  # silently corrupted on disk
    optimized = next(p for p in (cache / "builds").glob("ic-cpu-hw-int8-*/*") if p.suffix == ".onnx")
    optimized.unlink()  # a file deleted from a complete build
    again = project.run("-m", "cpu", "-k", "int8 and golden")
    assert outcomes(again) == {"passed": 1}
    again.stdout.fnmatch_lines(["builds: 2 built, 0 reused from the cache (2 rebuilt: their cached files had changed)"])


def test_failed_builds_are_counted(project: Project) -> None:
    project.add_model("ic")
    (project.path / "models" / "ic" / "model.onnx").write_bytes(b"")
    result = project.run("-m", "cpu", "-k", "golden or accuracy")
    assert outcomes(result) == {"failed": 4}
    output = result.stdout.str()
    assert output.count("has an empty graph") >= 2
    assert "the full message is in this case's first failed check" in output


def test_update_limited_to_one_dtype_keeps_the_other(project: Project) -> None:
    project.add_model("ic")
    golden = project.path / "golden" / "ic"
    int8_before = (golden / "int8.0.npy").read_bytes()
    meta = json.loads((golden / "golden.json").read_text())
    meta["dtypes"]["fp32"]["quality"]["value"] = 0.5  # something the update will correct
    from pytest_tinyaccel.goldens import store

    store.write(
        golden,
        meta,
        np.load(golden / "inputs.npy"),
        {"fp32": {"probs": np.load(golden / "fp32.0.npy")}, "int8": {"probs": np.load(golden / "int8.0.npy")}},
        {d: store.load(golden).layers(d) for d in ("fp32", "int8")},
    )
    result = project.run("-m", "cpu", "--tinyaccel-update-golden", "--tinyaccel-dtype", "fp32", "-k", "golden")
    assert outcomes(result) == {"passed": 1}
    after = json.loads((golden / "golden.json").read_text())
    assert after["dtypes"]["fp32"]["quality"]["value"] > 0.9 and "int8" in after["dtypes"]
    assert (golden / "int8.0.npy").read_bytes() == int8_before
    assert outcomes(project.run("-m", "cpu", "-k", "golden")) == {"passed": 2}


def test_duplicate_names_error_both_models_at_normal_verbosity(project: Project) -> None:
    project.add_model("ic")
    shutil.copytree(project.path / "models" / "ic", project.path / "models" / "digits")
    manifest = project.path / "models" / "digits" / "model.toml"
    manifest.write_text('name = "ic"\n' + manifest.read_text())
    for verbosity in ((), ("-q",), ("-v",)):
        result = project.run("-m", "cpu", *verbosity)
        assert result.ret == 1, result.stdout.str()
        assert outcomes(result) == {"errors": 12}  # 2 folders x 3 checks x 2 dtypes
        result.stdout.fnmatch_lines(["*model names must be unique; digits/, ic/ share the name 'ic'*"])


def test_missing_golden_says_how_with_the_users_options(project: Project) -> None:
    project.add_model("ic", golden=False)
    shutil.move(str(project.path / "models"), str(project.path / "zoo"))
    result = project.run("-m", "cpu", "-k", "golden and fp32", "--tinyaccel-models=zoo", "--tinyaccel-golden=refs")
    assert outcomes(result) == {"failed": 1}
    output = result.stdout.str()
    assert "During handling of the above exception" not in output
    result.stdout.fnmatch_lines(
        [
            "*no golden at *refs/ic",
            "*to create it: pytest 'test_suite.py::test_golden[[]ic-cpu-hw-fp32[]]' --tinyaccel-models=zoo "
            "--tinyaccel-golden=refs --tinyaccel-update-golden",
        ]
    )
